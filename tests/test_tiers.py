"""API price tiers, end to end over real HTTP: an engine compared at the Batch tier is billed the
batch prices (half the standard for OpenAI and Anthropic), a tier an API does not offer falls back
to standard and says so in the `tier` label and the log, `auto` picks batch for a pod run by a
Kubernetes Job, and a tier changed by a reload starts a new comparison under the new label."""

import logging
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import MODEL, make_config, run_for, value
from exporter import catalog, costmodel, pricing
from exporter.app import Exporter
from exporter.config import load_file
from exporter.kube.discovery import pod_targets
from plugins.profiles import examples

APIS = catalog.load_apis()
USD = {"currency": "USD"}


def served(server, base):
    now = server.served_counters()
    return {k: now[k] - base[k] for k in ("input_tokens", "output_tokens", "cached_input_tokens")}


def billed(rates: catalog.ApiRates, d: dict) -> float:
    """The closed form: uncached input, cached input (at the input price where the tier has no
    cached price) and output, each at the tier's price."""
    cached = rates.input_per_million if rates.cached_input_per_million is None else rates.cached_input_per_million
    return ((d["input_tokens"] - d["cached_input_tokens"]) * rates.input_per_million
            + d["cached_input_tokens"] * cached + d["output_tokens"] * rates.output_per_million) / 1e6


def twin_engines(vllm, exporter_for, apis, cached_share=0.3, seconds=900):
    """Two engines reading the same simulated vLLM: `online` at the standard tier, `offline` at batch."""
    server = vllm(capacity=1000.0, load=0.5)
    server.workload.cached_share = cached_share
    config = make_config([("online", server.url, {"capacity_tokens_per_s": 1000.0}),
                          ("offline", server.url, {"capacity_tokens_per_s": 1000.0, "tier": "batch"})], apis=apis)
    exporter = exporter_for(config)
    exporter.sample_all()
    base = server.served_counters()
    return exporter, server, base


def equivalent(exporter, engine, api, tier):
    return value(exporter, "llmcost_api_equivalent_spend_total", engine=engine, model=MODEL, api=api, tier=tier, **USD)


def test_an_engine_at_the_batch_tier_is_billed_half_of_openais_standard_price(clock, vllm, exporter_for):
    exporter, server, base = twin_engines(vllm, exporter_for, ["gpt-4o"], cached_share=0.0)
    run_for(clock, exporter, 900)
    d = served(server, base)
    assert d["output_tokens"] > 0 and d["cached_input_tokens"] == 0
    standard, batch = equivalent(exporter, "online", "gpt-4o", "standard"), equivalent(exporter, "offline", "gpt-4o", "batch")
    assert standard == pytest.approx(billed(APIS["gpt-4o"].for_tier("standard"), d), rel=1e-12)
    assert batch == pytest.approx(billed(APIS["gpt-4o"].for_tier("batch"), d), rel=1e-12)
    assert batch == pytest.approx(standard / 2, rel=1e-12)  # the Batch API's 50% discount, exactly
    assert equivalent(exporter, "offline", "gpt-4o", "standard") is None  # one tier per engine: no extra series
    ids = {"model": MODEL, "api": "gpt-4o"}
    # half the API price: twice the utilization needed to break even, and the savings follow
    assert value(exporter, "llmcost_breakeven_utilization_ratio", engine="offline", tier="batch", **ids) == \
        pytest.approx(2 * value(exporter, "llmcost_breakeven_utilization_ratio", engine="online", tier="standard", **ids),
                      rel=1e-3)
    spend = value(exporter, "llmcost_engine_spend_total", engine="offline", **USD)
    assert value(exporter, "llmcost_api_savings", engine="offline", api="gpt-4o", tier="batch", **USD) == \
        pytest.approx(batch - spend, rel=1e-9)
    for tier, rates in (("standard", APIS["gpt-4o"]), ("batch", APIS["gpt-4o"].batch)):
        assert value(exporter, "llmcost_api_price_per_million_tokens", api="gpt-4o", direction="input", tier=tier,
                     **USD) == rates.input_per_million


