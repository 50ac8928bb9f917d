"""A real browser: headless Chromium (Debian's, driven by Playwright) opens the
neuron explorer on the embedded model, searches a token, and finds the top neuron
that the stored decoding Result names. The screenshot is kept under
runs/screenshots/ as a CI artifact.

Set-up (done by .ci/run): `apt-get install -y chromium`; `pip install playwright`
(no `playwright install`: the browser is Debian's)."""

from __future__ import annotations

import os
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


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    """Streamlit on a free localhost port, over the real store (./runs), where the
    decoding is built once (about 2 minutes) if `make run` has not built it yet."""
    from interp.analyses.base import cached_run
    from interp.models import load_model

    runs = ROOT / "runs"
    shutil.copytree(ROOT / "data" / "results", runs, dirs_exist_ok=True)  # what `make run` does (cp -rn)
    env = {**os.environ, "INTERP_MODEL": "smollm2-135m", "INTERP_RUNS": str(runs)}
    os.environ["INTERP_RUNS"] = str(runs)
    decoding = cached_run("lm_head_decoding", load_model("smollm2-135m"))
    port = _free_port()
    log = open(tmp_path_factory.mktemp("streamlit") / "streamlit.log", "w")
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
    yield url, decoding
    proc.terminate()
    proc.wait(timeout=20)


@contextmanager
def browser_page(url: str, path: str, shot: str):
    """A Chromium page at ``url/path``; a full-page screenshot lands in runs/screenshots/ on exit."""
    from playwright.sync_api import sync_playwright

    shots = ROOT / "runs" / "screenshots"
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


def test_neuron_explorer_token_search(dashboard):
    from interp.analyses.neurons.decoding import neurons_for
    from interp.models import load_model

    url, decoding = dashboard
    model = load_model("smollm2-135m")
    top = neurons_for(decoding, model.token_id(" London"), k=1).iloc[0]
    expected = f"{int(top.layer)}.{int(top.neuron)}"
    with browser_page(url, "neuron_explorer", "neuron_explorer.png") as page:
        page.get_by_text("Search by token").wait_for(timeout=240_000)
        box = page.get_by_label("Token (mind the leading space)")
        box.fill(" London")
        box.press("Enter")
        page.get_by_text("Neurons whose output most promotes ' London'").wait_for(timeout=120_000)
        page.wait_for_timeout(1500)
        text = page.inner_text("body")
    assert expected in text, f"top neuron {expected} for ' London' not on the page"


@pytest.mark.parametrize("path, expected", [
    ("patching", "Faithfulness to activation patching"),
    ("factual_recall", "Heads attending to the subject"),
    ("causal_tracing", "Ask the original and the edited model"),
    ("bigram_subnetwork", "corpus bigram"),
])
def test_analysis_pages_render_on_the_committed_results(dashboard, path, expected):
    url, _ = dashboard
    with browser_page(url, path, f"{path}.png") as page:
        page.get_by_text(expected).first.wait_for(timeout=240_000)
        page.wait_for_timeout(3000)  # let the plots draw
        text = page.inner_text("body")
    assert expected in text and "Traceback" not in text


def test_a_long_job_shows_progress_and_cancels(dashboard):
    """Causal tracing starts as a background job: the page shows its progress bar while the
    job runs, and Cancel stops it without storing a Result."""
    url, _ = dashboard
    runs = ROOT / "runs" / "causal_tracing"
    before = sorted(p.name for p in runs.glob("[!.]*"))  # Results, not checkpoints
    with browser_page(url, "causal_tracing", "job_progress.png") as page:
        page.get_by_text("Trace facts").first.wait_for(timeout=240_000)
        page.get_by_text("Trace facts").first.click()
        page.get_by_label("Facts to trace").fill("20")
        page.get_by_role("button", name="Trace").click()
        page.get_by_text("causal tracing:", exact=False).first.wait_for(timeout=120_000)  # the bar's own text
        page.wait_for_timeout(2500)
        page.screenshot(path=str(ROOT / "runs" / "screenshots" / "job_running.png"), full_page=True)
        page.get_by_role("button", name="Cancel").click()
        page.get_by_text("was cancelled; no Result was stored").wait_for(timeout=120_000)
    after = sorted(p.name for p in runs.glob("[!.]*"))
    assert after == before  # nothing half-written, no Result stored (a checkpoint may be, to resume from)
