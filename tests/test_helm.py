"""The Helm chart (helm/llm-cost-exporter), the sidecar example and the Dockerfile.

Every ci/*-values.yaml scenario (and docs/examples/vllm-sidecar-values.yaml) is rendered once with
real Helm 3.18 and Helm 4 binaries (scripts/install-helm.sh puts them under .tools/ and
scripts/test runs it; without them the tests fail, they install nothing) and linted with `helm lint --strict`. Each rendered object is
validated offline against the Kubernetes 1.30 and newest schemas (kubernetes-validate, strict), the
prometheus-operator objects against the CRD schemas (@kubernetes-models/prometheus-operator, run
by node). Then the objects are asserted on: Pod Security "restricted", RBAC scope, selectors and
ports that meet, the PrometheusRule equal to the rule file, the dashboards equal to the committed
JSON, the configuration accepted by the exporter's own loader.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

import exporter
from exporter.config import ConfigError, from_dict

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "llm-cost-exporter"
TOOLS = ROOT / ".tools"
HELMS = {"helm3": TOOLS / "helm3", "helm4": TOOLS / "helm4"}
RULE_FILE = ROOT / "rules" / "llm-cost-exporter.rules.yml"
DASHBOARDS = ROOT / "dashboards" / "json"
EXAMPLE = ROOT / "docs" / "examples" / "vllm-sidecar.yaml"
EXAMPLE_VALUES = ROOT / "docs" / "examples" / "vllm-sidecar-values.yaml"
CRD_VALIDATOR = ROOT / "tests" / "data" / "helm" / "validate-crds.mjs"

# Scenario name -> (values file, release, namespace). The example's release name is the one that
# docs/examples/vllm-sidecar.yaml refers to.
SCENARIOS = {p.name.removesuffix("-values.yaml"): (p, "prod", "monitoring") for p in sorted((CHART / "ci").glob("*-values.yaml"))}
SCENARIOS["docs-example"] = (EXAMPLE_VALUES, "llm-cost-exporter", "inference")
KUBE_VERSIONS = ("1.30", kubernetes_validate.latest_version())
RULE_SELECTOR = re.compile(r".*llm-?cost.*")  # rules/config.yaml `selector`: job=~".*llm-?cost.*"
MONITORING = "monitoring.coreos.com/"  # prometheus-operator's group: v1 monitors and rules, v1alpha1 AlertmanagerConfig
ROUTING = ROOT / "docs" / "examples" / "alertmanager.yml"  # the routing tests/test_alertmanager.py runs

# What each scenario renders: kind -> count. A new scenario must say what it expects.
EXPECTED_KINDS = {
    "defaults": {"ServiceAccount": 1, "ConfigMap": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "Service": 1, "DaemonSet": 1},
    "sidecar": {"ConfigMap": 1, "Service": 1, "ServiceMonitor": 1},
    "owned-hardware": {"ServiceAccount": 1, "ConfigMap": 1, "Service": 1, "DaemonSet": 1},
    "all-monitors": {"ServiceAccount": 1, "ConfigMap": 4, "ClusterRole": 1, "ClusterRoleBinding": 1, "Service": 1,
                     "DaemonSet": 1, "ServiceMonitor": 1, "PodMonitor": 1, "PrometheusRule": 1, "CronJob": 1},
    "discovery": {"ServiceAccount": 1, "ConfigMap": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "Service": 1,
                  "DaemonSet": 1, "PodMonitor": 1},
    "web-config": {"ServiceAccount": 1, "ConfigMap": 1, "Secret": 1, "ClusterRole": 1, "ClusterRoleBinding": 1,
                   "Role": 1, "RoleBinding": 1, "Service": 1, "DaemonSet": 1, "ServiceMonitor": 1},
    "pod-resources": {"ServiceAccount": 1, "ConfigMap": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "Service": 1,
                      "DaemonSet": 1},
    "docs-example": {"ConfigMap": 4, "Service": 1, "ServiceMonitor": 1, "PrometheusRule": 1},
    "alerting": {"ServiceAccount": 1, "ConfigMap": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "Service": 1,
                 "DaemonSet": 1, "PrometheusRule": 1, "AlertmanagerConfig": 1},
    # the spot price ConfigMap and its CronJob, with the CronJob's own ServiceAccount and Role
    "spot-prices": {"ServiceAccount": 2, "ConfigMap": 2, "ClusterRole": 1, "ClusterRoleBinding": 1, "Service": 1,
                    "DaemonSet": 1, "Role": 1, "RoleBinding": 1, "CronJob": 1},
}
# (apiGroup, resource, verb) the exporter may be granted, per scenario: get its node (node-label
# pricing), list pods and get their namespaces (discovery: the namespace's tier annotation).
# Nothing else, ever.
EXPECTED_RBAC = {
    "defaults": {("ClusterRole", "", "nodes", "get")},
    "sidecar": set(),
    "owned-hardware": set(),
    "all-monitors": {("ClusterRole", "", "nodes", "get")},
    "discovery": {("ClusterRole", "", "nodes", "get"), ("ClusterRole", "", "pods", "list"),
                  ("ClusterRole", "", "namespaces", "get")},
    "web-config": {("ClusterRole", "", "nodes", "get"), ("Role", "", "pods", "list"), ("Role", "", "namespaces", "get")},
    "pod-resources": {("ClusterRole", "", "nodes", "get"), ("ClusterRole", "", "pods", "list"),
                      ("ClusterRole", "", "namespaces", "get")},  # the kubelet's socket is no API
    "docs-example": set(),
    "alerting": {("ClusterRole", "", "nodes", "get")},
    "spot-prices": {("ClusterRole", "", "nodes", "get")},  # the CronJob's own account: test_spot_prices_cronjob_*
}
# The Pod Security level each scenario's exporter pod needs, when not "restricted": the exact GPU
# mapping mounts the kubelet's socket (hostPath) and connects to it as root (docs/helm.md).
POD_SECURITY = {"pod-resources": "privileged"}


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helms() -> dict[str, Path]:
    """Helm 3 and Helm 4 under .tools/ (and node with the CRD schemas), which scripts/test installs
    through scripts/install-helm.sh. A test never installs anything: missing tools fail it."""
    missing = [str(p.relative_to(ROOT)) for p in (*HELMS.values(), TOOLS / "node_modules") if not p.exists()]
    missing += [] if shutil.which("node") else ["node (on PATH)"]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run ./scripts/install-helm.sh (./scripts/test runs it)")
    return HELMS


def helm(binary: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "HELM_CACHE_HOME": str(TOOLS / "cache"), "HELM_CONFIG_HOME": str(TOOLS / "config"),
                               "HELM_DATA_HOME": str(TOOLS / "data")})


def template(binary: Path, release: str, namespace: str, *args: str) -> subprocess.CompletedProcess:
    return helm(binary, "template", release, str(CHART), "--namespace", namespace, *args)


def parse(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module")
def rendered(helms) -> dict[tuple[str, str], list[dict]]:
    """(helm, scenario) -> the rendered objects, each scenario rendered once per Helm version."""
    jobs = [(h, s) for h in helms for s in SCENARIOS]

    def render(job):
        h, s = job
        values, release, namespace = SCENARIOS[s]
        result = template(helms[h], release, namespace, "-f", str(values))
        assert result.returncode == 0, f"{h} template {s}: {result.stderr}"
        return parse(result.stdout)

    with ThreadPoolExecutor(4) as pool:
        return dict(zip(jobs, pool.map(render, jobs)))


@pytest.fixture(scope="module")
def objects(rendered) -> dict[str, list[dict]]:
    """scenario -> the objects (Helm 3's; test_helm3_and_helm4_render_the_same holds them equal)."""
    return {s: rendered[("helm3", s)] for s in SCENARIOS}


def one(objs: list[dict], kind: str) -> dict:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def all_of(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def example_deployment() -> dict:
    docs = parse(EXAMPLE.read_text())
    assert [d["kind"] for d in docs] == ["Deployment"]
    return docs[0]


def pod_spec_of(objs: list[dict], scenario: str) -> dict:
    """The pod template that carries the exporter: the DaemonSet's, or the example Deployment's."""
    workload = example_deployment() if SCENARIOS[scenario][0] == EXAMPLE_VALUES or scenario == "sidecar" else one(objs, "DaemonSet")
    return workload["spec"]["template"]


def exporter_container(pod_template: dict) -> dict:
    containers = pod_template["spec"]["containers"]
    return next(c for c in containers if "llm-cost-exporter" in c["image"])


def values_of(scenario: str) -> dict:
    return yaml.safe_load(SCENARIOS[scenario][0].read_text()) or {}


def default_values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def helm_merge(base: dict, override: dict) -> dict:
    """Values as Helm merges them: maps deeply, anything else replaced, null removes the key."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = helm_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def merged_values(scenario: str) -> dict:
    return helm_merge(default_values(), values_of(scenario))


# --- tools, lint, equal renders -----------------------------------------------------------------


@pytest.mark.integration
def test_helm_binaries_are_helm3_and_helm4(helms):
    versions = {h: helm(p, "version", "--short").stdout.strip() for h, p in helms.items()}
    assert versions["helm3"].startswith("v3.18."), versions
    assert versions["helm4"].startswith("v4."), versions


@pytest.mark.integration
def test_helm_lint_strict_every_scenario(helms):
    jobs = [(h, s) for h in helms for s in SCENARIOS]

    def lint(job):
        h, s = job
        result = helm(helms[h], "lint", "--strict", str(CHART), "-f", str(SCENARIOS[s][0]))
        return job, result

    with ThreadPoolExecutor(4) as pool:
        failures = [f"{h} {s}:\n{r.stdout}{r.stderr}" for (h, s), r in pool.map(lint, jobs) if r.returncode != 0]
    assert not failures, "\n".join(failures)


@pytest.mark.integration
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm3_and_helm4_render_the_same(rendered, scenario):
    assert rendered[("helm3", scenario)] == rendered[("helm4", scenario)]


@pytest.mark.integration
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_kinds(objects, scenario):
    kinds: dict[str, int] = {}
    for obj in objects[scenario]:
        kinds[obj["kind"]] = kinds.get(obj["kind"], 0) + 1
    assert kinds == EXPECTED_KINDS[scenario]
    names = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects[scenario]]
    assert len(names) == len(set(names)), "duplicate objects"


# --- schemas ----------------------------------------------------------------------------------------


@pytest.mark.integration
def test_every_object_validates_against_kubernetes_schemas(objects):
    """Core objects (and the example Deployment) against the 1.30 and the newest schemas, strict:
    an unknown or misspelt field fails."""
    core = [(s, o) for s, objs in objects.items() for o in objs if not o["apiVersion"].startswith(MONITORING)]
    core.append(("example", example_deployment()))
    errors = []
    for version in KUBE_VERSIONS:
        for scenario, obj in core:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                path = ".".join(str(p) for p in err.path)
                errors.append(f"{version} {scenario} {obj['kind']}/{obj['metadata']['name']}: {path}: {err.message}")
    assert not errors, "\n".join(errors)
    crd_kinds = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "AlertmanagerConfig"}
    assert len(core) == 1 + sum(n for kinds in EXPECTED_KINDS.values() for k, n in kinds.items() if k not in crd_kinds)


def validate_crds(objs: list[dict]) -> list[dict]:
    result = subprocess.run(["node", str(CRD_VALIDATOR), str(TOOLS)], input=json.dumps(objs), capture_output=True,
                            text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.integration
def test_prometheus_operator_objects_validate_against_the_crd_schemas(helms, objects):
    crds = [o for objs in objects.values() for o in objs if o["apiVersion"].startswith(MONITORING)]
    assert {o["kind"] for o in crds} == {"ServiceMonitor", "PodMonitor", "PrometheusRule", "AlertmanagerConfig"}
    # The validator does reject: a rule without expr, a port that is not a string.
    bad_rule = copy.deepcopy(next(o for o in crds if o["kind"] == "PrometheusRule"))
    del bad_rule["spec"]["groups"][0]["rules"][0]["expr"]
    bad_monitor = copy.deepcopy(next(o for o in crds if o["kind"] == "ServiceMonitor"))
    bad_monitor["spec"]["endpoints"][0]["port"] = 9848
    bad_routing = copy.deepcopy(next(o for o in crds if o["kind"] == "AlertmanagerConfig"))
    bad_routing["spec"]["inhibitRules"][0]["equal"] = "job"  # a list in the CRD
    results = validate_crds(crds + [bad_rule, bad_monitor, bad_routing])
    assert [r for r in results[:-3] if r["error"]] == []
    assert all(r["error"] for r in results[-3:]), results[-3:]


# --- security ---------------------------------------------------------------------------------------

RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}


def restricted_violations(pod_template: dict, containers: list[dict]) -> list[str]:
    """Pod Security Standards, "restricted" profile, for the given containers of a pod template."""
    spec, bad = pod_template["spec"], []
    pod_sc = spec.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            bad.append(key)
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            bad.append(f"volume {volume['name']}: {kinds}")
    for c in containers:
        sc = c.get("securityContext", {})
        name = c["name"]
        if sc.get("privileged"):
            bad.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation must be false")
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            bad.append(f"{name}: runAsNonRoot")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            bad.append(f"{name}: runAsUser 0")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{name}: seccompProfile {seccomp}")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []) or set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            bad.append(f"{name}: capabilities {caps}")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            bad.append(f"{name}: hostPort")
        # Not in the profile, but our own default: nothing written outside /tmp.
        if sc.get("readOnlyRootFilesystem") is not True:
            bad.append(f"{name}: readOnlyRootFilesystem")
    return bad


BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                         "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}


def baseline_violations(pod_template: dict, containers: list[dict]) -> list[str]:
    """Pod Security Standards, "baseline" profile (the checks that apply to these pods): no host
    namespaces, hostPath volumes, host ports, privileged containers, capabilities beyond the default
    set, or an Unconfined seccomp profile."""
    spec, bad = pod_template["spec"], []
    bad += [key for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    bad += [f"volume {v['name']}: hostPath" for v in spec.get("volumes", []) if "hostPath" in v]
    pod_seccomp = spec.get("securityContext", {}).get("seccompProfile", {}).get("type")
    for c in containers:
        sc = c.get("securityContext", {})
        if sc.get("privileged"):
            bad.append(f"{c['name']}: privileged")
        if set(sc.get("capabilities", {}).get("add", [])) - BASELINE_CAPABILITIES:
            bad.append(f"{c['name']}: capabilities")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            bad.append(f"{c['name']}: hostPort")
        if "Unconfined" in (pod_seccomp, sc.get("seccompProfile", {}).get("type")):
            bad.append(f"{c['name']}: seccomp Unconfined")
    return bad


def pod_security_level(pod_template: dict, containers: list[dict]) -> str:
    """The least privileged Pod Security level that admits the pod."""
    if not restricted_violations(pod_template, containers):
        return "restricted"
    return "baseline" if not baseline_violations(pod_template, containers) else "privileged"


@pytest.mark.integration
@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s not in POD_SECURITY])
def test_exporter_pod_meets_pod_security_restricted(objects, scenario):
    pod = pod_spec_of(objects[scenario], scenario)
    container = exporter_container(pod)
    if scenario in ("sidecar", "docs-example"):  # the example's vLLM container is the user's business
        pod = {"spec": {k: v for k, v in pod["spec"].items() if k != "volumes"}}
    assert restricted_violations(pod, [container]) == []
    assert pod_security_level(pod, [container]) == "restricted"
    assert "nvidia.com/gpu" not in json.dumps(container.get("resources", {})), "the exporter must not take a GPU"


@pytest.mark.integration
@pytest.mark.parametrize("scenario", POD_SECURITY)
def test_the_pod_resources_profile_needs_privileged_and_nothing_more(objects, scenario):
    """Explicitly not "restricted" (nor "baseline"): a read-only hostPath of the kubelet's
    pod-resources directory, and root to connect to its socket. Nothing else is loosened: no
    privileged container, no capability, no privilege escalation, read-only root filesystem."""
    pod = pod_spec_of(objects[scenario], scenario)
    container = exporter_container(pod)
    assert pod_security_level(pod, [container]) == POD_SECURITY[scenario]
    assert restricted_violations(pod, [container]) == [
        "volume pod-resources: {'hostPath'}", "exporter: runAsNonRoot", "exporter: runAsUser 0"]
    assert baseline_violations(pod, [container]) == ["volume pod-resources: hostPath"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["pod-resources"]["hostPath"] == {"path": "/var/lib/kubelet/pod-resources", "type": "Directory"}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["pod-resources"] == {"name": "pod-resources", "mountPath": "/var/lib/kubelet/pod-resources",
                                       "readOnly": True}
    sc = container["securityContext"]
    assert (sc["runAsUser"], sc["runAsGroup"], sc["runAsNonRoot"]) == (0, 0, False)
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False and sc["readOnlyRootFilesystem"] is True
    # The same values with the profile off: "restricted" again, and the exporter does not ask the kubelet.
    result = template(HELMS["helm4"], "prod", "monitoring", "-f", str(SCENARIOS[scenario][0]),
                      "--set", "podResources.enabled=false")
    assert result.returncode == 0, result.stderr
    plain = one(parse(result.stdout), "DaemonSet")["spec"]["template"]
    assert pod_security_level(plain, [exporter_container(plain)]) == "restricted"
    config = from_dict(yaml.safe_load(one(parse(result.stdout), "ConfigMap")["data"]["config.yml"]),
                       environ={"NODE_NAME": "gpu-node-1"})
    assert config.kubernetes.pod_resources.enabled is False


@pytest.mark.integration
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rbac_is_minimal_and_the_token_mounted_only_when_needed(objects, scenario):
    objs = [o for o in objects[scenario] if not o["metadata"]["name"].endswith("-spot-prices")]
    granted = set()
    for role in all_of(objs, "ClusterRole") + all_of(objs, "Role"):
        for rule in role["rules"]:
            assert "resourceNames" not in rule and "nonResourceURLs" not in rule
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        granted.add((role["kind"], group, resource, verb))
    assert granted == EXPECTED_RBAC[scenario]
    role_names = {(r["kind"], r["metadata"]["name"]) for r in all_of(objs, "ClusterRole") + all_of(objs, "Role")}
    accounts = all_of(objs, "ServiceAccount")
    if not accounts:  # sidecar mode without a Kubernetes feature: nothing to bind
        assert not granted and not all_of(objs, "DaemonSet")
        return
    (account,) = accounts
    assert account["automountServiceAccountToken"] is False
    for binding in all_of(objs, "ClusterRoleBinding") + all_of(objs, "RoleBinding"):
        assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) in role_names
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                        "namespace": SCENARIOS[scenario][2]}]
    for role in all_of(objs, "Role"):
        assert role["metadata"]["namespace"] == values_of(scenario)["kubernetes"]["discovery"]["namespace"]
    daemonsets = all_of(objs, "DaemonSet")
    for ds in daemonsets:
        spec = ds["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == account["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is bool(granted)


# --- selectors, ports, job names ------------------------------------------------------------------


def matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.integration
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_selectors_ports_and_job_names_meet(objects, scenario):
    objs = objects[scenario]
    namespace = SCENARIOS[scenario][2]
    pod = pod_spec_of(objs, scenario)
    pod_labels = pod["metadata"]["labels"]
    ports = {p["name"]: p["containerPort"] for p in exporter_container(pod)["ports"]}
    for ds in all_of(objs, "DaemonSet"):
        assert matches(ds["spec"]["selector"]["matchLabels"], pod_labels)
    service = one(objs, "Service")
    assert matches(service["spec"]["selector"], pod_labels), "the Service selects no exporter pod"
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] in ports
    jobs = []
    for monitor in all_of(objs, "ServiceMonitor"):
        spec = monitor["spec"]
        assert matches(spec["selector"]["matchLabels"], service["metadata"]["labels"])
        assert namespace in spec["namespaceSelector"]["matchNames"]
        assert [e["port"] for e in spec["endpoints"]] == [service_port["name"]]
        jobs.append(service["metadata"]["labels"][spec["jobLabel"]] if "jobLabel" in spec else service["metadata"]["name"])
    for monitor in all_of(objs, "PodMonitor"):
        spec = monitor["spec"]
        assert matches(spec["selector"]["matchLabels"], pod_labels)
        assert namespace in spec["namespaceSelector"]["matchNames"]
        assert [e["port"] for e in spec["podMetricsEndpoints"]] == [service_port["targetPort"]]
        jobs.append(pod_labels[spec["jobLabel"]] if "jobLabel" in spec else f"{monitor['metadata']['namespace']}/{monitor['metadata']['name']}")
    for job in jobs:  # the rules select the exporter's series by job
        assert RULE_SELECTOR.fullmatch(job), job
    for probe in ("livenessProbe", "readinessProbe"):
        handler = exporter_container(pod)[probe]
        port = (handler.get("httpGet") or handler.get("tcpSocket"))["port"]
        assert port in ports


@pytest.mark.integration
def test_monitors_and_probes_follow_the_web_config(objects):
    objs = objects["web-config"]
    container = exporter_container(one(objs, "DaemonSet")["spec"]["template"])
    assert "--web.config.file=/etc/llm-cost-exporter-web/web-config.yml" in container["args"]
    # Basic auth covers /healthz: the probes fall back to TCP.
    assert container["livenessProbe"]["tcpSocket"] == {"port": "llmcost-metrics"}
    secret = one(objs, "Secret")
    web = yaml.safe_load(secret["stringData"]["web-config.yml"])
    assert web == values_of("web-config")["webConfig"]["config"]
    volumes = {v["name"]: v for v in one(objs, "DaemonSet")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["web-config"]["secret"]["secretName"] == secret["metadata"]["name"]
    endpoint = one(objs, "ServiceMonitor")["spec"]["endpoints"][0]
    # discovered engines' series carry their pod's namespace/pod: not renamed to exported_*
    assert endpoint["honorLabels"] is True
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}
    assert endpoint["basicAuth"]["password"] == {"name": "llm-cost-exporter-scrape", "key": "password"}
    # TLS without basic auth: HTTPS probes on /healthz.
    result = template(HELMS["helm4"], "t", "default", "--set", "webConfig.enabled=true", "--set", "webConfig.tls=true",
                      "--set", "webConfig.existingSecret=mine")
    assert result.returncode == 0, result.stderr
    objs = parse(result.stdout)
    container = exporter_container(one(objs, "DaemonSet")["spec"]["template"])
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "llmcost-metrics", "scheme": "HTTPS"}
    assert not all_of(objs, "Secret")
    volumes = one(objs, "DaemonSet")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "web-config", "secret": {"secretName": "mine"}} in volumes
    # Without a web config: plain HTTP, no flag.
    container = exporter_container(pod_spec_of(objects["defaults"], "defaults"))
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "llmcost-metrics", "scheme": "HTTP"}
    assert not any(a.startswith("--web.config.file") for a in container["args"])


@pytest.mark.integration
def test_daemonset_defaults_target_gpu_nodes(objects):
    ds = one(objects["defaults"], "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert {"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]} in [e for t in terms for e in t["matchExpressions"]]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    container = exporter_container(ds["spec"]["template"])
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["NVIDIA_VISIBLE_DEVICES"]["value"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"]["value"] == "utility"
    assert container["args"][:3] == ["run", "--config.file=/etc/llm-cost-exporter/config.yml", "--web.listen-address=:9848"]
    assert container["ports"] == [{"name": "llmcost-metrics", "containerPort": 9848, "protocol": "TCP"}]
    assert "priorityClassName" not in spec and "runtimeClassName" not in spec
    assert set(ds["spec"]["template"]["metadata"]["annotations"]) == {"checksum/restart-config"}
    owned = one(objects["owned-hardware"], "DaemonSet")["spec"]["template"]["spec"]
    assert owned["priorityClassName"] == "system-node-critical" and owned["runtimeClassName"] == "nvidia"
    assert owned["nodeSelector"] == {"node-role.example.com/inference": "true"} and "affinity" not in owned
    rolled = one(objects["all-monitors"], "DaemonSet")["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", rolled["checksum/config"])


@pytest.mark.integration
def test_pods_roll_only_for_keys_the_exporter_cannot_reload(helms):
    """The exporter reloads config.yml itself, except exporter/reload.py RESTART_KEYS: the pods carry
    a checksum of those keys, so a price change keeps them and a currency change rolls them."""
    from exporter.reload import RESTART_KEYS

    assert RESTART_KEYS == ("pricing.mode", "pricing.currency", "gpu.backend", "gpu.simulated", "window", "kubernetes")
    variants = {
        "defaults": (), "price": ("config.pricing.cloud.hourly=3.1",), "engines": ("config.engines[0].url=http://x:8000/metrics",),
        "mode": ("config.pricing.mode=owned",), "currency": ("config.pricing.currency=EUR",), "backend": ("config.gpu.backend=none",),
        "simulated": ("config.gpu.simulated.count=2",), "window": ("config.window=10m",), "discovery": ("kubernetes.discovery.enabled=true",),
    }

    def checksum(args):
        result = template(helms["helm4"], "t", "default", *[a for arg in args for a in ("--set", arg)])
        assert result.returncode == 0, result.stderr
        return one(parse(result.stdout), "DaemonSet")["spec"]["template"]["metadata"]["annotations"]["checksum/restart-config"]

    with ThreadPoolExecutor(4) as pool:
        sums = dict(zip(variants, pool.map(checksum, variants.values())))
    assert sums["price"] == sums["engines"] == sums["defaults"]
    restart = [sums[k] for k in ("mode", "currency", "backend", "simulated", "window", "discovery")]
    assert sums["defaults"] not in restart and len(set(restart)) == len(restart)


@pytest.mark.integration
def test_sidecar_mode_renders_no_workload(objects):
    for scenario in ("sidecar", "docs-example"):
        kinds = {o["kind"] for o in objects[scenario]}
        assert not kinds & {"DaemonSet", "Deployment", "ClusterRole", "Role"}
        assert one(objects[scenario], "Service")["spec"]["selector"] == values_of(scenario)["sidecar"]["podSelector"]


# --- configuration ------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_config_file_is_accepted_by_the_exporter(objects, scenario):
    """config.yml as the exporter reads it, with the container's literal environment and NODE_NAME."""
    configmap = next(o for o in objects[scenario] if o["kind"] == "ConfigMap" and "config.yml" in o.get("data", {}))
    raw = yaml.safe_load(configmap["data"]["config.yml"])
    values = merged_values(scenario)
    if values["spotPrices"]["enabled"]:  # the file the CronJob refreshes, where the DaemonSet mounts it
        expected_config = helm_merge(values["config"], {"pricing": {"cloud": {
            "spot_file": "/etc/llm-cost-exporter-spot/spot-prices.yaml"}}})
    else:
        expected_config = values["config"]
    assert {k: v for k, v in raw.items() if k != "kubernetes"} == expected_config
    kube = values["kubernetes"]
    if kube["nodeLabelsPricing"] or kube["discovery"]["enabled"]:
        expected = {"enabled": True, "node_labels_pricing": kube["nodeLabelsPricing"],
                    "discovery": {"enabled": kube["discovery"]["enabled"], "label_selector": kube["discovery"]["labelSelector"]}}
        if kube["discovery"]["namespace"]:
            expected["discovery"]["namespace"] = kube["discovery"]["namespace"]
        if values["podResources"]["enabled"]:  # the socket where the chart mounts the kubelet's directory
            expected["pod_resources"] = {"enabled": True, "socket": "/var/lib/kubelet/pod-resources/kubelet.sock"}
        assert raw["kubernetes"] == helm_merge(kube["extraConfig"], expected)
    else:
        assert "kubernetes" not in raw
    environ = {"NODE_NAME": "gpu-node-1"}
    for e in exporter_container(pod_spec_of(objects[scenario], scenario)).get("env", []):
        if "value" in e:
            environ[e["name"]] = e["value"]
    try:
        from_dict(raw, environ=environ)
    except ConfigError as err:
        pytest.fail(f"the exporter rejects the rendered config.yml: {err}")


@pytest.mark.integration
def test_config_and_values_errors_fail_the_render(helms):
    cases = {
        ("--set", "mode=both"): "mode",
        ("--set", "config.kubernetes.enabled=true"): "config.kubernetes",
        ("--set", "mode=sidecar"): "sidecar.podSelector",
        ("--set", "webConfig.enabled=true"): "webConfig",
        ("--set", "prometheusRule.enabled=true", "--set", "prometheusRule.rules.NoSuchAlert.enabled=false"): "NoSuchAlert",
        ("--set", "prometheusRule.enabled=true", "--set", "prometheusRule.rules.engine:llmcost_tokens:rate5m.severity=page"):
            "recording rule",
        ("--set", "prometheusRule.rules.LLMCostGPULost.for=soon"): "for",
        ("--set", "serviceMonitor.enable=true"): "enable",
        ("--set", "portName=llm-cost-exporter-metrics"): "portName",
        ("--set", "serviceMonitor.enabled=true", "--set", "service.enabled=false"): "service.enabled",
        ("--set", "podResources.enabled=true"): "needs kubernetes.discovery.enabled",
        ("--set", "podResources.enabled=true", "--set", "kubernetes.discovery.enabled=true", "--set", "mode=sidecar",
         "--set", "sidecar.podSelector.app=vllm"): "podResources.enabled: only in daemonset mode",
        ("--set", "kubernetes.extraConfig.pod_resources.enabled=true"): "set podResources.enabled instead",
        ("--set", "podResources.hostPath=var/lib/kubelet/pod-resources"): "hostPath",
    }
    jobs = [(h, args) for h in helms for args in cases]

    def run(job):
        h, args = job
        return job, template(helms[h], "t", "default", *args)

    with ThreadPoolExecutor(4) as pool:
        for (h, args), result in pool.map(run, jobs):
            assert result.returncode != 0, f"{h} {args} rendered"
            assert cases[args] in result.stderr, f"{h} {args}: {result.stderr}"


# --- rules and dashboards ---------------------------------------------------------------------------


def expected_groups(values: dict, namespace: str = "") -> list[dict]:
    """The rule file's groups with the chart's per-rule overrides applied, as the template does;
    with alertmanagerConfig.enabled, every alert labelled with `namespace` (its AlertmanagerConfig's)."""
    rule_values = values.get("prometheusRule", {})
    overrides = {**default_values()["prometheusRule"]["rules"], **rule_values.get("rules", {})}
    groups = []
    for group in yaml.safe_load(RULE_FILE.read_text())["groups"]:
        rules = []
        for rule in group["rules"]:
            o = overrides.get(rule.get("alert") or rule["record"], {})
            if o.get("enabled") is False:
                continue
            rule = copy.deepcopy(rule)
            if "alert" in rule:
                labels = {**rule.get("labels", {}), **rule_values.get("alertLabels", {}), **o.get("labels", {})}
                if "severity" in o:
                    labels["severity"] = o["severity"]
                if values.get("alertmanagerConfig", {}).get("enabled"):
                    labels["namespace"] = namespace
                if labels:
                    rule["labels"] = labels
                if "for" in o:
                    rule["for"] = o["for"]
            rules.append(rule)
        if rules:
            groups.append({**group, "rules": rules})
    return groups


@pytest.mark.integration
@pytest.mark.parametrize("scenario", ["all-monitors", "docs-example"])
def test_prometheus_rule_is_the_rule_file(objects, scenario):
    rule = one(objects[scenario], "PrometheusRule")
    values = values_of(scenario)
    assert rule["spec"]["groups"] == expected_groups(values)
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    if scenario == "docs-example":  # no overrides: exactly the file
        assert rule["spec"]["groups"] == yaml.safe_load(RULE_FILE.read_text())["groups"]
    else:
        alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
        assert "LLMCostGPULost" not in alerts
        assert alerts["LLMCostGPUsIdle"]["for"] == "6h" and alerts["LLMCostGPUsIdle"]["labels"]["severity"] == "info"
        assert alerts["LLMCostSelfHostingDearerThanAPI"]["labels"] == {"severity": "critical", "team": "ml-platform", "page": "true"}
        assert all(a["labels"]["team"] == "ml-platform" for a in alerts.values())


@pytest.mark.integration
def test_alerting_scenario_labels_every_alert_for_its_alertmanager_config(objects):
    """The operator routes only alerts labelled with the AlertmanagerConfig's namespace (and the cost
    alerts, aggregated by the recording rules, carry none of their own): every alert gets it."""
    rule, routing = one(objects["alerting"], "PrometheusRule"), one(objects["alerting"], "AlertmanagerConfig")
    namespace = routing["metadata"]["namespace"]
    assert namespace == SCENARIOS["alerting"][2]
    assert rule["spec"]["groups"] == expected_groups(values_of("alerting"), namespace)
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts and all(a["labels"]["namespace"] == namespace for a in alerts)
    assert routing["metadata"]["labels"]["alertmanagerConfig"] == "llm-cost"
    # info (LLMCostGPUsIdle's severity here) has no route of its own: the default receiver takes it
    assert [r["matchers"][0]["value"] for r in routing["spec"]["route"]["routes"]] == ["critical", "warning"]
    assert routing["spec"]["route"]["receiver"] == "warning"
    assert "LLMCostExporterAbsent" not in str(routing["spec"]["inhibitRules"])  # turned off in the values


MATCHER = re.compile(r'^(\w+)(=~|!~|!=|=)"(.*)"$')


def example_matchers(matchers: list[str]) -> set[tuple[str, str, str]]:
    return {MATCHER.match(m).groups() for m in matchers}


def crd_matchers(matchers: list[dict]) -> set[tuple[str, str, str]]:
    return {(m["name"], m.get("matchType", "="), m["value"]) for m in matchers}


@pytest.mark.integration
def test_alertmanager_config_is_the_routing_the_end_to_end_test_runs(helms):
    """With default values the AlertmanagerConfig says what docs/examples/alertmanager.yml says (the
    file tests/test_alertmanager.py runs on a real Alertmanager): the grouping and timings, a route
    and a receiver per severity under the same alertname matcher, the same inhibitions."""
    result = template(helms["helm4"], "t", "llm", "--set", "alertmanagerConfig.enabled=true")
    assert result.returncode == 0, result.stderr
    spec = one(parse(result.stdout), "AlertmanagerConfig")["spec"]
    example = yaml.safe_load(ROUTING.read_text())
    route = example["route"]
    assert spec["route"]["groupBy"] == route["group_by"]
    assert [spec["route"][k] for k in ("groupWait", "groupInterval", "repeatInterval")] == [
        route[k] for k in ("group_wait", "group_interval", "repeat_interval")]
    by_severity = {}
    for child in route["routes"]:
        matchers = example_matchers(child["matchers"])
        severity = next(v for name, _, v in matchers if name == "severity")
        by_severity[severity] = (child["receiver"], matchers - {("severity", "=", severity)})
    assert {v[1] == crd_matchers(spec["route"]["matchers"]) for v in by_severity.values()} == {True}
    assert {r["matchers"][0]["value"]: crd_matchers(r["matchers"]) for r in spec["route"]["routes"]} == {
        severity: {("severity", "=", severity)} for severity in by_severity}
    assert sorted(r["name"] for r in spec["receivers"]) == sorted(by_severity)
    assert by_severity[spec["route"]["receiver"]][0] == route["receiver"]  # the same default
    inhibitions = {(frozenset(example_matchers(r["source_matchers"])), frozenset(example_matchers(r["target_matchers"])),
                    tuple(r["equal"])) for r in example["inhibit_rules"]}
    assert {(frozenset(crd_matchers(r["sourceMatch"])), frozenset(crd_matchers(r["targetMatch"])), tuple(r["equal"]))
            for r in spec["inhibitRules"]} == inhibitions


def test_every_alert_of_the_rule_file_has_a_value_entry():
    alerts = [r["alert"] for g in yaml.safe_load(RULE_FILE.read_text())["groups"] for r in g["rules"] if "alert" in r]
    assert list(default_values()["prometheusRule"]["rules"]) == alerts


@pytest.mark.integration
def test_a_recording_rule_can_be_turned_off(helms):
    result = template(helms["helm4"], "t", "default", "--set", "prometheusRule.enabled=true",
                      "--set", "prometheusRule.rules.cluster:llmcost_tokens:rate1d.enabled=false")
    assert result.returncode == 0, result.stderr
    groups = one(parse(result.stdout), "PrometheusRule")["spec"]["groups"]
    assert groups == expected_groups({"prometheusRule": {"rules": {"cluster:llmcost_tokens:rate1d": {"enabled": False}}}})
    names = [r.get("record") for g in groups for r in g["rules"]]
    assert "cluster:llmcost_tokens:rate1d" not in names and "cluster:llmcost_tokens:rate1h" in names


@pytest.mark.integration
@pytest.mark.parametrize("scenario", ["all-monitors", "docs-example"])
def test_dashboard_configmaps_are_the_committed_json(objects, scenario):
    values = merged_values(scenario)["dashboards"]
    maps = [o for o in objects[scenario] if o["kind"] == "ConfigMap" and o["metadata"]["labels"].get("grafana_dashboard")]
    committed = {p.name: p.read_text() for p in sorted(DASHBOARDS.glob("*.json"))}
    assert {k: v for m in maps for k, v in m["data"].items()} == committed
    for m in maps:
        assert m["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert m["metadata"]["annotations"] == {"grafana_folder": values["folder"]}
        assert m["metadata"]["namespace"] == (values["namespace"] or SCENARIOS[scenario][2])


def test_chart_copies_equal_the_originals():
    result = subprocess.run([str(ROOT / "scripts" / "sync-chart-files.sh"), "--check"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    copies = {p.name for p in (CHART / "files" / "dashboards").glob("*.json")}
    assert copies == {p.name for p in DASHBOARDS.glob("*.json")}
    assert (CHART / "files" / RULE_FILE.name).read_bytes() == RULE_FILE.read_bytes()


# --- the sidecar example --------------------------------------------------------------------------


@pytest.mark.integration
def test_sidecar_example_fits_the_chart(objects):
    objs = objects["docs-example"]
    deployment = example_deployment()
    pod = deployment["spec"]["template"]
    container = exporter_container(pod)
    chart_values = default_values()
    assert container["image"] == f"ghcr.io/llm-cost-exporter/llm-cost-exporter:{exporter.__version__}"
    configmap = next(o for o in objs if o["kind"] == "ConfigMap" and "config.yml" in o["data"])
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/etc/llm-cost-exporter"]]["configMap"]["name"] == configmap["metadata"]["name"]
    assert "--config.file=/etc/llm-cost-exporter/config.yml" in container["args"]
    assert deployment["metadata"]["namespace"] == SCENARIOS["docs-example"][2]
    assert [p["name"] for p in container["ports"]] == [chart_values["portName"]]
    assert container["ports"][0]["containerPort"] == chart_values["port"]
    engine_ports = {p["containerPort"] for c in pod["spec"]["containers"] if c is not container for p in c.get("ports", [])}
    engines = yaml.safe_load(configmap["data"]["config.yml"])["engines"]
    assert [e["url"] for e in engines] == [f"http://localhost:{port}/metrics" for port in engine_ports]
    # The same hardening as the chart's own pod, on the container since the vLLM image runs as root.
    sc = container["securityContext"]
    for key, value in {**chart_values["securityContext"], **chart_values["podSecurityContext"]}.items():
        assert sc[key] == value, key
    assert pod["spec"]["automountServiceAccountToken"] is False


# --- chart hygiene ----------------------------------------------------------------------------------


def test_app_version_is_the_exporter_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == exporter.__version__
    assert default_values()["image"]["tag"] == ""  # so the tag is the appVersion


def walk(values: dict, schema: dict, path: str = ""):
    """(path, schema) for every key of the values that the schema describes with properties."""
    for key, value in values.items():
        sub = schema.get("properties", {}).get(key)
        if sub is None:
            yield f"{path}{key}", None
            continue
        if "$ref" in sub:
            sub = SCHEMA["definitions"][sub["$ref"].rsplit("/", 1)[1]]
        yield f"{path}{key}", sub
        if isinstance(value, dict) and "properties" in sub and sub.get("additionalProperties") is False:
            yield from walk(value, sub, f"{path}{key}.")


SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def test_schema_describes_every_value():
    missing = [path for path, sub in walk(default_values(), SCHEMA) if sub is None]
    assert missing == []


def test_every_value_is_commented():
    """Each value at the first two levels of values.yaml has a comment above it (or on its line), or
    follows a value of the same level that it is grouped with under one comment; sections (keys
    whose value is a block) are described by their values' comments."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    data_blocks = ("affinity", "tolerations", "updateStrategy", "podSecurityContext", "securityContext", "config",
                   "livenessProbe", "readinessProbe")
    uncommented, parent = [], None
    for i, line in enumerate(lines):
        m = re.match(r"^( {0,2})([A-Za-z][\w.-]*):", line)
        if not m:
            continue
        if not m.group(1):
            parent = m.group(2)
        elif parent in data_blocks:
            continue
        if line.rstrip().endswith(":"):  # a section: its keys carry the comments
            continue
        above = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        previous_key = re.match(r"^( {0,2})[A-Za-z][\w.-]*:", lines[i - 1] or "")
        grouped = previous_key and len(previous_key.group(1)) == len(m.group(1)) and not lines[i - 1].rstrip().endswith(":")
        if not (above.startswith("#") or "#" in line or grouped):
            uncommented.append(line.strip())
    assert uncommented == []


def test_docs_describe_the_chart():
    doc = (ROOT / "docs" / "helm.md").read_text()
    for key in default_values():
        assert f"`{key}" in doc, f"docs/helm.md does not mention the value {key}"
    for needle in ("serviceMonitor.additionalLabels.release=kube-prometheus-stack", "helm uninstall", "docker build",
                   "docker push", "restricted", "NVIDIA_VISIBLE_DEVICES", "runtimeClassName", "vllm-sidecar.yaml",
                   "scripts/sync-chart-files.sh"):
        assert needle in doc, needle


@pytest.mark.integration
def test_notes_say_how_to_see_the_metrics(helms):
    result = helm(helms["helm4"], "install", "llm-cost-exporter", str(CHART), "--dry-run=client", "--namespace", "inference",
                  "-f", str(EXAMPLE_VALUES))
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "kubectl -n inference port-forward service/llm-cost-exporter 9848:9848" in notes
    assert "ServiceMonitor llm-cost-exporter" in notes and "grafana_dashboard=1" in notes
    assert "kubectl -n inference get pods -l app.kubernetes.io/instance=llama-3-1-8b,app.kubernetes.io/name=vllm" in notes
    assert "WARNING" not in notes
    result = helm(helms["helm4"], "install", "x", str(CHART), "--dry-run=client")
    assert result.returncode == 0, result.stderr
    assert "WARNING: no engine to scrape" in result.stdout


# --- the image --------------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined, comments dropped), split by FROM."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    instructions = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    stages: list[list[str]] = []
    for ins in instructions:
        if ins.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def test_dockerfile_is_multi_stage_slim_and_non_root():
    """No docker daemon here: the Dockerfile is checked statically (docs/helm.md, "Image")."""
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: build the wheel, then install it"
    final = stages[-1]
    assert re.match(r"FROM python:\S*-slim\s*$", final[0].replace("${PYTHON_VERSION}", "3")), final[0]
    users = [i.split(None, 1)[1] for i in final if i.upper().startswith("USER ")]
    assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]), "USER must be a numeric non-root uid"
    assert users[-1].split(":")[0] == str(default_values()["podSecurityContext"]["runAsUser"])
    body = " ".join(final)
    for tool in ("gcc", "g++", "build-essential", "make ", "apt-get install", "python3-dev", "/wheels /wheels"):
        assert tool not in body, f"{tool!r} in the final stage"
    assert "COPY --from" not in body, "wheels come through a bind mount, not a layer"
    assert "--no-cache-dir" in body and "--no-index" in body
    assert "EXPOSE 9848" in final
    assert any(re.fullmatch(r'ENTRYPOINT \["llm-cost-exporter"\]', i) for i in final)
    health = [i for i in final if i.upper().startswith("HEALTHCHECK")]
    assert all("/healthz" in h for h in health)
    build = " ".join(stages[0])
    assert "pip wheel" in build
    for src in re.findall(r"^COPY (?!--)(.+) \S+$", "\n".join(stages[0]), re.M):
        for path in src.split():
            assert (ROOT / path).exists(), f"COPY {path}: no such file"
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") if "*" in ignore else 0] == "*" and "!exporter/" in ignore and "!pyproject.toml" in ignore


def test_the_image_has_the_extras_the_chart_can_turn_on():
    """Node-label pricing (on by default) and discovery need the kubernetes client, the podResources
    profile needs gRPC: both stages build and install the project with those extras."""
    text = (ROOT / "Dockerfile").read_text()
    extras = re.search(r"^ARG EXTRAS=(\S+)$", text, re.M).group(1).split(",")
    assert {"kubernetes", "podresources"} <= set(extras)
    assert set(extras) <= set(tomllib_extras())
    build, final = dockerfile_stages()[0], dockerfile_stages()[-1]
    assert "ARG EXTRAS" in build and "ARG EXTRAS" in final
    assert any('pip wheel' in i and '".[${EXTRAS}]"' in i for i in build)
    assert any('pip install' in i and '"llm-cost-exporter[${EXTRAS}]"' in i for i in final)


def tomllib_extras() -> list[str]:
    section = (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return re.findall(r"^([\w-]+) = \[", section, re.M)


def test_image_gets_every_exporter_package():
    """The wheel the Dockerfile builds holds the packages listed in pyproject.toml: each package
    directory under exporter/ must be listed there, or the image lacks it."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    section = pyproject.split("[tool.setuptools]", 1)[1]
    listed = set(re.findall(r'"([\w.]+)"', re.search(r"^packages\s*=\s*\[(.*?)\]", section, re.M | re.S).group(1)))
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "exporter").rglob("__init__.py")}
    assert on_disk - listed == set(), "packages missing from [tool.setuptools] packages in pyproject.toml"
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"] == exporter.__version__


@pytest.mark.integration
def test_spot_prices_cronjob_has_its_own_account_limited_to_its_configmap(objects):
    """The CronJob may get and replace its one ConfigMap, nothing else; the DaemonSet mounts that
    ConfigMap and gains no right; both CronJob containers meet Pod Security "restricted"."""
    objs = objects["spot-prices"]
    name = "prod-llm-cost-exporter-spot-prices"
    (role,) = all_of(objs, "Role")
    assert role["metadata"]["name"] == name
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [name],
                              "verbs": ["get", "update"]}]
    (binding,) = all_of(objs, "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": "monitoring"}]
    cronjob = one(objs, "CronJob")
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == name
    fetch, replace = pod["spec"]["initContainers"][0], pod["spec"]["containers"][0]
    assert fetch["args"][:2] == ["catalog", "fetch-spot"] and f"--configmap=monitoring/{name}" in fetch["args"]
    assert replace["command"] + replace["args"] == ["kubectl", "replace", "-f", "/work/configmap.yaml"]
    assert not any("env" in c and any("AWS" in e["name"] or "AZURE" in e["name"] for e in c["env"])
                   for c in (fetch, replace)), "no cloud credential anywhere"
    assert restricted_violations(pod, [fetch, replace]) == []
    configmap = next(o for o in all_of(objs, "ConfigMap") if o["metadata"]["name"] == name)
    assert yaml.safe_load(configmap["data"]["spot-prices.yaml"]) == {"prices": []}  # loadable before the first run
    daemonset = one(objs, "DaemonSet")["spec"]["template"]["spec"]
    assert {"name": "spot-prices", "configMap": {"name": name}} in daemonset["volumes"]
    assert daemonset["serviceAccountName"] != name


