"""Configuration reload: polling the file (ConfigMap symlink swaps included), SIGHUP and the
reload hook; the last good configuration stays when the new one is invalid, needs a restart,
is deleted or cannot be read; counted totals never go backwards across a reload."""

import logging
import os
import signal
import threading
import time

import pytest

from conftest import MODEL, run_for, value
from exporter.cli import SIGNALS, block_signals, wait_for_signal
from exporter.app import Exporter
from exporter.config import load_file

BASE = """\
pricing: {{cloud: {{hourly: {hourly}}}}}
gpu: {{backend: simulated, interval: 1s}}
window: 10m
reload_interval: {reload}
removed_engine_retention: 2m
engines:
{engines}
"""


def engines_yaml(*engines):
    return "\n".join(f"  - {{name: {name}, url: '{url}', interval: 5s, timeout: 1s}}" for name, url in engines)


def write(path, hourly=3.6, engines=(), reload="5s"):
    path.write_text(BASE.format(hourly=hourly, engines=engines_yaml(*engines) or "  []", reload=reload))


@pytest.fixture
def setup(tmp_path, clock, nvml, vllm):
    """A config file with one engine, and an exporter loaded from it (environment ignored)."""
    path = tmp_path / "config.yml"
    server = vllm()
    write(path, engines=[("a", server.url)])

    def make():
        return Exporter(load_file(str(path), environ={}), clock=clock, nvml_backend=nvml, environ={})

    return path, server, make


def spend(exporter):
    return value(exporter, "llmcost_spend_total", component="instance", currency="USD")


def reload_metrics(exporter):
    return (value(exporter, "llmcost_config_last_reload_successful"),
            value(exporter, "llmcost_config_last_reload_success_timestamp_seconds"))


def counters(exporter) -> dict:
    """Every counter sample exposed: (name, labels) -> value."""
    out = {}
    for family in exporter.registry.collect():
        if family.type == "counter":
            for s in family.samples:
                if s.name.endswith("_total"):
                    out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_a_valid_change_applies_new_prices_from_the_reload_on(setup, clock):
    path, server, make = setup
    exporter = make()
    exporter.sample_all()
    run_for(clock, exporter, 3600, step=60)
    assert spend(exporter) == pytest.approx(3.6)
    assert reload_metrics(exporter) == (1, clock.now() - 3600)
    tokens = value(exporter, "llmcost_tokens_total", engine="a", model=MODEL, direction="output")
    write(path, hourly=7.2, engines=[("a", server.url)])
    exporter.check_config_file()
    assert reload_metrics(exporter) == (1, clock.now())
    run_for(clock, exporter, 1800, step=60)
    assert spend(exporter) == pytest.approx(3.6 + 3.6)  # 1 h at 3.6, then 30 min at 7.2
    assert value(exporter, "llmcost_hourly_cost", currency="USD") == pytest.approx(7.2)
    assert value(exporter, "llmcost_tokens_total", engine="a", model=MODEL, direction="output") > tokens
    assert exporter.reload_config() == (True, "configuration file unchanged")


def test_an_invalid_change_keeps_the_last_good_config_and_names_the_key_once(setup, clock, caplog):
    path, server, make = setup
    exporter = make()
    exporter.sample_all()
    started = clock.now()
    run_for(clock, exporter, 600, step=60)
    path.write_text(path.read_text().replace("hourly: 3.6", "hourly: -1"))
    with caplog.at_level(logging.INFO, logger="exporter"):
        for _ in range(3):  # polled three times, logged once
            exporter.check_config_file()
            run_for(clock, exporter, 600, step=60)
    assert reload_metrics(exporter) == (0, started)
    assert spend(exporter) == pytest.approx(3.6 * 2400 / 3600)  # still the last good price
    lines = [r.getMessage() for r in caplog.records if "config reload" in r.getMessage()]
    assert len(lines) == 1 and "key=pricing.cloud.hourly" in lines[0] and "got -1, allowed: a number >= 0" in lines[0]
    ok, message = exporter.reload_config()  # the hook (SIGHUP) tries again and says why
    assert (ok, message) == (False, "pricing.cloud.hourly: got -1, allowed: a number >= 0")
    write(path, hourly=3.6, engines=[("a", server.url)])
    exporter.check_config_file()
    assert reload_metrics(exporter) == (1, clock.now())


