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
