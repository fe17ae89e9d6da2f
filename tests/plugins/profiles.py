"""Hypothesis profiles; tests/conftest.py loads the one HYPOTHESIS_PROFILE names (default: ci).

    ci    what ./scripts/test (and CI) runs: 100 cases a test, derandomized (the same cases on
          every run, so a failure reproduces), no deadline (a loaded 2-core machine is slow)
    dev   the inner loop: 20 cases a test, random, failures remembered in .hypothesis/
    long  a hunt: 100 times ci's cases, random; a failure prints its reproduction blob

A test that wants more or fewer cases than a profile's default asks examples(n): exactly n
under ci, scaled like the default under the others (tests/test_fuzz.py's 17,500 cases under ci
become 3,500 under dev and 1.75 million under long).
"""

from hypothesis import settings

CI_EXAMPLES = 100

settings.register_profile("ci", max_examples=CI_EXAMPLES, derandomize=True, database=None, deadline=None,
                          print_blob=True)
settings.register_profile("dev", max_examples=20, deadline=None)
settings.register_profile("long", max_examples=100 * CI_EXAMPLES, database=None, deadline=None, print_blob=True)


def examples(n: int) -> int:
    """n cases under the ci profile, scaled by the loaded profile's max_examples otherwise."""
    return max(1, round(n * settings().max_examples / CI_EXAMPLES))
