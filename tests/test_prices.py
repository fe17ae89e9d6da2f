"""Committed prices, the spot price file and node interruptions (issue 15, "Real prices").

Pricing is resolved from real Node objects (tests/data/kube, their labels as EKS, Karpenter, GKE
and AKS set them) and the bundled catalog; each expected figure is computed here from the rule in
docs/cost-model.md, not copied from the code's output.
"""

import datetime
import json
import pathlib

import pytest
import yaml

from exporter import commitments, pricing, spotprices
from exporter.accounting import WARMUP, Accountant
from exporter.clock import ManualClock
from exporter.config import from_dict
from exporter.interruptions import interrupted, read_boot_id
from exporter.kube.node import node_info

DATA = pathlib.Path(__file__).parent / "data" / "kube"
G5 = pricing.find_instance("g5.12xlarge", "us-east-1")  # the bundled catalog's entry
G4 = pricing.find_instance("g4dn.xlarge", "us-east-1")
JAN_2027 = datetime.datetime(2027, 1, 15, tzinfo=datetime.timezone.utc).timestamp()


def node(name: str):
    return node_info(json.loads((DATA / name).read_text()))


SPOT_NODE = "node-eks-karpenter-spot-g5.12xlarge.json"  # karpenter.sh/capacity-type: spot, nodepool gpu
ON_DEMAND_NODE = "node-eks-managed-g4dn.xlarge.json"  # eks.amazonaws.com/capacityType: ON_DEMAND, nodegroup t4


def kube_config(**pricing_keys):
    return from_dict({"pricing": pricing_keys, "kubernetes": {"enabled": True, "node_name": "n"}}, environ={})


def test_node_pool_is_read_from_each_provider_label():
    assert node(SPOT_NODE).node_pool == "gpu"  # karpenter.sh/nodepool
    assert node(ON_DEMAND_NODE).node_pool == "t4"  # eks.amazonaws.com/nodegroup
    assert node("node-gke-a2-highgpu-1g.json").node_pool == "a100-pool"  # cloud.google.com/gke-nodepool
    assert node("node-aks-spot-nc24ads-a100-v4.json").node_pool == "gpuspot"  # kubernetes.azure.com/agentpool


def test_discount_commitment_with_upfront_prices_the_matching_node():
    config = kube_config(commitments=[
        {"name": "other-pool", "start": "2026-01-01", "discount": 0.9, "match": {"node_pool": "nope"}},
        {"name": "t4-ri", "start": "2026-01-01", "term_months": 12, "discount": 0.3, "upfront": 1000,
         "match": {"instance_type": "g4dn.xlarge", "node_pool": "t4"}}])
    prices, source, note = pricing.effective(config, node(ON_DEMAND_NODE), JAN_2027 - 365 * 86400)
    assert source == "commitment:t4-ri" and note == ""
    assert prices.cloud.hourly == pytest.approx(G4.hourly * 0.7 + 1000 / (12 * 730), rel=1e-12)


def test_commitment_outside_its_dates_does_not_apply():
    config = kube_config(commitments=[{"name": "cud", "start": "2026-01-01", "end": "2026-07-01", "hourly": 0.3}])
    inside = datetime.datetime(2026, 6, 30, 23, 59, tzinfo=datetime.timezone.utc).timestamp()
    assert pricing.effective(config, node(ON_DEMAND_NODE), inside)[1] == "commitment:cud"
    _, source, _ = pricing.effective(config, node(ON_DEMAND_NODE), inside + 60)
    assert source == "node_labels:aws/g4dn.xlarge/us-east-1/on-demand"
    assert pricing.next_change(config, inside) == inside + 60  # the exporter re-prices at 2026-07-01 00:00 UTC


def test_term_without_end_ends_after_term_months():
    config = kube_config(commitments=[{"name": "ri", "start": "2026-01-01", "term_months": 12, "hourly": 0.2}])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc).timestamp()
    assert commitments.end_time(config.pricing.commitments[0], 730.0) == start + 12 * 730 * 3600


def test_spot_node_is_not_covered_by_a_commitment_unless_it_says_spot():
    plain = kube_config(commitments=[{"name": "sp", "start": "2026-01-01", "discount": 0.5}])
    _, source, _ = pricing.effective(plain, node(SPOT_NODE), JAN_2027)
    assert source == "node_labels:aws/g5.12xlarge/us-east-1/spot"
    spot_only = kube_config(commitments=[{"name": "spot-deal", "start": "2026-01-01", "hourly": 1.5,
                                          "match": {"capacity_type": "spot"}}])
    prices, source, _ = pricing.effective(spot_only, node(SPOT_NODE), JAN_2027)
    assert (prices.cloud.hourly, source) == (1.5, "commitment:spot-deal")


