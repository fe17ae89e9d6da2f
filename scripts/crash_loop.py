#!/usr/bin/env python3
"""Kill -9 restart loop: the real `run` command with `--storage.path`, scraped like Prometheus
scrapes it, killed with SIGKILL at random moments (some while it writes its state file) and
started again, N times. After every scrape it checks the persisted-totals promise
(docs/reliability.md, "Restarts: persisted totals"):

- no counter series goes below the last value scraped before, across any number of kills (a
  series may be absent for a while: an engine's models stay out until its first scrape after a
  crash). The resets allowed are a start with no state file at all (every run before it died
  before its first write): the documented first start; and, after a restart, the per-model and
  per-phase spend and the cache savings (exporter.modelsplit: after a crash they count from 0),
  but only to a value that could have accrued since the last state write before the kill (the
  gap the first tick bills, plus the time since): a reset, not a small decrease, which
  Prometheus would read as a reset of the whole total;
- no total is above ground truth: tokens and requests at most what the simulated vLLM served
  since the loop began, instance and engine spend at most hourly x wall time since the loop
  began (the downtime included: it is under --storage.max-gap, so it is billed), GPU energy at
  most the simulated GPU's max_watts x that time;
- no state file is ever found unusable (the write is atomic, so a kill never leaves half a file).

The engine is a simulated vLLM over real HTTP in this process; the GPU is the simulated NVML of
the `run` process (config `gpu.backend: simulated`). Per-process counters (source errors, state
write errors) start at 0 in every process by design and are not checked.

    .venv/bin/python scripts/crash_loop.py                    # 1,000 kills (docs/reliability.md)
    .venv/bin/python scripts/crash_loop.py --iterations 15    # what the test suite runs

Prints one JSON object of figures; exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from exporter.clock import SystemClock  # noqa: E402
from exporter.demo.vllm_server import SimulatedVllm  # noqa: E402
from exporter.demo.workload import Workload  # noqa: E402
from exporter.storage import FILE_NAME  # noqa: E402

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
HOURLY = 360.0  # 10 cents a second: large figures, same arithmetic
MAX_WATTS = 300.0
PER_PROCESS = {"llmcost_source_errors", "llmcost_state_write_errors"}  # start at 0 in every process, by design
TOKENS = {"input": "input_tokens", "output": "output_tokens", "cached_input": "cached_input_tokens"}
RELATIVE_SLACK = 1e-9  # float sums of many small increments
RESET_AFTER_CRASH = {"llmcost_model_spend_total", "llmcost_cache_savings_total"}  # docs/reliability.md
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: str, engine_url: str) -> None:
    with open(path, "w") as f:
        json.dump({"pricing": {"mode": "cloud", "cloud": {"hourly": HOURLY}},  # JSON is YAML
                   "gpu": {"backend": "simulated", "interval": "100ms",
                           "simulated": {"count": 1, "max_watts": MAX_WATTS}},
                   "engines": [{"url": engine_url, "interval": "250ms", "timeout": "200ms"}]}, f)


def scrape(port: int) -> dict[tuple, float] | None:
    """Every counter sample, keyed (family, sorted labels); None if not serving."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) if family.type == "counter"
            for s in family.samples if s.name.endswith("_total") and family.name not in PER_PROCESS}


