"""List the README's benchmark figures whose timed source files changed after they were measured.

    python scripts/stale_figures.py          # one line per stale record; nothing when every figure is current

Each record in ``benchmarks/results/*.json`` names its command: run it again to re-measure the figure."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from record import RESULTS, stale  # noqa: E402


def main() -> int:
    for record_id, changed in stale():
        record = json.loads((RESULTS / f"{record_id}.json").read_text())
        print(f"stale: {record_id} ({record['figure']}; measured {record['date']}) - changed since: "
              f"{', '.join(changed)}; re-measure with `{record['command']}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
