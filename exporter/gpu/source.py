"""GPU source: samples NVML (or the simulated backend) on a fixed cadence.

The backend is anything with pynvml's function names: the real `pynvml` module from
`nvidia-ml-py`, or exporter.gpu.simulated.SimulatedNVML. Errors are pynvml's own NVMLError
subclasses either way.

Energy is the hardware counter (nvmlDeviceGetTotalEnergyConsumption, mJ since driver load,
Volta and newer). Where it is not supported the exporter integrates sampled power (trapezoids).
Either way the exported energy is our own monotonic total: a counter that goes backwards (driver
reload) contributes the integrated power for that interval, never a negative or phantom jump.

A reading a GPU does not support (NVML_ERROR_NOT_SUPPORTED: utilization on a MIG-enabled GPU,
power on some boards) is remembered and not asked again: that reading is absent, the GPU stays
up, one error is counted and one line logged. Every RESCAN_EVERY samples the device count is
checked; a GPU that appeared or vanished triggers a re-initialisation that keeps every known
GPU's energy total by UUID (a vanished GPU stays, down, with its total).

MIG devices are listed per GPU at each (re)initialisation and device-count check: their UUIDs and
sizes (nvmlDeviceGetMigDeviceHandleByIndex, nvmlDeviceGetAttributes), so a MIG UUID the kubelet
names maps to its GPU and its part of it (exporter.kube.podresources.claims).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from exporter.health import SourceHealth

log = logging.getLogger("exporter.gpu")

# NVML return codes (nvml.h) that decide what we do; the rest count as "nvml_error".
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_DEVICE_MIG_ENABLE = 1
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15

_REASONS = {
    NVML_ERROR_UNINITIALIZED: "uninitialized",
    NVML_ERROR_NOT_SUPPORTED: "not_supported",
    NVML_ERROR_DRIVER_NOT_LOADED: "driver_not_loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "library_not_found",
    NVML_ERROR_GPU_IS_LOST: "gpu_lost",
}
# These mean the whole library is unusable: shut down and re-initialise with backoff.
_FATAL = {NVML_ERROR_UNINITIALIZED, NVML_ERROR_DRIVER_NOT_LOADED, NVML_ERROR_LIBRARY_NOT_FOUND}

MAX_BACKOFF_S = 60.0
RESCAN_EVERY = 30  # samples between device-count checks (30 s at the default 1 s cadence)


@dataclass(frozen=True)
class MigDevice:
    """A MIG device of a GPU, by NVML's attributes of it."""

    uuid: str  # MIG-<uuid>
    gpu_slices: int  # GPU instance slices (the 3 of 3g.40gb)
    compute_slices: int  # compute instance slices (the 1 of 1c.3g.40gb; = gpu_slices for a whole GPU instance)
    memory_mib: int


@dataclass(frozen=True)
class GpuReading:
    index: int
    uuid: str
    name: str
    up: bool
    power_watts: float | None = None
    power_limit_watts: float | None = None
    utilization_ratio: float | None = None
    memory_used_bytes: float | None = None
    memory_total_bytes: float | None = None
    energy_joules: float = 0.0  # our monotonic total since the exporter started
    energy_method: str = "counter"  # "counter" or "integrated"
    mig: tuple[MigDevice, ...] = ()  # its MIG devices where MIG mode is on


def load_pynvml():
    """The real backend. A missing Python package is reported like a missing library."""
    return importlib.import_module("pynvml")


def nvml_reason(err: Exception) -> str:
    return _REASONS.get(getattr(err, "value", -1), "nvml_error")


class _GpuTracker:
    """Per-GPU state between samples: handle, energy bookkeeping."""

    def __init__(self, index: int, handle, uuid: str, name: str, power_limit: float | None):
        self.index, self.handle = index, handle
        self.reading = GpuReading(index, uuid, name, up=False, power_limit_watts=power_limit)
        self.last_counter_mj: float | None = None
        self.last_power: float | None = None
        self.last_time: float | None = None
        self.counter_supported = True
        self.unsupported: set[str] = set()  # readings this GPU answered NOT_SUPPORTED to


