"""The fault campaign's promises (docs/reliability.md), checked the same way for every fault:

1. the exporter keeps serving /metrics (over real HTTP, 200, quickly) through the fault;
2. the fault shows in a health metric, and in one log line, not one per sample;
3. every counter series stays monotonic (checked on every scrape) and totals stay correct;
4. recovery is automatic once the fault clears.

    def test_x(campaign):
        c = campaign(exporter)
        with c.fault(warnings=1):       # exactly one WARNING line while the fault lasts
            ...inject, c.step() a few times, assert on c.samples...
        ...clear, c.step(), assert recovered...
"""

from __future__ import annotations

import contextlib
import logging
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.web import WebServer

SCRAPE_BUDGET_S = 0.5  # /metrics serves a snapshot: it must stay fast whatever a source does


class Campaign:
    def __init__(self, exporter, clock, caplog):
        self.exporter, self.clock, self.caplog = exporter, clock, caplog
        self.web = WebServer(exporter, "127.0.0.1:0")
        self.web.start()
        self.samples: dict[tuple, float] = {}
        self._counters: set[tuple] = set()
        self.scrapes = 0

    def close(self) -> None:
        self.web.stop()

    # -- promise 1 and 3: served, monotonic -----------------------------------------------

    def scrape(self) -> dict[tuple, float]:
        started = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web.port}/metrics", timeout=5) as response:
            assert response.status == 200
            text = response.read().decode()
        assert time.monotonic() - started < SCRAPE_BUDGET_S, "a scrape waited on a source"
        samples, counters = {}, set()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                samples[key] = s.value
                if family.type == "counter" and s.name.endswith("_total"):
                    counters.add(key)
        for key in counters:
            before = self.samples.get(key)
            assert before is None or samples[key] >= before, f"counter went backwards: {key} {before} -> {samples[key]}"
        vanished = [k for k in self._counters if k not in samples]
        assert not vanished, f"counter series vanished: {vanished}"
        self.samples, self._counters = samples, counters
        self.scrapes += 1
        return samples

    def step(self, seconds: float = 5.0, times: int = 1) -> dict[tuple, float]:
        for _ in range(times):
            self.clock.advance(seconds)
            self.exporter.sample_all()
            self.scrape()
        return self.samples

    def get(self, metric: str, **labels) -> float | None:
        return self.samples.get((metric, tuple(sorted(labels.items()))))

    # -- promise 2: one log line ----------------------------------------------------------

    @contextlib.contextmanager
    def fault(self, warnings: int = 1, max_lines: int = 2):
        """Inside: exactly `warnings` WARNING+ lines from the exporter, and at most `max_lines`
        lines at INFO and above in all, however many samples the fault lasts."""
        mark = len(self.caplog.records)
        yield
        lines = [r for r in self.caplog.records[mark:] if r.name.startswith("exporter") and r.levelno >= logging.INFO]
        shown = "\n".join(f"{r.levelname} {r.getMessage()}" for r in lines)
        assert sum(r.levelno >= logging.WARNING for r in lines) == warnings, shown
        assert len(lines) <= max_lines, shown

    def lines_since(self, mark: int) -> list[str]:
        return [r.getMessage() for r in self.caplog.records[mark:] if r.name.startswith("exporter")]


@pytest.fixture
def campaign(clock, caplog):
    caplog.set_level(logging.INFO, logger="exporter")
    made = []

    def make(exporter):
        made.append(Campaign(exporter, clock, caplog))
        made[-1].scrape()
        return made[-1]

    yield make
    for c in made:
        c.close()