# --- the prices CronJob ---------------------------------------------------------------------------


@pytest.mark.integration
def test_prices_cronjob_runs_one_export_per_format_restricted_and_without_a_token(objects):
    job = one(objects["all-monitors"], "CronJob")
    pod = job["spec"]["jobTemplate"]["spec"]["template"]
    containers = pod["spec"]["containers"]
    assert [c["name"] for c in containers] == ["export-litellm", "export-langfuse", "export-openlit"]
    for container, fmt in zip(containers, ("litellm", "langfuse", "openlit"), strict=True):
        assert container["args"][:3] == ["prices", "export", f"--format={fmt}"]
        assert f"--output=/prices/{fmt}-prices.json" in container["args"]
        assert container["volumeMounts"] == [{"name": "prices", "mountPath": "/prices"}]
        args = exporter_cli_args(container["args"])  # the exporter's own parser accepts them
        assert args.format == fmt and args.window == "7d"
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["volumes"] == [{"name": "prices", "persistentVolumeClaim": {"claimName": "gateway-prices"}}]
    assert pod_security_level(pod, containers) == "restricted"
    for scenario, objs in objects.items():
        if scenario != "all-monitors":
            assert not any(c["name"].startswith("export-") for job in all_of(objs, "CronJob")
                           for c in job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]), scenario


def exporter_cli_args(args: list[str]):
    from exporter.cli import _parser

    return _parser(args[0]).parse_args(args)


@pytest.mark.integration
def test_prices_cronjob_needs_a_volume(helms):
    result = template(helms["helm4"], "t", "default", "--set", "pricesExport.enabled=true")
    assert result.returncode != 0
    assert "pricesExport.volume: required when pricesExport.enabled" in result.stderr
