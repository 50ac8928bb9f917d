"""Benchmark: the neuron card in a real browser (headless Chromium, Playwright), against today's
neuron explorer measured in the same run.

Starts the dashboard (one Streamlit process), opens one card per model to load the model and its
Results (not timed: a process does that once), then for each embedded model:

- URL open: a fresh page load of ``/neuron?model=M&neuron=L.N`` for ``--n`` random neurons, timed
  until every section is drawn (the last heading is there) and Streamlit is idle
  (``stApp[data-test-script-state=notRunning]``);
- switch: inside one open card, type the next neuron and press Enter, timed the same way;
- baseline: the neuron explorer's URL (``/neuron_explorer?neuron=L.N``) for ``--n-baseline`` of the
  same neurons, timed until its last section is drawn and Streamlit is idle;
- sessions: ``--sessions`` browser sessions at once on the first model, each opening ``--per-session``
  cards and then generating with its own clamp value; every session must see its own clamp's
  generation (computed here independently), and the server's RSS growth is reported.

    python benchmarks/neuron_card.py                       # both embedded models, 50 neurons each
    python benchmarks/neuron_card.py --models smollm2-135m --n 10
    python benchmarks/neuron_card.py --phases build        # the card's build alone, no browser
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
TIMEOUT = 240_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_dashboard(port: int, app: Path = ROOT / "app" / "streamlit_app.py") -> subprocess.Popen:
    log = open(ROOT / "runs" / f"benchmark-neuron-card-{app.stem}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(app),
                             "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "MALLOC_ARENA_MAX": "2"})  # as `make run` starts it
    for _ in range(240):
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("streamlit did not start")


async def drawn(page, last: str) -> None:
    await page.locator(last).wait_for(timeout=TIMEOUT)
    await page.locator(IDLE).wait_for(timeout=TIMEOUT)


async def open_card(browser, url: str, model: str, neuron: str) -> float:
    page = await browser.new_page(viewport={"width": 1400, "height": 1600})
    started = time.perf_counter()
    await page.goto(f"{url}/neuron?model={model}&neuron={neuron}", timeout=TIMEOUT)
    await drawn(page, "#share")
    seconds = time.perf_counter() - started
    await page.close()
    return seconds


async def open_trivial(browser, url: str) -> float:
    """The same-run baseline: a fresh load of a trivial Streamlit page (``benchmarks/trivial_page.py``), timed
    the same way (until its last element is drawn and Streamlit is idle)."""
    page = await browser.new_page(viewport={"width": 1400, "height": 1600})
    started = time.perf_counter()
    await page.goto(url, timeout=TIMEOUT)
    await page.get_by_text("One line of text.").wait_for(timeout=TIMEOUT)
    await page.locator(IDLE).wait_for(timeout=TIMEOUT)
    seconds = time.perf_counter() - started
    await page.close()
    return seconds


async def open_explorer(browser, url: str, model: str, neuron: str) -> float:
    page = await browser.new_page(viewport={"width": 1400, "height": 1600})
    started = time.perf_counter()
    await page.goto(f"{url}/neuron_explorer?model={model}&neuron={neuron}", timeout=TIMEOUT)
    await page.get_by_text("Most negative activations").wait_for(timeout=TIMEOUT)
    await page.locator(IDLE).wait_for(timeout=TIMEOUT)
    seconds = time.perf_counter() - started
    await page.close()
    return seconds


async def switches(browser, url: str, model: str, neurons: list[str]) -> list[float]:
    page = await browser.new_page(viewport={"width": 1400, "height": 1600})
    await page.goto(f"{url}/neuron?model={model}&neuron={neurons[0]}", timeout=TIMEOUT)
    await drawn(page, "#share")
    out = []
    for neuron in neurons[1:]:
        layer, index = neuron.split(".")
        box = page.get_by_role("textbox", name="Neuron (layer.index)")
        started = time.perf_counter()
        await box.fill(neuron)
        await box.press("Enter")
        await page.get_by_text(f"{layer} · {index}", exact=True).wait_for(timeout=TIMEOUT)
        await page.locator(IDLE).wait_for(timeout=TIMEOUT)
        out.append(time.perf_counter() - started)
    await page.close()
    return out


async def session(browser, url: str, model: str, neurons: list[str], value: float, prompt: str) -> dict:
    """One user: opens cards, then generates with their own clamp; returns timings and what they saw."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1600})
    page = await context.new_page()
    times = []
    for neuron in neurons:
        started = time.perf_counter()
        await page.goto(f"{url}/neuron?model={model}&neuron={neuron}", timeout=TIMEOUT)
        await drawn(page, "#share")
        times.append(time.perf_counter() - started)
    await page.get_by_text("Generate with a clamp", exact=True).click()  # the card's action bar
    await page.get_by_label("Prompt", exact=True).fill(prompt)
    await page.get_by_label("Clamp value", exact=True).fill(f"{value:g}")
    await page.get_by_role("button", name="Generate with the clamp held").click()
    seen = page.locator("div", has_text=f"Clamped to {value:g}:").last  # the block: label and generation
    await seen.wait_for(timeout=TIMEOUT)
    await page.locator(IDLE).wait_for(timeout=TIMEOUT)
    text = await seen.inner_text()
    await context.close()
    return {"times": times, "value": value, "text": text}