class Checker:
    """The floor of every series (its last scraped value) and the ground truth."""

    def __init__(self, server: SimulatedVllm, started: float):
        self.server, self.started = server, started
        self.served_at_start = server.served_counters()
        self.floor: dict[tuple, float] = {}
        self.violations: list[str] = []
        self.scrapes = 0
        self.ratios: dict[str, list[float]] = {}  # headline total / its ground truth, per scrape
        self.last: dict[tuple, float] = {}

    def reset(self) -> None:
        """A start with no state file: the documented first start, a reset Prometheus handles."""
        self.floor = {}

    def killed(self, state_path: str) -> None:
        """The process was stopped: its state file is as of the last write that completed."""
        self.last_save_at_least = os.stat(state_path).st_mtime if os.path.exists(state_path) else self.started

    def _a_reset(self, key: tuple, value: float) -> bool:
        """A decrease of a series that counts from 0 after a crash, to what could have accrued since
        the last save before the kill (billed at the first tick as the gap): a reset Prometheus handles."""
        since = time.time() - getattr(self, "last_save_at_least", self.started)
        return key[0] in RESET_AFTER_CRASH and value <= HOURLY * since / 3600.0 * (1 + RELATIVE_SLACK) + 1e-9

    def check(self, sample: dict[tuple, float], iteration: int) -> None:
        elapsed = time.time() - self.started  # after the scrape: an upper bound for what it showed
        served = self.server.served_counters()
        truth = {k: served[k] - self.served_at_start[k] for k in served}
        self.scrapes += 1
        for key, floor in self.floor.items():
            if key in sample and sample[key] < floor and not self._a_reset(key, sample[key]):
                self.violation(iteration, f"{_name(key)} went backwards: {floor!r} -> {sample[key]!r}")
        for key, value in sample.items():
            bound = self._bound(key, elapsed, truth)
            if bound is not None and value > bound * (1 + RELATIVE_SLACK) + 1e-9:
                self.violation(iteration, f"{_name(key)}={value!r} above ground truth {bound!r}")
            if bound:
                self.ratios.setdefault(_name(key), []).append(value / bound)
        requests = sum(v for k, v in sample.items() if k[0] == "llmcost_requests_total")
        if requests > truth["requests"]:
            self.violation(iteration, f"requests over every reason {requests!r} above ground truth {truth['requests']}")
        self.floor.update(sample)
        self.last = sample

    @staticmethod
    def _bound(key: tuple, elapsed: float, truth: dict[str, int]) -> float | None:
        name, labels = key[0], dict(key[1])
        if name in ("llmcost_spend_total", "llmcost_engine_spend_total", "llmcost_idle_spend_total") and \
                labels.get("component", "instance") == "instance":
            return HOURLY * elapsed / 3600.0
        if name == "llmcost_tokens_total" and labels.get("direction") in TOKENS:
            return float(truth[TOKENS[labels["direction"]]])
        if name == "llmcost_requests_total":
            return float(truth["requests"])
        if name == "llmcost_gpu_energy_joules_total":
            return MAX_WATTS * elapsed
        return None

    def violation(self, iteration: int, text: str) -> None:
        self.violations.append(f"iteration {iteration}: {text}")


def _name(key: tuple) -> str:
    return key[0] + "{" + ",".join(f'{k}="{v}"' for k, v in key[1]) + "}"


def run_once(args, checker: Checker, iteration: int, rng: random.Random, config: str, state_dir: str,
             log) -> dict:
    """One process: started, scraped every ~0.1 s, SIGKILLed (or SIGTERMed) at a random moment."""
    state = os.path.join(state_dir, FILE_NAME)
    fresh = not os.path.exists(state)
    tmp_before = _stamp(state + ".tmp")  # a .tmp left by an earlier kill is not this one's
    if fresh:
        checker.reset()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "run", f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
         f"--storage.path={state_dir}", f"--storage.interval={args.storage_interval}"],
        stdout=subprocess.DEVNULL, stderr=log, env=ENV)
    during_write = rng.random() < args.write_share
    deadline = time.monotonic() + rng.uniform(0.0, args.max_up)
    served = False
    try:
        give_up = time.monotonic() + 60.0  # a process that never serves is reported, not waited for forever
        while (time.monotonic() < deadline or (during_write and not served)) and time.monotonic() < give_up:
            sample = scrape(port)
            if sample is not None:
                served = True
                checker.check(sample, iteration)
            if process.poll() is not None:
                checker.violation(iteration, f"the process exited by itself, status {process.returncode}")
                break
            time.sleep(0.1)
        if during_write:  # kill as soon as a write is seen under way (the .tmp exists until the rename)
            wait_for(lambda: os.path.exists(state + ".tmp"), 2 * _seconds(args.storage_interval))
        term = args.sigterm_every and iteration % args.sigterm_every == 0
        process.send_signal(signal.SIGTERM if term else signal.SIGKILL)
        process.wait(timeout=10)
        checker.killed(state)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    tmp_after = _stamp(state + ".tmp")
    return {"fresh": fresh, "served": served, "tmp_left": tmp_after is not None and tmp_after != tmp_before,
            "sigterm": bool(term)}


