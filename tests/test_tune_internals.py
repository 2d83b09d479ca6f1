"""The sweep's touches of Ray Tune's private state still fit this Ray (sweep/tune_internals.py)."""

import ray

from sweep.tune_internals import TESTED, shape_problems


def test_tunes_private_state_has_the_shape_the_sweep_edits():
    problems = shape_problems()
    assert problems == [], "; ".join(problems)


def test_the_ray_installed_is_the_one_pyproject_allows():
    assert ray.__version__.startswith(TESTED + "."), (
        f"Ray {ray.__version__} is installed; the sweep's Tune internals were tested on {TESTED}"
    )
