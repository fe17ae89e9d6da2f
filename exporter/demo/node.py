"""The node of `llm-cost-exporter demo`: a simulated GPU node, a simulated vLLM server and a
simulated SGLang server, scraped over real HTTP by the real exporter, with time optionally
accelerated. The CLI runs it.

The engines are configured with kind `auto` (the default), so the exporter detects each one's
kind from its first scrape, as it would on a real node; llmcost_engine_info and the landing page
show what it found."""

from __future__ import annotations

import threading
import time

from exporter.app import Exporter
from exporter.clock import AcceleratedClock
from exporter.config import from_dict
from exporter.demo.server import SimulatedServer
from exporter.demo.sglang_server import SimulatedSglang
from exporter.demo.vllm_server import SimulatedVllm
from exporter.demo.workload import Workload
from exporter.gpu.simulated import SimulatedNVML
from exporter.web import WebServer

# A Standard_NC96ads_A100_v4-like node: 4x A100 80GB. Llama on GPUs 0 and 1 (vLLM); Qwen on one
# 3g.40gb MIG device of GPU 2 (SGLang; pinned by its MIG UUID, so it pays 3/7 of that GPU); the rest
# of GPU 2 and all of GPU 3 held by no engine: unallocated spend.
INSTANCE_TYPE = "Standard_NC96ads_A100_v4"
INSTANCE_HOURLY = 14.692  # USD, Azure eastus pay-as-you-go (exporter/catalog/instances.yaml)
PRODUCT, MEMORY_BYTES = "NVIDIA A100 80GB PCIe", 80 * 1024**3
MIG_GPU, MIG_PROFILES = 2, ["3g.40gb", "3g.40gb"]  # GPU 2 in MIG mode: two 3g.40gb devices
SERVERS = {"vllm": ("vLLM", SimulatedVllm), "sglang": ("SGLang", SimulatedSglang)}  # kind -> (name, simulator)
ENGINES = (
    # name, model, capacity tokens/s at saturation, GPUs (indices, or "mig:<n>": GPU 2's n-th MIG
    # device), seed, the engine kind its server simulates
    ("llama-8b", "meta-llama/Llama-3.1-8B-Instruct", 6000.0, [0, 1], 11, "vllm"),
    ("qwen-32b", "Qwen/Qwen2.5-32B-Instruct", 700.0, ["mig:0"], 23, "sglang"),
)


def describe_servers() -> str:
    """The simulated engine servers in words: "a simulated vLLM server and a simulated SGLang server"."""
    return " and ".join(f"a simulated {SERVERS[kind][0]} server" for *_, kind in ENGINES)


COMPARE_APIS = ("gpt-4o-mini", "gpt-4o")


class Demo:
    def __init__(self, listen_address: str, speed: float, window: str = "30m", constant_load: float | None = None,
                 web_config=None, gpu_interval: str = "1s", engine_interval: str = "1s", engine_timeout: str = "800ms"):
        self.clock = AcceleratedClock(speed)
        self.servers: list[SimulatedServer] = []
        self.nvml = SimulatedNVML(self.clock, count=4, product=PRODUCT, idle_watts=50.0, max_watts=300.0,
                                  memory_bytes=MEMORY_BYTES)
        mig = self.nvml.enable_mig(MIG_GPU, MIG_PROFILES)
        pins = {}
        for name, model, capacity, gpus, seed, kind in ENGINES:
            workload = Workload(self.clock, capacity, seed=seed, constant_load=constant_load)  # None: the pattern
            self.servers.append(SERVERS[kind][1](workload, model).start())
            pins[name] = [mig[int(g[4:])] if isinstance(g, str) else g for g in gpus]
            for gpu in gpus:
                if isinstance(gpu, str):  # a MIG device draws its slices' part of its GPU's power
                    self.nvml.set_load(MIG_GPU, lambda t, load=workload.load: load(t) * 3 / 7)
                else:
                    self.nvml.set_load(gpu, workload.load)
        config = from_dict({
            "pricing": {"mode": "cloud", "cloud": {"instance_type": INSTANCE_TYPE, "hourly": INSTANCE_HOURLY},
                        "energy": {"electricity_per_kwh": 0.12, "pue": 1.3}},
            "gpu": {"backend": "simulated", "interval": gpu_interval},
            "window": window,
            "compare": {"apis": list(COMPARE_APIS)},
            "engines": [{"name": name, "url": server.url, "gpus": pins[name], "interval": engine_interval,
                         "timeout": engine_timeout, "capacity_tokens_per_s": capacity}
                        for (name, _, capacity, *_), server in zip(ENGINES, self.servers, strict=True)],
        }, environ={})
        self.exporter = Exporter(config, clock=self.clock, nvml_backend=self.nvml)
        self.web = WebServer(self.exporter, listen_address, web_config=web_config)

    def start(self) -> None:
        self.exporter.start()
        self.web.start()

    def stop(self) -> None:
        """Everything at once: each HTTP server takes up to its poll interval to stop."""
        self.exporter.stop()
        stoppers = [threading.Thread(target=self.web.stop)] + [threading.Thread(target=s.stop) for s in self.servers]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(5)

    def engine_lines(self) -> list[str]:
        """Each simulated engine: its name in the exporter, what it simulates, its URL."""
        return [f"{name} ({SERVERS[kind][0]}) {server.url}"
                for (name, *_, kind), server in zip(ENGINES, self.servers, strict=True)]

    def summary_line(self) -> str:
        snap = self.exporter.snapshot()
        kinds = {e.name: e.kind for e in snap.engines}
        spend = sum(snap.spend.components.values()) if snap.spend else 0.0
        power = sum(g.power_watts or 0.0 for g in snap.gpus)
        parts = [f"sim {time.strftime('%H:%M', time.gmtime(snap.time))}", f"spend ${spend:,.2f}", f"GPUs {power:,.0f} W"]
        for f in snap.models:
            name = f"{f.model.model.split('/')[-1]} [{kinds.get(f.model.engine, '?')}]"
            if f.cost_per_million is None:
                parts.append(f"{name}: no tokens")
                continue
            util = "" if f.utilization is None else f" ({f.utilization:.0%} util)"
            full = "" if f.cost_per_million_full is None else f" vs ${f.cost_per_million_full:,.2f} at 100%"
            apis = ", ".join(f"{c.api}{'' if c.tier == 'standard' else f' ({c.tier})'} ${c.price_per_million:,.2f}"
                             for c in f.apis if c.price_per_million is not None)
            parts.append(f"{name}: ${f.cost_per_million:,.2f}/1M{util}{full}" + (f"; {apis}" if apis else ""))
        return " | ".join(parts)

