"""The workbench: a small, streamlit-free facade over the library, for the dashboard and notebooks.

Anchor: llm-transparency-tool's ``TransparentLlm`` backend, minus its streamlit import.
Every dashboard page calls only these methods (and ``interp.viz``); the app caches each
call once, keyed on the weights hash and the arguments. Results are read through
``result(path)``, cached by path and modification time, so a re-saved run shows its
new content and a deleted one disappears.

Two rules keep sessions apart on one shared model:

- the shared model only ever runs forwards and hooked regions (both under its lock);
- anything that changes weights (a bigram mask preview, training a mask, unlearning,
  an edited model) runs on a private model: a fresh load of the same spec, checked to
  have the same weights hash, held by the workbench and never shared with a page.

Long analyses run as jobs (``submit``; ``interp.jobs``), never in a page's script thread.

    wb = Workbench("smollm2-135m")
    wb.neurons_for(" Paris", k=5)
    job = wb.submit("patching", method="activation", n=4); job.wait().result
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from interp.analyses.base import cached_run, estimate, get_analysis, run
from interp.analyses.circuits import read as graphs
from interp.analyses.facts import read as facts
from interp.analyses.neurons import read as neuron_read
from interp.analyses.patching import read as patching
from interp.analyses.subnetworks import read as subnetworks
from interp.errors import InterpError
from interp.jobs import Job, JobRunner
from interp.models import load_model
from interp.models.generation import generate
from interp.models.loading import EDIT_FILE, EMBEDDED, EMBEDDED_MODELS
from interp.names import NeuronId
from interp.paths import runs_root
from interp.result import Result
from interp.scale.preflight import duration, size
from interp.storage import find_runs, list_runs, load_result, newest_run, pin_run, store_stamp, unpin
from interp.storage.pins import run_label

__all__ = ["COMPONENTS", "DEFAULT_MODEL", "EMBEDDED_MODELS", "METHODS", "InterpError", "Job", "Workbench"]
DEFAULT_MODEL = EMBEDDED

METHODS = patching.METHODS
COMPONENTS = tuple(patching.COMPONENTS)


def _mtime(path: str | Path) -> float:
    try:
        return (Path(path) / "result.json").stat().st_mtime
    except OSError:
        return -1.0


def graph_labels(model, graph: Result, load=load_result) -> dict[tuple[int, int], str]:
    """A neuron graph's neurons labelled by their top decoded token (the decoding and the graph belong to two
    techniques: the facade joins them); bare ids when no decoding of the model is stored."""
    nodes = graph.table("nodes")
    neurons = nodes[nodes.kind == "neuron"]
    decoding = newest_run("lm_head_decoding", model.weights_hash)
    labels = neuron_read.token_labels(load(decoding) if decoding else None, model,
                                      list(zip(neurons.layer, neurons.neuron, neurons.activation)))
    explained = newest_run("neuron_explanations", model.weights_hash)
    if explained:  # the explanation's label beside the decoded token
        expl = load(explained).table("explanations")
        keep = expl.merge(neurons[["layer", "neuron"]].drop_duplicates(), on=["layer", "neuron"])
        for r in keep.itertuples():
            key = (int(r.layer), int(r.neuron))
            labels[key] = f"{labels.get(key, f'{r.layer}.{r.neuron}')} — {r.label}"
    return labels


class Workbench:
    """One model, its stored Results, and the jobs that run on it."""

    def __init__(self, spec: str = "smollm2-135m", device: str = "cpu", dtype: str = "float32", model=None):
        self.spec, self.device, self.dtype = spec, device, dtype
        self.model = model or load_model(spec, device=device, dtype=dtype)
        self.jobs = JobRunner()
        self._results: OrderedDict[tuple[str, float], Result] = OrderedDict()
        self._results_lock = threading.Lock()
        self._decoding_path: tuple[str, str] | None = None  # (store, run) of the decoding found last
        self._private = None
        self._private_lock = threading.RLock()
        self._edited: tuple[str, object] | None = None  # one edited model at a time (LRU of 1)

    # --- identity ---------------------------------------------------------------------------
    @property
    def weights_hash(self) -> str:
        return self.model.weights_hash

    def info(self) -> dict:
        """Architecture facts of the model (``Model.info``)."""
        return self.model.info()

    def check_neuron(self, neuron: str | NeuronId) -> NeuronId:
        return self.model.check_neuron(neuron)

    def token_id(self, token: str, policy: str = "single") -> int:
        return self.model.token_id(token, policy=policy)

    def default_token(self, preferred: str = " Paris") -> str:
        """``preferred`` if it is one token for this model, else its first token."""
        return self.model.token_str(self.model.token_id(preferred, policy="first"))

    # --- stored Results ------------------------------------------------------------------------
    def result(self, path: str | Path) -> Result:
        """The stored Result at ``path``, cached by path and modification time."""
        key = (str(path), _mtime(path))
        with self._results_lock:
            if key in self._results:
                self._results.move_to_end(key)
                return self._results[key]
        result = load_result(path)
        with self._results_lock:
            self._results[key] = result
            while len(self._results) > 16:
                self._results.popitem(last=False)
        return result

    def runs(self, analysis: str | None = None, this_model: bool = False) -> pd.DataFrame:
        """The stored runs (newest first), optionally only those on this model's weights. The index is read
        again only when the store changed (``store_stamp``)."""
        df = list_runs(analysis)
        return df[df.weights_hash == self.weights_hash] if this_model and len(df) else df

    def latest_path(self, analysis: str, where: dict | None = None) -> str | None:
        """The pinned, else the newest, stored run of ``analysis`` on this model's weights whose config
        matches ``where``."""
        return newest_run(analysis, self.weights_hash,
                          lambda config: all(config.get(k) == v for k, v in (where or {}).items()))

    def run_choices(self, analysis: str) -> pd.DataFrame:
        """This model's runs of ``analysis`` (pinned, then newest first): path, run_id, pinned, a one-line label."""
        df = self.runs(analysis, this_model=True)
        rows = zip(df.run_id, df.created, df.config, df.pinned)
        label = [run_label(r, c, json.loads(cfg), p) for r, c, cfg, p in rows]
        return pd.DataFrame({"path": df.path, "run_id": df.run_id, "pinned": df.pinned.astype(bool), "label": label})

    def pin(self, run: str) -> dict:
        """Pin a stored run (path or id): every page, card and ``latest`` uses it until ``unpin``."""
        return pin_run(run)

    def unpin(self, analysis: str) -> None:  # the newest run of ``analysis`` is used again
        unpin(analysis, self.weights_hash)

    def latest(self, analysis: str, where: dict | None = None) -> Result | None:
        return self.result(path) if (path := self.latest_path(analysis, where)) else None

    # --- neurons: decoding, atlas, clamping -------------------------------------------------------
    def is_stored(self, analysis: str = "lm_head_decoding") -> bool:
        """Whether ``analysis`` with its default config is stored for these weights (no build needed)."""
        return bool(find_runs(analysis, get_analysis(analysis).config(), self.weights_hash))

    def build_estimate(self, analysis: str = "lm_head_decoding") -> dict:  # the default config's preflight

        est = estimate(analysis, self.model)
        return {"seconds": est.seconds, "time": duration(est.seconds), "peak": size(est.peak), "fits": est.fits,
                "lines": est.lines()}

    def decoding(self) -> Result:
        """The LM-head decoding of every neuron (computed once, then reused from the store)."""
        root = str(runs_root().resolve())
        if self._decoding_path and self._decoding_path[0] == root and _mtime(self._decoding_path[1]) > 0:
            return self.result(self._decoding_path[1])
        result = cached_run("lm_head_decoding", self.model)
        self._decoding_path = (root, str(result.path))
        return self.result(result.path)

    def neurons_for(self, token: str, k: int = 10, side: str = "out", by: str = "specificity") -> pd.DataFrame:
        """The neurons for ``token``: by default those for which it is most specific (``by="specificity"``:
        among their own top promoted tokens first, on their typical side, weighted by their typical
        |activation| from the atlas), or by the raw ``side`` score (``by="raw"``)."""
        typical = None
        if by == "specificity":
            atlas = self.atlas_path()
            typical = neuron_read.typical_activation(self.result(atlas)) if atlas else None
        return neuron_read.neurons_for(self.decoding(), self.token_id(token), k, side, by=by, typical=typical)

    def neuron_decoding(self, neuron: str) -> pd.DataFrame:
        """Every decoded row of one neuron (side, rank, token, score)."""
        nid = self.check_neuron(neuron)
        return neuron_read.neuron_tokens(self.decoding(), nid.layer, nid.index)

    def neuron_norms(self, neuron: str) -> dict:
        """The neuron's weight norms per side, its layer's median of each, and its top promoted token."""
        nid = self.check_neuron(neuron)
        return neuron_read.neuron_summary(self.decoding(), nid.layer, nid.index)

    def layer_neurons(self, layer: int) -> pd.DataFrame:
        """One layer's neurons by output-weight norm, with their top decoded tokens on the side each neuron
        fires with (``fires``, ``promotes``; from the newest atlas, when one covers the layer)."""
        self.model.check_layer(layer)
        path = self.atlas_path()
        typical = neuron_read.typical_activation(self.result(path)) if path else None
        return neuron_read.layer_summary(self.decoding(), layer, typical)

    def atlas_path(self) -> str | None:
        return self.latest_path("neuron_atlas")

    def neuron_activity(self, atlas_path: str, neuron: str) -> dict | None:
        """The atlas's statistics of one neuron (None when the atlas lacks its layer)."""
        nid = self.check_neuron(neuron)
        return neuron_read.atlas_row(self.result(atlas_path), nid.layer, nid.index)

    def contexts(self, atlas_path: str, neuron: str, which: str = "top", k: int | None = None,
                 width: int | None = None) -> list[dict]:
        """The atlas's top (bottom) examples of a neuron with per-token activations ``width`` tokens either
        side. The defaults are what the atlas stored (the examples with stored activations, and their width), so
        no forward pass runs; a larger ``k`` or ``width`` re-runs the examples' windows."""
        nid = self.check_neuron(neuron)
        atlas = self.result(atlas_path)
        width = neuron_read.stored_width(atlas) if width is None else width
        k = neuron_read.stored_contexts(atlas, nid.layer, nid.index, which) if k is None else k
        return neuron_read.contexts(self.model, atlas, nid.layer, nid.index, which, k=k or None, width=width)

    def explanation(self, neuron: str) -> dict | None:
        """The newest stored explanation of one neuron (label, held-out scores and baselines), or None."""
        nid = self.check_neuron(neuron)
        path = self.latest_path("neuron_explanations")
        return neuron_read.neuron_explanation(self.result(path), nid.layer, nid.index) if path else None

    def search_explanations(self, query: str, k: int = 20) -> pd.DataFrame:
        """Neurons whose stored explanation matches ``query`` ("France", "closing bracket"); empty when no
        explanation is stored (``interp explain``)."""
        path = self.latest_path("neuron_explanations")
        if path is None:
            return pd.DataFrame(columns=["layer", "neuron", "label", "iid_corr", "flagged"])
        return neuron_read.search_explanations(self.result(path), query, self.model.vocab, k)

    def active_on_text(self, text: str, k: int = 3, atlas_path: str | None = None) -> pd.DataFrame:
        """Per token of ``text``, the neurons that fire most (relative to their atlas max, with an atlas)."""
        return neuron_read.active_on_text(self.model, text, k=k, atlas=self.result(atlas_path) if atlas_path else None)

    def clamp_preview(self, prompt: str, neurons: Sequence[str], value: float, k: int = 8, n_generate: int = 0) -> dict:
        """Next-token probabilities before and after clamping (the union of both top-``k``), and
        greedy continuations with the clamp held."""
        nids = [self.check_neuron(n) for n in neurons]
        table = neuron_read.next_token_table(self.model, prompt, nids, value, k=k)
        out = {"table": table, "before": None, "after": None}
        if n_generate:
            out["before"], out["after"] = neuron_read.clamped_generation(self.model, self.model.to_tokens(prompt), nids,
                                                                     value, n_generate)
        return out

    # --- the neuron card ---------------------------------------------------------------------------
    def store(self) -> neuron_read.Store:
        """The stored runs on this model's weights, read through this workbench's Result cache."""
        return neuron_read.Store(self.weights_hash, self.result)

    @staticmethod
    def store_stamp() -> tuple:
        """What the store holds now, cheaply (``interp.storage.store_stamp``): caches keyed on it are read
        again when a run is stored, replaced or removed."""
        return store_stamp()

    def card(self, neuron: str, sections: Sequence[str] | None = None,
             stamp: tuple | None = None) -> neuron_read.NeuronCard:
        """Everything the stored Results say about one neuron (``interp.analyses.neurons.card``); ``stamp``
        (``store_stamp()``) only keys the dashboard's cache."""
        return neuron_read.neuron_card(self.model, neuron, self.store(), sections=tuple(sections) if sections else None)

    def dose_response(self, neuron: str, target: str, values: Sequence[float] | None = None,
                      prompts: Sequence[str] | None = None) -> pd.DataFrame:
        """Δ log p(target) and KL to the unclamped next-token distribution over a sweep of clamp values
        (default: 9 values from -4x to +4x the neuron's atlas peak |activation|)."""
        nid = self.check_neuron(neuron)
        if values is None:
            stats = self.neuron_activity(self.atlas_path(), str(nid)) if self.atlas_path() else None
            values = neuron_read.sweep_values(max(abs(stats["max"]), abs(stats["min"])) if stats else 1.0)
        kw = {"prompts": tuple(prompts)} if prompts else {}
        return neuron_read.dose_response(self.model, [nid], target, values, **kw)

    def verify_patching(self, neuron: str, run_path: str, k: int = 5) -> dict:
        """Activation patching of the neuron and its layer's top-``k`` by the stored run's score (stored)."""
        return patching.verify_patching(self.model, neuron, self.result(run_path), k=k)

    def diff(self, other_spec: str, k: int = 50) -> pd.DataFrame:
        """The neurons whose weights (and typical activation) changed most from this model to ``other_spec``."""
        other = self._other_model(other_spec)
        mine, theirs = self.atlas_path(), newest_run("neuron_atlas", other.weights_hash)
        return neuron_read.diff_models(self.model, other, self.result(mine) if mine else None,
                                   self.result(theirs) if theirs else None, k=k)

    def _other_model(self, spec: str):  # loaded privately, one other model at a time
        if self._edited is None or self._edited[0] != str(spec):
            self._edited = None  # evict the previous one before loading the next
            self._edited = (str(spec), load_model(str(spec), device=self.device, dtype=self.dtype))
        return self._edited[1]

    # --- facts ----------------------------------------------------------------------------------
    def decompose_fact(self, prompt: str, subject: str, answer: str) -> Result:
        """The factual-recall decomposition of one fact (not stored)."""
        return facts.decompose_fact(self.model, prompt, subject, answer)

    # --- patching -------------------------------------------------------------------------------
    def patching_groups(self) -> dict[str, list[str]]:
        """This model's patching runs by what makes them comparable (``patching.read.groups``): key -> paths."""
        return patching.groups(self.runs("patching", this_model=True))

    def patching_comparison(self, key: str) -> dict:
        """For one comparable group: the newest run per method (skipping neuron-only runs where a
        full run exists) as paths, and the faithfulness table of each method against activation."""
        return patching.comparison([self.result(p) for p in self.patching_groups().get(key, [])])

    def layer_neuron_scores(self, key: str, layer: int, k: int = 10) -> tuple[str, pd.DataFrame] | None:
        """The top neurons of one MLP layer by mean patching score, from a stored neurons run of
        the group (``(method, table)``), or None when there is none."""
        return patching.layer_neuron_scores([self.result(p) for p in self.patching_groups().get(key, [])], layer, k)

    # --- weight-changing work: the private model -----------------------------------------------------
    def private_model(self):
        """A model of the same spec and weights that no page shares (created once, then reused)."""
        with self._private_lock:
            if self._private is None:
                private = load_model(self.spec, device=self.device, dtype=self.dtype)
                if private.weights_hash != self.weights_hash:
                    raise InterpError(f"a fresh load of {self.spec!r} has other weights than the shared model "
                                      f"({private.weights_hash} vs {self.weights_hash})")
                self._private = private
            return self._private

    # --- neuron graphs ---------------------------------------------------------------------------
    def graph_runs(self) -> list[dict]:
        """The stored neuron graphs of this model (newest first): path, prompt, targets, date, kept neurons."""
        out = []
        for row in self.runs("neuron_graph", this_model=True).itertuples():
            r = self.result(row.path)
            out.append({"path": str(row.path), "prompt": r.config.prompt, "targets": r.metrics["targets"],
                        "created": str(row.created), "run_id": r.run_id, "neurons": r.metrics["n_neurons_kept"],
                        "verified": "faithfulness" in r.tables})
        return out

    def graph_labels(self, graph_path: str) -> dict[tuple[int, int], str]:
        """``(layer, neuron) -> "L.N 'token'"`` for a stored graph's neurons, from the stored decoding (if any)."""
        return graph_labels(self.model, self.result(graph_path), self.result)

    def graph_json(self, graph_path: str) -> dict:
        """A stored graph in circuit-tracer's graph JSON, its neurons labelled by their top decoded token."""
        return graphs.to_graph_json(self.result(graph_path), self.graph_labels(graph_path))

    def bigram_preview(self, bigram_path: str, token: str, k: int = 10) -> dict[str, pd.DataFrame]:
        """Next-token distributions after one token: the full model, the stored bigram subnetwork
        (its mask applied to the private model) and the corpus bigram statistics."""
        private = self.private_model()
        with self._private_lock:
            probs = subnetworks.preview(self.model, private, self.result(bigram_path), self.token_id(token))
        return {name: self._top_tokens(p, k) for name, p in probs.items()}

    def _top_tokens(self, probs: Float[Tensor, " d_vocab"], k: int) -> pd.DataFrame:
        top = probs.topk(k)
        return pd.DataFrame({"token": [repr(self.model.token_str(i)) for i in top.indices.tolist()],
                             "p": top.values.tolist()})

    def ask(self, prompt: str, edit_dir: str | None = None, n_new: int = 8) -> dict:
        """Greedy continuations of ``prompt`` by the model and, with ``edit_dir``, by that edited
        model (loaded privately; one edited model is kept at a time)."""
        out = {"original": self._continue(self.model, prompt, n_new)}
        if edit_dir:
            if not self.has_edit(edit_dir):
                raise InterpError(f"the edited weights are not on this machine ({edit_dir}); "
                                  "`interp unlearn` writes them (committed runs keep only their tables)")
            out["edited"] = self._continue(self._other_model(edit_dir), prompt, n_new)
        return out

    @staticmethod
    def has_edit(edit_dir: str) -> bool:  # committed unlearning runs ship their tables, not their edited weights
        return (Path(edit_dir) / EDIT_FILE).is_file()

    @staticmethod
    def _continue(model, prompt: str, n_new: int) -> str:
        with torch.no_grad():
            return model.tokenizer.decode(generate(model, model.to_tokens(prompt), n_new)[0].tolist())

    # --- jobs -----------------------------------------------------------------------------------
    def submit(self, analysis: str, **options) -> Job:
        """Run and store ``analysis`` in the background; returns the Job (progress, cancel, result)."""
        spec = get_analysis(analysis)
        config = spec.config.from_dict(options)  # bad options fail here, before a job starts
        model = self.private_model() if spec.mutates_weights else self.model

        def work():
            with self._private_lock if model is not self.model else contextlib.nullcontext():
                return run(analysis, model, config)

        return self.jobs.submit(analysis.replace("_", " "), work, key=analysis)
