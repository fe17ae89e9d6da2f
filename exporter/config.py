"""Typed configuration, validated at load.

The YAML file maps one-to-one onto the dataclasses below. Every problem raises ConfigError with a
message naming the key path, the bad value and what is allowed; the CLI prints that one line and
exits 2. Unknown keys are errors. See docs/configuration.md for the schema and a full example.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field

import yaml

from exporter.units import parse_duration, parse_size

DEFAULT_LISTEN_ADDRESS = ":9848"


class ConfigError(Exception):
    """Invalid configuration: the message names the key, the value and what is allowed."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


def _choices(*allowed, default=dataclasses.MISSING):
    return field(default=default, metadata={"choices": allowed})


def _number(default=dataclasses.MISSING, minimum=0.0, exclusive=False):
    return field(default=default, metadata={"min": minimum, "exclusive": exclusive})


def _duration(default: str):
    return field(default=parse_duration(default), metadata={"unit": "duration"})


def _size(default: str):
    return field(default=parse_size(default), metadata={"unit": "size"})


@dataclass(frozen=True)
class CloudPricing:
    hourly: float | None = _number(None)  # instance price per hour; None = look instance_type up in the catalog
    instance_type: str | None = None  # e.g. g5.12xlarge, a2-highgpu-1g, Standard_NC24ads_A100_v4
    region: str | None = None  # catalog region; None = the catalog's default region for the type
    price_multiplier: float = _number(1.0, exclusive=True)  # applied to catalog prices: spot, savings plans
    per_million_requests: float = _number(0.0)  # gateway / serverless glue fees


@dataclass(frozen=True)
class OwnedPricing:
    capex: float = _number(0.0)
    amortization_months: float = _number(36.0, exclusive=True)
    fixed_monthly: float = _number(0.0)  # colocation, support contracts, ...


@dataclass(frozen=True)
class EnergyPricing:
    electricity_per_kwh: float | None = _number(None)
    pue: float = _number(1.0, minimum=1.0)
    overhead_watts: float = _number(0.0)  # the rest of the box: CPUs, fans, NICs
    grid_co2e_grams_per_kwh: float | None = _number(None)  # grid carbon intensity, for emissions


@dataclass(frozen=True)
class Pricing:
    mode: str = _choices("cloud", "owned", default="cloud")
    currency: str = "USD"
    hours_per_month: float = _number(730.0, exclusive=True)
    cloud: CloudPricing = field(default_factory=CloudPricing)
    owned: OwnedPricing = field(default_factory=OwnedPricing)
    energy: EnergyPricing = field(default_factory=EnergyPricing)


@dataclass(frozen=True)
class SimulatedGpus:
    count: int = _number(4, minimum=1)
    product: str = "NVIDIA A10G"
    idle_watts: float = _number(60.0)
    max_watts: float = _number(300.0, exclusive=True)
    memory_bytes: int = _size("24GiB")
    energy_counter: bool = True  # False simulates a pre-Volta GPU: the exporter integrates power


@dataclass(frozen=True)
class GpuConfig:
    backend: str = _choices("nvml", "simulated", "none", default="nvml")
    interval: float = _duration("1s")
    simulated: SimulatedGpus = field(default_factory=SimulatedGpus)


@dataclass(frozen=True)
class EngineConfig:
    url: str
    name: str = "vllm"
    kind: str = _choices("vllm", default="vllm")
    interval: float = _duration("5s")
    timeout: float = _duration("3s")
    max_body_bytes: int = _size("4MiB")
    max_models: int = _number(50, minimum=1)
    gpus: list[int] | None = None  # GPU indices this engine holds; None = all GPUs of the node
    capacity_tokens_per_s: float | None = _number(None, exclusive=True)  # from a benchmark; None = observed peak
    apis: list[str] | None = None  # APIs to compare this engine's models with; None = compare.apis


@dataclass(frozen=True)
class ApiEntry:
    input_per_million: float = _number()
    output_per_million: float = _number()
    cached_input_per_million: float | None = _number(None)
    provider: str = "custom"


