"""Which engine pays for which GPU: the node's GPUs split between the engines' claims, with the
part no engine holds left unallocated. Pure; the accountant prices the result on every tick.

A claim says how an engine holds GPUs, and the method that produced it:

- `config`: GPU indices (`engines[].gpus`, the `llmcost.io/gpus` annotation). Each such GPU is
  split evenly between the engines naming it (and the `even` engines).
- `exclusive`, `replica`, `mig`, `hami`: GPU-equivalents read from the Kubernetes API
  (exporter.kube.shares), on GPUs not known by index: they are placed, evenly, on the GPUs no
  `config` claim names. Claims beyond those GPUs are scaled down to fit (never over-billed).
- `even`: nothing is known; the engine holds every GPU, sharing each with the others there.

Every GPU's fractions (engines + unallocated) add up to 1, so pricing each GPU by its fractions
conserves the node's spend exactly. docs/cost-model.md ("Which engine pays for which GPU").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CONFIG, EVEN = "config", "even"
KUBERNETES_METHODS = ("exclusive", "replica", "mig", "hami")
METHODS = (*KUBERNETES_METHODS, CONFIG, EVEN)


@dataclass(frozen=True)
class Claim:
    method: str
    gpus: float = 0.0  # GPU-equivalents (the Kubernetes methods)
    indices: tuple[int, ...] = ()  # the GPUs held (config)

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


def split(claims: dict[str, Claim], gpu_count: int) -> Split:
    """The node's `gpu_count` GPUs split between `claims`. With no GPU known, one notional GPU
    is split evenly between all engines (the spend is still someone's)."""
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
    free = [i for i in range(gpu_count) if i not in named]
    left = _place_amounts(claims, free, fractions)
    unallocated = {i: 0.0 for i in named}
    for index in free:
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


def _place_amounts(claims: dict[str, Claim], free: list[int], fractions: dict[str, dict[int, float]]) -> float:
    """Spread the GPU-equivalent claims evenly over the free GPUs, scaled down to fit; return
    the fraction of each free GPU left over."""
    amounts = {e: c.gpus if math.isfinite(c.gpus) and c.gpus > 0 else 0.0
               for e, c in claims.items() if c.method in KUBERNETES_METHODS}
    total = sum(amounts.values())
    if not free or total <= 0:
        return 1.0
    scale = min(1.0, len(free) / total)  # more claimed than there is: stale data; never bill past the node
    for engine, gpus in amounts.items():
        for index in free:
            fractions[engine][index] = min(gpus * scale / len(free), 1.0)
    return max(0.0, 1.0 - total * scale / len(free))
