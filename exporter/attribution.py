"""Which engine pays for which GPU: the node's GPUs split between the engines' claims, with the
part no engine holds left unallocated. Pure; the accountant prices the result on every tick.

A claim says how an engine holds GPUs, and the method that produced it:

- `config`: GPU indices (`engines[].gpus`, the `llmcost.io/gpus` annotation). Each such GPU is
  split evenly between the engines naming it (and the `even` engines).
- device fractions by GPU UUID, where the allocation names the GPUs (HAMi's annotation; the
  kubelet's PodResources, `podresources`): each on its own GPU, once NVML has reported that UUID.
- `exclusive`, `replica`, `mig`, `hami`, `podresources`: GPU-equivalents read from the Kubernetes API
  (exporter.kube.shares), on GPUs not known by index: they are placed on what the above left of
  each GPU, in proportion to it. Claims beyond that are scaled down to fit (never over-billed).
- `even`: nothing is known; the engine holds every GPU, sharing each with the others there.

Every GPU's fractions (engines + unallocated) add up to 1, so pricing each GPU by its fractions
conserves the node's spend exactly. docs/cost-model.md ("Which engine pays for which GPU").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CONFIG, EVEN = "config", "even"
KUBERNETES_METHODS = ("exclusive", "replica", "mig", "hami", "podresources")


@dataclass(frozen=True)
class Claim:
    method: str
    gpus: float = 0.0  # GPU-equivalents (the Kubernetes methods)
    indices: tuple[int, ...] = ()  # the GPUs held (config)
    devices: tuple[tuple[str, float], ...] = ()  # (GPU UUID, fraction of it) where known; else `gpus` counts

    @staticmethod
    def from_config(gpus) -> Claim:
        """`engines[].gpus` or the pod annotation: indices, or None (nothing known: even)."""
        return Claim(EVEN) if gpus is None else Claim(CONFIG, indices=tuple(gpus))


@dataclass(frozen=True)
class Split:
    gpu_count: int  # GPUs split (1 notional GPU when none is known)
    fractions: dict[str, dict[int, float]]  # engine -> GPU index -> the fraction of that GPU it holds
    unallocated: dict[int, float]  # GPU index -> the fraction no engine holds
    methods: dict[str, str]

    def share(self, engine: str) -> float:
        """The engine's share of the node's GPUs, 0-1."""
        return min(sum(self.fractions.get(engine, {}).values()) / self.gpu_count, 1.0)  # never 1 + a rounding

    def unallocated_share(self) -> float:
        return sum(self.unallocated.values()) / self.gpu_count

    def price(self, per_gpu: dict[int, float]) -> tuple[dict[str, float], float]:
        """Each GPU's amount to the engines by their fractions: (per engine, unallocated)."""
        engines = {e: sum(f * per_gpu.get(i, 0.0) for i, f in held.items()) for e, held in self.fractions.items()}
        return engines, sum(f * per_gpu.get(i, 0.0) for i, f in self.unallocated.items())


def split(claims: dict[str, Claim], gpu_count: int, uuids: dict[str, int] | None = None) -> Split:
    """The node's `gpu_count` GPUs split between `claims`; `uuids`: GPU UUID -> index, as NVML
    reports them. With no GPU known, one notional GPU is split evenly between all engines (the
    spend is still someone's)."""
    methods = {e: c.method for e, c in claims.items()}
    if gpu_count <= 0:
        share = 1.0 / len(claims) if claims else 0.0
        return Split(1, {e: {0: share} for e in claims}, {0: 0.0 if claims else 1.0}, methods)
    fractions: dict[str, dict[int, float]] = {e: {} for e in claims}
    evens = [e for e, c in claims.items() if c.method == EVEN]
    named = _named_gpus(claims, gpu_count)
    for index, holders in named.items():  # a GPU named in config: its holders and the even engines
        for engine in holders + evens:
            fractions[engine][index] = 1.0 / (len(holders) + len(evens))
    free = {i: 1.0 for i in range(gpu_count) if i not in named}  # GPU -> what is left of it
    placed = _place_devices(claims, uuids or {}, free, fractions)
    _place_amounts({e: c for e, c in claims.items() if e not in placed}, free, fractions)
    unallocated = {i: 0.0 for i in named}
    for index, left in free.items():
        for engine in evens:
            fractions[engine][index] = left / len(evens)
        unallocated[index] = 0.0 if evens else left
    return Split(gpu_count, fractions, unallocated, methods)


def _named_gpus(claims: dict[str, Claim], gpu_count: int) -> dict[int, list[str]]:
    """GPU index -> the config engines naming it (indices past the node's GPUs name nothing)."""
    named: dict[int, list[str]] = {}
    for engine, claim in claims.items():
        if claim.method == CONFIG:
            for index in sorted(set(claim.indices)):
                if 0 <= index < gpu_count:
                    named.setdefault(index, []).append(engine)
    return named


def _place_devices(claims: dict[str, Claim], uuids: dict[str, int], free: dict[int, float],
                   fractions: dict[str, dict[int, float]]) -> set[str]:
    """Put the device fractions on their GPUs (a GPU claimed past 1 is scaled down to fit; one a
    config names keeps its holders); return the engines placed. A claim naming a GPU NVML has not
    reported is counted by its GPU-equivalents instead."""
    placed = {e for e, c in claims.items() if c.devices and all(u in uuids for u, _ in c.devices)}
    wanted: dict[int, dict[str, float]] = {}
    for engine in placed:
        for uuid, fraction in claims[engine].devices:
            if uuids[uuid] in free and math.isfinite(fraction) and fraction > 0:
                on_gpu = wanted.setdefault(uuids[uuid], {})
                on_gpu[engine] = on_gpu.get(engine, 0.0) + fraction
    for index, engines in wanted.items():
        scale = min(1.0, 1.0 / sum(engines.values()))
        for engine, fraction in engines.items():
            fractions[engine][index] = min(fraction * scale, 1.0)
        free[index] = max(0.0, 1.0 - sum(engines.values()) * scale)
    return placed


def _place_amounts(claims: dict[str, Claim], free: dict[int, float], fractions: dict[str, dict[int, float]]) -> None:
    """Spread the GPU-equivalent claims over what is left of the GPUs, in proportion to it, scaled
    down to fit; `free` keeps what is left after them."""
    amounts = {e: c.gpus if math.isfinite(c.gpus) and c.gpus > 0 else 0.0
               for e, c in claims.items() if c.method in KUBERNETES_METHODS}
    room, total = sum(free.values()), sum(amounts.values())
    if room <= 0 or total <= 0:
        return
    scale = min(1.0, room / total)  # more claimed than there is: stale data; never bill past the node
    for engine, gpus in amounts.items():
        for index, left in free.items():
            fractions[engine][index] = min(gpus * scale * left / room, 1.0)
    for index, left in free.items():
        free[index] = max(0.0, left * (1.0 - total * scale / room))
