"""Isolation (issue 13, case 1): a slow or hung source never delays spend accrual, other engines,
discovery or reload. The real `run` process over real sockets, its hung engines accepting the
connection and never answering, each scrape of them lasting its full 10 s timeout: five added by a
reload, or forty labelled pods under discovery. And the cap on discovered engines that bounds the
threads of the engine lane (kubernetes.discovery.max_engines)."""

import copy
import logging
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import MODEL
from exporter.config import ConfigError, from_dict
from test_demo_and_promtool import free_port
from test_kubernetes import NODE, FakeApiServer, load
from test_shutdown import BUDGET_S, terminate, wait_serving

HOURLY = 3600.0  # a dollar a second: spend growth reads as seconds of accrual
HUNG = "{interval: 11s, timeout: 10s}"  # each scrape of a silent engine holds its thread for 10 s
WINDOW_S = 5.0  # how long a test watches accrual and the healthy engine while the hung scrapes run


class Run:
    """`llm-cost-exporter run` on a config file, read over HTTP."""

    def __init__(self, path, env=None):
        self.port = free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("LLMCOST_")}, **(env or {})}
        self.process = subprocess.Popen([sys.executable, "-m", "exporter", "run", f"--config.file={path}",
                                         f"--web.listen-address=127.0.0.1:{self.port}"], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_serving(self.port)

    def samples(self) -> list:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2).read().decode()
        return [s for family in text_string_to_metric_families(text) for s in family.samples]

    def get(self, metric, **labels):
        """The value of the one sample of `name` with these labels (and maybe others), None if absent."""
        found = [s.value for s in self.samples() if s.name == metric and labels.items() <= s.labels.items()]
        assert len(found) <= 1, (metric, labels, found)
        return found[0] if found else None

    def threads(self) -> int:
        with open(f"/proc/{self.process.pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))

    def stop(self) -> tuple[float, str]:
        took, stderr = terminate(self.process)
        assert self.process.returncode == 0, stderr
        return took, stderr

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def wait_for(predicate, timeout: float, step, what: str) -> float:
    """Seconds until predicate() held, calling step() between tries (the simulated engines' clock)."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"not within {timeout}s: {what}"
        step()
        time.sleep(0.1)
    return time.monotonic() - started


def watch_accrual(run, healthy, tick, tokens):
    """WINDOW_S of spend and of the healthy engine's scrapes and tokens, while the hung scrapes run:
    (spend per hour, scrapes per second, tokens counted, threads)."""
    started, spend, served, counted = time.monotonic(), run.get("llmcost_spend_total", component="instance"), \
        healthy.requests_served, tokens()
    threads = 0
    while time.monotonic() - started < WINDOW_S:
        tick()
        threads = max(threads, run.threads())
        time.sleep(0.25)
    took = time.monotonic() - started
    return ((run.get("llmcost_spend_total", component="instance") - spend) / took * 3600,
            (healthy.requests_served - served) / took, tokens() - counted, threads)


def assert_unaffected(rate, cadence, counted, threads):
    print(f"spend {rate:.0f}/h of {HOURLY:.0f}/h; healthy engine scraped {cadence:.2f}/s; {counted:.0f} tokens; "
          f"{threads} threads")
    assert rate == pytest.approx(HOURLY, rel=0.1), f"spend accrued at {rate:.0f}/h instead of {HOURLY:.0f}/h"
    assert cadence >= 0.75, f"the healthy engine (every 1s) was scraped {cadence:.2f} times a second"
    assert counted > 0


@pytest.mark.integration
def test_five_hung_engines_added_by_a_reload_delay_no_accrual_engine_or_reload(tmp_path, vllm, clock, silent_engine):
    healthy = vllm()
    path = tmp_path / "config.yml"

    def write(hourly, hung=0):
        engines = [f"  - {{name: healthy, url: '{healthy.url}', kind: vllm, interval: 1s, timeout: 500ms}}"]
        engines += [f"  - {{name: hung{i}, url: '{silent_engine.url}', kind: vllm, "
                    f"{HUNG[1:-1]}}}" for i in range(hung)]
        path.write_text(f"pricing: {{cloud: {{hourly: {hourly}}}}}\ngpu: {{backend: simulated, interval: 250ms}}\n"
                        "reload_interval: 250ms\nengines:\n" + "\n".join(engines) + "\n")

    def tick():
        clock.advance(1)  # the simulated engine serves tokens as the test's clock moves

    def tokens():
        return run.get("llmcost_tokens_total", engine="healthy", model=MODEL, direction="output") or 0.0

    write(HOURLY)
    run = Run(path)
    try:
        wait_for(lambda: tokens() > 0, 15, tick, "the healthy engine's first tokens")
        write(HOURLY, hung=5)
        wait_for(lambda: run.get("llmcost_source_up", name="hung4") is not None, 5, tick, "the reload adding 5 engines")
        wait_for(lambda: silent_engine.open == 5, 5, tick, "a scrape of each hung engine in flight")
        assert_unaffected(*watch_accrual(run, healthy, tick, tokens))
        assert silent_engine.open == 5 and silent_engine.most_open == 5  # still hung; one in flight per engine
        write(2 * HOURLY, hung=5)
        applied = wait_for(lambda: run.get("llmcost_hourly_cost") == 2 * HOURLY, 3, tick, "a further reload")
        assert run.get("llmcost_config_last_reload_successful") == 1
        took, stderr = run.stop()
    finally:
        run.kill()
    print(f"further reload applied in {applied:.2f}s; SIGTERM to exit {took:.2f}s")
    assert took < BUDGET_S, stderr


def hung_pods(pods, count, port):
    """`count` labelled engine pods on this node, all pointing at the silent engine's port."""
    template = next(p for p in pods if (p["metadata"].get("annotations") or {}).get("llmcost.io/port"))
    out = []
    for i in range(count):
        pod = copy.deepcopy(template)
        pod["metadata"].update(name=f"hung-{i}", uid=f"uid-hung-{i}")
        pod["metadata"]["annotations"]["llmcost.io/port"] = str(port)
        pod["status"]["podIP"] = "127.0.0.1"
        out.append(pod)
    return out


@pytest.fixture
def api():
    server = FakeApiServer()
    server.node = load("node-eks-karpenter-spot-g5.12xlarge.json")
    yield server
    server.stop()


@pytest.mark.integration
def test_forty_hung_pods_under_discovery_delay_no_accrual_listing_or_engine(tmp_path, vllm, clock, silent_engine, api):
    healthy = vllm()
    port = int(silent_engine.url.split(":")[2].split("/")[0])
    api.pods = hung_pods(load("podlist-llm-node.json")["items"], 41, port)
    late = api.pods.pop()  # appears later
    path = tmp_path / "config.yml"
    path.write_text(f"pricing: {{cloud: {{hourly: {HOURLY}}}}}\ngpu: {{backend: simulated, interval: 250ms}}\n"
                    f"engines:\n  - {{name: healthy, url: '{healthy.url}', kind: vllm, interval: 1s, timeout: 500ms}}\n"
                    f"kubernetes:\n  enabled: true\n  node_name: {NODE}\n  api_url: '{api.url}'\n  timeout: 500ms\n"
                    f"  discovery: {{enabled: true, refresh_interval: 1s, interval: 11s, timeout: 10s}}\n")

    def tick():
        clock.advance(1)

    def tokens():
        return run.get("llmcost_tokens_total", engine="healthy", model=MODEL, direction="output") or 0.0

    def listed(name):
        return run.get("llmcost_source_up", source="engine", name=f"llm/{name}") is not None

    run = Run(path)
    try:
        wait_for(lambda: silent_engine.open == 40, 15, tick, "a scrape of each of the 40 pods in flight")
        assert_unaffected(*watch_accrual(run, healthy, tick, tokens))
        assert silent_engine.open == 40 and silent_engine.most_open == 40  # still hung; one in flight per engine
        api.pods = api.pods[1:] + [late]  # hung-0 deleted, hung-40 started
        listing = wait_for(lambda: listed("hung-40") and not listed("hung-0"), 5, tick, "the pod listing")
        assert run.get("llmcost_source_up", source="kubernetes", name="pods") == 1
        took, stderr = run.stop()
    finally:
        run.kill()
    print(f"pod listing followed in {listing:.2f}s; SIGTERM to exit {took:.2f}s")
    assert "engine discovered engine=llm/hung-40" in stderr and "engine gone engine=llm/hung-0" in stderr
    assert took < BUDGET_S, stderr


# -- the cap on discovered engines ---------------------------------------------------------------

def capped(api_url, max_engines):
    return from_dict({"pricing": {"cloud": {"hourly": 3.6}}, "gpu": {"backend": "simulated"},
                      "kubernetes": {"enabled": True, "node_name": NODE, "api_url": api_url, "timeout": "300ms",
                                     "discovery": {"enabled": True, "max_engines": max_engines}}}, environ={})


def test_max_engines_keeps_the_longest_running_pods_and_says_so_once(api, exporter_for, caplog):
    pods = hung_pods(load("podlist-llm-node.json")["items"], 5, 9)
    for i, pod in enumerate(pods):
        pod["status"]["startTime"] = f"2026-11-23T08:0{5 - i}:00Z"  # hung-4 started first
    api.pods = pods
    exporter = exporter_for(capped(api.url, 3))
    with caplog.at_level(logging.INFO, logger="exporter.kube"):
        exporter.refresh_pods()
        exporter.refresh_pods()  # the same pods left out: counted again, not logged again
        assert sorted(e.name for e in exporter.engines) == ["llm/hung-2", "llm/hung-3", "llm/hung-4"]
        api.pods = pods[2:]
        exporter.refresh_pods()
    errors = exporter.registry.get_sample_value("llmcost_source_errors_total",
                                                {"source": "kubernetes", "name": "pods", "reason": "too_many_engines"})
    assert errors == 4
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("WARNING", "engine pods left out count=2 max_engines=3 first=llm/hung-1; raise "
                    "kubernetes.discovery.max_engines or narrow the label selector"),
        ("INFO", "engine pods within max_engines again max_engines=3")]


@pytest.mark.parametrize("value", [0, -1, 1.5, "many"])
def test_max_engines_must_be_a_whole_number_of_at_least_one(api, value):
    with pytest.raises(ConfigError) as err:
        capped(api.url, value)
    assert str(err.value).startswith("kubernetes.discovery.max_engines: got ")
