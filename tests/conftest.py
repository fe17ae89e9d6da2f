"""Test setup. The markers (integration, slow) are declared in pyproject.toml; the fixtures live
in plugin modules under tests/plugins/ (see its __init__); the helpers that tests import from
here (MODEL, make_config, run_for, value, assert_matches) are re-exported from plugins.nodes.
HYPOTHESIS_PROFILE picks a hypothesis profile from plugins/profiles.py: ci (default), dev, long."""

import os

import pytest

pytest.register_assert_rewrite("plugins")  # before the import below, so their asserts explain themselves

from hypothesis import settings  # noqa: E402

from plugins import profiles  # noqa: E402,F401 (registers the profiles)
from plugins.nodes import MODEL, assert_matches, make_config, run_for, value  # noqa: E402,F401 (re-exported)

pytest_plugins = ["plugins.nodes", "plugins.engines", "plugins.llamacpp"]

settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/*.prom from the current /metrics instead of comparing (tests/test_golden.py)")
