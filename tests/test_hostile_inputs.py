"""Issue 13, cases 3 and 5, against the real `run` process: hostile configuration files (at start
and on reload) and engine counters whose sum would overflow. The promises: one line naming the
key and exit 2 at start; on reload the running configuration stays, the success gauge goes to 0,
/metrics keeps answering and nothing leaks (threads, memory); totals stay finite and state writes
keep working; SIGTERM under 2 s."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import time
from pathlib import Path

import pytest
from plugins.engines import serve_loopback
from plugins.process import ExporterProcess, wait_for

from exporter.storage import FILE_NAME

pytestmark = pytest.mark.integration  # the run command as a subprocess

GOOD = "pricing: {cloud: {hourly: 3.6}}\ngpu: {backend: simulated}\nreload_interval: 100ms\n"
SIGTERM_BUDGET_S = 2.0
VLLM_DP2 = Path(__file__).parent / "data" / "engines" / "vllm" / "v1-0.33.0-dp2-text-0.0.4.txt"


def alias_bomb() -> str:
    """334 bytes that expand to 9^9 (387 million) nodes if nothing stops the expansion."""
    lines, previous = ["a: &a [x, x, x, x, x, x, x, x, x]"], "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
        previous = name
    return "\n".join(lines) + "\n"


def write_bytes(content: bytes):
    return lambda path: path.write_bytes(content)


def write_text(content: str):
    return lambda path: path.write_text(content)


def symlink_to(target: str):
    return lambda path: path.symlink_to(target)


# name -> (how to make the file at `path`, the key its one line must name)
HOSTILE = {
    "infinite price": (write_text(GOOD.replace("3.6", ".inf")), "pricing.cloud.hourly"),
    "infinite multiplier": (write_text(GOOD.replace("hourly: 3.6", "hourly: 3.6, price_multiplier: .inf")),
                            "pricing.cloud.price_multiplier"),
    "zero window": (write_text(GOOD + "window: 0s\n"), "window"),
    "5,000-digit number": (write_text(GOOD.replace("3.6", "1" * 5000)), "config.file"),
    "deep nesting": (write_text(GOOD + "x: " + "[" * 5000 + "]" * 5000 + "\n"), "config.file"),
    "alias bomb": (write_text(alias_bomb()), "config.file"),
    "symlink to /dev/zero": (symlink_to("/dev/zero"), "config.file"),
    "FIFO": (lambda path: os.mkfifo(path), "config.file"),
    "not UTF-8": (write_bytes(b"\xff\xfe\x00pricing: 1\n"), "config.file"),
    "a Python tag": (write_text("pricing: !!python/object/apply:os.system [ls]\n"), "config.file"),
    "a list at the top": (write_text("- 1\n- 2\n"), "config.file"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_config_at_start_is_one_line_exit_2_and_bounded_memory(case, tmp_path):
    make, key = HOSTILE[case]
    path = tmp_path / "config.yml"
    make(path)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with ExporterProcess(path) as p:
        started = time.monotonic()
        assert p.wait_exit(timeout=20) == 2
        took = time.monotonic() - started
        log = p.stderr
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    lines = log.strip().splitlines()
    assert len(lines) == 1 and "config error:" in lines[0] and f"{key}:" in lines[0], log
    assert "Traceback" not in log
    assert took < 10, took
    if peak_mib > before / 1024:  # the peak of all children so far: only meaningful if this one set it
        assert peak_mib < 256, f"{case}: RSS peaked at {peak_mib:.0f} MiB"


def hourly(p: ExporterProcess) -> float | None:
    """The node's hourly cost, to the cent (summed over its components)."""
    value = p.value("llmcost_hourly_cost")
    return None if value is None else round(value, 2)


def reload_ok(p: ExporterProcess) -> float | None:
    return p.value("llmcost_config_last_reload_successful")


def test_hostile_edits_on_reload_keep_the_running_config_and_leak_nothing(tmp_path):
    path = tmp_path / "config.yml"
    path.write_text(GOOD)
    with ExporterProcess(path) as p:
        p.wait_serving()
        assert wait_for(lambda: hourly(p) == 3.6)
        threads = []
        rss_before = p.rss_mib()
        for case in sorted(HOSTILE):
            path.unlink()
            HOSTILE[case][0](path)
            assert wait_for(lambda: reload_ok(p) == 0, timeout=5), case
            p.signal(signal.SIGHUP)  # a SIGHUP on top: with a FIFO it used to leak a blocked thread
            started = time.monotonic()
            assert hourly(p) == 3.6, case  # the running configuration stays
            assert time.monotonic() - started < 0.5, case  # /metrics is not stalled by the reload
            path.unlink()
            path.write_text(GOOD.replace("3.6", "4.8"))
            assert wait_for(lambda: reload_ok(p) == 1 and hourly(p) == 4.8, timeout=5), case
            path.write_text(GOOD)
            assert wait_for(lambda: hourly(p) == 3.6, timeout=5), case
            threads.append(p.threads())
        rss_after = p.rss_mib()
        took = p.terminate()
        log = p.stderr
    print(f"threads after each case {threads}, RSS {rss_before:.1f} -> {rss_after:.1f} MiB, SIGTERM {took:.2f}s")
    # a thread per SIGHUP or request comes and goes, and the job pool starts workers lazily; a
    # leak (the FIFO's blocked reader used to be one per SIGHUP) would climb by one per case
    assert max(threads) - min(threads) <= 3 and threads[-1] <= min(threads) + 2, threads
    assert rss_after - rss_before < 32, (rss_before, rss_after)
    assert took < SIGTERM_BUDGET_S
    failures = [line for line in log.splitlines() if "config reload failed" in line]
    for case, (_, key) in HOSTILE.items():
        assert any(f"key={key}" in line for line in failures), (case, failures)
    # one line per bad file seen, however many polls and SIGHUPs saw it: at most two per case
    # (the poll and the SIGHUP, which reloads on purpose)
    assert len(HOSTILE) <= len(failures) <= 2 * len(HOSTILE), failures
    assert "Traceback" not in log