def test_a_change_that_needs_a_restart_is_refused_whole(setup, clock):
    path, server, make = setup
    exporter = make()
    path.write_text(path.read_text().replace("hourly: 3.6", "hourly: 9.9").replace("backend: simulated", "backend: none"))
    ok, message = exporter.reload_config()
    assert not ok and message == ("gpu.backend: changed from 'simulated' to 'none', allowed: the running value; "
                                  "this key needs a restart")
    assert exporter.accountant.pricing.cloud.hourly == 3.6  # nothing of it applied
    assert reload_metrics(exporter)[0] == 0


@pytest.mark.parametrize("fault", ["deleted", "directory in its place"])
def test_a_deleted_or_unreadable_file_keeps_the_running_config(setup, clock, caplog, fault):
    # Tests run as root, so chmod 000 would not stop reading: a directory in place of the file can't be read by anyone.
    path, server, make = setup
    exporter = make()
    content = path.read_text()
    path.unlink()
    if fault != "deleted":
        path.mkdir()
    with caplog.at_level(logging.INFO, logger="exporter"):
        exporter.check_config_file()
        exporter.check_config_file()
        exporter.sample_all()
        run_for(clock, exporter, 600, step=60)
        assert reload_metrics(exporter)[0] == 0
        assert spend(exporter) == pytest.approx(0.6)
        if fault != "deleted":
            path.rmdir()
        path.write_text(content)  # back, as it was
        exporter.check_config_file()
    assert reload_metrics(exporter) == (1, clock.now())
    lines = [r.getMessage() for r in caplog.records if "config" in r.getMessage()]
    why = "No such file or directory" if fault == "deleted" else "not a regular file"
    assert len(lines) == 2 and "key=config.file" in lines[0] and why in lines[0], lines
    assert "configuration file unchanged" in lines[1]


def test_totals_never_go_backwards_across_a_reload_that_changes_engines(setup, clock, vllm):
    path, server, make = setup
    b, c, a_moved = vllm(seed=2), vllm(seed=3), vllm(seed=4)
    write(path, engines=[("a", server.url), ("b", b.url)])
    exporter = make()
    exporter.sample_all()
    run_for(clock, exporter, 300)
    before = counters(exporter)
    assert {k[1] for k in before if k[0] == "llmcost_engine_spend_total"} == {
        (("currency", "USD"), ("engine", "a")), (("currency", "USD"), ("engine", "b"))}
    # b removed, a now answered by another server (a new baseline), c added, a new price
    write(path, hourly=5.0, engines=[("a", a_moved.url), ("c", c.url)])
    assert exporter.reload_config() == (True, "configuration reloaded")
    for step in range(6):
        run_for(clock, exporter, 30)
        now = counters(exporter)
        for key, old in before.items():
            if key not in now and dict(key[1]).get("engine") == "b":
                continue  # dropped after removed_engine_retention (2m), as documented
            assert key in now and now[key] >= old - 1e-9, (key, old, now.get(key))
        before = {**before, **now}
    assert value(exporter, "llmcost_tokens_total", engine="c", model=MODEL, direction="input") > 0
    assert value(exporter, "llmcost_engine_spend_total", engine="b", currency="USD") is None  # gone after 2m


def test_a_configmap_update_is_picked_up_by_the_polling_job(tmp_path, clock, nvml):
    # How the kubelet updates a mounted ConfigMap: files are symlinks through ..data, which is
    # swapped atomically to a new timestamped directory.
    mount = tmp_path / "config"
    mount.mkdir()
    first = mount / "..2026_11_23_09_00_00.000000001"
    first.mkdir()
    write(first / "config.yml", hourly=3.6, reload="100ms")
    (mount / "..data").symlink_to(first.name)
    (mount / "config.yml").symlink_to("..data/config.yml")
    exporter = Exporter(load_file(str(mount / "config.yml"), environ={}), clock=clock, nvml_backend=nvml, environ={})
    exporter.start()
    try:
        second = mount / "..2026_11_23_09_05_00.000000002"
        second.mkdir()
        write(second / "config.yml", hourly=4.2, reload="100ms")
        (mount / "..data_tmp").symlink_to(second.name)
        os.rename(mount / "..data_tmp", mount / "..data")
        deadline = time.monotonic() + 5
        while exporter.accountant.pricing.cloud.hourly != 4.2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert exporter.accountant.pricing.cloud.hourly == 4.2
        assert exporter.reload_successful
    finally:
        exporter.stop()


