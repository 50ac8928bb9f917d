"""A real browser: headless Chromium (Debian's, driven by Playwright) opens the
neuron explorer on the embedded model, searches a token, and finds the top neuron
that the stored decoding Result names. The dashboard reads a store of its own (a temporary
directory with the committed Results, and the decoding and atlas of ./runs when `make run` built
them: copied from, never written into). Screenshots are kept under screenshots/ as CI artifacts.

Set-up (done by .ci/run): `apt-get install -y chromium`; `pip install playwright`
(no `playwright install`: the browser is Debian's)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.browser, pytest.mark.embedded,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SHOTS = ROOT / "screenshots"


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    """Streamlit on a free localhost port over a store of its own: the committed Results, the decoding and
    atlas that ./runs holds (copied; built here, about 2 minutes, when it holds none). Yields (url, decoding,
    the store's path); the test process's INTERP_RUNS points at it only while this module runs."""
    from interp.analyses.base import cached_run
    from interp.models import load_model
    from interp.storage import newest_run

    runs = tmp_path_factory.mktemp("store") / "runs"
    shutil.copytree(ROOT / "data" / "results", runs)  # what `make run` does
    for analysis in ("lm_head_decoding", "neuron_atlas"):  # reuse what `make run` built, never write there
        built = ROOT / "runs" / analysis
        for path in sorted(built.glob("[!.]*smollm2-135m*")) if built.is_dir() else []:
            shutil.copytree(path, runs / analysis / path.name)
    SHOTS.mkdir(exist_ok=True)
    env = {**os.environ, "INTERP_MODEL": "smollm2-135m", "INTERP_RUNS": str(runs)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INTERP_RUNS", str(runs))
        model = load_model("smollm2-135m")
        decoding = cached_run("lm_head_decoding", model)
        if newest_run("neuron_atlas", model.weights_hash) is None:  # a small one (seconds): the card's activations
            cached_run("neuron_atlas", model, corpus="stdlib-docs", n_tokens=2048, checkpoint_every=0)
    with _streamlit(env, tmp_path_factory.mktemp("streamlit")) as url:
        yield url, decoding, runs


@contextmanager
def _streamlit(env: dict, log_dir: Path):
    """Streamlit on a free localhost port with ``env``; yields its URL and stops it afterwards."""
    port = _free_port()
    log = open(log_dir / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "streamlit_app.py"),
         "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not start")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@contextmanager
def browser_page(url: str, path: str, shot: str):
    """A Chromium page at ``url/path``; a full-page screenshot lands in screenshots/ on exit."""
    from playwright.sync_api import sync_playwright

    shots = SHOTS
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(f"{url}/{path}", timeout=60_000)
        try:
            yield page
        finally:
            page.screenshot(path=str(shots / shot), full_page=True)
            browser.close()


def _search(page, label: str, text: str, shown: str) -> None:
    """Type ``text`` into the box labelled ``label``, press Enter, and wait until ``shown`` is on the page."""
    box = page.get_by_label(label)
    box.fill(text)
    box.press("Enter")
    page.get_by_text(shown).wait_for(timeout=120_000)
    page.wait_for_timeout(1500)


def test_neuron_explorer_token_search(dashboard):
    """' London' lists first a neuron whose own top-10 promoted tokens hold ' London' (the raw ranking
    listed 29.645, a high-norm neuron whose own list does not)."""
    from interp.analyses.neurons.read import neuron_tokens

    url, decoding, _ = dashboard
    with browser_page(url, "neuron_explorer", "neuron_explorer.png") as page:
        page.get_by_text("Search by token").wait_for(timeout=240_000)
        _search(page, "Token (mind the leading space)", " London", "Neurons most specific to ' London'")
        first = page.locator("ol li").first.inner_text()
    layer, index = first.split(" ")[0].split(".")
    rows = neuron_tokens(decoding, int(layer), int(index))
    own = rows[rows.side.isin(["out+", "out-"]) & (rows["rank"] < 10)].token.astype(str).tolist()
    assert " London" in own, f"the first neuron listed, {layer}.{index}, does not promote ' London' in its top 10"
    assert "in its own list" in first


def test_the_explorer_searches_explanations(dashboard):
    """'france' lists the neurons whose committed explanation spells it, the first one the search ranks first."""
    from interp.analyses.neurons.read import search_explanations
    from interp.models import load_model
    from interp.storage import load_result

    url, _, store = dashboard
    committed = load_result(next((store / "neuron_explanations").glob("*smollm2-135m*")))
    want = search_explanations(committed, "france", load_model("smollm2-135m").vocab)
    assert len(want)
    with browser_page(url, "neuron_explorer", "explorer_explanations.png") as page:
        page.get_by_text("Search explanations").click(timeout=240_000)
        _search(page, "Words (every one must match a label, an LLM explanation or a token it fires on)", "france",
                "Labels are token statistics, not prose")
        text = page.inner_text("body")
    assert f"{want.layer[0]}.{want.neuron[0]}" in text and "i.i.d. corr" in text


def test_neuron_card_opens_from_its_url(dashboard):
    """Every section's heading, and known values: the decoding's top token, the committed patching score."""
    from interp.analyses.neurons.read import neuron_tokens
    from interp.analyses.patching.read import neuron_scores
    from interp.storage import load_result

    url, decoding, store = dashboard
    rows = neuron_tokens(decoding, 29, 236)
    top_token = rows[rows.side == "out+"].sort_values("rank").token.iloc[0]
    relp = next((store / "patching").glob("*smollm2-135m-dfe847*"))  # the committed neuron-level RelP run
    score = neuron_scores(load_result(relp), 29)
    rank = int(score.abs().sort_values(ascending=False).index.get_loc(236)) + 1
    with browser_page(url, "neuron?model=smollm2-135m&neuron=29.236", "neuron_card.png") as page:
        page.locator("#share").wait_for(timeout=240_000)
        page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=120_000)
        page.wait_for_timeout(1500)
        text = page.inner_text("body")
        figures = page.locator('img[src^="data:image/svg+xml"]').evaluate_all("els => els.map(e => e.alt)")
        forms_on_open = page.locator('[data-testid="stForm"]').count()
        page.get_by_text("Dose-response", exact=True).click()  # the action bar draws the chosen action's form
        page.get_by_role("button", name="Run the dose-response").wait_for(timeout=120_000)
    assert forms_on_open == 0  # no action's form is drawn until it is chosen
    # the live card draws the activation histogram and the gate/up quadrant shares (inline SVG is sanitised away)
    assert any("histogram" in f for f in figures) and any("gate/up" in f for f in figures), figures
    for heading in ("Identity", "What it does (explanation)", "Decoding (LM head)", "Activations", "Patching",
                    "Factual recall", "Causal tracing",
                    "Unlearning edits", "Bigram subnetwork", "Clamp, verify and share", "In stored graphs"):
        assert heading in text, heading
    assert repr(str(top_token)) in text and "29 · 236" in text and "Traceback" not in text
    # the Patching table's RelP row: method, pairs, metric, the neuron's score and its rank of the layer's 1536
    row = re.search(r"relp\s+ioi\s+16\s+logit_diff\s+(\S+)\s+(\d+)\s+1536", text)
    assert row, "the card's Patching table has no RelP row for the committed run"
    assert float(row.group(1)) == pytest.approx(float(score[236]), rel=1e-3) and int(row.group(2)) == rank


@pytest.mark.parametrize("path, expected", [
    ("patching", "Faithfulness to activation patching"),
    ("patching", "Single neurons, every layer and position"),
    ("factual_recall", "Heads attending to the subject"),
    ("causal_tracing", "Ask the original and the edited model"),
    ("bigram_subnetwork", "corpus bigram"),
    ("circuit", "Verification"),
])
def test_analysis_pages_render_on_the_committed_results(dashboard, path, expected):
    url, _, _ = dashboard
    with browser_page(url, path, f"{path}.png") as page:
        page.get_by_text(expected).first.wait_for(timeout=240_000)
        page.wait_for_timeout(3000)  # let the plots draw
        text = page.inner_text("body")
    assert expected in text and "Traceback" not in text


def test_a_long_job_shows_progress_and_cancels(dashboard):
    """Causal tracing starts as a background job: the page shows its progress bar while the
    job runs, and Cancel stops it without storing a Result."""
    url, _, store = dashboard
    runs = store / "causal_tracing"
    before = sorted(p.name for p in runs.glob("[!.]*"))  # Results, not checkpoints
    with browser_page(url, "causal_tracing", "job_progress.png") as page:
        page.get_by_text("Trace facts").first.wait_for(timeout=240_000)
        page.get_by_text("Trace facts").first.click()
        page.get_by_label("Facts to trace").fill("20")
        page.get_by_role("button", name="Trace").click()
        page.get_by_text("causal tracing:", exact=False).first.wait_for(timeout=120_000)  # the bar's own text
        page.wait_for_timeout(2500)
        page.screenshot(path=str(SHOTS / "job_running.png"), full_page=True)
        page.get_by_role("button", name="Cancel").click()
        page.get_by_text("was cancelled; no Result was stored").wait_for(timeout=120_000)
    after = sorted(p.name for p in runs.glob("[!.]*"))
    assert after == before  # nothing half-written, no Result stored (a checkpoint may be, to resume from)


PAGES = ("", "neuron_explorer", "neuron?model=smollm2-135m&neuron=29.236", "lm_head_decoding", "neuron_atlas",
         "patching", "circuit", "factual_recall", "causal_tracing", "bigram_subnetwork")


def test_no_page_calls_out(dashboard):
    """Every page, recorded request by request: nothing leaves localhost (no favicon, font or telemetry host)."""
    from urllib.parse import urlparse

    from playwright.sync_api import sync_playwright

    url, _, _ = dashboard
    outside = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.on("request", lambda r: outside.append(r.url) if urlparse(r.url).scheme not in ("data", "blob")
                and urlparse(r.url).hostname not in ("127.0.0.1", "localhost") else None)
        for path in PAGES:
            page.goto(f"{url}/{path}", timeout=120_000)
            page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=240_000)
            page.wait_for_timeout(1500)
        browser.close()
    assert outside == [], sorted(set(outside))


def test_a_model_switch_shows_its_build_estimate_and_cancels(tmp_path):
    """A model with no stored decoding (a tiny random model standing in for Gemma, so the test stays fast):
    the page builds nothing behind a spinner; it shows the build's preflight estimate and a Build button, the
    build runs as a job with a progress bar, and Cancel stops it with nothing stored."""
    store = tmp_path / "runs"
    env = {**os.environ, "INTERP_MODEL": "tiny-llama", "INTERP_RUNS": str(store),
           "INTERP_JOB_THROTTLE_S": "2"}  # each layer-side of the build takes 2 s more: time to click Cancel
    with _streamlit(env, tmp_path) as url, browser_page(url, "lm_head_decoding?model=tiny-llama",
                                                        "model_switch_build.png") as page:
        page.get_by_text("has no stored LM-head decoding", exact=False).first.wait_for(timeout=120_000)
        text = page.inner_text("body")
        assert re.search(r"Building it takes about \d+\.\d (s|min|h) on this machine", text), text
        page.get_by_role("button", name="Build the LM-head decoding of every neuron").click()
        page.get_by_text("decoding neurons:", exact=False).first.wait_for(timeout=60_000)  # the bar's own text
        page.screenshot(path=str(SHOTS / "model_switch_building.png"), full_page=True)
        page.get_by_role("button", name="Cancel").click()
        page.get_by_text("was cancelled; no Result was stored").wait_for(timeout=60_000)
    assert not list(store.glob("lm_head_decoding/[!.]*"))  # nothing stored


def _idle(page) -> None:
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=240_000)


def test_the_factual_chart_draws_neuron_ids_on_a_categorical_axis(dashboard):
    """Plotly as the browser drew it: the "Top neurons" bar chart's neuron axis is categorical (a numeric axis
    put 29.1512 next to 29.15)."""
    url, _, _ = dashboard
    with browser_page(url, "factual_recall", "factual_axis.png") as page:
        page.get_by_text("Over a facts set").first.wait_for(timeout=240_000)
        _idle(page)
        page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        page.wait_for_timeout(2000)
        axes = page.locator(".js-plotly-plot").evaluate_all(
            "els => els.map(e => [(e._fullLayout.title || {}).text || '', e._fullLayout.yaxis.type])")
    top = [t for title, t in axes if re.sub(r"<[^>]+>", "", title).startswith("Top neurons")]  # titles are bold
    assert top == ["category"], axes


def test_a_verify_run_does_not_become_the_patching_default(dashboard):
    """A Verify (activation patching of a few neurons, stored as a patching run) is newer than every other run;
    the Patching page still opens on the whole 16-pair comparison and names its runs."""
    import json

    url, _, store = dashboard
    runs = sorted((store / "patching").glob("*smollm2-135m*"))
    source = next(p for p in runs if json.loads((p / "result.json").read_text())["config"].get("n") == 16)
    verify = store / "patching" / "29991231-000000-smollm2-135m-ffffff"  # the newest run of all
    shutil.copytree(source, verify)
    meta = json.loads((verify / "result.json").read_text())
    meta["config"].update(method="activation", components=["neurons"], layers=[29], neurons=[1, 2, 236])
    meta["provenance"]["created"] = "2999-12-31T00:00:00+00:00"
    meta["run_id"] = verify.name
    (verify / "result.json").write_text(json.dumps(meta))
    try:
        with browser_page(url, "patching", "patching_default.png") as page:
            page.get_by_text("Runs shown", exact=False).first.wait_for(timeout=240_000)
            _idle(page)
            text = page.inner_text("body")
        assert "n=16 pairs" in text and verify.name not in text, text[:2000]
    finally:
        shutil.rmtree(verify)