def test_batch_tier_with_prompt_caching(clock, vllm, exporter_for):
    """Anthropic halves every batch price, cache reads included: the bill halves with cached input
    too. OpenAI's gpt-4o has no batch cache-read price: its cached input is billed at the batch
    input price, which is the standard cache-read price (1.25), so that part does not halve."""
    exporter, server, base = twin_engines(vllm, exporter_for, ["claude-haiku-4-5", "gpt-4o"])
    run_for(clock, exporter, 900)
    d = served(server, base)
    assert d["cached_input_tokens"] > 0
    haiku = equivalent(exporter, "online", "claude-haiku-4-5", "standard")
    assert equivalent(exporter, "offline", "claude-haiku-4-5", "batch") == pytest.approx(haiku / 2, rel=1e-12)
    gpt4o = equivalent(exporter, "offline", "gpt-4o", "batch")
    assert gpt4o == pytest.approx(billed(APIS["gpt-4o"].for_tier("batch"), d), rel=1e-12)
    assert gpt4o > equivalent(exporter, "online", "gpt-4o", "standard") / 2


def test_a_tier_the_api_does_not_offer_falls_back_to_standard_and_says_so(clock, vllm, exporter_for, caplog):
    server = vllm(capacity=1000.0, load=0.5)
    config = make_config([("vllm", server.url, {"tier": "flex"})], apis=["gpt-4o", "gemini-2.5-flash"])
    with caplog.at_level(logging.WARNING, logger="exporter"):
        exporter = exporter_for(config)
    exporter.sample_all()
    base = server.served_counters()
    run_for(clock, exporter, 300)
    d = served(server, base)
    assert equivalent(exporter, "vllm", "gpt-4o", "flex") is None  # OpenAI offers no flex for gpt-4o
    assert equivalent(exporter, "vllm", "gpt-4o", "standard") == pytest.approx(billed(APIS["gpt-4o"].for_tier("standard"), d),
                                                                               rel=1e-12)
    assert equivalent(exporter, "vllm", "gemini-2.5-flash", "flex") == \
        pytest.approx(billed(APIS["gemini-2.5-flash"].for_tier("flex"), d), rel=1e-12)
    warnings = [r.getMessage() for r in caplog.records if "not offered" in r.getMessage()]
    assert warnings == ['engine=vllm tier=flex: not offered by gpt-4o, compared at the standard price (tier="standard")']


def test_a_reloaded_tier_starts_a_new_comparison_and_the_old_series_goes(tmp_path, clock, nvml, vllm):
    server = vllm(capacity=1000.0, load=0.5)
    path = tmp_path / "config.yml"
    text = ("pricing: {{cloud: {{hourly: 3.6}}}}\ngpu: {{backend: simulated}}\nwindow: 10m\n"
            "compare: {{apis: [gpt-4o-mini], tier: {tier}}}\nengines: [{{name: vllm, url: '{url}', kind: vllm}}]\n")
    path.write_text(text.format(tier="standard", url=server.url))
    exporter = Exporter(load_file(str(path), environ={}), clock=clock, nvml_backend=nvml, environ={})
    exporter.sample_all()
    run_for(clock, exporter, 300)
    assert equivalent(exporter, "vllm", "gpt-4o-mini", "standard") > 0
    path.write_text(text.format(tier="batch", url=server.url))
    assert exporter.reload_config()[0]
    assert equivalent(exporter, "vllm", "gpt-4o-mini", "standard") is None
    assert equivalent(exporter, "vllm", "gpt-4o-mini", "batch") == 0.0
    base = server.served_counters()
    run_for(clock, exporter, 300)
    assert equivalent(exporter, "vllm", "gpt-4o-mini", "batch") == \
        pytest.approx(billed(APIS["gpt-4o-mini"].for_tier("batch"), served(server, base)), rel=1e-12)


def test_saved_spend_of_another_tier_is_not_carried_into_this_one(tmp_path, clock, nvml, vllm):
    """A state file written while the engine was compared at standard (or by a version without
    tiers: no api_tiers key) does not seed the batch comparison."""
    server = vllm(capacity=1000.0, load=0.5)
    standard = make_config([("vllm", server.url, {})], apis=["gpt-4o-mini"])
    first = Exporter(standard, clock=clock, nvml_backend=nvml, environ={})
    first.sample_all()
    run_for(clock, first, 300)
    saved = first.dump_totals()
    assert saved["engines"]["vllm"]["api_tiers"] == {"gpt-4o-mini": "standard"}
    del saved["engines"]["vllm"]["api_tiers"]  # as a file from before tiers
    for tier, expected in (("standard", pytest.approx(equivalent(first, "vllm", "gpt-4o-mini", "standard"))),
                           ("batch", 0.0)):
        again = Exporter(make_config([("vllm", server.url, {"tier": tier})], apis=["gpt-4o-mini"]), clock=clock,
                         nvml_backend=nvml, environ={})
        with again.lock:
            again.engine_registry.restore_totals(saved["engines"], provisional=False)
        again.sample_all()
        assert equivalent(again, "vllm", "gpt-4o-mini", tier) == expected, tier


