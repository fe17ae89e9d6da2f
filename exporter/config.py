"""Typed configuration, validated at load.

The YAML file maps one-to-one onto the dataclasses below. Every problem raises ConfigError with a
message naming the key path, the bad value and what is allowed; the CLI prints that one line and
exits 2. Unknown keys are errors. See docs/configuration.md for the schema and a full example.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import os
import typing
from dataclasses import dataclass, field

from exporter import spotprices
from exporter.catalog import ApiPrice, InstancePrice
from exporter.engines.schemas import AUTO, EngineSchema, all_maps, parse_maps
from exporter.kube.podresources.devices import DEFAULT_RESOURCES as GPU_RESOURCES
from exporter.pricing import COMPARE_TIERS, CONFIGURED, PricingError, from_node_labels
from exporter.pricing import resolve as resolve_prices
from exporter.validation import InputError, build, choices, date, duration, internal, number, parse_yaml, show, size
from exporter.validation import read_file as read_input

DEFAULT_LISTEN_ADDRESS = ":9848"
CAPACITY_TYPES = ("on-demand", "spot", "reserved")  # as exporter.kube.node reads them from the node's labels


class ConfigError(InputError):
    """Invalid configuration: the message names the key, the value and what is allowed."""


@dataclass(frozen=True)
class CloudPricing:
    hourly: float | None = number(None)  # instance price per hour; None = look instance_type up in the catalog
    instance_type: str | None = None  # e.g. g5.12xlarge, a2-highgpu-1g, Standard_NC24ads_A100_v4
    region: str | None = None  # catalog region; None = the catalog's default region for the type
    price_multiplier: float = number(1.0, exclusive=True)  # applied to catalog prices: spot, savings plans
    per_million_requests: float = number(0.0)  # gateway / serverless glue fees
    capacity_type: str = choices(*CAPACITY_TYPES, default="on-demand")  # without Kubernetes labels
    spot_file: str | None = None  # a dated spot price file (exporter.spotprices), re-read when it changes


@dataclass(frozen=True)
class CommitmentMatch:
    """Which nodes a commitment covers: every key given must equal the node's (none given: all)."""
    instance_type: str | None = None
    region: str | None = None
    node_pool: str | None = None  # the node's pool label (exporter.kube.node.NODE_POOL_LABELS)
    capacity_type: str | None = None  # None: on-demand and reserved nodes, never spot


@dataclass(frozen=True)
class Commitment:
    """A reserved instance, savings plan, committed-use discount or capacity block (exporter.commitments)."""
    name: str
    start: str = date()  # ISO date, 00:00 UTC; it applies from then
    end: str | None = date(None)  # until then (exclusive); None: start + term_months, or open-ended
    match: CommitmentMatch = field(default_factory=CommitmentMatch)
    hourly: float | None = number(None)  # the effective hourly price; or
    discount: float | None = number(None, maximum=1.0, hint="a fraction of the on-demand price: 0.4 is 40% off")
    upfront: float = number(0.0)  # paid once, amortized over term_months
    term_months: float | None = number(None, exclusive=True)


@dataclass(frozen=True)
class Interruptions:
    """Node interruptions (spot reclaims, reboots) seen at start as a changed boot id (exporter.interruptions)."""
    warmup: float = duration("0s")  # model load time: spend this long after an interruption is warm-up waste
    until_ready: bool = True  # end it sooner, once every engine has answered a scrape (its model is loaded)
    boot_id_file: str = "/proc/sys/kernel/random/boot_id"  # the host's, also inside a container


@dataclass(frozen=True)
class OwnedPricing:
    capex: float = number(0.0)
    amortization_months: float = number(36.0, exclusive=True)
    fixed_monthly: float = number(0.0)  # colocation, support contracts, ...


@dataclass(frozen=True)
class EnergyPricing:
    electricity_per_kwh: float | None = number(None)
    pue: float = number(1.0, minimum=1.0)
    overhead_watts: float = number(0.0)  # the rest of the box: CPUs, fans, NICs
    grid_co2e_grams_per_kwh: float | None = number(None)  # grid carbon intensity, for emissions


