"""The state file from outside (issue 13, case 6): a file that is valid JSON of the right version
but the wrong shape, or holds NaN, negative or huge totals, never crashes the start: it is set
aside with one line and the exporter starts from 0. A FIFO or a symlink at the state path or at
its temporary file never blocks the start or SIGTERM, and a write that hangs is given up in time.
In-process with a manual clock, then through the real `run` command."""

import copy
import json
import logging
import os
import threading
import time
import urllib.request

import pytest
import test_restart
import test_shutdown
from conftest import run_for, value
from prometheus import free_port
from test_restart import _start, _wait_serving, spend
from test_shutdown import BUDGET_S, terminate

from exporter import storage as storage_module
from exporter.state_schema import MAX_NUMBER
from exporter.storage import FILE_NAME

HOURLY = 3.6
node = test_restart.node  # fixtures, found by pytest under these names
hanging_engine = test_shutdown.hanging_engine


@pytest.fixture
def saved_document(clock, node, tmp_path):
    """A real state document: what a run of a minute saved (the file removed again)."""
    _, start_exporter = node
    exporter, store = start_exporter()
    run_for(clock, exporter, 60)
    assert store.save()
    path = tmp_path / FILE_NAME
    document = json.loads(path.read_text())
    path.unlink()
    assert document["engines"]["vllm"]["totals"]["last_raw"] and document["gpus"]  # every part is there
    return document


def _parent(document, path: str):
    """The container holding the last part of a dotted path (list indices as numbers), and that part."""
    *parents, last = path.split(".")
    container = document
    for part in parents:
        container = container[int(part)] if isinstance(container, list) else container[part]
    return container, int(last) if isinstance(container, list) else last


def _set(path: str, value):
    """A mutation of the document: the value at a dotted path replaced."""
    def mutate(document):
        container, key = _parent(document, path)
        container[key] = value
    return mutate


def _delete(path: str):
    def mutate(document):
        container, key = _parent(document, path)
        del container[key]
    return mutate


HUGE_INT = 10**400  # json.dumps writes every digit; float() of it overflows
# (mutation, what the one log line names): right version, valid JSON, wrong content
WRONG = {
    "accountant_missing": (_delete("accountant"), "accountant: required key is missing"),
    "accountant_a_list": (_set("accountant", []), "accountant: got a list of 0 items"),
    "gpus_a_mapping": (_set("gpus", {}), "gpus: got a mapping"),
    "engines_a_list": (_set("engines", [1, 2]), "engines: got a list"),
    "total_a_string": (_set("accountant.components.instance", "0.5"), "accountant.components.instance: got '0.5'"),
    "total_a_bool": (_set("accountant.components.instance", True), "accountant.components.instance: got True"),
    "total_null": (_set("accountant.energy_cost", None), "accountant.energy_cost: got None"),
    "total_nested_garbage": (_set("gpus.0.energy_joules", {"a": [1, {"b": None}]}), "gpus[0].energy_joules"),
    "total_huge_int": (_set("accountant.components.instance", HUGE_INT), "accountant.components.instance"),
    "total_negative": (_set("accountant.components.instance", -1.0), "got -1.0, allowed: a number from 0"),
    "total_1e308": (_set("accountant.opex", 1e308), "accountant.opex: got 1e+308"),
    "total_over_2^53": (_set("gpus.0.energy_joules", MAX_NUMBER * 2), "gpus[0].energy_joules"),
    "engine_totals_short_row": (_set("accountant.engines.vllm", [1.0, 2.0]), "accountant.engines.vllm: got a list"),
    "last_time_a_string": (_set("accountant.last_time", "yesterday"), "accountant.last_time: got 'yesterday'"),
    "gpu_uuid_missing": (_delete("gpus.0.uuid"), "gpus[0].uuid: required key is missing"),
    "series_row_a_string": (_set("engines.vllm.totals.totals.0.3", "22500"), "engines.vllm.totals.totals[0][3]"),
    "labels_not_a_list": (_set("engines.vllm.totals.last_raw.0.3", "engine=0"), "engines.vllm.totals.last_raw[0][3]"),
    "api_spend_a_mapping": (_set("engines.vllm.api_spend", {"m": 1}), "engines.vllm.api_spend: got a mapping"),
    "resets_a_fraction": (_set("engines.vllm.totals.resets", 1.5), "engines.vllm.totals.resets: got 1.5"),
    "baselined_a_number": (_set("engines.vllm.totals.baselined", 1), "engines.vllm.totals.baselined: got 1"),
    "last_seen_a_list": (_set("engines.vllm.last_seen", [1700000000.0]), "engines.vllm.last_seen: got a list"),
    "clean_a_string": (_set("clean", "yes"), "clean: got 'yes'"),
    "version_true": (_set("version", True), "not a version 1 state file"),
}
# literals Python's json reads but a total must never be
LITERALS = {"NaN": "NaN is not a number JSON allows", "Infinity": "Infinity is not a number JSON allows",
            "-Infinity": "-Infinity is not a number JSON allows", "1e400": "got inf"}