PRICE = st.just(0.0) | st.floats(min_value=1e-6, max_value=1000.0)
COUNT = st.integers(min_value=0, max_value=10**12).map(float)


@settings(max_examples=examples(300))
@given(PRICE, PRICE, st.none() | PRICE, COUNT, COUNT, st.floats(min_value=0.0, max_value=1.0),
       st.sampled_from(catalog.TIERS[1:]))
def test_a_tier_at_half_every_price_bills_exactly_half_and_an_absent_tier_is_standard(
        i, o, c, inputs, outputs, cached_share, tier):
    cached = float(int(inputs * cached_share))
    half = catalog.TierPrice(i / 2, o / 2, None if c is None else c / 2)
    extra = {"threshold_tokens": 200_000} if tier == "long_context" else {}
    offered = catalog.ApiPrice("x", i, o, c, **{tier: (catalog.LongContextPrice if extra else catalog.TierPrice)(
        half.input_per_million, half.output_per_million, half.cached_input_per_million, **extra)})

    def bill(rates):
        return costmodel.api_equivalent(inputs, outputs, rates.input_per_million, rates.output_per_million, cached,
                                         rates.cached_input_per_million)

    standard = offered.for_tier("standard")
    assert offered.for_tier(tier).tier == tier
    assert bill(offered.for_tier(tier)) == bill(standard) / 2  # exactly: halving is exact in binary
    plain = catalog.ApiPrice("x", i, o, c)
    assert plain.for_tier(tier) == standard  # not offered: the standard prices, saying tier="standard"


# -- auto: batch for a Kubernetes Job's pod -------------------------------------------------------

