#!/usr/bin/env python3
"""Soak: the demo's node (4 simulated GPUs, 2 simulated vLLM servers over real HTTP, the real
scheduler and web server) run for many simulated hours on an accelerated clock, scraped over HTTP
like Prometheus does. It reports, and checks:

- RSS growth after warm-up (the process: exporter, simulators and this driver), under 5 MiB;
- thread count after warm-up, constant (request threads come and go; the floor must not move);
- every counter series monotonic on every scrape checked;
- totals exact against the simulators: tokens to the token, instance spend to 1e-9 of hourly x
  the time between the first and last tick, GPU energy to 1e-9 of the hardware counters' change.

    .venv/bin/python scripts/soak.py --hours 24            # the full soak (about 4 minutes here)
    .venv/bin/python scripts/soak.py --hours 6 --speed 900  # what the test suite runs (~25 s)
    # production cadence in simulated time (GPU 1 s, engines 5 s, Prometheus 15 s): 72 minutes
    .venv/bin/python scripts/soak.py --hours 24 --speed 20 --engine-interval 250ms --engine-timeout 200ms \
        --scrape-every 0.75

The last full result is recorded in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from exporter.demo.node import INSTANCE_HOURLY, Demo  # noqa: E402

RSS_LIMIT_MIB = 5.0


def _proc_status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "Threads"):
                out[key] = int(value.split()[0])
    return out


def rss_mib() -> float:
    gc.collect()
    return _proc_status()["VmRSS"] / 1024.0


_BEFORE: set[int] = set()  # threads that existed before the soak (in a test run: other tests' leftovers)


def threads() -> int:
    """The soak's threads (exporter, simulators, servers), the floor of a few quick reads: a
    request thread that is just ending is not a leak."""
    counts = []
    for _ in range(5):
        counts.append(sum(1 for t in threading.enumerate() if t.ident not in _BEFORE))
        time.sleep(0.01)
    return min(counts)


class _EnergyRecorder:
    """Wraps the simulated NVML's energy counter: the first and last value the exporter read."""

    def __init__(self, nvml):
        self.first: dict[int, int] = {}
        self.last: dict[int, int] = {}
        read = nvml.nvmlDeviceGetTotalEnergyConsumption

        def recorded(handle):
            value = read(handle)
            self.first.setdefault(handle.index, value)
            self.last[handle.index] = value
            return value

        nvml.nvmlDeviceGetTotalEnergyConsumption = recorded


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return response.read().decode()


def _counters(text: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text)
            if f.type == "counter" for s in f.samples if s.name.endswith("_total")}