def with_prompt_tokens(value: str) -> bytes:
    """vLLM 0.33.0's own exposition of two data-parallel ranks, each rank's prompt tokens at `value`."""
    lines = []
    for line in VLLM_DP2.read_text().splitlines():
        if line.startswith("vllm:prompt_tokens_total{"):
            line = line.rsplit(" ", 1)[0] + " " + value
        lines.append(line)
    return ("\n".join(lines) + "\n").encode()


def test_ranks_whose_sum_overflows_are_refused_and_totals_and_state_stay_finite(tmp_path):
    """Each rank's count grows by 1e308 after the first scrape: each a valid count, their sum is
    not a finite number."""
    bodies = iter([with_prompt_tokens("1000")])
    overflowing = with_prompt_tokens("1e308")
    engine = serve_loopback(lambda _path: (200, "text/plain; version=0.0.4; charset=utf-8", next(bodies, overflowing)))
    url = f"http://127.0.0.1:{engine.server_address[1]}/metrics"
    config = tmp_path / "config.yml"
    config.write_text(GOOD + f"engines:\n- {{name: big, url: '{url}', interval: 200ms, timeout: 150ms, kind: vllm}}\n")
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    try:
        with ExporterProcess(config, f"--storage.path={state_dir}", "--storage.interval=200ms") as p:
            p.wait_serving()
            assert wait_for(lambda: (p.value("llmcost_source_errors_total", reason="overflow") or 0) >= 1)
            samples = p.samples()
            took = p.terminate()
            log = p.stderr
    finally:
        engine.shutdown()
    assert all(v == v and abs(v) != float("inf") for v in samples.values()), \
        [k for k, v in samples.items() if not (v == v and abs(v) != float("inf"))]
    assert took < SIGTERM_BUDGET_S
    assert "cannot write state" not in log and "Traceback" not in log, log
    state = json.loads((state_dir / FILE_NAME).read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the state"))
    assert state  # written at the end, finite (NaN/Infinity would have failed parse_constant)
    assert len([line for line in log.splitlines() if "reason=overflow" in line]) == 1, log


def test_a_pod_annotation_with_cr_lf_cannot_forge_a_log_line(tmp_path):
    """Case 7: the annotation ends up in log lines (the discovered engine's URL, its scrape error);
    every line of the process's log must still be one record of its own."""
    from test_kubernetes import NODE, FakeApiServer, load

    forged = "/metrics\r\nts=2026-12-01 level=ERROR logger=exporter msg=forged\n"
    api = FakeApiServer()
    pod = load("podlist-llm-node.json")["items"][0]
    pod["status"]["podIP"] = "127.0.0.1"
    pod["metadata"].setdefault("annotations", {})["llmcost.io/path"] = forged
    api.node, api.pods = load("node-eks-karpenter-spot-g5.12xlarge.json"), [pod]
    config = tmp_path / "config.yml"
    config.write_text(f"gpu: {{backend: none}}\nkubernetes:\n  enabled: true\n  node_name: {NODE}\n  api_url: '{api.url}'\n"
                      "  discovery: {enabled: true, interval: 1s, timeout: 500ms}\n")
    try:
        with ExporterProcess(config) as p:
            p.wait_serving()
            assert wait_for(lambda: any(path.endswith("/pods") for path, _ in api.requests))
            time.sleep(1.5)  # the pod is listed, then its engine is scraped (and fails)
            took = p.terminate()
            log = p.stderr
    finally:
        api.stop()
    lines = log.splitlines()
    assert any("msg=forged" in line for line in lines), log  # the annotation did reach the log...
    assert all(line.startswith("ts=") for line in lines), log  # ...inside a record, never as one
    assert not any(re.match(r"ts=\S+ \S+ level=\w+ logger=\S+ msg=forged", line) for line in lines), log
    assert took < SIGTERM_BUDGET_S
