"""Everything that drives Ray Tune: launch, the Optuna stage, resume, and reading results back.

With the trainable, the only module that imports Ray, so an API churn touches two files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from .spec import SweepSpec, parse_spec
from .trainable import train_trial
from .tuneconfig import cell_slug

SPEC_FILE = "sweep-spec.json"
GAP_FILE = "gap.json"
LR_SEARCH_DIR = "lr_search"
METRIC = "neg_elbo_per_datapoint"


class SweepError(RuntimeError):
    """A sweep cannot start or resume as asked; the message says why and what to do."""


def connect(address: str | None = None) -> None:
    """Join the cluster at ``address`` (or RAY_ADDRESS), else start a local one sized to this machine."""
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or None)


def experiment_dir(spec: SweepSpec) -> str:
    return f"{spec.storage.rstrip('/')}/{spec.name}"


def _fs(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.FileSystem.from_uri(uri if "://" in uri else str(Path(uri).resolve()))


def _claim(exp: str) -> None:
    """Create the experiment directory, refusing one that exists (another run's results)."""
    fs, path = _fs(exp)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        raise SweepError(
            f"experiment {exp} already exists; continue it with `python -m sweep resume {exp}` "
            "or start a new one with --name"
        )
    if isinstance(fs, pafs.LocalFileSystem):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(path)  # atomic: of two launches with one name, one gets here first
        except FileExistsError:
            raise SweepError(f"experiment {exp} was just created by another launch; use --name") from None
    else:
        fs.create_dir(path)


def _write_json(uri: str, obj: Any) -> None:
    fs, path = _fs(uri)
    with fs.open_output_stream(path) as f:
        f.write(json.dumps(obj, indent=2).encode())


def _read_json(uri: str) -> Any:
    fs, path = _fs(uri)
    with fs.open_input_stream(path) as f:
        return json.loads(f.read().decode())


def trial_dirname(trial: Any) -> str:
    """Readable trial directories: <id>-<dataset>-<family>[-k<width>][-<axis><value>...]-s<seed>."""
    c = trial.config
    seeds = "-s" + "_".join(map(str, c["seeds"])) if c.get("seeds") else f"-s{c.get('seed')}"
    return f"{trial.trial_id}-{cell_slug(c['cell'])}{seeds}"


def _trainable(spec: SweepSpec):
    return tune.with_resources(train_trial, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})


def _run_config(spec: SweepSpec, name: str, storage: str) -> tune.RunConfig:
    return tune.RunConfig(
        name=name,
        storage_path=storage,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        # two kept: a damaged latest checkpoint still leaves the one before it
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        verbose=1,
    )


def run_sweep(spec: SweepSpec, address: str | None = None) -> tuple[str, list[str]]:
    """Run the whole grid (after the Optuna stage, if any); returns (experiment dir, trial states)."""
    exp = experiment_dir(spec)
    _claim(exp)
    _write_json(f"{exp}/{SPEC_FILE}", spec.to_dict())
    connect(address)
    best_lr = lr_search(spec, exp) if spec.optuna else {}
    cells = spec.cells()
    for c in cells if best_lr else ():
        c["settings"]["lr"] = best_lr[cell_slug(c)]
    seeds = {"seed": tune.grid_search(list(spec.seeds))}
    if spec.vectorize_seeds:  # one trial per cell trains all its seeds as a batch
        seeds = {"seeds": list(spec.seeds)}
    tuner = tune.Tuner(
        _trainable(spec),
        param_space={**spec.tune_base(), "cell": tune.grid_search(cells), **seeds},
        tune_config=tune.TuneConfig(reuse_actors=True, trial_dirname_creator=trial_dirname),
        run_config=_run_config(spec, spec.name, spec.storage),
    )
    grid = tuner.fit()
    if spec.evaluate is not None:
        evaluate_experiment(exp)
    return exp, [("ERROR" if r.error else "TERMINATED") for r in grid]


def evaluate_experiment(exp: str, settings: dict[str, Any] | None = None, address: str | None = None) -> int:
    """The gap decomposition of every finished trial, as Ray tasks; each writes TRIAL_DIR/gap.json."""
    spec = read_spec(exp)
    settings = {**(spec.evaluate or {}), **(settings or {})}
    done = [t for t in load_trials(exp) if t["status"] == "TERMINATED"]
    if not done:
        raise SweepError(f"{exp} has no finished trial to evaluate")
    connect(address)
    task = ray.remote(_evaluate_trial).options(num_cpus=spec.resources.cpu, num_gpus=spec.resources.gpu)
    ray.get([task.remote(t["path"], t["config"], settings) for t in done])
    return len(done)