def soak(hours: float = 24.0, speed: float = 360.0, gpu_interval: str = "50ms", engine_interval: str = "100ms",
         engine_timeout: str = "80ms", scrape_every: float = 0.1, warmup: float = 0.2, check_every: int = 10,
         progress=None) -> dict:
    _BEFORE.clear()
    _BEFORE.update(t.ident for t in threading.enumerate())
    demo = Demo("127.0.0.1:0", speed, constant_load=0.0, gpu_interval=gpu_interval, engine_interval=engine_interval,
                engine_timeout=engine_timeout)
    energy = _EnergyRecorder(demo.nvml)
    clock, exporter = demo.clock, demo.exporter
    base = f"http://127.0.0.1:{demo.web.port}"
    ticks: list[float] = []  # the time of the first tick, which opens the ledger (private state, read by a harness)
    tick = exporter.accountant.tick

    def first_tick_recorded(*args, **kwargs):
        accrued = tick(*args, **kwargs)
        if not ticks:
            ticks.append(exporter.accountant._last_time)
        return accrued

    exporter.accountant.tick = first_tick_recorded
    wall_started = time.monotonic()
    demo.start()
    try:
        first_tick = ticks[0]
        deadline = time.monotonic() + 30
        while not all(e.health.status().up for e in exporter.engines):  # the baseline scrape (counters at 0)
            assert time.monotonic() < deadline, "engines never answered"
            time.sleep(0.02)
        for server in demo.servers:
            server.workload.set_constant_load(None)  # the quiet/busy/burst pattern from now on
        started = clock.now()
        end = started + hours * 3600
        warm_end = started + warmup * hours * 3600
        warm = None
        floor_after, peak_after, rss_peak = None, 0, 0.0
        previous: dict[tuple, float] = {}
        scrapes = checked = 0
        while clock.now() < end:
            text = _get(base + "/metrics")
            scrapes += 1
            if scrapes % check_every == 0:
                now = _counters(text)
                for key, value in previous.items():
                    assert key in now and now[key] >= value, f"counter went backwards or vanished: {key}"
                previous, checked = now, checked + 1
            if scrapes % 50 == 0:
                _get(base + "/")
                _get(base + "/healthz")
            if warm is None and clock.now() >= warm_end:
                warm = {"rss_mib": rss_mib(), "threads": threads(), "sim_hours": (clock.now() - started) / 3600}
            if warm is not None and scrapes % 20 == 0:
                n, rss_now = threads(), rss_mib()
                floor_after = n if floor_after is None else min(floor_after, n)
                peak_after, rss_peak = max(peak_after, n), max(rss_peak, rss_now)
            if progress and scrapes % 200 == 0:
                progress(f"sim {(clock.now() - started) / 3600:5.1f} h  scrapes {scrapes}  rss {rss_mib():.1f} MiB  "
                         f"threads {threads()}")
            time.sleep(scrape_every)
        final = {"rss_mib": rss_mib(), "threads": threads()}

        # Freeze the workload, let every engine be scraped successfully once more, stop sampling.
        for server in demo.servers:
            server.workload.set_constant_load(0.0)
        frozen = clock.now()
        time.sleep(2 * _seconds(engine_interval))  # a scrape in flight at the freeze (timeout < interval) is over
        mark = clock.now()
        deadline = time.monotonic() + 30
        while not all((e.health.status().last_success or 0) > mark for e in exporter.engines):
            assert time.monotonic() < deadline, "no engine scrape after the freeze"
            time.sleep(0.02)
        exporter.stop()
        time.sleep(0.5)  # a job in flight finishes
        text = _get(base + "/metrics")
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text)
                   for s in f.samples}
        last_tick = exporter.accountant._last_time
    finally:
        demo.stop()

    tokens_ok, tokens = True, {}
    for server, (name, *_rest) in zip(demo.servers, __import__("exporter.demo.node", fromlist=["ENGINES"]).ENGINES):
        served = server.served_counters()
        for direction in ("input", "output"):
            got = samples[("llmcost_tokens_total", (("direction", direction), ("engine", name), ("model", server.model)))]
            tokens[f"{name}/{direction}"] = {"counted": got, "served": served[f"{direction}_tokens"]}
            tokens_ok &= got == served[f"{direction}_tokens"]
    spend = samples[("llmcost_spend_total", (("component", "instance"), ("currency", "USD")))]
    spend_truth = INSTANCE_HOURLY * (last_tick - first_tick) / 3600
    energy_errors = []
    for i, gpu in enumerate(demo.nvml.gpus):
        got = samples[("llmcost_gpu_energy_joules_total", (("gpu", str(i)), ("uuid", gpu.uuid)))]
        truth = (energy.last[i] - energy.first[i]) / 1000.0
        energy_errors.append(abs(got - truth) / truth)
    result = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "sim_hours": round((frozen - started) / 3600, 2), "speed": speed, "wall_s": round(time.monotonic() - wall_started, 1),
        "cadence": {"gpu": gpu_interval, "engines": engine_interval, "scrape_s": scrape_every},
        "scrapes": scrapes, "monotonic_checks": checked,
        "gpu_ticks": round((last_tick - first_tick) / (speed * _seconds(gpu_interval))),
        "warm": warm, "final": final,
        "rss_growth_mib": round(final["rss_mib"] - warm["rss_mib"], 2), "rss_peak_after_warmup_mib": round(rss_peak, 1),
        "threads_floor_after_warmup": floor_after, "threads_peak_after_warmup": peak_after,
        "tokens_exact": tokens_ok, "tokens": tokens,
        "spend": {"counted": spend, "truth": spend_truth, "relative_error": abs(spend - spend_truth) / spend_truth},
        "energy_max_relative_error": max(energy_errors),
    }
    result["passed"] = bool(result["rss_growth_mib"] < RSS_LIMIT_MIB and final["threads"] == warm["threads"]
                            and tokens_ok and result["spend"]["relative_error"] < 1e-9
                            and result["energy_max_relative_error"] < 1e-9)
    return result


def _seconds(text: str) -> float:
    from exporter.units import parse_duration

    return parse_duration(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours")
    parser.add_argument("--speed", type=float, default=360.0, help="simulated seconds per real second")
    parser.add_argument("--gpu-interval", default="50ms", help="real time between GPU ticks")
    parser.add_argument("--engine-interval", default="100ms", help="real time between engine scrapes")
    parser.add_argument("--engine-timeout", default="80ms", help="engine scrape timeout (below the interval)")
    parser.add_argument("--scrape-every", type=float, default=0.1, help="real seconds between GETs of /metrics")
    parser.add_argument("--output", help="write the result as JSON here too")
    args = parser.parse_args(argv)
    result = soak(args.hours, args.speed, args.gpu_interval, args.engine_interval, args.engine_timeout,
                  args.scrape_every, progress=lambda line: print(line, file=sys.stderr, flush=True))
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
