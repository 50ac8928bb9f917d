"""The README's figures stay true: each figure drawn from a committed Result is recomputed here from
``data/results`` and must appear in the README as printed; each benchmark figure is a record in
``benchmarks/results`` whose figure the README prints, marked stale there when its timed files changed; and a
committed run's directory is named by its run id."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[3]
README = (ROOT / "README.md").read_text()
COMPONENT = {"resid": "residual stream", "attn_out": "attention output", "mlp_out": "MLP output",
             "heads": "attention heads"}


def _n(x: float, signed: bool = False) -> str:
    """A number as the README prints it: three decimals, a true minus sign (and ``+`` when ``signed``)."""
    return (f"{x:+.3f}" if signed else f"{x:.3f}").replace("-", "−")


def _n2(x: float) -> str:
    return f"{x:.2f}".replace("-", "−")


def _interval(x: float, lo: float, hi: float, signed: bool = False) -> str:
    return f"{_n(x, signed)} [{_n(lo)}, {_n(hi)}]"


def graph_row(meta: dict) -> str:
    """A committed neuron graph's row of the README's table."""
    m, c = meta["metrics"], meta["config"]
    what = f"{c['prompt']!r} → " + ", ".join(repr(t) for t in m["targets"])
    top, rnd = m["curve_top"], m["curve_random"]
    cells = [meta["provenance"]["model"], what.replace("|", "/"), str(m["n_neurons_kept"]), f"{m['n_edges']:,}",
             _n(m["replacement"]), _n(m["completeness"]),
             f"{_n2(m['knockout_pearson'])} / {m['knockout_sign_agreement']:.0%}",
             _n2(m["nudge_pearson"]), _n2(m["faithfulness_graph"]),
             f"{_n2(top['5'])} / {_n2(rnd['5'])}", f"{_n2(top['20'])} / {_n2(rnd['20'])}"]
    return "| " + " | ".join(cells) + " |"


EXPLANATION_SCORES = {"iid_corr": "i.i.d. correlation", "auprc": "AUPRC",
                      "top_random_corr": "top-and-random correlation", "detection_auroc": "detection AUROC"}


def explanation_rows(meta: dict) -> dict[str, str]:
    """A committed explanation run's rows of the README's score table (token statistics and its baselines)."""
    m = meta["metrics"]
    rows = {}
    for key, label in EXPLANATION_SCORES.items():
        t, r = m["tokens"][key], m["random_weights"][key]
        cells = [label, _n(t["median"]), _n(t["median_random"]), _n(t["median_shuffled"]), _n(r["median"]),
                 f"{t['share_above_random']:.0%} (random weights: {r['share_above_random']:.0%})"]
        rows[key] = "| " + " | ".join(cells) + " |"
    return rows


def _meta(run: Path) -> dict:
    return json.loads((run / "result.json").read_text())


def expected_figures(results: Path) -> dict[str, str]:
    """``{what: the text the README must hold}``, recomputed from the committed Results under ``results``
    (tables read as stored, not through the store, so an altered file shows here as an altered figure)."""
    out = {}
    for run in sorted((results / "faithfulness").glob("[!.]*")):
        model = _meta(run)["provenance"]["model"]
        summary = pd.read_parquet(run / "tables" / "summary.parquet")
        for r in summary.itertuples():
            out[f"faithfulness {run.name} {r.method} {r.component} Pearson"] = _interval(
                r.pearson, r.pearson_lo, r.pearson_hi)
        for component, rows in summary.groupby("component"):
            by = rows.set_index("method").spearman
            if {"attribution", "relp"} <= set(by.index):
                out[f"faithfulness {run.name} {component} Spearman ({model})"] = \
                    f"{_n(by['attribution'])} · {_n(by['relp'])}"
        for g in pd.read_parquet(run / "tables" / "gain.parquet").itertuples():
            out[f"faithfulness {run.name} {g.component} RelP − AtP"] = _interval(g.gain, g.gain_lo, g.gain_hi, True)
    for run in sorted((results / "bigram_surprisal").glob("[!.]*")):
        m = _meta(run)["metrics"]
        for part in ("subnetwork", "full", "random subnetwork"):
            out[f"surprisal {run.name} {part}"] = f"{_n(m[part]['pearson_dropped'])} · {_n(m[part]['pearson_max'])}"
    for run in sorted((results / "neuron_graph").glob("[!.]*")):
        out[f"neuron graph {run.name}"] = graph_row(_meta(run))
    for run in sorted((results / "neuron_explanations").glob("[!.]*smollm2*")):
        for key, row in explanation_rows(_meta(run)).items():
            out[f"explanations {run.name} {key}"] = row
    # the patching table: the committed 16-pair SmolLM2 runs, each cheap method against activation patching
    runs = {}
    for run in sorted((results / "patching").glob("[!.]*")):
        c = _meta(run)["config"]
        if "smollm2" in run.name and c["dataset"] == "ioi" and c["n"] == 16 and "heads" in c["components"]:
            runs[c["method"]] = pd.read_parquet(run / "tables" / "scores.parquet")
    if {"activation", "attribution", "relp"} <= set(runs):
        from interp.metrics import correlation

        keys = ["component", "layer", "unit", "pair"]
        cells = {}
        for method in ("attribution", "relp"):
            both = runs["activation"].merge(runs[method], on=keys, suffixes=("_a", "_b"))
            for component, df in both.groupby("component"):
                cells[component, method] = (correlation(df.score_a, df.score_b),
                                            correlation(df.score_a, df.score_b, "spearman"))
        for component, label in COMPONENT.items():
            (pa, sa), (pr, sr) = cells[component, "attribution"], cells[component, "relp"]
            out[f"patching table {component}"] = f"| {label} | {_n(pa)} | {_n(pr)} | {_n(sa)} | {_n(sr)} |"
    return out


def missing_figures(results: Path, readme: str = README) -> list[str]:
    return [f"{what}: {text!r}" for what, text in expected_figures(results).items() if text not in readme]


def test_every_committed_figure_is_in_the_readme_as_recomputed():
    figures = expected_figures(ROOT / "data" / "results")
    assert len(figures) >= 60  # faithfulness (5 runs), surprisal (2), the patching table (4 rows)
    assert missing_figures(ROOT / "data" / "results") == []


def test_an_altered_committed_result_is_caught(tmp_path):
    results = tmp_path / "results"
    for part in ("faithfulness", "bigram_surprisal"):
        shutil.copytree(ROOT / "data" / "results" / part, results / part)
    run = next((results / "faithfulness").glob("*468c1d"))
    table = pd.read_parquet(run / "tables" / "summary.parquet")
    table.loc[table.component == "mlp_out", "pearson"] += 0.01  # planted: one stored figure changed
    table.to_parquet(run / "tables" / "summary.parquet")
    missing = missing_figures(results)
    assert len(missing) == 2 and all("mlp_out" in m for m in missing)


def test_committed_run_directories_are_named_by_their_run_id():
    wrong = {str(p.relative_to(ROOT)): _meta(p)["run_id"] for p in (ROOT / "data" / "results").glob("*/[!.]*")
             if (p / "result.json").is_file() and _meta(p)["run_id"] != p.name}
    assert wrong == {}


@pytest.fixture
def records():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import record

    yield record
    sys.path.remove(str(ROOT / "benchmarks"))


def test_every_benchmark_record_is_in_the_readme_and_stale_ones_are_marked(records):
    found = sorted(records.RESULTS.glob("*.json"))
    assert found, "no benchmark records"
    stale = dict(records.stale())
    for path in found:
        record = json.loads(path.read_text())
        assert {"figure", "command", "commit", "date", "files", "values"} <= set(record), path.name
        assert record["figure"] in README, f"the README does not print {record['id']}'s figure {record['figure']!r}"
        marked = f"stale: `{record['id']}`" in README
        assert marked == (record["id"] in stale), (
            f"{record['id']} is {'stale' if record['id'] in stale else 'current'} but the README "
            f"{'marks' if marked else 'does not mark'} it stale")


def test_a_record_goes_stale_when_a_timed_file_changes(records, tmp_path, monkeypatch):
    monkeypatch.setattr(records, "ROOT", tmp_path)
    monkeypatch.setattr(records, "RESULTS", tmp_path / "benchmarks" / "results")
    (tmp_path / "timed.py").write_text("x = 1\n")
    records.save("demo", "1.00× nothing", {"ratio": 1.0}, "python demo.py", ["timed.py"], commit="abc")
    assert records.stale() == []
    (tmp_path / "timed.py").write_text("x = 2\n")
    assert records.stale() == [("demo", ["timed.py"])]
