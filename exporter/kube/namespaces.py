"""The namespace's `llmcost.io/tier` annotation, for the discovered engine pods that carry none of
their own: the tier a whole team's namespace is compared at, without annotating every pod.

Precedence: the pod's annotation, then its namespace's, then compare.tier. Each namespace that a
target needs is read once per pod listing (GET /api/v1/namespaces/{name}: engines are few, and a
namespace changes its annotations rarely but may), never the others. A read that fails (403
without the RBAC rule, 404, timeout) keeps the tier read last for that namespace, none at first:
the pod is then compared at compare.tier; the listing and its engines go on either way.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from exporter.health import SourceHealth
from exporter.kube.client import KubeError
from exporter.kube.discovery import TIER, PodTarget
from exporter.pricing import COMPARE_TIERS

log = logging.getLogger("exporter.kube")


class NamespaceTiers:
    def __init__(self, read_namespace: Callable[[str], dict], health: SourceHealth, clock):
        self._read = read_namespace
        self.health = health  # llmcost_source_up{source="kubernetes", name="namespaces"}
        self._clock = clock
        self._tiers: dict[str, str | None] = {}  # namespace -> its tier annotation, as read last
        self._bad: set[tuple[str, str]] = set()  # (namespace, value) of a bad annotation, logged once

    def apply(self, targets: list[PodTarget]) -> list[PodTarget]:
        """The targets, those without a tier of their own given their namespace's."""
        wanted = sorted({t.namespace for t in targets if t.tier is None and t.namespace})  # "": no namespace to read
        self._tiers = {ns: tier for ns, tier in self._tiers.items() if ns in wanted}
        started, failure = time.monotonic(), None
        for namespace in wanted:
            try:
                self._tiers[namespace] = self._tier(namespace, self._read(namespace))
            except KubeError as err:  # keep the last tier read; the pods are not dropped
                failure = failure or err
        if failure is not None:
            self.health.failure(failure.reason, str(failure), time.monotonic() - started)
        else:
            self.health.success(self._clock.now(), time.monotonic() - started)
        return [dataclasses.replace(t, tier=self._tiers.get(t.namespace)) if t.tier is None else t for t in targets]

    def _tier(self, namespace: str, obj: dict) -> str | None:
        metadata = obj.get("metadata") if isinstance(obj, dict) else None
        if not isinstance(metadata, dict):
            raise KubeError("parse", f"namespace {namespace}: not a Namespace object (no metadata)")
        tier = (metadata.get("annotations") or {}).get(TIER)
        if tier is None or tier in COMPARE_TIERS:
            return tier
        self.health.count("bad_annotation")
        if (namespace, tier) not in self._bad:
            self._bad.add((namespace, tier))
            log.warning("namespace annotation ignored namespace=%s reason=%s: got %r, allowed: %s", namespace, TIER,
                        tier, ", ".join(COMPARE_TIERS))
        return None