def write_spot_file(path, price: float, instance_type="g5.12xlarge", region="us-east-1"):
    path.write_text(yaml.safe_dump({"generated": "2026-12-01T06:00:00Z", "prices": [
        {"provider": "aws", "instance_type": instance_type, "region": region, "spot_hourly": price,
         "checked": "2026-12-01", "source": "https://website.spot.ec2.aws.a2z.com/spot.js"}]}))


def test_spot_file_price_wins_over_the_catalog_snapshot_and_is_reread_on_change(tmp_path):
    path = tmp_path / "spot.yaml"
    write_spot_file(path, 1.9)
    config = kube_config(cloud={"spot_file": str(path)})
    spot = spotprices.SpotPrices(str(path))
    prices, source, _ = pricing.effective(config, node(SPOT_NODE), JAN_2027, spot.prices)
    assert (prices.cloud.hourly, source) == (1.9, "node_labels:aws/g5.12xlarge/us-east-1/spot_file")
    assert spot.poll() is False  # unchanged
    write_spot_file(path, 2.4)
    assert spot.poll() is True
    assert pricing.effective(config, node(SPOT_NODE), JAN_2027, spot.prices)[0].cloud.hourly == 2.4
    path.write_text("prices: [{instance_type: g5.12xlarge}]\n")  # invalid: the last good prices stay
    assert spot.poll() is False and spot.prices[0].spot_hourly == 2.4


def test_spot_file_of_another_region_is_not_used(tmp_path):
    path = tmp_path / "spot.yaml"
    write_spot_file(path, 1.9, region="us-west-2")
    config = kube_config(cloud={"spot_file": str(path)})
    prices, source, _ = pricing.effective(config, node(SPOT_NODE), JAN_2027, spotprices.load(str(path)))
    assert (prices.cloud.hourly, source) == (G5.spot_hourly, "node_labels:aws/g5.12xlarge/us-east-1/spot")


def test_without_kubernetes_capacity_type_spot_prices_from_the_spot_file(tmp_path):
    path = tmp_path / "spot.yaml"
    write_spot_file(path, 2.05)
    config = from_dict({"pricing": {"cloud": {"instance_type": "g5.12xlarge", "capacity_type": "spot",
                                              "spot_file": str(path)}}}, environ={})
    prices, source, _ = pricing.effective(config, None, JAN_2027, spotprices.load(str(path)))
    assert (prices.cloud.hourly, source) == (2.05, "catalog:aws/g5.12xlarge/us-east-1/spot_file")
    # and a missing file is no error: the catalog's snapshot
    assert pricing.effective(config, None, JAN_2027, ())[0].cloud.hourly == G5.spot_hourly


def test_duplicate_spot_entries_are_refused(tmp_path):
    path = tmp_path / "spot.yaml"
    entry = {"instance_type": "a", "region": "r", "spot_hourly": 1, "checked": "2026-12-01"}
    path.write_text(yaml.safe_dump({"prices": [entry, entry]}))
    with pytest.raises(spotprices.SpotFileError, match=r"prices\[1\].region: duplicate of prices\[0\]"):
        spotprices.load(str(path))


def test_boot_id_is_read_and_compared(tmp_path):
    boot = tmp_path / "boot_id"
    boot.write_text("4e5d4eff-638a-4181-9bee-b5f6e4ada24e\n")
    assert read_boot_id(str(boot)) == "4e5d4eff-638a-4181-9bee-b5f6e4ada24e"
    assert read_boot_id(str(tmp_path / "none")) == ""
    assert interrupted("a", "b") and not interrupted("a", "a")
    assert not interrupted(None, "b") and not interrupted("a", "")  # unknown on either side: no


def test_warmup_moves_instance_spend_to_its_component_and_conserves_the_total():
    import threading

    config = from_dict({"pricing": {"cloud": {"hourly": 3.6}}}, environ={})
    clock = ManualClock(1000.0)
    acc = Accountant(config.pricing, None, {"e": None}, clock, threading.RLock(), 300.0)
    acc.tick(0)
    acc.interrupted(30.0)  # warm-up 1000..1030
    for _ in range(10):
        clock.advance(7.0)  # ticks straddle the end of the warm-up
        acc.tick(0)
    totals = acc.totals()
    assert totals.components[WARMUP] == pytest.approx(3.6 * 30 / 3600, rel=1e-12)
    assert totals.components["instance"] == pytest.approx(3.6 * 40 / 3600, rel=1e-12)
    assert sum(totals.components.values()) == pytest.approx(totals.engines["e"] + totals.unallocated, rel=1e-12)
    assert totals.interruptions == 1
    assert acc.export_state()["interruptions"] == 1


