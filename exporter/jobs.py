"""The sampling cadence: named interval jobs on an apscheduler BackgroundScheduler.

Jobs are added before or after start(); before start() they wait and run once it starts. Each
job has at most one run in flight (max_instances=1) and missed runs coalesce, so a slow source
skips beats instead of piling them up.
"""

from __future__ import annotations

import datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler


class Jobs:
    def __init__(self, workers: int = 8):
        self._scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(workers)}, daemon=True)
        self._started = False

    def add(self, func, seconds: float, job_id: str, first_in: float = 0.0) -> None:
        """Run func every `seconds`, the first time `first_in` seconds from now; replaces a job of that id."""
        first = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=first_in)
        self._scheduler.add_job(func, trigger="interval", seconds=seconds, id=job_id, max_instances=1, coalesce=True,
                                misfire_grace_time=None, next_run_time=first, replace_existing=True)

    def reschedule(self, job_id: str, seconds: float) -> None:
        if self._scheduler.get_job(job_id):
            self._scheduler.reschedule_job(job_id, trigger="interval", seconds=seconds)

    def remove(self, job_id: str) -> None:
        if self._scheduler.get_job(job_id):
            self._scheduler.remove_job(job_id)

    def intervals(self) -> dict[str, float]:
        """job id -> seconds between runs (for tests and the debug log)."""
        return {job.id: job.trigger.interval.total_seconds() for job in self._scheduler.get_jobs()}

    def start(self) -> None:
        self._scheduler.start()
        self._started = True

    def stop(self) -> None:
        if self._started:
            self._scheduler.shutdown(wait=False)
            self._started = False