def _start_with(tmp_path, start_exporter, content: bytes, caplog):
    (tmp_path / FILE_NAME).write_bytes(content)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="exporter"):
        exporter, store = start_exporter()
    return exporter, store, [r for r in caplog.records if r.name == "exporter.storage"]


def _assert_set_aside_and_fresh(tmp_path, clock, exporter, store, lines, content: bytes, names: str):
    assert [r.levelname for r in lines] == ["WARNING"], [r.getMessage() for r in lines]
    line = lines[0].getMessage()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(FILE_NAME + ".bad-")]
    assert len(aside) == 1 and aside[0].read_bytes() == content  # kept for a human, untouched
    assert not (tmp_path / FILE_NAME).exists()
    assert names in line and f"set aside as {aside[0]}" in line and "\n" not in line, line
    assert value(exporter, "llmcost_state_restored_gap_seconds") is None and spend(exporter) == 0
    run_for(clock, exporter, 60)
    assert spend(exporter) == pytest.approx(HOURLY * 60 / 3600) and store.save()  # and it goes on


def test_the_unmutated_document_is_restored(clock, node, tmp_path, saved_document, caplog):
    """The control: the variants below differ from a file that restores."""
    _, start_exporter = node
    clock.advance(10)
    exporter, _, lines = _start_with(tmp_path, start_exporter, json.dumps(saved_document).encode(), caplog)
    assert "state restored" in lines[0].getMessage()
    assert spend(exporter) == pytest.approx(HOURLY * 70 / 3600)  # 60 s saved, the 10 s down billed


@pytest.mark.parametrize("variant", sorted(WRONG))
def test_valid_json_of_the_wrong_shape_is_set_aside_and_the_start_is_fresh(clock, node, tmp_path, saved_document,
                                                                           caplog, variant):
    _, start_exporter = node
    mutate, names = WRONG[variant]
    document = copy.deepcopy(saved_document)
    mutate(document)
    content = json.dumps(document).encode()
    exporter, store, lines = _start_with(tmp_path, start_exporter, content, caplog)
    _assert_set_aside_and_fresh(tmp_path, clock, exporter, store, lines, content, names)


@pytest.mark.parametrize("literal", sorted(LITERALS))
def test_non_finite_literals_are_set_aside(clock, node, tmp_path, saved_document, caplog, literal):
    _, start_exporter = node
    document = copy.deepcopy(saved_document)
    document["accountant"]["components"]["instance"] = "PLACEHOLDER"
    content = json.dumps(document).replace('"PLACEHOLDER"', literal).encode()
    exporter, store, lines = _start_with(tmp_path, start_exporter, content, caplog)
    _assert_set_aside_and_fresh(tmp_path, clock, exporter, store, lines, content, LITERALS[literal])


def test_a_second_bad_file_in_the_same_second_gets_its_own_name(clock, node, tmp_path, caplog):
    _, start_exporter = node
    for content in (b"{", b"[]"):
        _start_with(tmp_path, start_exporter, content, caplog)
    kept = sorted(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(FILE_NAME + ".bad-"))
    assert kept == [b"[]", b"{"]


def test_a_fifo_at_the_state_path_is_set_aside_without_blocking(clock, node, tmp_path, caplog):
    _, start_exporter = node
    os.mkfifo(tmp_path / FILE_NAME)  # an open() for reading would wait for a writer forever
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="exporter"):
        exporter, store = start_exporter()
    assert time.monotonic() - started < 1.0
    assert "not a regular file" in caplog.text and "set aside" in caplog.text
    run_for(clock, exporter, 10)
    assert store.save() and json.loads((tmp_path / FILE_NAME).read_text())["version"] == 1


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_a_non_regular_temporary_file_is_a_failed_write_not_a_blocked_one(clock, node, tmp_path, caplog, kind):
    _, start_exporter = node
    exporter, store = start_exporter()
    tmp, victim = tmp_path / f"{FILE_NAME}.tmp", tmp_path / "victim"
    victim.write_text("not ours")
    if kind == "fifo":
        os.mkfifo(tmp)
    else:
        tmp.symlink_to(victim)  # the write must not follow it and overwrite another file
    caplog.clear()
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="exporter.storage"):
        assert not store.save() and not store.save()
    assert time.monotonic() - started < 1.0 and victim.read_text() == "not ours"
    assert value(exporter, "llmcost_state_write_errors_total") == 2
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot write state path={tmp_path / FILE_NAME}: {tmp} is not a regular file; retrying every 30s"]
    tmp.unlink()
    with caplog.at_level(logging.INFO, logger="exporter.storage"):
        assert store.save()
    assert "state written again" in caplog.text