@dataclass(frozen=True)
class Pricing:
    mode: str = choices("cloud", "owned", default="cloud")
    currency: str = "USD"
    hours_per_month: float = number(730.0, exclusive=True)
    cloud: CloudPricing = field(default_factory=CloudPricing)
    owned: OwnedPricing = field(default_factory=OwnedPricing)
    energy: EnergyPricing = field(default_factory=EnergyPricing)
    commitments: list[Commitment] = field(default_factory=list)  # the first that applies prices the node
    interruptions: Interruptions = field(default_factory=Interruptions)


@dataclass(frozen=True)
class SimulatedGpus:
    count: int = number(4, minimum=1)
    product: str = "NVIDIA A10G"
    idle_watts: float = number(60.0)
    max_watts: float = number(300.0, exclusive=True)
    memory_bytes: int = size("24GiB")
    energy_counter: bool = True  # False simulates a pre-Volta GPU: the exporter integrates power


@dataclass(frozen=True)
class GpuConfig:
    backend: str = choices("nvml", "simulated", "none", default="nvml")
    interval: float = duration("1s", positive=True)
    simulated: SimulatedGpus = field(default_factory=SimulatedGpus)


@dataclass(frozen=True)
class EngineConfig:
    url: str
    name: str = "vllm"
    kind: str = "auto"  # auto: detected from the first good scrape; else a kind of the engine map
    interval: float = duration("5s", positive=True)
    timeout: float = duration("3s", positive=True)
    max_body_bytes: int = size("4MiB")
    max_models: int = number(50, minimum=1)
    # GPUs this engine holds: NVML indices, or GPU-/MIG- UUIDs (a MIG device: its part of its GPU);
    # None = its pod's resources, else shared evenly
    gpus: list[typing.Any] | None = None
    capacity_tokens_per_s: float | None = number(None, exclusive=True)  # from a benchmark; None = observed peak
    apis: list[str] | None = None  # APIs to compare this engine's models with; None = compare.apis
    tier: str | None = choices(*COMPARE_TIERS, default=None)  # the APIs' tier for this engine; None = compare.tier


@dataclass(frozen=True)
class CatalogOverrides:
    apis: dict[str, ApiPrice] = field(default_factory=dict)  # added to (or replacing) bundled API prices
    instances: list[InstancePrice] = field(default_factory=list)  # checked before the bundled ones


@dataclass(frozen=True)
class Compare:
    apis: list[str] = field(default_factory=lambda: ["gpt-4o-mini"])
    # The API tier the workload would really use: standard, batch, flex, priority, long_context, or
    # auto (batch for engine pods run by a Kubernetes Job, else standard). Not offered: standard.
    tier: str = choices(*COMPARE_TIERS, default="standard")


@dataclass(frozen=True)
class KubernetesDiscovery:
    enabled: bool = False
    label_selector: str = "llmcost.io/scrape=true"  # which pods on this node are engines
    namespace: str | None = None  # None = all namespaces
    refresh_interval: float = duration("30s", positive=True)  # how often the pods on this node are listed
    interval: float = duration("5s", positive=True)  # scrape cadence of each discovered engine
    timeout: float = duration("3s", positive=True)  # whole response of one engine scrape, < interval
    max_engines: int = number(64, minimum=1)  # engine pods scraped at most; bounds threads and series
    mig_share: str = choices("compute", "memory", default="compute")  # what a MIG device's share of its GPU counts


@dataclass(frozen=True)
class PodResourcesConfig:
    enabled: bool = False  # exact GPU devices per pod from the kubelet (needs discovery and the podresources extra)
    socket: str = "/var/lib/kubelet/pod-resources/kubelet.sock"  # the kubelet's PodResources socket, as mounted
    timeout: float = duration("1s", positive=True)  # the whole List call, connecting included
    resources: list[str] = field(default_factory=lambda: list(GPU_RESOURCES))  # GPU resource names (fnmatch patterns)


@dataclass(frozen=True)
class KubernetesConfig:
    enabled: bool = False
    node_name: str | None = None  # None = the NODE_NAME environment variable (downward API spec.nodeName)
    node_labels_pricing: bool = True  # price the node from its instance-type/region/capacity-type labels
    refresh_interval: float = duration("5m", positive=True)  # how often the node's labels are read
    timeout: float = duration("5s", positive=True)  # per request to the API server
    api_url: str | None = None  # None = in-cluster (service account); e.g. http://127.0.0.1:8001 (kubectl proxy)
    kubeconfig: str | None = None  # a kubeconfig file instead of the in-cluster service account
    discovery: KubernetesDiscovery = field(default_factory=KubernetesDiscovery)
    pod_resources: PodResourcesConfig = field(default_factory=PodResourcesConfig)