def test_the_exporter_reprices_when_a_commitment_starts_and_ends(clock, exporter_for):
    """A commitment that starts 100 s after the exporter does and ends a day later: spend is the
    list price before, the commitment's after, each to within one GPU tick (5 s here)."""
    start_day = datetime.datetime.fromtimestamp(clock.now(), datetime.timezone.utc).date() + datetime.timedelta(days=1)
    start = datetime.datetime.combine(start_day, datetime.time(), datetime.timezone.utc).timestamp()
    clock.advance(start - 100 - clock.now())  # 100 s before midnight UTC
    config = from_dict({"gpu": {"backend": "simulated"}, "pricing": {"cloud": {"hourly": 36.0}, "commitments": [
        {"name": "block", "start": start_day.isoformat(), "end": (start_day + datetime.timedelta(days=1)).isoformat(),
         "hourly": 18.0}]}}, environ={})
    exporter = exporter_for(config)
    exporter.sample_all()
    for _ in range(40):  # 200 s: 100 at the list price, 100 under the commitment
        clock.advance(5.0)
        exporter.sample_all()
    instance = exporter.registry.get_sample_value("llmcost_spend_total", {"component": "instance", "currency": "USD"})
    assert instance == pytest.approx(36.0 * 100 / 3600 + 18.0 * 100 / 3600, abs=36.0 * 5 / 3600)
    assert exporter.price_source == "commitment:block"
    assert exporter.registry.get_sample_value("llmcost_hourly_cost", {"currency": "USD"}) == pytest.approx(18.0)


def test_a_restart_on_a_new_boot_counts_an_interruption_and_books_its_warmup(clock, nvml, tmp_path):
    """The state file (real Storage) outlives the exporter; the boot id changes between the runs:
    one interruption, the next 60 s of instance spend booked as warm-up, the node's total intact."""
    from exporter.app import Exporter
    from exporter.storage import Storage

    boot = tmp_path / "boot_id"
    boot.write_text("11111111-1111-4111-8111-111111111111\n")
    config = from_dict({"gpu": {"backend": "simulated"}, "pricing": {
        "cloud": {"hourly": 36.0}, "interruptions": {"warmup": "60s", "boot_id_file": str(boot)}}}, environ={})

    def start():
        store = Storage(str(tmp_path / "state"), clock=clock)
        exporter = Exporter(config, clock=clock, nvml_backend=nvml, storage=store)
        exporter.sample_all()
        return exporter, store

    def spend(exporter, component):
        return exporter.registry.get_sample_value("llmcost_spend_total", {"component": component, "currency": "USD"})

    first, store = start()
    for _ in range(20):
        clock.advance(5.0)
        first.sample_all()
    assert store.save(final=True)
    before = spend(first, "instance")
    restarted, _ = start()  # the same boot: no interruption
    assert restarted.registry.get_sample_value("llmcost_node_interruptions_total") == 0
    assert spend(restarted, "instance") == pytest.approx(before)

    boot.write_text("22222222-2222-4222-8222-222222222222\n")  # the node came back on a new boot
    clock.advance(30.0)  # down 30 s: billed as instance (the restored gap), not as warm-up
    after_reboot, _ = start()
    for _ in range(30):  # 150 s: 60 of warm-up, then 90
        clock.advance(5.0)
        after_reboot.sample_all()
    assert after_reboot.registry.get_sample_value("llmcost_node_interruptions_total") == 1
    assert spend(after_reboot, "interruption_warmup") == pytest.approx(36.0 * 60 / 3600, rel=1e-9)
    assert spend(after_reboot, "instance") == pytest.approx(before + 36.0 * (30 + 90) / 3600, rel=1e-9)
    total = sum(spend(after_reboot, c) for c in ("instance", "requests", "interruption_warmup"))
    assert total == pytest.approx(after_reboot.registry.get_sample_value(
        "llmcost_unallocated_spend_total", {"currency": "USD"}), rel=1e-12)  # no engine: all unallocated


