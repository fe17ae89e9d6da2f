#!/usr/bin/env python3
"""Energy and energy-cost accuracy: the hardware-counter path against power integration at
0.1, 0.5, 1 and 5 s sampling, on bursty GPU power traces.

    .venv/bin/python bench/energy_accuracy.py            # 8 GPUs x 1 h of trace per setting
    .venv/bin/python bench/energy_accuracy.py --quick    # 2 GPUs x 2 min

Traces (1 ms resolution, seeded; no recorded trace is bundled, so they are generated in the shape
published LLM-serving power traces have): an A10G-class GPU (60 W idle, 300 W limit) serving token
bursts shorter than a second: a prefill spike (30-250 ms at 85-100% of the limit), then decode
(100-700 ms at 50-80%), then an idle gap (exponential, mean 0.25 s when busy to 3 s when quiet,
the level changing every minute), smoothed by a 50 ms first-order filter (the sensor's response)
with 2% noise. Ground truth is the exact integral of the trace.

What runs is the exporter's own code: exporter.gpu.source.GpuSource sampling a pynvml-compatible
backend that plays the trace, and the Accountant turning the energy into cost (owned mode,
0.12/kWh, PUE 1.3), stepped by a manual clock at the sampling interval with +-5 ms jitter:

- `counter`: nvmlDeviceGetTotalEnergyConsumption (integer mJ of the exact integral), the path on
  Volta and newer; sampled at 1 s (the default) and 5 s.
- `integrated`: the counter raises NVML_ERROR_NOT_SUPPORTED (pre-Volta), the exporter integrates
  nvmlDeviceGetPowerUsage with trapezoids. Power is read two ways: `instant` (the trace's value at
  the sampling instant: the worst case) and `1 s mean` (the mean of the last second, as drivers
  that average power report it).

Errors: relative error of the energy over every non-overlapping window of 1 min, 10 min and 1 h
per GPU (mean and max of |error|), and of the node's energy cost over the whole run. And what the
sampling costs: CPU time of one GPU tick (8 GPUs: NVML reads + accounting) over the interval, in
millicores (the trace backend is cheaper than real NVML calls; see overhead.py for the process).
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np

import _common

NAME = "energy_accuracy"
RESOLUTION = 0.001  # s
IDLE_W, LIMIT_W = 60.0, 300.0


def trace(seconds: float, seed: int) -> np.ndarray:
    """Power in watts at 1 ms resolution."""
    rng = np.random.default_rng(seed)
    n = int(seconds / RESOLUTION) + 2000
    level = np.full(n, IDLE_W)
    i = 0
    while i < n:
        minute = i * RESOLUTION // 60
        busy = np.random.default_rng(seed * 7919 + int(minute)).random()  # load level of this minute
        mean_gap = 3.0 if busy < 0.2 else 0.25 + 1.5 * (1 - busy)
        i += int(rng.exponential(mean_gap) / RESOLUTION)
        prefill = int(rng.uniform(0.03, 0.25) / RESOLUTION)
        decode = int(rng.uniform(0.10, 0.70) / RESOLUTION)
        level[i:i + prefill] = LIMIT_W * rng.uniform(0.85, 1.0)
        level[i + prefill:i + prefill + decode] = LIMIT_W * rng.uniform(0.50, 0.80)
        i += prefill + decode
    # The sensor's response: a 50 ms first-order low-pass, as an exact recursive filter.
    alpha = 1 - math.exp(-RESOLUTION / 0.05)
    out = _iir(level, alpha, IDLE_W)
    noise = 1 + 0.02 * rng.standard_normal(n // 10 + 1).repeat(10)[:n]
    return np.clip(out * noise, 0, None)


def _iir(x: np.ndarray, alpha: float, y0: float) -> np.ndarray:
    """y[k] = y[k-1] + alpha (x[k] - y[k-1]), in blocks small enough for float64 powers."""
    out = np.empty_like(x)
    block = 2000  # (1-alpha)^-2000 stays finite for alpha = 1 - exp(-1/50)
    prev = y0
    for s in range(0, len(x), block):
        seg = x[s:s + block]
        k = np.arange(1, len(seg) + 1)
        decay = (1 - alpha) ** k
        conv = np.cumsum(seg * alpha / decay) * decay
        out[s:s + len(seg)] = conv + prev * decay
        prev = out[s + len(seg) - 1]
    return out


class TraceNVML:
    """pynvml's interface over recorded-style traces (one per GPU), clocked by a ManualClock."""

    def __init__(self, clock, traces: list[np.ndarray], t0: float, counter: bool, power: str):
        import pynvml

        self._pynvml = pynvml
        self._clock, self._t0 = clock, t0
        self.traces = traces
        self.energy_j = [np.concatenate([[0.0], np.cumsum(t) * RESOLUTION]) for t in traces]  # J at each ms boundary
        self.counter, self.power = counter, power

    def _ms(self) -> int:
        return int(round((self._clock.now() - self._t0) / RESOLUTION))

    def true_energy(self, index: int, t: float) -> float:
        return float(self.energy_j[index][int(round((t - self._t0) / RESOLUTION))])

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetCount(self):
        return len(self.traces)

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetUUID(self, h):
        return f"GPU-trace-{h:04d}"

    def nvmlDeviceGetName(self, h):
        return "NVIDIA A10G (trace)"

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return int(LIMIT_W * 1000)

    def nvmlDeviceGetPowerUsage(self, h):
        ms = self._ms()
        if self.power == "instant":
            watts = self.traces[h][ms]
        else:  # the mean of the last second
            e = self.energy_j[h]
            watts = (e[ms] - e[max(ms - 1000, 0)]) / (min(ms, 1000) * RESOLUTION or 1)
        return int(round(watts * 1000))

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if not self.counter:
            raise self._pynvml.NVMLError(self._pynvml.NVML_ERROR_NOT_SUPPORTED)
        return int(self.energy_j[h][self._ms()] * 1000)  # mJ, truncated like the hardware's integer

    def nvmlDeviceGetUtilizationRates(self, h):
        rates = self._pynvml.c_nvmlUtilization_t()
        rates.gpu, rates.memory = 50, 30
        return rates

    def nvmlDeviceGetMemoryInfo(self, h):
        info = self._pynvml.c_nvmlMemory_t()
        info.total, info.used = 24 * 1024**3, 20 * 1024**3
        info.free = info.total - info.used
        return info