class GpuSource:
    """`monotonic` times the re-initialisation backoff: by default the clock's own monotonic()
    (exporter.clock; a ManualClock steps it in tests), else time.monotonic."""

    def __init__(self, backend_loader, clock, health: SourceHealth | None = None,
                 monotonic: Callable[[], float] | None = None):
        self._load_backend = backend_loader
        self._clock = clock
        if monotonic is None:
            monotonic = getattr(clock, "monotonic", time.monotonic)
        self._monotonic: Callable[[], float] = monotonic
        self.health = health or SourceHealth("nvml", "nvml")
        self._nvml: Any = None  # the pynvml module (or a backend with its interface) once initialised
        self._gpus: list[_GpuTracker] = []
        self._backoff = 1.0
        self._next_init = float("-inf")  # in self._monotonic() seconds: the first sample initialises
        self._samples = 0
        self._restored: dict[str, dict] = {}  # uuid -> saved state, applied when the GPU is found
        self._lock = threading.Lock()  # sample() against export_state() from the state writer

    # -- public ---------------------------------------------------------------------------

    def readings(self) -> list[GpuReading]:
        """Vanished GPUs first: the accountant keys GPU energy by index, and a live GPU that took
        a vanished one's index must win. A reading that is not supported is None on its own (a
        MIG-enabled GPU has power and memory but no utilization)."""
        gpus = sorted(self._gpus, key=lambda g: g.handle is not None)
        return [g.reading for g in gpus]

    def sample(self) -> list[GpuReading]:
        """Read every GPU once. Never raises; reports NVML trouble in health."""
        with self._lock:
            try:
                self._sample()
            except Exception as err:  # a bug, not NVML: keep the job alive, count it, log on change
                self.health.failure("internal", f"{type(err).__name__}: {err}"[:300])
        return self.readings()

    def _sample(self) -> None:
        started = time.monotonic()  # how long NVML took: real time, whatever clock times the backoff
        if self._nvml is None and not self._initialise(self._monotonic()):
            self._mark_all_down()
            return
        self._samples += 1
        rescan = self._samples % RESCAN_EVERY == 0
        changed = rescan and self._devices_changed()
        if rescan and not changed:
            self._list_mig_devices()  # MIG devices come and go while the GPU count stays
        if changed:
            self._shutdown()
            if not self._initialise(self._monotonic(), changed):
                self._mark_all_down()
                return
        now = self._clock.now()
        fatal = self._sample_gpus(now)
        duration = time.monotonic() - started
        if fatal:
            self._shutdown()
            self._schedule_retry(self._monotonic())
            self.health.failure(fatal[0], str(fatal[1]), duration)
            self._mark_all_down()
        elif self._gpus and not any(g.reading.up for g in self._gpus):
            self.health.failure("gpu_lost", "no GPU answered", duration)
        else:
            self.health.success(now, duration)

    def _sample_gpus(self, now: float) -> tuple[str, Exception] | None:
        """Sample every attached GPU; (reason, error) if the whole library failed."""
        for gpu in self._gpus:
            if gpu.handle is None:
                continue  # vanished at the last re-initialisation: down, keeping its total
            try:
                self._sample_gpu(gpu, now)
            except Exception as err:  # pynvml.NVMLError or anything a broken binding raises
                reason = nvml_reason(err)
                if reason in ("uninitialized", "driver_not_loaded", "library_not_found"):
                    return reason, err  # the whole library: one line from health, by the caller
                if gpu.reading.up:  # log the transition, not every failed sample
                    log.warning("gpu down gpu=%d uuid=%s reason=%s detail=%s", gpu.index, gpu.reading.uuid, reason, err)
                gpu.reading = replace(gpu.reading, up=False)
                self.health.count(reason)
        return None

    def total_energy_joules(self) -> float:
        return sum(g.reading.energy_joules for g in self._gpus)

    # -- internals ------------------------------------------------------------------------

    def _initialise(self, mono_now: float, why: str = "") -> bool:
        if mono_now < self._next_init:
            return False
        try:
            nvml = self._load_backend()
            nvml.nvmlInit()
            count = nvml.nvmlDeviceGetCount()
            known = {g.reading.uuid: g for g in self._gpus}
            gpus = []
            for index in range(count):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                uuid = _text(nvml.nvmlDeviceGetUUID(handle))
                name = _text(nvml.nvmlDeviceGetName(handle))
                limit = _optional(functools.partial(_power_limit_watts, nvml, handle))
                tracker = _GpuTracker(index, handle, uuid, name, limit)
                previous = known.pop(uuid, None)
                if previous:  # keep the energy total and what we learnt about a GPU we already knew
                    tracker.reading = replace(tracker.reading, energy_joules=previous.reading.energy_joules)
                    tracker.counter_supported = previous.counter_supported
                    tracker.unsupported = previous.unsupported
                elif uuid in self._restored:
                    _apply_state(tracker, self._restored.pop(uuid))
                gpus.append(tracker)
            # GPUs that vanished keep their totals (down) so counters never go backwards.
            for gone in known.values():
                gone.reading = replace(gone.reading, up=False)
                gone.handle = None
                gpus.append(gone)
        except ImportError as err:
            return self._init_failed("library_not_found", f"python package nvidia-ml-py not importable: {err}", mono_now)
        except Exception as err:
            return self._init_failed(nvml_reason(err), str(err), mono_now)
        self._nvml, self._gpus, self._backoff = nvml, gpus, 1.0
        self._list_mig_devices()
        log.info("nvml initialised gpus=%d%s", count, f" ({why})" if why else "")
        return True

    def _list_mig_devices(self) -> None:
        for gpu in self._gpus:
            if gpu.handle is not None:
                mig = _mig_devices(self._nvml, gpu.handle)
                if mig != gpu.reading.mig:
                    log.info("gpu=%d uuid=%s mig_devices=%d", gpu.index, gpu.reading.uuid, len(mig))
                    gpu.reading = replace(gpu.reading, mig=mig)

    def _devices_changed(self) -> str:
        """'' if the device count is what we track, else why we re-initialise."""
        try:
            count = self._nvml.nvmlDeviceGetCount()
        except Exception:  # the per-GPU reads will say what is wrong
            return ""
        attached = sum(1 for g in self._gpus if g.handle is not None)
        return f"device count changed from {attached} to {count}" if count != attached else ""

    def _init_failed(self, reason: str, detail: str, mono_now: float) -> bool:
        self._schedule_retry(mono_now)
        self.health.failure(reason, f"{detail} (retry in {self._backoff:g}s)")
        return False

    def _schedule_retry(self, mono_now: float) -> None:
        self._next_init = mono_now + self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)

    def _shutdown(self) -> None:
        with contextlib.suppress(Exception):  # already broken; nothing to release
            self._nvml.nvmlShutdown()
        self._nvml = None

    def _mark_all_down(self) -> None:
        for gpu in self._gpus:
            gpu.reading = replace(gpu.reading, up=False)

    def _sample_gpu(self, gpu: _GpuTracker, now: float) -> None:
        nvml, h = self._nvml, gpu.handle
        power = self._reading(gpu, "power", lambda: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0)
        util = self._reading(gpu, "utilization", lambda: nvml.nvmlDeviceGetUtilizationRates(h).gpu / 100.0)
        memory = self._reading(gpu, "memory", lambda: nvml.nvmlDeviceGetMemoryInfo(h))
        energy = gpu.reading.energy_joules + self._energy_delta(gpu, now, power)
        gpu.last_power, gpu.last_time = power, now
        if not gpu.reading.up and gpu.reading.power_watts is not None:
            log.info("gpu up again gpu=%d uuid=%s", gpu.index, gpu.reading.uuid)
        gpu.reading = replace(
            gpu.reading, up=True, power_watts=power, utilization_ratio=util,
            memory_used_bytes=None if memory is None else float(memory.used),
            memory_total_bytes=None if memory is None else float(memory.total),
            energy_joules=energy, energy_method="counter" if gpu.counter_supported else "integrated")

    def _reading(self, gpu: _GpuTracker, what: str, read):
        """One NVML reading; None (and never asked again) where this GPU does not support it."""
        if what in gpu.unsupported:
            return None
        try:
            return read()
        except Exception as err:
            if nvml_reason(err) != "not_supported":
                raise
        gpu.unsupported.add(what)
        self.health.count("not_supported")
        log.info("gpu=%d uuid=%s does not support reading %s; it stays up without it", gpu.index, gpu.reading.uuid, what)
        return None

    def _energy_delta(self, gpu: _GpuTracker, now: float, power: float) -> float:
        integrated = 0.0
        if gpu.last_time is not None and gpu.last_power is not None and power is not None and now > gpu.last_time:
            integrated = (gpu.last_power + power) / 2.0 * (now - gpu.last_time)
        if not gpu.counter_supported:
            return integrated
        try:
            counter_mj = float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle))
        except Exception as err:
            if nvml_reason(err) != "not_supported":
                raise
            gpu.counter_supported = False
            log.info("gpu=%d has no energy counter; integrating power instead", gpu.index)
            return integrated
        previous, gpu.last_counter_mj = gpu.last_counter_mj, counter_mj
        if previous is None:
            return integrated  # first reading is a baseline
        if counter_mj < previous:  # driver reload reset the counter
            log.warning("energy counter went backwards gpu=%d; integrating power for this interval", gpu.index)
            self.health.count("energy_counter_reset")
            return integrated
        return (counter_mj - previous) / 1000.0


    # -- persisted state (exporter.storage) ---------------------------------------------------

    def export_state(self) -> list[dict]:
        with self._lock:
            out = [{"uuid": g.reading.uuid, "energy_joules": g.reading.energy_joules,
                    "last_counter_mj": g.last_counter_mj, "last_power": g.last_power, "last_time": g.last_time}
                   for g in self._gpus]
            known = {g["uuid"] for g in out}
            return out + [s for u, s in self._restored.items() if u not in known]

    def restore_state(self, gpus: list[dict], accrue_gap: bool) -> None:
        """Energy totals go on per UUID. With accrue_gap the first sample also counts the energy
        the hardware counter measured while the exporter was down (or integrates power over the
        gap if the counter reset); without, that sample is a fresh baseline. Call before sampling."""
        with self._lock:
            for saved in gpus:
                uuid = str(saved["uuid"])
                state = {"uuid": uuid, "energy_joules": float(saved["energy_joules"])}
                if accrue_gap:
                    state.update(last_counter_mj=saved.get("last_counter_mj"), last_power=saved.get("last_power"),
                                 last_time=saved.get("last_time"))
                self._restored[uuid] = state


