"""The sampling cadence: named interval jobs on an apscheduler BackgroundScheduler, each on a lane.

A slow or hung job must never delay one of another lane, so each lane has its own workers:

- ACCRUAL: one worker of its own, for the GPU sample and the spend tick; nothing else runs there.
- CONTROL: one worker per control job (node labels, pod listing, config reload).
- ENGINES: a thread per scrape in flight, started when the scrape is due: however many engines
  there are (kubernetes.discovery.max_engines bounds the discovered ones), none waits for a worker.

Each job has at most one run in flight (max_instances=1, kept while a removed job's run ends, so
an engine that comes back cannot have two) and missed runs coalesce: a job still running when its
next run is due skips that beat. Skipped beats are counted by task (llmcost_skipped_runs_total)
and logged once when a task starts and stops overrunning, not on every beat.

Jobs are added before or after start(); before start() they wait and run once it starts.
"""

from __future__ import annotations

import datetime
import logging
import sys
import threading

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_SUBMITTED
from apscheduler.executors.base import BaseExecutor, run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client.core import CounterMetricFamily

log = logging.getLogger("exporter.jobs")

ACCRUAL, CONTROL, ENGINES = "accrual", "control", "engines"
CONTROL_JOBS = 3  # kubernetes:node, kubernetes:pods, config:reload: a worker each


class _ThreadPerRun(BaseExecutor):
    """Each run on a new daemon thread: there is no pool to exhaust, and max_instances=1 keeps a
    job to one thread. A hung run ends with its own deadline; exit never waits for it."""

    def _do_submit_job(self, job, run_times):
        def run():
            try:
                events = run_job(job, job._jobstore_alias, run_times, self._logger.name)
            except BaseException:
                _, exc, tb = sys.exc_info()
                self._run_job_error(job.id, exc, tb)
            else:
                self._run_job_success(job.id, events)

        threading.Thread(target=run, name=job.id, daemon=True).start()


class _NoSkipWarning(logging.Filter):
    """apscheduler warns on every skipped beat; Jobs counts them and logs once per overrun instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in str(record.msg)


_NO_SKIP_WARNING = _NoSkipWarning()


class Jobs:
    def __init__(self, after_run=None):
        """after_run(): called in the job's thread after each run, whatever it raised."""
        self._after_run = after_run
        executors = {ACCRUAL: ThreadPoolExecutor(1, {"thread_name_prefix": ACCRUAL}),
                     CONTROL: ThreadPoolExecutor(CONTROL_JOBS, {"thread_name_prefix": CONTROL}),
                     ENGINES: _ThreadPerRun()}
        self._scheduler = BackgroundScheduler(executors=executors, daemon=True)
        self._scheduler.add_listener(self._on_submission, EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES)
        logging.getLogger("apscheduler.scheduler").addFilter(_NO_SKIP_WARNING)  # added once, however many Jobs
        self._lanes: dict[str, str] = {}  # task (job id) -> lane
        self._skipped: dict[str, int] = {}  # task -> beats skipped since it was added
        self._overrunning: dict[str, int] = {}  # task -> beats skipped in its current overrun
        self._lock = threading.Lock()
        self._started = False

    def add(self, func, seconds: float, job_id: str, lane: str, first_in: float = 0.0) -> None:
        """Run func on `lane` every `seconds`, the first time `first_in` seconds from now; replaces a job of that id."""
        first = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=first_in)
        with self._lock:
            self._lanes[job_id] = lane
        self._scheduler.add_job(self._then_after_run(func), trigger="interval", seconds=seconds, id=job_id, executor=lane, max_instances=1,
                                coalesce=True, misfire_grace_time=None, next_run_time=first, replace_existing=True)

    def _then_after_run(self, func):
        if self._after_run is None:
            return func
        after = self._after_run

        def run():
            try:
                func()
            finally:
                after()
        return run

    def reschedule(self, job_id: str, seconds: float) -> None:
        if self._scheduler.get_job(job_id):
            self._scheduler.reschedule_job(job_id, trigger="interval", seconds=seconds)

    def remove(self, job_id: str) -> None:
        if self._scheduler.get_job(job_id):
            self._scheduler.remove_job(job_id)
        with self._lock:
            for table in (self._lanes, self._skipped, self._overrunning):
                table.pop(job_id, None)

    def intervals(self) -> dict[str, float]:
        """job id -> seconds between runs (for tests and the debug log)."""
        return {job.id: job.trigger.interval.total_seconds() for job in self._scheduler.get_jobs()}

    def skipped(self) -> dict[tuple[str, str], int]:
        """(lane, task) -> beats skipped because its previous run was still going, for tasks that skipped any."""
        with self._lock:
            return {(self._lanes[task], task): n for task, n in self._skipped.items()}

    def start(self) -> None:
        self._scheduler.start()
        self._started = True

    def stop(self) -> None:
        if self._started:
            self._scheduler.shutdown(wait=False)
            self._started = False

    def _on_submission(self, event) -> None:
        """On the scheduler's thread: a run submitted, or skipped because the last one still runs."""
        task = event.job_id
        with self._lock:
            if task not in self._lanes:
                return
            if event.code == EVENT_JOB_MAX_INSTANCES:
                self._skipped[task] = self._skipped.get(task, 0) + 1
                overrun = self._overrunning[task] = self._overrunning.get(task, 0) + 1
                if overrun == 1:
                    log.warning("task overrunning task=%s lane=%s; its runs are skipped until the one in flight ends",
                                task, self._lanes[task])
            elif task in self._overrunning:
                log.info("task back on its cadence task=%s skipped=%d", task, self._overrunning.pop(task))


class JobsCollector:
    """llmcost_skipped_runs_total{lane="engines",task="engine:vllm"} 3.0 (from a task's first skipped run)"""

    def __init__(self, jobs: Jobs):
        self.jobs = jobs

    def describe(self):
        return [self._family()]

    def collect(self):
        family = self._family()
        for (lane, task), count in sorted(self.jobs.skipped().items()):
            family.add_metric([lane, task], count)
        return [family] if family.samples else []

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily("llmcost_skipped_runs", "Runs of a task skipped because its previous run was "
                                   "still going (a scrape or sample slower than its interval).", labels=["lane", "task"])
