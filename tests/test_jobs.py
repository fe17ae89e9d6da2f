"""The jobs' lanes (exporter.jobs): a job that never returns, on one lane, delays no job of another;
however many engine jobs hang, accrual and control keep their cadence; each job has at most one
run in flight, and its skipped beats are counted and logged once, not on every beat."""

import logging
import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from exporter.jobs import ACCRUAL, CONTROL, ENGINES, Jobs, JobsCollector

BEAT = 0.05  # seconds between runs of every job here
WATCH = 0.8  # seconds a test watches the lanes that must keep going (16 beats)


class Runs:
    """A job that counts its runs and the most of them in flight at once, blocking while `hold` is clear."""

    def __init__(self, blocks: bool = False):
        self.count = self.in_flight = self.most_in_flight = 0
        self.hold = threading.Event()
        if not blocks:
            self.hold.set()
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            self.count += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.hold.wait()
        with self._lock:
            self.in_flight -= 1


@pytest.fixture
def jobs():
    jobs = Jobs()
    jobs.start()
    yield jobs
    jobs.stop()


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within 5 s"
        time.sleep(0.02)


def watch(steady: dict[str, Runs]) -> dict[str, int]:
    """Runs of each steady job during WATCH seconds."""
    before = {name: runs.count for name, runs in steady.items()}
    time.sleep(WATCH)
    return {name: runs.count - before[name] for name, runs in steady.items()}


@pytest.mark.parametrize("hung_lane,hung_jobs", [(ENGINES, 50), (CONTROL, 3), (ACCRUAL, 1)])
def test_hung_jobs_on_one_lane_delay_no_job_of_another(jobs, hung_lane, hung_jobs):
    hung = [Runs(blocks=True) for _ in range(hung_jobs)]
    for i, runs in enumerate(hung):
        jobs.add(runs, BEAT, f"hung:{i}", hung_lane)
    steady = {lane: Runs() for lane in (ACCRUAL, CONTROL, ENGINES) if lane != hung_lane}
    for lane, runs in steady.items():
        jobs.add(runs, BEAT, f"steady:{lane}", lane)
    try:
        wait_until(lambda: all(runs.in_flight == 1 for runs in hung))  # every hung job holds its worker
        counted = watch(steady)
    finally:
        for runs in hung:
            runs.hold.set()
    # 16 beats in WATCH; a starved lane would run none (a loaded test machine may lose some)
    assert all(n >= WATCH / BEAT / 4 for n in counted.values()), counted


def test_engine_jobs_start_a_thread_per_run_in_flight_not_a_pool(jobs):
    hung = [Runs(blocks=True) for _ in range(100)]  # more than any pool of the old kind (engines + 36)
    for i, runs in enumerate(hung):
        jobs.add(runs, BEAT, f"engine:{i}", ENGINES)
    try:
        wait_until(lambda: sum(r.in_flight for r in hung) == len(hung))  # none waits for a worker
        assert sum(t.name.startswith("engine:") for t in threading.enumerate()) == len(hung)
    finally:
        for i, runs in enumerate(hung):
            jobs.remove(f"engine:{i}")
            runs.hold.set()
    wait_until(lambda: not any(t.name.startswith("engine:") for t in threading.enumerate()))  # ends with its run


def test_a_run_still_going_skips_beats_counted_and_logged_once(jobs, caplog):
    runs = Runs(blocks=True)
    registry = CollectorRegistry()
    registry.register(JobsCollector(jobs))
    with caplog.at_level(logging.INFO):
        jobs.add(runs, BEAT, "engine:slow", ENGINES)
        time.sleep(0.6)  # about 12 beats while its first run is still going
        skipped = registry.get_sample_value("llmcost_skipped_runs_total", {"lane": ENGINES, "task": "engine:slow"})
        runs.hold.set()
        time.sleep(0.3)
    assert runs.most_in_flight == 1
    assert skipped is not None and skipped >= 5
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "exporter.jobs"]
    assert lines[0] == ("WARNING", "task overrunning task=engine:slow lane=engines; its runs are skipped until the "
                                   "one in flight ends")
    assert lines[1][1].startswith("task back on its cadence task=engine:slow skipped=")
    assert int(lines[1][1].split("=")[-1]) >= skipped
    assert len(lines) == 2, lines
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings  # apscheduler's own warning on every skipped beat is not there
    assert runs.count > 1  # back on its cadence


def test_a_job_removed_and_added_again_while_its_run_is_going_still_has_one_in_flight(jobs):
    """An engine that goes and comes back (a pod re-created under its name) while its last scrape hangs."""
    runs = Runs(blocks=True)
    jobs.add(runs, BEAT, "engine:back", ENGINES)
    time.sleep(0.2)
    jobs.remove("engine:back")
    jobs.add(runs, BEAT, "engine:back", ENGINES)
    time.sleep(0.3)
    assert (runs.count, runs.most_in_flight) == (1, 1)
    runs.hold.set()
    time.sleep(0.3)
    assert runs.count > 1 and runs.most_in_flight == 1