def _evaluate_trial(trial_path: str, config: dict[str, Any], settings: dict[str, Any]) -> None:
    """Load a trial's newest checkpoint and its data on this node, decompose its gap, write gap.json."""
    import torch

    from trainables import Trial
    from trainables.data import load_for
    from trainables.gap import evaluate_trial

    from .trainable import checkpoint_dirs, newest_state
    from .tuneconfig import split_config

    cfg, _ = split_config(config)
    device = torch.device("cuda" if ray.get_gpu_ids() else "cpu")
    fs, path = _fs(trial_path)
    state, _ = newest_state(checkpoint_dirs(fs, path), device)
    if state is None:
        raise SweepError(f"{trial_path}: no readable checkpoint to evaluate")
    data = load_for(cfg, device)
    kwargs = {k: tuple(v) if k == "refine_steps" else v for k, v in settings.items()}
    results = [
        {"seed": s["config"]["seed"], **evaluate_trial(Trial.from_state(s, data, device), **kwargs)}
        for s in state.get("seed_states", [state])
    ]
    _write_json(f"{trial_path}/{GAP_FILE}", {"settings": settings, "results": results})


def resume_sweep(exp: str, address: str | None = None) -> tuple[str, list[str]]:
    """Continue unfinished and errored trials from their last checkpoints; finished ones stay."""
    spec = read_spec(exp)
    if not tune.Tuner.can_restore(_norm(exp)):
        raise SweepError(f"{exp} has no experiment state to resume from (was `run` stopped before it began?)")
    connect(address)
    tuner = tune.Tuner.restore(
        _norm(exp), trainable=_trainable(spec), resume_unfinished=True, resume_errored=True
    )
    grid = tuner.fit()
    return exp, [("ERROR" if r.error else "TERMINATED") for r in grid]


def _norm(exp: str) -> str:
    return exp if "://" in exp else str(Path(exp).resolve())


def read_spec(exp: str) -> SweepSpec:
    """The spec an experiment was launched with; a clear error if ``exp`` is no experiment."""
    fs, path = _fs(exp)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        raise SweepError(f"{exp} is not a directory")
    try:
        raw = _read_json(f"{exp}/{SPEC_FILE}")
    except (FileNotFoundError, OSError, json.JSONDecodeError):
        raise SweepError(f"{exp} is not a sweep experiment (no readable {SPEC_FILE})") from None
    return parse_spec(raw, source=f"{exp}/{SPEC_FILE}")


def lr_search(spec: SweepSpec, exp: str) -> dict[str, float]:
    """Optuna over the learning rate, per (dataset, family, width), short budget, ASHA stopping."""
    stage = spec.optuna
    best: dict[str, float] = {}
    for cell in spec.cells():
        tuner = tune.Tuner(
            _trainable(spec),
            param_space={
                **spec.tune_base(),
                "epochs": stage.epochs,
                "report_every": 1,
                "checkpoint_every": stage.epochs,
                "test_inference": None,
                # the searched lr wins over a family_train lr: it sits in the cell's settings
                "cell": {**cell, "settings": {**cell["settings"], "lr": tune.loguniform(*stage.lr)}},
                "seed": spec.seeds[0],
            },
            tune_config=tune.TuneConfig(
                search_alg=OptunaSearch(seed=0),
                scheduler=ASHAScheduler(
                    time_attr="epoch", max_t=stage.epochs, grace_period=stage.grace_period
                ),
                num_samples=stage.samples,
                metric=METRIC,
                mode="min",
                reuse_actors=True,
            ),
            run_config=_run_config(spec, cell_slug(cell), f"{exp}/{LR_SEARCH_DIR}"),
        )
        result = tuner.fit().get_best_result(metric=METRIC, mode="min", scope="last")
        best[cell_slug(cell)] = float(result.config["cell"]["settings"]["lr"])
    _write_json(f"{exp}/{LR_SEARCH_DIR}/best_lr.json", best)
    return best


def load_trials(exp: str) -> list[dict[str, Any]]:
    """Every trial of an experiment, read from its files (no cluster needed)."""
    read_spec(exp)
    try:
        analysis = tune.ExperimentAnalysis(_norm(exp))
    except Exception as e:  # half-written or foreign: Ray's own message, on one line
        raise SweepError(f"{exp}: cannot read the experiment state: {' '.join(str(e).split())}") from None
    frames = analysis.trial_dataframes
    return [
        {
            "trial_id": t.trial_id,
            "status": t.status,
            "path": t.path,
            "gap": _read_optional_json(f"{t.path}/{GAP_FILE}"),
            "config": t.config,
            "num_failures": t.num_failures,
            "last_result": t.last_result or {},
            "error": _error_line(t),
            "frame": frames.get(t.trial_id),
        }
        for t in analysis.trials
    ]


def _read_optional_json(uri: str) -> Any:
    try:
        return _read_json(uri)
    except (FileNotFoundError, OSError, json.JSONDecodeError):
        return None


def _error_line(trial: Any) -> str | None:
    name = trial.run_metadata.error_filename
    if not name:
        return None
    try:
        fs, path = _fs(f"{trial.path}/{name}")
        with fs.open_input_stream(path) as f:
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "error (error file unreadable)"
    return lines[-1] if lines else "error"