def _stamp(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.0002)
    return False


def _seconds(text: str) -> float:
    from exporter.units import parse_duration
    return parse_duration(text)


def crash_loop(iterations: int = 1000, seed: int = 1, max_up: float = 2.0, max_down: float = 0.3,
               storage_interval: str = "300ms", write_share: float = 0.25, sigterm_every: int = 0,
               workdir: str | None = None) -> dict:
    args = argparse.Namespace(max_up=max_up, storage_interval=storage_interval, write_share=write_share,
                              sigterm_every=sigterm_every)
    rng = random.Random(seed)
    workdir = workdir or tempfile.mkdtemp(prefix="crash-loop-")
    os.makedirs(workdir, exist_ok=True)
    state_dir, config, log_path = (os.path.join(workdir, n) for n in ("state", "config.yml", "run.log"))
    if os.path.exists(state_dir):  # the ground truth starts with the loop: so must the totals
        raise SystemExit(f"{state_dir} exists: give the loop a new --workdir")
    workload = Workload(SystemClock(), 2000.0, seed=seed)
    workload.set_constant_load(0.5)
    server = SimulatedVllm(workload, MODEL).start()
    write_config(config, server.url)
    began = time.monotonic()
    checker = Checker(server, time.time())
    runs = []
    try:
        with open(log_path, "ab") as log:
            for i in range(1, iterations + 1):
                runs.append(run_once(args, checker, i, rng, config, state_dir, log))
                time.sleep(rng.uniform(0.0, max_down))
            # one last start, up long enough to scrape: the totals after the last kill must hold too
            runs.append(run_once(argparse.Namespace(**{**vars(args), "max_up": 3.0, "write_share": 0.0}),
                                 checker, iterations + 1, rng, config, state_dir, log))
    finally:
        server.stop()
    with open(log_path, errors="replace") as f:
        text = f.read()
    unusable = text.count("is not usable")
    if unusable:
        checker.violations.append(f"{unusable} state file(s) found unusable (a torn write?)")
    tracebacks = text.count("Traceback")
    if tracebacks:
        checker.violations.append(f"{tracebacks} traceback(s) in the processes' logs")
    headline = {_name(k): v for k, v in checker.last.items() if _name(k) in checker.ratios}
    return {
        "iterations": iterations, "processes": len(runs), "restarts": len(runs) - 1,
        "kills_before_serving": sum(not r["served"] for r in runs[:-1]),
        "kills_during_a_write": sum(r["tmp_left"] for r in runs[:-1]),
        "sigterms": sum(r["sigterm"] for r in runs[:-1]),
        "fresh_starts": sum(r["fresh"] for r in runs), "restored_starts": text.count("state restored"),
        "scrapes_checked": checker.scrapes, "violations": len(checker.violations),
        "violation_samples": checker.violations[:20],
        "ratio_to_ground_truth": {k: {"min": round(min(v), 6), "max": round(max(v), 6), "last": round(v[-1], 6)}
                                  for k, v in sorted(checker.ratios.items())},
        "final_totals": headline,
        "duration_s": round(time.monotonic() - began, 1), "workdir": workdir,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-up", type=float, default=2.0, help="a process lives up to this long (s)")
    parser.add_argument("--max-down", type=float, default=0.3, help="down up to this long between processes (s)")
    parser.add_argument("--storage-interval", default="300ms")
    parser.add_argument("--write-share", type=float, default=0.25, help="share of kills aimed at a write")
    parser.add_argument("--sigterm-every", type=int, default=0, help="every Nth stop is a SIGTERM (0: none)")
    parser.add_argument("--workdir", default=None)
    a = parser.parse_args(argv)
    # SIGTERM ends the loop through its finally blocks: the process under test is killed, not orphaned
    # (an orphan writing into the state directory would break the next loop's ground truth)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = crash_loop(a.iterations, a.seed, a.max_up, a.max_down, a.storage_interval, a.write_share,
                        a.sigterm_every, a.workdir)
    print(json.dumps(result, indent=1))
    return 1 if result["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
