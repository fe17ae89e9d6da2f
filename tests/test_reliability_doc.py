"""docs/reliability.md matches the tests: every test it names exists, every test of the fault
campaign's files is named in it, and the soak's last full result is recorded with its date."""

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).parent.parent
DOC = ROOT / "docs" / "reliability.md"
CAMPAIGN = ("test_engine_faults.py", "test_nvml_faults.py", "test_restart.py", "test_shutdown.py", "test_hostile_inputs.py",
            "test_isolation.py", "test_jobs.py", "test_web_hostile.py",
            "test_hostile_peers.py", "test_state_file.py", "test_crash_loop.py")


def defined_tests(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def named_in_doc() -> set[tuple[str, str]]:
    return {(m.group(1), m.group(2)) for m in re.finditer(r"(test_\w+\.py)::(test_\w+)", DOC.read_text())}


def test_every_test_named_in_the_doc_exists():
    missing = [f"{f}::{t}" for f, t in sorted(named_in_doc())
               if not (ROOT / "tests" / f).exists() or t not in defined_tests(ROOT / "tests" / f)]
    assert not missing, missing


def test_every_campaign_test_is_in_the_doc():
    named = named_in_doc()
    missing = [f"{f}::{t}" for f in CAMPAIGN for t in sorted(defined_tests(ROOT / "tests" / f)) if (f, t) not in named]
    assert not missing, missing


def test_the_doc_records_the_last_full_soak_and_has_no_placeholder():
    text = DOC.read_text()
    assert re.search(r"\*\*Last full soak, \d{4}-\d{2}-\d{2}\*\*", text)
    assert "PLACEHOLDER" not in text


def test_the_package_runs_no_shell_and_no_subprocess():
    banned_modules = {"subprocess", "pty", "commands"}
    banned_calls = {"system", "popen", "execv", "execve", "execvp", "execl", "execlp", "spawnv", "spawnl", "startfile"}
    found = []
    for path in sorted((ROOT / "exporter").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [f"{path}: import {a.name}" for a in node.names if a.name.split(".")[0] in banned_modules]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in banned_modules:
                found.append(f"{path}: from {node.module} import")
            elif isinstance(node, ast.Attribute) and node.attr in banned_calls and \
                    isinstance(node.value, ast.Name) and node.value.id == "os":
                found.append(f"{path}: os.{node.attr}")
            elif isinstance(node, ast.keyword) and node.arg == "shell":
                found.append(f"{path}: shell=")
    assert not found, found