def pod(name, annotations=None, owner=None):
    metadata = {"namespace": "llm", "name": name, "uid": name, "annotations": {"llmcost.io/port": "8000",
                                                                               **(annotations or {})}}
    if owner:
        metadata["ownerReferences"] = [{"apiVersion": owner[0], "kind": owner[1], "name": "x", "uid": "u",
                                        "controller": True, "blockOwnerDeletion": True}]
    return {"metadata": metadata, "spec": {"containers": [{"name": "vllm"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.7", "startTime": "2026-11-23T08:12:44Z"}}


def test_a_pod_run_by_a_job_is_a_batch_workload_and_auto_compares_it_at_batch():
    targets, skipped = pod_targets({"items": [
        pod("offline-abc12", owner=("batch/v1", "Job")),
        pod("online-7d9f8c6b5-x2kqz", owner=("apps/v1", "ReplicaSet")),
        pod("pinned", annotations={"llmcost.io/tier": "flex"}),
        pod("typo", annotations={"llmcost.io/tier": "Batch"})]})
    by_name = {t.pod: t for t in targets}
    assert by_name["offline-abc12"].batch_job and not by_name["online-7d9f8c6b5-x2kqz"].batch_job
    assert by_name["pinned"].tier == "flex" and by_name["offline-abc12"].tier is None
    assert skipped == [("llm/typo", "llmcost.io/tier: got 'Batch', allowed: standard, batch, flex, priority, "
                                    "long_context, auto")]
    tiers = {name: pricing.engine_tier(t.tier or "auto", t.batch_job) for name, t in by_name.items()}
    assert tiers == {"offline-abc12": "batch", "online-7d9f8c6b5-x2kqz": "standard", "pinned": "flex"}
    assert pricing.engine_tier("priority", True) == "priority"  # only auto looks at the workload


def serve_batch_job_pods(api, vllm) -> dict:
    """podlist-batch-job.json's two pods on the fake API server, each reading its own simulated
    vLLM; returns engine name -> its vLLM server."""
    from test_kubernetes import NODE, load

    pods, servers = load("podlist-batch-job.json")["items"], {}
    for pod in pods:
        server = vllm(capacity=1000.0, load=0.5)
        pod["status"]["podIP"] = "127.0.0.1"
        pod["metadata"]["annotations"]["llmcost.io/port"] = server.url.split(":")[2].split("/")[0]
        servers[f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"] = server
    api.node, api.pods = load("node-eks-karpenter-spot-g5.12xlarge.json"), pods
    assert api.node["metadata"]["name"] == NODE
    return servers


JOB, FLEX = "llm/embed-nightly-29412360-q7h2k", "llm/chat-flex-6d5c4b3a2-k8s7d"


def compared_tiers(exporter) -> dict:
    return {(s.labels["engine"], s.labels["api"]): s.labels["tier"] for f in exporter.registry.collect()
            if f.name == "llmcost_api_equivalent_spend" for s in f.samples}


def test_discovered_pods_auto_compare_a_jobs_pod_at_batch_and_follow_the_tier_annotation(vllm, clock, exporter_for):
    """Over the (fake, real-wire-format) Kubernetes API: compare.tier auto, a CronJob's run pod is
    compared at batch, a Deployment's pod annotated llmcost.io/tier: flex at flex where offered."""
    from test_kubernetes import FakeApiServer, kube_config

    api = FakeApiServer()
    try:
        serve_batch_job_pods(api, vllm)
        exporter = exporter_for(kube_config(api.url, discovery=True,
                                            compare={"apis": ["gpt-4o-mini", "gpt-5-mini"], "tier": "auto"}))
        exporter.refresh_kubernetes()
        run_for(clock, exporter, 60)
        assert compared_tiers(exporter) == {(JOB, "gpt-4o-mini"): "batch", (JOB, "gpt-5-mini"): "batch",
                                            (FLEX, "gpt-4o-mini"): "standard", (FLEX, "gpt-5-mini"): "flex"}
    finally:
        api.stop()


# -- the namespace's llmcost.io/tier: between the pod's annotation and compare.tier ---------------

def equivalent_all_models(exporter, engine, api, tier):
    found = [s.value for f in exporter.registry.collect() if f.name == "llmcost_api_equivalent_spend"
             for s in f.samples if s.name.endswith("_total") and
             (s.labels["engine"], s.labels["api"], s.labels["tier"]) == (engine, api, tier)]
    return sum(found) if found else None


def namespace_source(exporter, metric, **labels):
    return value(exporter, metric, source="kubernetes", name="namespaces", **labels)


def test_a_pod_in_a_namespace_annotated_batch_is_billed_the_batch_price_unless_its_own_annotation_says_otherwise(
        vllm, clock, exporter_for):
    """compare.tier standard; the namespace `llm` annotated llmcost.io/tier: batch. The Job's pod
    (no tier of its own) is compared at batch: its API-equivalent is the batch prices x the tokens
    its vLLM served; the pod annotated flex stays at flex (gpt-5-mini) or standard where flex is not
    offered (gpt-4o-mini). The namespace is read once per listing, the Node and pods as before."""
    from test_kubernetes import FakeApiServer, kube_config, load

    api = FakeApiServer()
    try:
        servers = serve_batch_job_pods(api, vllm)
        api.namespaces = {"llm": load("namespace-llm-tier-batch.json")}
        exporter = exporter_for(kube_config(api.url, discovery=True,
                                            compare={"apis": ["gpt-4o-mini", "gpt-5-mini"], "tier": "standard"}))
        exporter.refresh_kubernetes()
        assert api.namespace_reads() == ["llm"]  # one GET for both pods' namespace; the flex pod needs none
        exporter.sample_all()
        base = servers[JOB].served_counters()
        run_for(clock, exporter, 300)
        assert compared_tiers(exporter) == {(JOB, "gpt-4o-mini"): "batch", (JOB, "gpt-5-mini"): "batch",
                                            (FLEX, "gpt-4o-mini"): "standard", (FLEX, "gpt-5-mini"): "flex"}
        d = served(servers[JOB], base)
        assert d["output_tokens"] > 0
        for api_name in ("gpt-4o-mini", "gpt-5-mini"):
            assert equivalent_all_models(exporter, JOB, api_name, "batch") == \
                pytest.approx(billed(APIS[api_name].for_tier("batch"), d), rel=1e-12)
        assert namespace_source(exporter, "llmcost_source_up") == 1

        exporter.refresh_pods()  # each listing reads the namespace again: an annotation removed is seen
        api.namespaces = {"llm": load("namespace-llm.json")}
        exporter.refresh_pods()
        assert api.namespace_reads() == ["llm"] * 3
        assert compared_tiers(exporter)[(JOB, "gpt-4o-mini")] == "standard"
    finally:
        api.stop()


@pytest.mark.parametrize("failure, reason", [("status-403-namespace.json", "forbidden"),
                                             ("status-404-namespace.json", "not_found"), ("slow", "timeout")])
def test_a_namespace_that_cannot_be_read_leaves_the_config_tier_and_says_why(vllm, clock, exporter_for, caplog,
                                                                            failure, reason):
    """Without `get namespaces` (403), a namespace gone (404) or a slow API server: the engines are
    discovered and scraped as before, at compare.tier; namespaces source down with the reason, one
    log line; once readable, the namespace's tier applies, and a later failure keeps it."""
    from test_kubernetes import FakeApiServer, kube_config, load

    api = FakeApiServer()
    try:
        serve_batch_job_pods(api, vllm)
        api.namespaces = {"llm": load("namespace-llm-tier-batch.json")}
        api.fail["namespace"] = failure
        api.slow_seconds = 1.0  # past kubernetes.timeout (300ms)
        exporter = exporter_for(kube_config(api.url, discovery=True, compare={"apis": ["gpt-4o-mini"], "tier": "standard"}))
        with caplog.at_level(logging.INFO, logger="exporter"):
            exporter.refresh_kubernetes()
            started = time.monotonic()
            exporter.refresh_pods()
            took = time.monotonic() - started
            run_for(clock, exporter, 60)
        assert took < 0.9  # the namespace read ends at kubernetes.timeout: discovery never waits for it
        assert compared_tiers(exporter) == {(JOB, "gpt-4o-mini"): "standard", (FLEX, "gpt-4o-mini"): "standard"}
        assert equivalent_all_models(exporter, JOB, "gpt-4o-mini", "standard") > 0
        assert value(exporter, "llmcost_source_up", source="kubernetes", name="pods") == 1
        assert namespace_source(exporter, "llmcost_source_up") == 0
        assert namespace_source(exporter, "llmcost_source_errors_total", reason=reason) == 2
        lines = [r.getMessage() for r in caplog.records if "name=namespaces" in r.getMessage()]
        assert len(lines) == 1 and f"reason={reason}" in lines[0], lines

        del api.fail["namespace"]
        exporter.refresh_pods()
        assert compared_tiers(exporter)[(JOB, "gpt-4o-mini")] == "batch"
        assert namespace_source(exporter, "llmcost_source_up") == 1
        api.fail["namespace"] = failure
        exporter.refresh_pods()  # the tier read last stays: no flapping back on a transient failure
        assert compared_tiers(exporter)[(JOB, "gpt-4o-mini")] == "batch"
    finally:
        api.stop()


def test_a_bad_namespace_tier_is_ignored_with_a_reason_and_the_pods_stay(vllm, clock, exporter_for, caplog):
    from test_kubernetes import FakeApiServer, kube_config, load

    api = FakeApiServer()
    try:
        serve_batch_job_pods(api, vllm)
        namespace = load("namespace-llm-tier-batch.json")
        namespace["metadata"]["annotations"]["llmcost.io/tier"] = "Batch"
        api.namespaces = {"llm": namespace}
        exporter = exporter_for(kube_config(api.url, discovery=True, compare={"apis": ["gpt-4o-mini"], "tier": "auto"}))
        with caplog.at_level(logging.WARNING, logger="exporter"):
            exporter.refresh_kubernetes()
            exporter.refresh_pods()
        run_for(clock, exporter, 60)
        assert compared_tiers(exporter) == {(JOB, "gpt-4o-mini"): "batch", (FLEX, "gpt-4o-mini"): "standard"}  # auto
        assert namespace_source(exporter, "llmcost_source_errors_total", reason="bad_annotation") == 2
        lines = [r.getMessage() for r in caplog.records if "namespace annotation ignored" in r.getMessage()]
        assert lines == ["namespace annotation ignored namespace=llm reason=llmcost.io/tier: got 'Batch', allowed: "
                         "standard, batch, flex, priority, long_context, auto"]
    finally:
        api.stop()