def test_the_warmup_ends_when_every_engine_answers(clock, nvml, tmp_path):
    """`until_ready`: a real (simulated) vLLM that starts listening 40 s after the restart; the
    warm-up is the time until the first scrape it answers (45 s at 5 s rounds), not the 10 min cap."""
    from prometheus import free_port

    from exporter.app import Exporter
    from exporter.demo.vllm_server import SimulatedVllm
    from exporter.demo.workload import Workload
    from exporter.storage import Storage

    port, boot = free_port(), tmp_path / "boot_id"
    boot.write_text("33333333-3333-4333-8333-333333333333\n")
    config = from_dict({"gpu": {"backend": "simulated"}, "engines": [
        {"name": "vllm", "url": f"http://127.0.0.1:{port}/metrics", "kind": "vllm", "timeout": "1s"}],
        "pricing": {"cloud": {"hourly": 36.0}, "interruptions": {"warmup": "10m", "boot_id_file": str(boot)}}},
        environ={})

    def start():
        store = Storage(str(tmp_path / "state"), clock=clock)
        return Exporter(config, clock=clock, nvml_backend=nvml, storage=store), store

    first, store = start()
    first.sample_all()
    assert store.save(final=True)
    boot.write_text("44444444-4444-4444-8444-444444444444\n")
    node, _ = start()
    node.sample_all()
    for _ in range(8):  # 40 s: the model loads, nothing listens on the engine's port
        clock.advance(5.0)
        node.sample_all()
    workload = Workload(clock, 1000.0)
    workload.set_constant_load(0.5)
    server = SimulatedVllm(workload, "meta-llama/Llama-3.1-8B-Instruct", port=port).start()
    try:
        for _ in range(6):
            clock.advance(5.0)
            node.sample_all()
    finally:
        server.stop()
    warmup = node.registry.get_sample_value("llmcost_spend_total", {"component": "interruption_warmup",
                                                                    "currency": "USD"})
    assert warmup == pytest.approx(36.0 * 45 / 3600, rel=1e-9)


def test_spot_file_health_is_a_source_of_its_own(clock, exporter_for, tmp_path):
    """Missing (before the CronJob's first run), then valid, then broken: llmcost_source_up says
    so, with the reason counted, and the last good price stays."""
    path = tmp_path / "spot-prices.yaml"
    config = from_dict({"gpu": {"backend": "simulated"}, "reload_interval": "1s", "pricing": {"cloud": {
        "instance_type": "g5.12xlarge", "capacity_type": "spot", "spot_file": str(path)}}}, environ={})
    exporter = exporter_for(config)

    def health(name):
        return exporter.registry.get_sample_value(name, {"source": "spot_file", "name": "spot_file"})

    def errors(reason):
        return exporter.registry.get_sample_value("llmcost_source_errors_total",
                                                  {"source": "spot_file", "name": "spot_file", "reason": reason})

    assert health("llmcost_source_up") == 0 and errors("missing") == 1
    assert exporter.accountant.pricing.cloud.hourly == G5.spot_hourly  # the catalog's snapshot meanwhile
    write_spot_file(path, 1.95)
    clock.advance(1.0)
    exporter.check_config_file()
    assert health("llmcost_source_up") == 1 and health("llmcost_source_last_success_timestamp_seconds") == clock.now()
    assert exporter.accountant.pricing.cloud.hourly == 1.95
    path.write_text("prices: [{instance_type: g5.12xlarge, region: us-east-1, spot_hourly: -1}]\n")
    clock.advance(1.0)
    exporter.check_config_file()
    assert health("llmcost_source_up") == 0 and errors("invalid") == 1
    assert exporter.accountant.pricing.cloud.hourly == 1.95


@pytest.mark.parametrize("kind", ["fifo", "alias_bomb", "directory", "not_yaml"])
def test_a_hostile_spot_file_is_refused_in_one_line_without_hanging(tmp_path, kind):
    import os

    path = tmp_path / "spot-prices.yaml"
    if kind == "fifo":
        os.mkfifo(path)  # nothing ever writes to it: reading it would block forever
    elif kind == "alias_bomb":
        path.write_text("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
            f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
            for i in range(8)))
    elif kind == "directory":
        path.mkdir()
    else:
        path.write_text("prices: [unclosed\n")
    spot = spotprices.SpotPrices(str(path))
    assert spot.prices == () and spot.health.status().reason == "invalid"
    with pytest.raises(spotprices.SpotFileError) as err:
        spotprices.load(str(path))
    assert "\n" not in str(err.value) and str(err.value).startswith(str(path))