def _mig_devices(nvml, handle) -> tuple[MigDevice, ...]:
    """The GPU's MIG devices; () where MIG is off, unsupported, or NVML cannot list them."""
    try:
        if nvml.nvmlDeviceGetMigMode(handle)[0] != NVML_DEVICE_MIG_ENABLE:
            return ()
        devices = []
        for slot in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            except Exception as err:
                if getattr(err, "value", None) == NVML_ERROR_NOT_FOUND:
                    continue  # an empty slot
                raise
            attributes = nvml.nvmlDeviceGetAttributes(mig)
            devices.append(MigDevice(_text(nvml.nvmlDeviceGetUUID(mig)), int(attributes.gpuInstanceSliceCount),
                                     int(attributes.computeInstanceSliceCount), int(attributes.memorySizeMB)))
        return tuple(devices)
    except Exception:  # NOT_SUPPORTED (no MIG on this GPU), an old driver without these calls
        return ()


def _power_limit_watts(nvml, handle) -> float:
    return nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0


def _apply_state(tracker: _GpuTracker, state: dict) -> None:
    tracker.reading = replace(tracker.reading, energy_joules=state["energy_joules"])
    tracker.last_counter_mj = state.get("last_counter_mj")
    tracker.last_power = state.get("last_power")
    tracker.last_time = state.get("last_time")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _optional(read):
    try:
        return read()
    except Exception:
        return None
