"""A simulated NVML with pynvml's interface, for the demo and the tests (no GPU here).

Function names, units (mW, mJ, percent, bytes), return structures (pynvml's own ctypes structs)
and errors (pynvml.NVMLError subclasses built from nvml.h return codes) are the real ones, so the
GPU source runs the same code against this and against a real GPU.

Power follows load: idle_watts + (max_watts - idle_watts) * load. The energy counter integrates
that power exactly over the simulation clock, so it is the ground truth tests compare with.

MIG (`enable_mig`): a MIG-capable GPU (A100, A30, H100, H200, B200) split into MIG devices of the
named profiles, reached as NVML reaches them: nvmlDeviceGetMigMode, nvmlDeviceGetMaxMigDeviceCount,
nvmlDeviceGetMigDeviceHandleByIndex (NOT_FOUND on an empty slot), nvmlDeviceGetDeviceHandleFromMigDeviceHandle,
nvmlDeviceGetAttributes (MIG handles only), each device's own `MIG-` UUID and name; utilization on a
MIG-enabled GPU is NOT_SUPPORTED, as on the real one.
"""

from __future__ import annotations

import re
import threading

import pynvml

_STEP_S = 1.0  # integration step for the energy counter, in simulated seconds
MIG_PRODUCTS = {"A100": 7, "H100": 7, "H200": 7, "B200": 7, "A30": 4}  # product -> compute slices
_MIG_PROFILE = re.compile(r"(?:(\d+)c\.)?(\d+)g\.(\d+)gb")


class _SimGpu:
    def __init__(self, index, product, idle_watts, max_watts, memory_bytes, energy_counter, load_fn, t0):
        self.index = index
        self.uuid = f"GPU-{index:08x}-5151-4c4d-8000-{index:012x}"
        self.product = product
        self.idle_watts, self.max_watts = idle_watts, max_watts
        self.memory_bytes = memory_bytes
        self.energy_counter = energy_counter
        self.load_fn = load_fn
        self.energy_mj = 0.0  # what the hardware counter reads (resets with the driver)
        self.true_mj = 0.0  # ground truth since creation
        self.last_t = t0
        self.lost = False
        self.mig: list[_SimMig] | None = None  # MIG mode on: its devices, by MIG device index

    @property
    def compute_slices(self) -> int:
        return next((n for p, n in MIG_PRODUCTS.items() if p in self.product), 0)  # 0: not MIG-capable

    def power_watts(self, t: float) -> float:
        load = min(max(self.load_fn(t), 0.0), 1.0)
        return self.idle_watts + (self.max_watts - self.idle_watts) * load

    def advance(self, t: float) -> None:
        """Integrate power up to t with the midpoint rule on fixed steps."""
        while self.last_t < t:
            step = min(_STEP_S, t - self.last_t)
            mj = self.power_watts(self.last_t + step / 2) * step * 1000.0
            self.energy_mj += mj
            self.true_mj += mj
            self.last_t += step


