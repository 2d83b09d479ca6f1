"""The spec's rules across keys: families and their widths, the `train` mappings, `grid` axes.
``sweep.spec.parse_spec`` runs them; each adds one-line problems to a list."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from trainables import families
from trainables.config import field_names, sweep_keys
from trainables.gap import evaluate_trial
from trainables.inference import infer
from trainables.settings import distinct_list, is_int, keyword_settings

from .tuneconfig import GRID_KEYS

TRAIN_KEYS = sweep_keys("axis", "train")  # the engine's settings a spec's `train` may hold (its schema says)
AXIS_KEYS = sweep_keys("axis")  # those that may be `grid` axes
OWN_KEYS = sweep_keys("key")  # set by top-level spec keys: eval_every (report_every), family_options
INFER_SKIP, EVALUATE_SKIP = 5, 1  # positional parameters of infer() and evaluate_trial()
# `evaluate` keys of the runner's own, beside evaluate_trial's, with their defaults
EVALUATE_OWN = {"checkpoints": 1}
KEPT_CHECKPOINTS = 2  # Tune keeps each trial's newest checkpoints, this many (the runner's num_to_keep)

# What each `test_inference` and `evaluate` key means, for the reference (sweep/docs.py, `sweep keys`);
# the keys and their defaults are the functions' own (the parameters after the positional ones)
INFER_HELP = {
    "lr": "Adam learning rate of the fresh per-image q (families without a test-time q: factorized)",
    "max_steps": "most optimization steps",
    "window": "steps per plateau check: the window's mean ELBO against the best so far",
    "rtol": "relative ELBO gain a window must make; short of it the learning rate drops tenfold, and "
            "the run stops at the plateau after the last drop",
    "eval_samples": "draws of z for the ELBO of the test images' q",
}
EVALUATE_HELP = {
    "points": "the first `points` training and the first `points` test images of each trial",
    "iwae_samples": "importance samples K from q* for log p(x)",
    "eval_samples": "draws of z (shared by q and q*) for each image's ELBO",
    "refine_steps": "K at which the semi-amortized refinement's ELBO and seconds are recorded "
                    "(refinable families; []: none)",
    "qstar": "q*'s optimization, a mapping of the `evaluate.qstar` keys below; unset: their defaults",
    "seed": "seed of the evaluation's draws",
    "checkpoints": "how many of each trial's newest checkpoints are evaluated: 1, the last; 2, also the "
                   "one before it (Tune keeps the two newest of those saved every `checkpoint_every` epochs "
                   "and at the end), so the report says whether the gap was still shrinking",
}
# `evaluate.qstar`: keyword settings of inference.optimize_local_q (its defaults), which gap.py calls
QSTAR_HELP = {
    **{k: INFER_HELP[k] for k in ("max_steps", "window", "rtol")},
    "lr": "Adam learning rate of each image's own q*, which starts from the family's q (where it has "
          "none, F-VI's test images: from the prior)",
    "samples": "draws of z a step; unset: the q form's fit_samples (1 diagonal, 8 full covariance)",
    "decays": "tenfold learning-rate drops before the run stops at a plateau",
}


def normalized(s: Any, out: list[str]) -> dict[str, Any]:
    """The spec's values as the schema holds them (tuples, dataclasses, absolute paths), with the
    problems of the mappings and of the families added to ``out``."""
    modules = tuple(s.family_modules) if isinstance(s.family_modules, (list, tuple)) else ()
    if not isinstance(s.family_modules, (list, tuple)):
        out.append(f"family_modules={s.family_modules!r} must be a list of module names or .py paths")
    modules = tuple(str(Path(m).expanduser().resolve()) if isinstance(m, str) and m.endswith(".py") else m
                    for m in modules)  # a file: absolute, since trials run in their own directories
    try:
        families.import_modules(modules)
    except ValueError as e:
        out.append(str(e))
    if why := distinct_list(families.names())(s.families):
        out.append(f"families={s.families!r} {why}")
    listed = s.families if isinstance(s.families, (list, tuple)) else ()
    fams = tuple(f for f in listed if f in families.names())
    with_width = [f for f in fams if families.declared(f).has_width]
    if with_width and (why := distinct_list(least=1)(s.widths)):
        out.append(f"widths={s.widths!r} {why} ({', '.join(with_width)} need encoder widths)")
    if s.widths and fams and not with_width:
        out.append("widths given but no family in families has an encoder width")
    maps = {}
    for key in ("family_train", "family_options", "grid"):
        maps[key] = getattr(s, key)
        if not isinstance(maps[key], dict):
            out.append(f"{key}={maps[key]!r} must be a mapping")
            maps[key] = {}
        if key != "grid":
            out += [f"{key}: {f!r} is not in families {list(fams)}" for f in maps[key] if f not in fams]
    storage = s.storage
    if isinstance(storage, str) and "://" not in storage:  # trials run in their own directories
        storage = str(Path(storage).expanduser().resolve())
    return {
        **{k: tuple(getattr(s, k)) if isinstance(getattr(s, k), (list, tuple)) else ()
           for k in ("datasets", "seeds", "widths")},
        "family_modules": modules,
        "families": fams, "grid": maps["grid"], "family_options": maps["family_options"], "storage": storage,
        "train": _train(s.train, "train", out),
        "family_train": {f: _train(v, f"family_train.{f}", out) for f, v in maps["family_train"].items()},
        "test_inference": keyword_settings(infer, INFER_SKIP, s.test_inference, "test_inference", out),
        "evaluate": _evaluate(s.evaluate, out),
        "tracking": tracking(s.tracking, out),
    }


def _evaluate(given: Any, out: list[str]) -> dict | None:
    """The `evaluate` mapping: evaluate_trial's keywords and the runner's own (EVALUATE_OWN)."""
    settings = keyword_settings(evaluate_trial, EVALUATE_SKIP, given, "evaluate", out, EVALUATE_OWN)
    n = (settings or {}).get("checkpoints", 1)
    if is_int(n) and n > KEPT_CHECKPOINTS:
        out.append(f"evaluate.checkpoints={n} must be 1 to {KEPT_CHECKPOINTS}: Tune keeps each trial's "
                   f"{KEPT_CHECKPOINTS} newest checkpoints")
    return settings


TRACKERS = {"mlflow": ("tracking_uri", "experiment_name", "tags", "save_artifact"), "wandb": None}
# Each tracker's settings for the reference: (default, meaning). The runner (sweep/runner.py,
# _callbacks and default_tracking_uri) fills tracking_uri, experiment_name and project; Ray's callbacks
# (MLflowLoggerCallback, WandbLoggerCallback) give the rest their defaults (tests/test_docs.py checks both)
TRACKER_HELP = {
    "mlflow": {
        "tracking_uri": ("sqlite:///STORAGE/NAME/mlflow.db",
                         "MLflow's store; unset: SQLite beside the results, offline (a bucket's: in the "
                         "working directory); or a server's http(s):// address"),
        "experiment_name": ("NAME", "MLflow experiment the trials' runs go to; unset: the spec's name"),
        "tags": (None, "mapping of tags set on every run"),
        "save_artifact": (False, "true: each trial's directory saved as its run's artifacts"),
    },
    "wandb": {
        "project": ("NAME", "W&B project; unset: the spec's name. Any other keyword of Ray's "
                            "WandbLoggerCallback (group, api_key_file, ...) is passed on"),
    },
}


def tracking(given: Any, out: list[str]) -> dict | None:
    """{tracker: its settings}; each tracker's package must be installed where the driver runs."""
    if given is None or given is False:
        return None
    if not isinstance(given, dict) or not given or set(given) - set(TRACKERS):
        out.append(f"tracking={given!r} must map one or more of {', '.join(TRACKERS)} to their settings")
        return None
    for name, settings in given.items():
        accepted = TRACKERS[name]
        if not isinstance(settings, dict) or (accepted and set(settings) - set(accepted)):
            out.append(f"tracking.{name}={settings!r} must be a mapping" + (
                f" of {', '.join(accepted)}" if accepted else ""))
        if importlib.util.find_spec(name) is None:
            how = ("mlflow-skinny (in a checkout: pip install -e '.[tracking]')" if name == "mlflow"
                   else name)
            out.append(f"tracking.{name} needs the {name} package: pip install {how}")
    return {k: dict(v) if isinstance(v, dict) else {} for k, v in given.items()}