def test_the_final_write_gives_up_in_time_when_the_write_hangs(clock, node, caplog):
    """A hung NFS mount blocks the write in the kernel; here the dump blocks, the same for stop()."""
    _, start_exporter = node
    exporter, store = start_exporter()
    release = threading.Event()
    store.bind(lambda: release.wait(30) and exporter.dump_totals())
    started = time.monotonic()
    try:
        with caplog.at_level(logging.INFO, logger="exporter.storage"):
            assert store.stop() is False
        took = time.monotonic() - started
    finally:
        release.set()
    assert storage_module.FINAL_WRITE_S <= took < storage_module.FINAL_WRITE_S + 0.5
    assert value(exporter, "llmcost_state_write_errors_total") == 1
    assert "did not finish within 1s" in caplog.text


def test_no_periodic_write_follows_the_final_one(clock, node, tmp_path):
    """A periodic write after the final one would mark a clean stop as a crash."""
    _, start_exporter = node
    _, store = start_exporter()
    assert store.stop()
    assert not store.save() and json.loads((tmp_path / FILE_NAME).read_text())["clean"] is True


# -- through the run command ----------------------------------------------------------------------

def _config(tmp_path, engine_url):
    path = tmp_path / "config.yml"
    path.write_text(json.dumps({"pricing": {"mode": "cloud", "cloud": {"hourly": HOURLY}},
                                "gpu": {"backend": "simulated", "interval": "100ms", "simulated": {"count": 1}},
                                "engines": [{"url": engine_url, "interval": "500ms", "timeout": "400ms"}]}))
    return path


def _scrape(port) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()


def _run(tmp_path, engine_url):
    port, storage = free_port(), tmp_path / "state"
    storage.mkdir(exist_ok=True)
    return _start(_config(tmp_path, engine_url), port, storage), port, storage


def _stop_within_budget(process) -> str:
    took, stderr = terminate(process)
    print(f"SIGTERM to exit {took:.2f}s")
    assert process.returncode == 0, stderr
    assert took < BUDGET_S, f"SIGTERM to exit {took:.2f}s\n{stderr}"
    return stderr


@pytest.mark.integration
def test_run_with_a_fifo_at_the_state_path_starts_listens_and_stops_in_time(hanging_engine, tmp_path):
    process, port, storage = _run(tmp_path, hanging_engine.url)
    os.mkfifo(storage / FILE_NAME)
    try:
        _wait_serving(port)
        stderr = _stop_within_budget(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert "not a regular file" in stderr and "set aside as" in stderr
    assert json.loads((storage / FILE_NAME).read_text())["clean"] is True  # the last totals written on the way out


@pytest.mark.integration
def test_run_with_a_fifo_at_the_temporary_path_counts_write_errors_and_stops_in_time(hanging_engine, tmp_path):
    process, port, storage = _run(tmp_path, hanging_engine.url)
    os.mkfifo(storage / f"{FILE_NAME}.tmp")
    try:
        _wait_serving(port)
        deadline = time.monotonic() + 10
        while "llmcost_state_write_errors_total 0.0" in _scrape(port) and time.monotonic() < deadline:
            time.sleep(0.2)  # --storage.interval=1s
        assert "llmcost_state_write_errors_total 0.0" not in _scrape(port)
        stderr = _stop_within_budget(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert stderr.count("cannot write state") == 1 and "is not a regular file" in stderr  # logged once
    assert not (storage / FILE_NAME).exists()


def _document(total: str, now: float) -> str:
    """A state of this configuration (cloud, USD) with one total as JSON text (it may be a bare NaN)."""
    return ('{"version": 1, "clean": true, "engines": {}, "gpus": [], "accountant": {"mode": "cloud", '
            f'"currency": "USD", "components": {{"instance": {total}, "requests": 0}}, "engines": {{}}, '
            '"energy_cost": 0, "overhead_joules": 0, "co2e_grams": 0, "opex": 0, '
            f'"last_time": {now}, "last_gpu_energy": {{}}, "last_requests": 0}}}}')


@pytest.mark.integration
@pytest.mark.parametrize("total", ["5.0", "NaN", "-5.0", "1e308"])
def test_run_refuses_a_non_finite_negative_or_huge_total(hanging_engine, tmp_path, total):
    """5.0 is the control: the same file with a sane total is restored."""
    process, port, storage = _run(tmp_path, hanging_engine.url)
    (storage / FILE_NAME).write_text(_document(total, time.time()))
    try:
        _wait_serving(port)
        text = _scrape(port)
        stderr = _stop_within_budget(process)
    finally:
        if process.poll() is None:
            process.kill()
    instance = float(next(line.split()[-1] for line in text.splitlines()
                          if line.startswith('llmcost_spend_total{component="instance"')))
    aside = [p for p in storage.iterdir() if ".bad-" in p.name]
    if total == "5.0":
        assert instance >= 5.0 and "state restored" in stderr and not aside
    else:
        assert instance < 1.0 and "state restored" not in stderr  # from 0: HOURLY is 0.001 a second
        assert len(aside) == 1 and stderr.count("is not usable") == 1 and "set aside as" in stderr