class _SimMig:
    """One MIG device (a compute instance in a GPU instance) of a GPU, as its NVML handle."""

    def __init__(self, parent: _SimGpu, slot: int, profile: str):
        match = _MIG_PROFILE.fullmatch(profile)
        if match is None:
            raise ValueError(f"not a MIG profile: {profile!r}")
        compute, gpu_slices, memory_gb = match.groups()
        self.parent, self.slot, self.profile = parent, slot, profile
        self.gpu_slices, self.compute_slices = int(gpu_slices), int(compute or gpu_slices)
        total_mib = parent.memory_bytes // 1024**2
        total_gb = -(-parent.memory_bytes // 1024**3)
        # Real MIG memory sits a little under its eighth of the GPU (3g.40gb of an H100: 40448 of 81559 MiB).
        self.memory_mb = int(total_mib * round(int(memory_gb) / total_gb * 8) / 8 * 0.99)
        self.uuid = f"MIG-{parent.index:08x}-{slot:04x}-4d49-8000-{parent.index * 16 + slot:012x}"

    @property
    def index(self) -> int:  # fault injection by GPU index reaches its MIG devices too
        return self.parent.index

    @property
    def lost(self) -> bool:
        return self.parent.lost


class SimulatedNVML:
    """Drop-in for the `pynvml` module. Fault injection: `fail`, `lose_gpu`, `library_missing`,
    `reset_energy_counter`, `add_gpu`, `remove_gpu`."""

    def __init__(self, clock, count=4, product="NVIDIA A10G", idle_watts=60.0, max_watts=300.0,
                 memory_bytes=24 * 1024**3, energy_counter=True, load_fn=None):
        self._clock = clock
        self._lock = threading.Lock()
        self._initialised = False
        self.library_missing = False
        self._failures: dict[tuple[int | None, str], int] = {}
        self._spec = dict(product=product, idle_watts=idle_watts, max_watts=max_watts,
                          memory_bytes=memory_bytes, energy_counter=energy_counter)
        self._default_load = load_fn or (lambda t: 0.0)
        self.gpus = [self._new_gpu(i) for i in range(count)]

    def _new_gpu(self, index, load_fn=None):
        return _SimGpu(index, load_fn=load_fn or self._default_load, t0=self._clock.now(), **self._spec)

    # -- fault injection ------------------------------------------------------------------

    def fail(self, function: str, code: int, gpu: int | None = None) -> None:
        """Make `function` (e.g. 'nvmlDeviceGetPowerUsage') raise NVML error `code`."""
        self._failures[(gpu, function)] = code

    def clear_failures(self) -> None:
        self._failures.clear()

    def lose_gpu(self, index: int, lost: bool = True) -> None:
        self.gpus[index].lost = lost

    def reset_energy_counter(self, index: int) -> None:
        """What a driver reload does to the counter."""
        gpu = self.gpus[index]
        with self._lock:
            gpu.advance(self._clock.now())
            gpu.energy_mj = 0.0

    def add_gpu(self, load_fn=None) -> None:
        """A GPU appears (hot-plug, a reset GPU back on the bus): the device count grows."""
        gpu = self._new_gpu(len(self.gpus), load_fn)
        gpu.uuid = f"GPU-{len(self.gpus):08x}-5151-4c4d-8000-{id(gpu) & 0xFFFFFFFFFFFF:012x}"  # a new board
        self.gpus.append(gpu)

    def remove_gpu(self, index: int) -> None:
        """A GPU vanishes (unbound, fallen off the bus and the driver reloaded): the count
        shrinks, the GPUs after it move down one index, as NVML enumerates them, and handles to
        it answer GPU_IS_LOST."""
        gpu = self.gpus.pop(index)
        gpu.lost = True
        for i, other in enumerate(self.gpus):
            other.index = i

    def enable_mig(self, index: int, profiles: list[str]) -> list[str]:
        """Put GPU `index` in MIG mode with devices of `profiles` (e.g. ["3g.40gb", "3g.40gb"]), in
        MIG device index order; their UUIDs."""
        gpu = self.gpus[index]
        if not gpu.compute_slices:
            raise ValueError(f"{gpu.product} is not MIG-capable")
        gpu.mig = [_SimMig(gpu, slot, p) for slot, p in enumerate(profiles)]
        return [m.uuid for m in gpu.mig]

    def set_load(self, index: int, load_fn) -> None:
        gpu = self.gpus[index]
        with self._lock:
            gpu.advance(self._clock.now())
            gpu.load_fn = load_fn

    def true_energy_joules(self, index: int) -> float:
        """Ground truth: energy since the GPU was created, unaffected by counter resets."""
        gpu = self.gpus[index]
        with self._lock:
            gpu.advance(self._clock.now())
            return gpu.true_mj / 1000.0

    # -- the pynvml interface -------------------------------------------------------------

    def _check(self, function: str, handle=None):
        if self.library_missing:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
        if function != "nvmlInit" and not self._initialised:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        index = handle.index if handle is not None else None
        code = self._failures.get((index, function)) or self._failures.get((None, function))
        if code:
            raise pynvml.NVMLError(code)
        if handle is not None and handle.lost:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)

    def nvmlInit(self):
        self._check("nvmlInit")
        self._initialised = True

    def nvmlShutdown(self):
        self._check("nvmlShutdown")
        self._initialised = False

    def nvmlDeviceGetCount(self):
        self._check("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        self._check("nvmlDeviceGetHandleByIndex")
        if index >= len(self.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        gpu = self.gpus[index]
        self._check("nvmlDeviceGetHandleByIndex", gpu)
        return gpu

    def nvmlDeviceGetName(self, handle):
        self._check("nvmlDeviceGetName", handle)
        if isinstance(handle, _SimMig):
            return f"{handle.parent.product} MIG {handle.profile}"
        return handle.product

    def nvmlDeviceGetUUID(self, handle):
        self._check("nvmlDeviceGetUUID", handle)
        return handle.uuid

    def nvmlDeviceGetPowerUsage(self, handle):
        self._check("nvmlDeviceGetPowerUsage", handle)
        return int(round(handle.power_watts(self._clock.now()) * 1000))  # mW

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        self._check("nvmlDeviceGetEnforcedPowerLimit", handle)
        return int(handle.max_watts * 1000)  # mW

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        self._check("nvmlDeviceGetTotalEnergyConsumption", handle)
        if not handle.energy_counter:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        with self._lock:
            handle.advance(self._clock.now())
            return int(handle.energy_mj)  # mJ, an unsigned long long in NVML

    def nvmlDeviceGetUtilizationRates(self, handle):
        self._check("nvmlDeviceGetUtilizationRates", handle)
        if handle.mig is not None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)  # per GPU, not per MIG device
        rates = pynvml.c_nvmlUtilization_t()
        load = min(max(handle.load_fn(self._clock.now()), 0.0), 1.0)
        # NVML's "gpu" is the share of time a kernel ran, so any load above ~0 reads busy.
        rates.gpu = int(round(100 * min(1.0, load * 1.6)))
        rates.memory = int(round(100 * load * 0.7))
        return rates

    def nvmlDeviceGetMemoryInfo(self, handle):
        self._check("nvmlDeviceGetMemoryInfo", handle)
        info = pynvml.c_nvmlMemory_t()
        info.total = handle.memory_bytes
        info.used = int(handle.memory_bytes * 0.9)  # vLLM pre-allocates ~90% for the KV cache
        info.free = info.total - info.used
        return info

    # -- MIG -------------------------------------------------------------------------------

    def nvmlDeviceGetMigMode(self, handle):
        self._check("nvmlDeviceGetMigMode", handle)
        if isinstance(handle, _SimMig) or not handle.compute_slices:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        mode = pynvml.NVML_DEVICE_MIG_ENABLE if handle.mig is not None else pynvml.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]  # [current, pending]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle):
        self._check("nvmlDeviceGetMaxMigDeviceCount", handle)
        if isinstance(handle, _SimMig):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return handle.compute_slices if handle.mig is not None else 0  # 0: MIG not supported or not enabled

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle, index):
        self._check("nvmlDeviceGetMigDeviceHandleByIndex", handle)
        if isinstance(handle, _SimMig) or handle.mig is None or not 0 <= index < handle.compute_slices:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if index >= len(handle.mig):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)  # no MIG device in that slot
        return handle.mig[index]

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, mig_handle):
        self._check("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", mig_handle)
        if not isinstance(mig_handle, _SimMig):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return mig_handle.parent

    def nvmlDeviceIsMigDeviceHandle(self, handle):
        self._check("nvmlDeviceIsMigDeviceHandle", handle)
        return int(isinstance(handle, _SimMig))

    def nvmlDeviceGetAttributes(self, handle):
        self._check("nvmlDeviceGetAttributes", handle)
        if not isinstance(handle, _SimMig):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)  # "currently only supports MIG device handles"
        attributes = pynvml.c_nvmlDeviceAttributes()
        attributes.gpuInstanceSliceCount = handle.gpu_slices
        attributes.computeInstanceSliceCount = handle.compute_slices
        attributes.memorySizeMB = handle.memory_mb
        attributes.multiprocessorCount = 132 * handle.compute_slices // 8  # H100: 132 SMs; a 1g slice has 16
        return attributes