@dataclass(frozen=True)
class Attribution:
    # Cost of one computed input (prefill) token per output (decode) token, where the engine
    # serves no phase times: weighs models within an engine and the phases within a model.
    prefill_token_weight: float = number(0.25, exclusive=True, maximum=1000.0)


@dataclass(frozen=True)
class Config:
    pricing: Pricing = field(default_factory=Pricing)
    gpu: GpuConfig = field(default_factory=GpuConfig)
    engines: list[EngineConfig] = field(default_factory=list)
    window: float = duration("5m", positive=True)  # the live windowed gauges (tokens/s, $/1M) look back this far
    compare: Compare = field(default_factory=Compare)
    attribution: Attribution = field(default_factory=Attribution)
    catalog: CatalogOverrides = field(default_factory=CatalogOverrides)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    reload_interval: float = duration("5s")  # how often the config file is checked for changes; 0s = never
    removed_engine_retention: float = duration("10m")  # series of an engine that is gone stay this long
    # Resolved at load, not settable in the file:
    api_prices: dict[str, ApiPrice] = internal(default_factory=dict)  # every known API price, by name
    # configured | catalog:<provider>/<type>/<region> | node_labels (resolved at run time from the node)
    hourly_source: str = internal(CONFIGURED)
    engine_maps: dict[str, EngineSchema] = internal(default_factory=dict)  # the file's own engine maps, parsed
    source_path: str | None = internal(None)  # the file it was read from


# Per-node settings people set from the environment (e.g. a DaemonSet's env), applied on top of
# the file. Each maps to one key path; the value is parsed as a YAML scalar.
ENV_OVERRIDES = {
    "LLMCOST_PRICING_MODE": ("pricing", "mode"),
    "LLMCOST_INSTANCE_TYPE": ("pricing", "cloud", "instance_type"),
    "LLMCOST_INSTANCE_HOURLY": ("pricing", "cloud", "hourly"),
    "LLMCOST_ELECTRICITY_PER_KWH": ("pricing", "energy", "electricity_per_kwh"),
    "LLMCOST_GPU_BACKEND": ("gpu", "backend"),
    "LLMCOST_ENGINE_URL": ("engines", 0, "url"),
    "LLMCOST_KUBERNETES_ENABLED": ("kubernetes", "enabled"),
}
NODE_NAME_VARIABLE = "NODE_NAME"  # the default of kubernetes.node_name (file and LLMCOST_* win over it)


def load_file(path: str | None, environ: typing.Mapping[str, str] | None = None) -> Config:
    """Read, override from the environment, and validate. Raises ConfigError."""
    if not path:
        return from_dict({}, environ)
    return load_bytes(read_file(path), path, environ)


def read_file(path: str) -> bytes:
    """The file's bytes; ConfigError (key config.file) if it cannot be read."""
    return read_input(path, "config.file", ConfigError)


def load_bytes(data: bytes, path: str | None, environ: typing.Mapping[str, str] | None = None) -> Config:
    """Parse and validate a file's content (the reloader reads once, then hashes and parses the same bytes)."""
    raw = parse_yaml(data, "config.file", ConfigError)
    if not isinstance(raw, dict):
        raise ConfigError("config.file", "the top level must be a mapping")
    return dataclasses.replace(from_dict(raw, environ), source_path=path)


def from_dict(raw: dict, environ: typing.Mapping[str, str] | None = None) -> Config:
    environ = os.environ if environ is None else environ
    raw = _apply_env(raw, environ)
    maps = parse_maps(raw.pop("engine_maps", None) or {}, "engine_maps", ConfigError)
    config = dataclasses.replace(build(Config, raw, "", ConfigError), engine_maps=maps)
    if config.kubernetes.node_name is None and environ.get(NODE_NAME_VARIABLE):
        kube = dataclasses.replace(config.kubernetes, node_name=environ[NODE_NAME_VARIABLE])
        config = dataclasses.replace(config, kubernetes=kube)
    try:
        config = resolve_prices(config)
    except PricingError as err:
        raise ConfigError(err.key, err.problem) from None
    _check(config)
    return config


