"""Print the cross-model table of headline figures (README, notebooks/cross_model.ipynb) from stored Results.

    python scripts/cross_model_table.py [ROOT ...]    # default: data/results runs

Every Result under the roots is read (newest per analysis and model); nothing is recomputed."""

from __future__ import annotations

import sys

from interp.viz.headlines import cross_model, from_store, markdown

if __name__ == "__main__":
    print(markdown(cross_model(from_store(sys.argv[1:] or ["data/results", "runs"]))))