def run_setting(traces, seconds: float, interval: float, counter: bool, power: str, seed: int) -> dict:
    """Drive the exporter's GPU source and accountant over the traces; per-GPU energy at each sample."""
    from exporter.app import Exporter
    from exporter.clock import ManualClock
    from exporter.config import from_dict

    t0 = 1_700_000_000.0
    clock = ManualClock(t0)
    backend = TraceNVML(clock, traces, t0, counter, power)
    config = from_dict({"pricing": {"mode": "owned", "owned": {"capex": 0.0},
                                    "energy": {"electricity_per_kwh": 0.12, "pue": 1.3}},
                        "gpu": {"backend": "simulated", "interval": f"{interval}s"}}, environ={})
    exporter = Exporter(config, clock=clock, nvml_backend=backend)
    rng = np.random.default_rng(seed)
    step_ms = int(round(interval / RESOLUTION))
    clock.advance(1.0)  # a second of history for the 1 s mean
    times, energy = [], []
    end = t0 + 1.0 + seconds + interval  # one sample past the last window's end
    cpu = 0.0
    while clock.now() <= end:
        c0 = time.process_time()
        exporter.sample_gpus_and_account()
        cpu += time.process_time() - c0
        times.append(clock.now())
        energy.append([r.energy_joules for r in exporter.gpu.readings()])
        jitter_ms = int(rng.integers(-5, 6)) if step_ms > 10 else 0
        clock.advance((step_ms + jitter_ms) * RESOLUTION)
    energy = np.array(energy)
    truth = np.array([[backend.true_energy(i, t) for i in range(len(traces))] for t in times])
    truth -= truth[0]  # the exporter's totals start at its first sample
    snap = exporter.snapshot()
    true_cost = truth[-1].sum() / 3.6e6 * 1.3 * 0.12
    return {"times": np.array(times) - times[0], "energy": energy, "truth": truth,
            "cost": snap.spend.energy_cost, "true_cost": true_cost, "samples": len(times),
            "tick_cpu_ms": 1000 * cpu / len(times)}


