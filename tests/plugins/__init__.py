"""Fixtures shared by the tests, as pytest plugins (registered by `pytest_plugins` in
tests/conftest.py, which also re-exports the helpers that tests import from `conftest`):

    nodes.py     the node under test: a manual clock, the simulated NVML, an exporter factory;
                 helpers make_config, run_for, value, assert_matches and MODEL
    engines.py   engines on real loopback HTTP: the simulated vLLM, fixed and computed bodies,
                 a module-scoped engine whose counters a test sets
    profiles.py  hypothesis profiles (ci, dev, long) and examples(n), the profile-scaled case count
"""