def stats(xs: list[float]) -> str:
    a = np.array(xs)
    return f"median {np.median(a):.2f} s, p95 {np.percentile(a, 95):.2f} s, max {a.max():.2f} s (n={len(a)})"


def sample_neurons(spec: str, n: int, seed: int) -> list[str]:
    from interp.models.loading import EMBEDDED_MODELS

    shape = {"smollm2-135m": (30, 1536), "gemma3-270m": (18, 2048)}.get(spec)
    if shape is None and spec in EMBEDDED_MODELS:
        raise SystemExit(f"add {spec}'s shape here")
    rng = random.Random(seed)
    return [f"{rng.randrange(shape[0])}.{rng.randrange(shape[1])}" for _ in range(n)]


def build_times(models: list[str], n: int) -> None:
    """The card's build alone (no page), in this process: ``Workbench.card`` for ``n`` random neurons per model
    after a warm-up (the model and its Results loaded, the indexes built)."""
    from interp.workbench import Workbench

    for spec in models:
        wb = Workbench(spec)
        for neuron in sample_neurons(spec, 3, seed=99):
            wb.card(neuron)
        times = []
        for neuron in sample_neurons(spec, n, seed=0):
            started = time.perf_counter()
            wb.card(neuron)
            times.append(time.perf_counter() - started)
        print(f"[{spec}] card build (Workbench.card, no page): median {1000 * np.median(times):.1f} ms, "
              f"p95 {1000 * np.percentile(times, 95):.1f} ms (n={n})", flush=True)