@dataclass(frozen=True)
class InstanceEntry:
    instance_type: str
    hourly: float = _number()
    spot_hourly: float | None = _number(None)  # used for nodes whose Kubernetes labels say spot
    provider: str = "custom"
    region: str = "default"
    gpus: int = _number(1, minimum=1)
    gpu: str = "unknown"


@dataclass(frozen=True)
class CatalogOverrides:
    apis: dict[str, ApiEntry] = field(default_factory=dict)  # added to (or replacing) bundled API prices
    instances: list[InstanceEntry] = field(default_factory=list)  # checked before the bundled ones


@dataclass(frozen=True)
class Compare:
    apis: list[str] = field(default_factory=lambda: ["gpt-4o-mini"])


@dataclass(frozen=True)
class KubernetesDiscovery:
    enabled: bool = False
    label_selector: str = "llmcost.io/scrape=true"  # which pods on this node are engines
    namespace: str | None = None  # None = all namespaces
    refresh_interval: float = _duration("30s")  # how often the pods on this node are listed
    interval: float = _duration("5s")  # scrape cadence of each discovered engine
    timeout: float = _duration("3s")  # whole response of one engine scrape, < interval


@dataclass(frozen=True)
class KubernetesConfig:
    enabled: bool = False
    node_name: str | None = None  # None = the NODE_NAME environment variable (downward API spec.nodeName)
    node_labels_pricing: bool = True  # price the node from its instance-type/region/capacity-type labels
    refresh_interval: float = _duration("5m")  # how often the node's labels are read
    timeout: float = _duration("5s")  # per request to the API server
    api_url: str | None = None  # None = in-cluster (service account); e.g. http://127.0.0.1:8001 (kubectl proxy)
    kubeconfig: str | None = None  # a kubeconfig file instead of the in-cluster service account
    discovery: KubernetesDiscovery = field(default_factory=KubernetesDiscovery)


@dataclass(frozen=True)
class Config:
    pricing: Pricing = field(default_factory=Pricing)
    gpu: GpuConfig = field(default_factory=GpuConfig)
    engines: list[EngineConfig] = field(default_factory=list)
    window: float = _duration("5m")  # the live windowed gauges (tokens/s, $/1M) look back this far
    compare: Compare = field(default_factory=Compare)
    catalog: CatalogOverrides = field(default_factory=CatalogOverrides)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    reload_interval: float = _duration("5s")  # how often the config file is checked for changes; 0s = never
    removed_engine_retention: float = _duration("10m")  # series of an engine that is gone stay this long
    # Resolved at load, not settable in the file:
    api_prices: dict = field(default_factory=dict, metadata={"internal": True})  # name -> ApiPrice
    # configured | catalog:<provider>/<type>/<region> | node_labels (resolved at run time from the node)
    hourly_source: str = field(default="configured", metadata={"internal": True})
    source_path: str | None = field(default=None, metadata={"internal": True})  # the file it was read from


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
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as err:
        raise ConfigError("config.file", f"cannot read {path!r}: {err.strerror}") from None