def window_errors(run: dict, horizon: float, interval: float) -> list[float]:
    """|relative error| of every non-overlapping window of `horizon` seconds, per GPU, in %."""
    times, energy, truth = run["times"], run["energy"], run["truth"]
    errors = []
    start = 0
    while True:
        end = int(np.searchsorted(times, times[start] + horizon - 0.5 * interval))
        if end >= len(times):
            break
        got = energy[end] - energy[start]
        want = truth[end] - truth[start]
        errors.extend((100 * np.abs(got - want) / want).tolist())
        start = end
    return errors


def main(argv=None) -> int:
    p = _common.parser(__doc__.split("\n")[0])
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--seconds", type=float, default=3600.0)
    args = p.parse_args(argv)
    if args.quick:
        args.gpus, args.seconds = 2, 120.0
    traces = [trace(args.seconds + 15, seed=100 + i) for i in range(args.gpus)]
    mean_w = float(np.mean([t.mean() for t in traces]))
    bursts = {"mean_power_w": mean_w, "min_w": float(min(t.min() for t in traces)),
              "max_w": float(max(t.max() for t in traces))}
    horizons = [h for h in (60.0, 600.0, 3600.0) if h <= args.seconds]
    settings = [("counter", 1.0, "instant"), ("counter", 5.0, "instant")]
    settings += [("integrated", i, power) for power in ("instant", "1 s mean") for i in (0.1, 0.2, 0.5, 1.0, 5.0)]
    rows, out = [], []
    for method, interval, power in settings:
        run = run_setting(traces, args.seconds, interval, method == "counter", power, seed=int(interval * 1000))
        entry = {"method": method, "interval_s": interval, "power_reading": power if method == "integrated" else None,
                 "samples": run["samples"], "tick_cpu_ms": run["tick_cpu_ms"],
                 "millicores": run["tick_cpu_ms"] / interval, "cost_error_percent": 100 * abs(run["cost"] - run["true_cost"]) / run["true_cost"],
                 "windows": {}}
        for h in horizons:
            errs = window_errors(run, h, interval)
            entry["windows"][f"{h:g}s"] = {"n": len(errs), "mean_abs_percent": float(np.mean(errs)),
                                           "max_abs_percent": float(np.max(errs))}
        out.append(entry)
        w = entry["windows"]
        rows.append([method, interval, entry["power_reading"] or "-"] +
                    [f"{w[f'{h:g}s']['mean_abs_percent']:.3f} / {w[f'{h:g}s']['max_abs_percent']:.3f}" for h in horizons] +
                    [f"{entry['cost_error_percent']:.3f}", f"{entry['millicores']:.2f}"])
    default = next(e for e in out if e["method"] == "integrated" and e["interval_s"] == 1.0 and e["power_reading"] == "instant")
    counter = next(e for e in out if e["method"] == "counter" and e["interval_s"] == 1.0)
    longest = f"{horizons[-1]:g}s"
    result = {"name": NAME, "machine": _common.machine(), "quick": args.quick, "gpus": args.gpus,
              "seconds": args.seconds, "trace": bursts, "settings": out,
              "targets": {"counter_le_1pct": counter["windows"][longest]["max_abs_percent"] <= 1.0,
                          "integrated_1s_le_1pct_at_longest": default["windows"][longest]["max_abs_percent"] <= 1.0}}
    path = _common.write_results(args.results_dir, NAME, result)
    print(_common.table(["method", "interval s", "power reading"] + [f"|err| % over {h:g} s: mean / max" for h in horizons]
                        + ["energy cost |err| %", "GPU tick CPU, millicores"], rows))
    print(f"\n{args.gpus} GPUs x {args.seconds:g} s of trace, mean {mean_w:.0f} W ({bursts['min_w']:.0f}-{bursts['max_w']:.0f} W)")
    print(f"wrote {path}")
    return _common.verdict(result["targets"], args.quick)


if __name__ == "__main__":
    sys.exit(main())