def test_sighup_reloads_and_the_wait_goes_on_until_sigterm(setup, clock):
    """What `run` does in its main thread: SIGHUP reloads, SIGTERM ends the wait. (Sent to this
    thread: pytest's own threads do not hold the signals; `run` blocks them before any thread
    starts, and the run-process tests send them to the process.)"""
    path, server, make = setup
    exporter = make()
    block_signals()  # pytest runs tests in the main thread
    exporter.start()
    try:
        write(path, hourly=8.8, engines=[("a", server.url)], reload="1h")
        signal.pthread_kill(threading.main_thread().ident, signal.SIGHUP)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
        assert wait_for_signal(timeout=5, on_sighup=exporter.reload_config) is True
        assert exporter.accountant.pricing.cloud.hourly == 8.8  # reloaded before SIGTERM was taken
        assert wait_for_signal(timeout=0.2, on_sighup=exporter.reload_config) is False  # nothing pending
    finally:
        exporter.stop()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)


@pytest.mark.integration  # the run command as a subprocess
def test_the_run_command_reloads_its_file_and_reports_a_bad_one(tmp_path):
    """`llm-cost-exporter run` as deployed: polling picks a new price up; a bad file on SIGHUP keeps
    the running one, sets the gauge to 0 and logs one line naming the key."""
    from plugins.process import ExporterProcess, wait_for

    path = tmp_path / "config.yml"
    path.write_text("pricing: {cloud: {hourly: 3.6}}\ngpu: {backend: none}\nreload_interval: 200ms\n")
    with ExporterProcess(path) as p:
        assert wait_for(lambda: p.value("llmcost_hourly_cost", currency="USD") == 3.6)
        # polled: a new price, and polling slowed down to 1h (also applied)
        path.write_text("pricing: {cloud: {hourly: 4.8}}\ngpu: {backend: none}\nreload_interval: 1h\n")
        assert wait_for(lambda: p.value("llmcost_hourly_cost", currency="USD") == 4.8)
        path.write_text("pricing: {cloud: {hourly: 4.8}}\ngpu: {backend: none}\nreload_interval: 1h\nwindoww: 5m\n")
        p.signal(signal.SIGHUP)
        assert wait_for(lambda: p.value("llmcost_config_last_reload_successful") == 0)
        assert p.value("llmcost_hourly_cost", currency="USD") == 4.8
        p.terminate()
        stderr, process = p.stderr, p.process
    assert process.returncode == 0
    failures = [line for line in stderr.splitlines() if "config reload failed" in line]
    assert len(failures) == 1 and "key=windoww" in failures[0], stderr
    assert sum("configuration reloaded" in line for line in stderr.splitlines()) == 1, stderr


def test_a_file_still_being_written_is_loaded_once_it_settles(setup, clock):
    import threading

    path, server, make = setup
    exporter = make()
    full = path.read_text().replace("hourly: 3.6", "hourly: 6.0")
    path.write_text(full[:25])  # an editor half way through rewriting it in place
    threading.Timer(0.02, path.write_text, args=(full,)).start()
    assert exporter.reloader.poll() == (True, "changing")  # nothing loaded, nothing reported
    exporter.check_config_file()
    assert exporter.accountant.pricing.cloud.hourly == 6.0 and exporter.reload_successful


def test_a_defect_while_applying_a_reload_sets_the_gauge_to_0_with_one_line(tmp_path, clock, caplog):
    """Whatever goes wrong applying a valid-looking file (a bug, not a bad key) is a failed reload:
    the gauge must not keep saying success."""
    from exporter.reload import ConfigReloader

    path = tmp_path / "config.yml"
    path.write_text("pricing: {cloud: {hourly: 3.6}}\n")

    def apply(_config):
        raise RecursionError("maximum recursion depth exceeded")

    reloader = ConfigReloader(str(path), apply, clock, environ={})
    path.write_text("pricing: {cloud: {hourly: 4.8}}\n")
    with caplog.at_level(logging.ERROR):
        ok, message = reloader.reload()
    assert not ok and not reloader.successful
    assert "RecursionError" in message
    assert [r.getMessage() for r in caplog.records if "config reload failed" in r.getMessage()] == \
        [f"config reload failed, keeping the running configuration path={path} key=config.file error=config.file: "
         f"could not be applied: RecursionError: maximum recursion depth exceeded"]