def _apply_env(raw: dict, environ) -> dict:
    raw = copy.deepcopy(raw)
    for var, path in ENV_OVERRIDES.items():
        if var not in environ:
            continue
        node: typing.Any = raw
        for i, key in enumerate(path[:-1]):
            nxt = path[i + 1]
            if isinstance(key, int):
                while len(node) <= key:
                    node.append({})
                node = node[key]
            else:
                node = node.setdefault(key, [] if isinstance(nxt, int) else {})
        node[path[-1]] = parse_yaml(environ[var], var, ConfigError) if environ[var].strip() else None
    return raw


def _check(config: Config) -> None:
    """Rules that span several keys."""
    pricing = config.pricing
    if pricing.mode == "cloud" and pricing.cloud.hourly is None and not from_node_labels(config):
        raise ConfigError("pricing.cloud.hourly", "required when pricing.mode is cloud, unless "
                          "pricing.cloud.instance_type or the node's labels (kubernetes.enabled) give the price "
                          "(or set LLMCOST_INSTANCE_HOURLY)")
    if pricing.mode == "owned" and pricing.energy.electricity_per_kwh is None:
        raise ConfigError("pricing.energy.electricity_per_kwh", "required when pricing.mode is owned")
    sim = config.gpu.simulated
    if sim.max_watts <= sim.idle_watts:
        raise ConfigError("gpu.simulated.max_watts", f"got {sim.max_watts:g}, allowed: a number > idle_watts ({sim.idle_watts:g})")
    _check_engines(config)
    _check_kubernetes(config.kubernetes)
    _check_commitments(config)
    _check_spot_file(config)


def _check_engines(config: Config) -> None:
    names = set()
    kinds = [AUTO, *all_maps(config.engine_maps)]
    for i, engine in enumerate(config.engines):
        if engine.kind not in kinds:
            raise ConfigError(f"engines[{i}].kind", f"got {show(engine.kind)}, allowed: {', '.join(kinds)} "
                              "(or a kind added under engine_maps)")
        if not engine.url.startswith(("http://", "https://")):
            raise ConfigError(f"engines[{i}].url", f"got {show(engine.url)}, allowed: an http:// or https:// URL")
        if engine.name in names:
            raise ConfigError(f"engines[{i}].name", f"got {show(engine.name)}, allowed: a name not used by another engine")
        names.add(engine.name)
        if engine.timeout >= engine.interval:
            raise ConfigError(f"engines[{i}].timeout", f"got {engine.timeout:g}s, allowed: less than interval ({engine.interval:g}s)")
        for j, gpu in enumerate(engine.gpus or []):
            index = isinstance(gpu, int) and not isinstance(gpu, bool) and gpu >= 0
            if not index and not (isinstance(gpu, str) and gpu.startswith(("GPU-", "MIG-"))):
                raise ConfigError(f"engines[{i}].gpus[{j}]", f"got {show(gpu)}, allowed: a GPU index >= 0, "
                                  "or an NVML UUID (GPU-..., MIG-...)")
        if config.kubernetes.discovery.enabled and "/" in engine.name:
            raise ConfigError(f"engines[{i}].name", f"got {show(engine.name)}, allowed: a name without '/' "
                              "(namespace/pod names are the discovered engines')")


def _check_kubernetes(kube: KubernetesConfig) -> None:
    discovery = kube.discovery
    if discovery.enabled and not kube.enabled:
        raise ConfigError("kubernetes.discovery.enabled", "got True, allowed: true only with kubernetes.enabled: true")
    _check_pod_resources(kube)
    if not kube.enabled:
        return
    if importlib.util.find_spec("kubernetes") is None:
        raise ConfigError("kubernetes.enabled", "got true, allowed: false, or install the kubernetes client: "
                          "pip install 'llm-cost-exporter[kubernetes]'")
    if not kube.node_name:
        raise ConfigError("kubernetes.node_name", "required when kubernetes.enabled is true: set it, or the "
                          f"{NODE_NAME_VARIABLE} environment variable (downward API fieldRef spec.nodeName)")
    if kube.api_url is not None and not kube.api_url.startswith(("http://", "https://")):
        raise ConfigError("kubernetes.api_url", f"got {show(kube.api_url)}, allowed: an http:// or https:// URL")
    if kube.api_url is not None and kube.kubeconfig is not None:
        raise ConfigError("kubernetes.kubeconfig", "got a file and kubernetes.api_url, allowed: one of the two")
    if kube.timeout >= kube.refresh_interval:
        raise ConfigError("kubernetes.timeout", f"got {kube.timeout:g}s, allowed: less than refresh_interval "
                          f"({kube.refresh_interval:g}s)")
    if discovery.enabled and kube.timeout >= discovery.refresh_interval:
        raise ConfigError("kubernetes.timeout", f"got {kube.timeout:g}s, allowed: less than "
                          f"discovery.refresh_interval ({discovery.refresh_interval:g}s)")
    if discovery.timeout >= discovery.interval:
        raise ConfigError("kubernetes.discovery.timeout", f"got {discovery.timeout:g}s, allowed: less than "
                          f"interval ({discovery.interval:g}s)")


