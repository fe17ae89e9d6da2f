"""Logs as the CLI sets them up: one logfmt line per record, whatever the values from outside hold
(issue 13, case 7: a CR/LF in a pod annotation forged log lines)."""

import subprocess
import sys

FORGED = "ns/pod\\nts=2026-01-01 level=ERROR logger=exporter msg=forged\\r"


def test_a_value_with_cr_lf_cannot_start_a_line():
    code = ("import logging; from exporter.cli import _setup_logging; _setup_logging('info'); "
            f"logging.getLogger('exporter.kube').warning('pod skipped pod=%s', '{FORGED}'); "
            "logging.getLogger('exporter').info('second')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    lines = result.stderr.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith("pod skipped pod=ns/pod\\nts=2026-01-01 level=ERROR logger=exporter msg=forged\\r")
    assert lines[1].startswith("ts=") and lines[1].endswith("msg=second")


def test_a_traceback_stays_on_its_record_line():
    code = ("import logging; from exporter.cli import _setup_logging; _setup_logging('info')\n"
            "try:\n    raise ValueError('a\\nb')\nexcept ValueError:\n    logging.getLogger('exporter').exception('boom')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    [line] = result.stderr.splitlines()
    assert "msg=boom\\nTraceback" in line and "ValueError: a\\nb" in line
