"""Background jobs report the progress of their bars and stop when cancelled."""

from __future__ import annotations

import threading

from interp.errors import InterpError
from interp.jobs import JobRunner
from interp.progress import bar


def test_a_job_reports_progress_and_returns_its_result():
    seen, submitted = [], threading.Event()

    def work():
        submitted.wait(5)  # `job` is bound once submit returns
        with bar(total=4, desc="work", unit="step") as b:
            for _ in range(4):
                b.update(1)
                seen.append(job.progress)
        return 42

    runner = JobRunner()
    job = runner.submit("demo", work)
    submitted.set()
    assert job.wait(30).status == "done" and job.result == 42
    assert seen[-1] == 1.0 and seen == sorted(seen) and "work" in job.message


def test_cancel_stops_the_job_at_its_next_bar_update():
    started, release = threading.Event(), threading.Event()
    steps = []

    def work():
        for i in bar(range(100), desc="slow"):
            steps.append(i)
            started.set()
            release.wait(5)
        return "finished"

    job = JobRunner().submit("slow", work)
    started.wait(5)
    job.cancel()
    release.set()
    assert job.wait(30).status == "cancelled" and job.result is None and len(steps) < 100


def test_a_bad_input_fails_the_job_with_its_message():
    def work():
        raise InterpError("layer 31 is out of range")

    job = JobRunner().submit("bad", work)
    assert job.wait(30).status == "failed" and job.error == "layer 31 is out of range"


def test_a_running_job_is_found_by_its_key_from_another_session():
    release = threading.Event()
    runner = JobRunner()
    job = runner.submit("lm head decoding", lambda: release.wait(10), key="lm_head_decoding")
    assert runner.running("lm_head_decoding") is job and runner.running("neuron_atlas") is None
    release.set()
    job.wait(30)
    assert runner.running("lm_head_decoding") is None


def test_a_job_stops_with_the_process_that_runs_it():
    """A server that stops (its main thread returns) is not kept alive by a job still running: jobs are daemon
    threads. (A thread pool's non-daemon workers kept a stopped dashboard building for minutes.)"""
    import subprocess
    import sys
    import time

    script = ("import time\nfrom interp.jobs import JobRunner\n"
              "job = JobRunner().submit('forever', lambda: time.sleep(600))\n"
              "time.sleep(0.5)\nprint(job.status, flush=True)\n")
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "running"
    assert time.perf_counter() - started < 60  # not the job's 600 s