def load_bytes(data: bytes, path: str | None, environ: typing.Mapping[str, str] | None = None) -> Config:
    """Parse and validate a file's content (the reloader reads once, then hashes and parses the same bytes)."""
    try:
        raw = yaml.safe_load(data.decode("utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError("config.file", "not valid UTF-8") from None
    except yaml.YAMLError as err:
        raise ConfigError("config.file", f"not valid YAML: {err}".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise ConfigError("config.file", "the top level must be a mapping")
    return dataclasses.replace(from_dict(raw, environ), source_path=path)


def from_dict(raw: dict, environ: typing.Mapping[str, str] | None = None) -> Config:
    environ = os.environ if environ is None else environ
    raw = _apply_env(raw, environ)
    config = _build(Config, raw, "")
    if config.kubernetes.node_name is None and environ.get(NODE_NAME_VARIABLE):
        kube = dataclasses.replace(config.kubernetes, node_name=environ[NODE_NAME_VARIABLE])
        config = dataclasses.replace(config, kubernetes=kube)
    config = _resolve_prices(config)
    _check(config)
    return config


def node_labels_pricing(config: Config) -> bool:
    """Is the instance price taken from the node's labels at run time?"""
    return config.hourly_source == "node_labels"


def find_instance_price(config: Config, instance_type: str, region: str | None):
    """The catalog entry for `instance_type` (catalog.instances first, then the bundled catalog):
    the one for `region`, else the type's first entry in the first catalog that lists the type."""
    from exporter import catalog

    overrides = [catalog.InstancePrice(e.provider, e.instance_type, e.region, e.gpus, e.gpu, e.hourly, "config", "",
                                       e.spot_hourly) for e in config.catalog.instances]
    return catalog.find_instance(overrides, instance_type, region) or \
        catalog.find_instance(catalog.load_instances(), instance_type, region)


def _resolve_prices(config: Config) -> Config:
    """Fill the instance price from the catalog and look every compared API up."""
    from exporter import catalog

    cloud = config.pricing.cloud
    hourly_source = "configured"
    kube = config.kubernetes
    if cloud.hourly is None and cloud.instance_type:
        found = find_instance_price(config, cloud.instance_type, cloud.region)
        if found is None:
            raise ConfigError("pricing.cloud.instance_type",
                              f"got {_show(cloud.instance_type)}, not in the price catalog: set pricing.cloud.hourly "
                              "or add it under catalog.instances")
        cloud = dataclasses.replace(cloud, hourly=found.hourly * cloud.price_multiplier)
        hourly_source = f"catalog:{found.provider}/{found.instance_type}/{found.region}"
    elif cloud.hourly is None and config.pricing.mode == "cloud" and kube.enabled and kube.node_labels_pricing:
        hourly_source = "node_labels"  # the price is looked up when the node's labels have been read
    apis = dict(catalog.load_apis())
    for name, entry in config.catalog.apis.items():
        apis[name] = catalog.ApiPrice(name, entry.provider, entry.input_per_million, entry.output_per_million,
                                      entry.cached_input_per_million, "config", "")
    wanted = [("compare.apis", config.compare.apis)] + [
        (f"engines[{i}].apis", e.apis) for i, e in enumerate(config.engines) if e.apis is not None]
    for key, names in wanted:
        for j, name in enumerate(names):
            if name not in apis:
                raise ConfigError(f"{key}[{j}]", f"got {_show(name)}, allowed: an API in the catalog, e.g. "
                                  f"{', '.join(sorted(apis)[:6])} ... (or add it under catalog.apis)")
    pricing = dataclasses.replace(config.pricing, cloud=cloud)
    return dataclasses.replace(config, pricing=pricing, api_prices=apis, hourly_source=hourly_source)


def _apply_env(raw: dict, environ) -> dict:
    import copy

    raw = copy.deepcopy(raw)
    for var, path in ENV_OVERRIDES.items():
        if var not in environ:
            continue
        node = raw
        for i, key in enumerate(path[:-1]):
            nxt = path[i + 1]
            if isinstance(key, int):
                while len(node) <= key:
                    node.append({})
                node = node[key]
            else:
                node = node.setdefault(key, [] if isinstance(nxt, int) else {})
        node[path[-1]] = yaml.safe_load(environ[var])
    return raw


def _build(cls, data, path: str):
    if not isinstance(data, dict):
        raise ConfigError(path or "config", f"expected a mapping, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        key = _join(path, unknown[0])
        raise ConfigError(key, f"unknown key, allowed keys: {', '.join(fields)}")
    values = {}
    for name, spec in fields.items():
        key = _join(path, name)
        if name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise ConfigError(key, "required key is missing")
            continue
        values[name] = _convert(hints[name], data[name], key, spec.metadata)
    return cls(**values)


def _convert(hint, value, key: str, meta):
    optional = _is_optional(hint)
    if optional:
        if value is None:
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    unit = meta.get("unit")
    if unit:
        parse = parse_duration if unit == "duration" else parse_size
        try:
            return parse(value)
        except ValueError:
            example = "'500ms', '5s', '5m', '1h'" if unit == "duration" else "'4MiB', '512KiB', 1048576"
            raise ConfigError(key, f"got {_show(value)}, allowed: a {unit} such as {example}") from None
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if typing.get_origin(hint) is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"got {_show(value)}, allowed: a mapping")
        _, item = typing.get_args(hint)
        return {str(k): _convert(item, v, f"{key}.{k}", {}) for k, v in value.items()}
    if typing.get_origin(hint) is list:
        if not isinstance(value, list):
            raise ConfigError(key, f"got {_show(value)}, allowed: a list")
        (item,) = typing.get_args(hint)
        return [_convert(item, v, f"{key}[{i}]", {}) for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"got {_show(value)}, allowed: true, false")
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise ConfigError(key, f"got {_show(value)}, allowed: a number")
        if hint is int and not float(value).is_integer():
            raise ConfigError(key, f"got {_show(value)}, allowed: a whole number")
        _check_range(value, key, meta)
        return hint(value)
    if hint is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(key, f"got {_show(value)}, allowed: a non-empty string")
        choices = meta.get("choices")
        if choices and value not in choices:
            raise ConfigError(key, f"got {_show(value)}, allowed: {', '.join(choices)}")
        return value
    raise TypeError(f"no converter for {hint}")  # a programming error, not bad input


def _check_range(value, key, meta):
    minimum = meta.get("min")
    if minimum is None:
        return
    if meta.get("exclusive") and value <= minimum:
        raise ConfigError(key, f"got {_show(value)}, allowed: a number > {minimum:g}")
    if value < minimum:
        raise ConfigError(key, f"got {_show(value)}, allowed: a number >= {minimum:g}")


def _check(config: Config) -> None:
    """Rules that span several keys."""
    pricing = config.pricing
    if pricing.mode == "cloud" and pricing.cloud.hourly is None and not node_labels_pricing(config):
        raise ConfigError("pricing.cloud.hourly", "required when pricing.mode is cloud, unless "
                          "pricing.cloud.instance_type or the node's labels (kubernetes.enabled) give the price "
                          "(or set LLMCOST_INSTANCE_HOURLY)")
    if pricing.mode == "owned" and pricing.energy.electricity_per_kwh is None:
        raise ConfigError("pricing.energy.electricity_per_kwh", "required when pricing.mode is owned")
    sim = config.gpu.simulated
    if sim.max_watts <= sim.idle_watts:
        raise ConfigError("gpu.simulated.max_watts", f"got {sim.max_watts:g}, allowed: a number > idle_watts ({sim.idle_watts:g})")
    names = set()
    for i, engine in enumerate(config.engines):
        if not engine.url.startswith(("http://", "https://")):
            raise ConfigError(f"engines[{i}].url", f"got {_show(engine.url)}, allowed: an http:// or https:// URL")
        if engine.name in names:
            raise ConfigError(f"engines[{i}].name", f"got {_show(engine.name)}, allowed: a name not used by another engine")
        names.add(engine.name)
        if engine.timeout >= engine.interval:
            raise ConfigError(f"engines[{i}].timeout", f"got {engine.timeout:g}s, allowed: less than interval ({engine.interval:g}s)")
        for j, gpu in enumerate(engine.gpus or []):
            if gpu < 0:
                raise ConfigError(f"engines[{i}].gpus[{j}]", f"got {gpu}, allowed: a GPU index >= 0")
        if config.kubernetes.discovery.enabled and "/" in engine.name:
            raise ConfigError(f"engines[{i}].name", f"got {_show(engine.name)}, allowed: a name without '/' "
                              "(namespace/pod names are the discovered engines')")
    _check_kubernetes(config.kubernetes)


def _check_kubernetes(kube: KubernetesConfig) -> None:
    discovery = kube.discovery
    if discovery.enabled and not kube.enabled:
        raise ConfigError("kubernetes.discovery.enabled", "got True, allowed: true only with kubernetes.enabled: true")
    if not kube.enabled:
        return
    if not kube.node_name:
        raise ConfigError("kubernetes.node_name", "required when kubernetes.enabled is true: set it, or the "
                          f"{NODE_NAME_VARIABLE} environment variable (downward API fieldRef spec.nodeName)")
    if kube.api_url is not None and not kube.api_url.startswith(("http://", "https://")):
        raise ConfigError("kubernetes.api_url", f"got {_show(kube.api_url)}, allowed: an http:// or https:// URL")
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


def _is_optional(hint) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _show(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)
