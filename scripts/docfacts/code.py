"""Counts the code can compute, so a page quoting them cannot drift: the tests `make test` and
`make test-all` collect, the bad inputs refused, the built-in families, the spec's keys."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from functools import cache

from .artifacts import ROOT

# collected in one process: every test id, and the ids marked slow
_COLLECT = """
import sys, pytest
class Count:
    def pytest_collection_modifyitems(self, items):
        for item in items:
            print(("SLOW " if item.get_closest_marker("slow") else "FAST ") + item.nodeid)
sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "tests"], plugins=[Count()]))
"""


@cache
def collected() -> list[tuple[bool, str]]:
    """(slow, node id) of every test the suite collects."""
    out = subprocess.run([sys.executable, "-c", _COLLECT], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"pytest --collect-only failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return [(ln[:4] == "SLOW", ln[5:]) for ln in out.stdout.splitlines() if ln[:5] in ("SLOW ", "FAST ")]


def facts() -> dict[str, str]:
    from sweep.spec import SweepSpec
    from trainables import families
    from trainables.config import TrialConfig

    tests = collected()
    slow = sum(s for s, _ in tests)
    bad = [t for _, t in tests if t.startswith("tests/test_bad_input.py::")]
    builtin = [n for n, c in families.FAMILIES.items() if c.__module__.startswith("trainables.")]
    return {
        "code.tests-all": f"{len(tests)}",
        "code.tests-fast": f"{len(tests) - slow}",
        "code.tests-slow": f"{slow}",
        "code.bad-inputs": f"{len(bad)}",
        "code.families-count": f"{len(builtin)}",
        "code.families": ", ".join(f"`{f}`" for f in builtin),
        "code.spec-keys": f"{len(dataclasses.fields(SweepSpec))}",
        "code.train-keys": f"{len(dataclasses.fields(TrialConfig))}",
    }