async def main(args) -> None:
    from playwright.async_api import async_playwright

    if args.phases == ["build"]:
        build_times(args.models, args.n)
        return

    port, trivial_port = free_port(), free_port()
    url, trivial_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{trivial_port}"
    proc = start_dashboard(port)
    trivial = start_dashboard(trivial_port, ROOT / "benchmarks" / "trivial_page.py")
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            for model in args.models:  # load each model and its Results once (a process does this once)
                warm = time.perf_counter()
                for neuron in sample_neurons(model, 2, seed=99):
                    await open_card(browser, url, model, neuron)
                print(f"[{model}] warm-up (model load, Results read once): {time.perf_counter() - warm:.1f} s",
                      flush=True)
            await open_trivial(browser, trivial_url)  # its warm-up
            rss_start = rss_mb(proc.pid)
            for model in args.models if "open" in args.phases else []:
                neurons = sample_neurons(model, args.n, seed=0)
                rss_cards = rss_mb(proc.pid)
                opens, base_trivial = [], []
                for n in neurons:  # alternating, so both see the same machine
                    opens.append(await open_card(browser, url, model, n))
                    base_trivial.append(await open_trivial(browser, trivial_url))
                grown = rss_mb(proc.pid) / rss_cards - 1
                print(f"[{model}] card, URL open:   {stats(opens)}", flush=True)
                print(f"[{model}] trivial page, URL open (same run, alternating): {stats(base_trivial)}; card p95 / "
                      f"trivial p95 = {np.percentile(opens, 95) / np.percentile(base_trivial, 95):.2f}x (goal <= 1.5x)",
                      flush=True)
                print(f"[{model}] server RSS over {len(neurons)} new cards: {rss_cards:.0f} -> "
                      f"{rss_mb(proc.pid):.0f} MB ({grown:+.1%}; goal <= +10%)", flush=True)
                switch = await switches(browser, url, model, sample_neurons(model, args.n + 1, seed=1))
                print(f"[{model}] card, switch:     {stats(switch)} (goal p95 <= 0.5 s)", flush=True)
                if not args.n_baseline:  # the explorer needs the model's decoding stored (else it offers the build)
                    continue
                base = [await open_explorer(browser, url, model, n) for n in neurons[: args.n_baseline]]
                cards_same = opens[: args.n_baseline]
                print(f"[{model}] explorer (today), URL open: {stats(base)}", flush=True)
                print(f"[{model}] ratio explorer / card, median URL open over the same {len(base)} neurons: "
                      f"{np.median(base) / np.median(cards_same):.2f}x; p95 ratio "
                      f"{np.percentile(base, 95) / np.percentile(cards_same, 95):.2f}x", flush=True)
            model = args.models[0]
            rss_before = rss_mb(proc.pid)
            values = [float(8 * (i + 1)) for i in range(args.sessions)]
            prompt = "Let me tell you about"
            target = sample_neurons(model, 1, seed=7)[0]
            jobs = [session(browser, url, model, sample_neurons(model, args.per_session, seed=10 + i) + [target],
                            v, prompt) for i, v in enumerate(values)]
            started = time.perf_counter()
            results = await asyncio.gather(*jobs)
            wall = time.perf_counter() - started
            rss_after = rss_mb(proc.pid)
            await browser.close()
        times = [t for r in results for t in r["times"]]
        print(f"[{model}] {args.sessions} sessions at once, URL open: {stats(times)}; wall {wall:.1f} s", flush=True)
        print(f"server RSS: {rss_start:.0f} MB after warm-up, {rss_before:.0f} MB before the sessions, "
              f"{rss_after:.0f} MB after ({rss_after / rss_before - 1:+.1%} over the sessions)", flush=True)
        check_isolation(model, target, prompt, results)
    finally:
        for p in (proc, trivial):
            p.terminate()
            p.wait(timeout=30)


def check_isolation(model_spec: str, neuron: str, prompt: str, results: list[dict]) -> None:
    """Each session's clamped generation equals the one computed here for its own value."""
    import torch

    from interp.analyses.neurons.clamping import clamped_generation
    from interp.models import load_model

    model = load_model(model_spec)
    nid = model.check_neuron(neuron)
    ok = 0
    for r in results:
        with torch.no_grad():
            _, after = clamped_generation(model, model.to_tokens(prompt), [nid], r["value"], 16)
        text = after[len(prompt):] if after.startswith(prompt) else after

        def norm(t: str) -> str:  # the page draws the generation as markdown: compare words only
            return " ".join(re.sub(r"[*_`#>⏎]", " ", t).split())

        good = norm(text)[:40] in norm(r["text"])
        ok += good
        print(f"  session clamp {r['value']:g}: {'own generation' if good else 'MISMATCH'}: page {r['text'][:80]!r}, "
              f"expected {text[:60]!r}")
    print(f"isolation: {ok} of {len(results)} sessions saw their own clamp's generation", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=lambda s: s.split(","), default=["smollm2-135m", "gemma3-270m"])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--n-baseline", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--per-session", type=int, default=5)
    parser.add_argument("--phases", type=lambda s: s.split(","), default=["open", "sessions"],
                        help="open (URL open, switch, explorer baseline per model) and/or sessions; or build alone "
                        "(the card's build time in this process, no browser)")
    asyncio.run(main(parser.parse_args()))