def _train(train: Any, key: str, out: list[str]) -> dict[str, Any]:
    if not isinstance(train, dict):
        out.append(f"{key}={train!r} must be a mapping of training settings")
        return {}
    if grid := sorted(set(train) & set(GRID_KEYS)):
        out.append(f"{key}: {grid} are set by the fan-out (datasets, families, widths, seeds)")
    if set(train) & set(OWN_KEYS):
        out.append(f"{key}: eval_every is set by report_every, family_options by the top-level key")
    if unknown := sorted(set(train) - set(field_names())):
        out.append(f"{key}: unknown setting(s) {unknown} (accepted: {', '.join(TRAIN_KEYS)})")
    train = {k: v for k, v in train.items() if k in TRAIN_KEYS}
    if isinstance(train.get("data_root"), str):  # trials run in their own directories: make it absolute
        train["data_root"] = str(Path(train["data_root"]).expanduser().resolve())
    return train


def grid_problems(spec: Any) -> list[str]:
    """The axes, and what cannot go together with them or with vectorized seeds."""
    out = []
    if spec.vectorize_seeds is True:
        if spec.train.get("train_subset") == "random":
            out.append("vectorize_seeds with train_subset 'random': seeds share their images when batched")
    for key, values in spec.grid.items():
        if key not in AXIS_KEYS:
            hint = "already an axis: use datasets, families, widths, seeds" if key in GRID_KEYS else (
                f"accepted: {', '.join(AXIS_KEYS)}")
            out.append(f"grid.{key}: not a setting that can be an axis ({hint})")
        elif not isinstance(values, list) or not values or len(set(map(repr, values))) != len(values):
            out.append(f"grid.{key}={values!r} must be a non-empty list of distinct values")
        out += [f"grid.{key} and family_train.{f}.{key} both set {key}; keep one"
                for f, settings in spec.family_train.items() if key in settings]
        out += ["grid.lr and optuna both choose lr; keep one"] if key == "lr" and spec.optuna else []
    return out