def _check_pod_resources(kube: KubernetesConfig) -> None:
    pod_resources = kube.pod_resources
    if not pod_resources.enabled:
        return
    if not kube.discovery.enabled:  # the devices are mapped to the discovered engine pods, on their cadence
        raise ConfigError("kubernetes.pod_resources.enabled", "got true, allowed: true only with "
                          "kubernetes.discovery.enabled: true")
    if not (_installed("grpc") and _installed("google.protobuf")):
        raise ConfigError("kubernetes.pod_resources.enabled", "got true, allowed: false, or install gRPC: "
                          "pip install 'llm-cost-exporter[podresources]'")
    if not pod_resources.socket.startswith("/"):
        raise ConfigError("kubernetes.pod_resources.socket", f"got {show(pod_resources.socket)}, allowed: an absolute path")
    if not pod_resources.resources:
        raise ConfigError("kubernetes.pod_resources.resources", "got [], allowed: one or more resource names")
    room = kube.discovery.refresh_interval - kube.timeout  # the listing and this call share one refresh
    if 0 < room <= pod_resources.timeout:  # (room <= 0: kubernetes.timeout's own check names that key)
        raise ConfigError("kubernetes.pod_resources.timeout", f"got {pod_resources.timeout:g}s, allowed: less than "
                          f"discovery.refresh_interval - kubernetes.timeout ({room:g}s)")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing (google, for google.protobuf)
        return False


def _check_commitments(config: Config) -> None:
    pricing, names = config.pricing, set()
    if pricing.commitments and pricing.mode != "cloud":
        raise ConfigError("pricing.commitments", "got a list, allowed: commitments only with pricing.mode: cloud")
    for i, commitment in enumerate(pricing.commitments):
        key = f"pricing.commitments[{i}]"
        if not commitment.name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ConfigError(f"{key}.name", f"got {show(commitment.name)}, allowed: letters, digits, '-', '_', '.'")
        if commitment.name in names:
            raise ConfigError(f"{key}.name", f"got {show(commitment.name)}, allowed: a name not used by another commitment")
        names.add(commitment.name)
        if (commitment.hourly is None) == (commitment.discount is None):
            raise ConfigError(f"{key}.hourly", "allowed: exactly one of hourly (the effective price) or discount "
                              "(a fraction of the on-demand price)")
        if commitment.upfront and commitment.term_months is None:
            raise ConfigError(f"{key}.term_months", "required when upfront is set (the upfront is amortized over it)")
        if commitment.end is not None and commitment.end <= commitment.start:
            raise ConfigError(f"{key}.end", f"got {commitment.end}, allowed: a date after start ({commitment.start})")
        match = commitment.match
        if match.capacity_type is not None and match.capacity_type not in CAPACITY_TYPES:
            raise ConfigError(f"{key}.match.capacity_type", f"got {show(match.capacity_type)}, allowed: "
                              + ", ".join(CAPACITY_TYPES))
        if match.node_pool is not None and not config.kubernetes.enabled:
            raise ConfigError(f"{key}.match.node_pool", "allowed: only with kubernetes.enabled: true "
                              "(the node pool is read from the node's labels)")


def _check_spot_file(config: Config) -> None:
    """A spot file that exists must be valid at start; a missing one may be written later (the CronJob)."""
    path = config.pricing.cloud.spot_file
    if path is None:
        return
    try:
        spotprices.load(path, missing_ok=True)
    except spotprices.SpotFileError as err:
        raise ConfigError("pricing.cloud.spot_file", str(err)) from None
