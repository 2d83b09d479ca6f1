"""Everything that drives Ray: launch, the Optuna stage, resume, and the gap evaluation as Ray tasks.

Ray's public API is used here and in the modules Ray calls: the trainable (sweep/trainable.py) and
the display (sweep/display.py); its private state only through sweep/tune_internals.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from . import capacity, storage
from .display import SweepDisplay
from .experiment import (
    GAP_FILE,
    SPEC_COPY,
    SPEC_FILE,
    SweepError,
    experiment_states,
    load_trials,
    read_spec,
    saved_states,
)
from .rules import KEPT_CHECKPOINTS
from .spec import SweepSpec
from .trainable import RAY_LOGGERS, RAY_LOGS_ENV, task_device, train_trial
from .tune_internals import drop_missing_checkpoints, mute_autoscaler_events, restored_run_config
from .tuneconfig import cell_slug

LR_SEARCH_DIR = "lr_search"
METRIC = "neg_elbo_per_datapoint"
AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
# Tune's "No trial is running ... You asked for 1 CPUs and 0.5 GPUs" every 60 s: the display's
# waiting note says what the trials wait for instead
WAIT_LOGGER = "ray.tune.execution.insufficient_resources_manager"


def _auth_enabled_notice(record: logging.LogRecord) -> bool:
    """Drop Ray's 230-column notice that the local instance has token authentication, its secure
    default; its warning that authentication is off, and everything else, passes."""
    return not record.getMessage().startswith("Token authentication is enabled")


SECRET_IN_ENV = (
    "note: AWS_SECRET_ACCESS_KEY is set; Ray Tune copies it into its trials' runtime env, which Ray "
    "logs under /tmp/ray/session_*/logs. A credentials file (AWS_SHARED_CREDENTIALS_FILE) or the "
    "node's cloud role keeps it out of those logs."
)
QUIET_ENV = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}
# Tune adds a TensorBoard writer per trial (an event file and a flushing thread in the driver) to
# the JSON and CSV loggers unless told not to; nothing here reads TensorBoard files, and at
# thousands of trials the writers cost the driver more than the rest of its bookkeeping. The sweep
# names its loggers itself (``_loggers``).
TUNE_ENV = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}


@contextlib.contextmanager
def ray_session(address: str | None = None, verbose: bool = False) -> Iterator[bool]:
    """Ray for one command: the cluster at ``address`` ("auto", host:port, or RAY_ADDRESS) when one is
    named; else a fresh local instance sized to this machine, owned by the command and shut down
    when it ends. Never one found lying around: plain ``ray.init()`` joins the last cluster that
    `ray start` recorded, another user's or a killed run's. In a process that already runs Ray
    (a test, a notebook), that one. Yields whether Ray is this machine alone (the local instance
    started here), where what the machine lacks can never come."""
    quiet = logging.WARNING if not verbose else logging.INFO
    for name in RAY_LOGGERS:  # the driver's side; the trainable quiets its worker (RAY_LOGS_ENV)
        logging.getLogger(name).setLevel(quiet)
    logging.getLogger(WAIT_LOGGER).setLevel(logging.ERROR if not verbose else logging.WARNING)
    auth = logging.getLogger(AUTH_LOGGER)
    if not verbose and _auth_enabled_notice not in auth.filters:
        auth.addFilter(_auth_enabled_notice)
    # For this command only: Tune's new output engine prints its banner and paths even at verbose=0
    # (the legacy one, which the sweep's display replaces, prints nothing there), and Tune warns each
    # time checkpoints land within 5 s of each other, as short trials' do: a note for Tune, not the user.
    saved = {k: os.environ.get(k) for k in (*QUIET_ENV, *TUNE_ENV)}
    os.environ.update(TUNE_ENV)
    if not verbose:
        os.environ.update(QUIET_ENV)
    started = not ray.is_initialized()
    if started and "AWS_SECRET_ACCESS_KEY" in os.environ:
        print(SECRET_IN_ENV, file=sys.stderr, flush=True)
    target = address or os.environ.get("RAY_ADDRESS") or "local"
    if started:
        env = {RAY_LOGS_ENV: "1"} if verbose else {}
        ray.init(address=target, runtime_env={"env_vars": env})
    if not verbose:
        mute_autoscaler_events()  # the display's waiting note says it once, in words of the spec
    try:
        yield started and target == "local"
    finally:
        if started:
            ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def experiment_dir(spec: SweepSpec) -> str:
    return storage.join(spec.storage, spec.name)


def _claim(exp: str, spec: dict[str, Any]) -> None:
    """Create the experiment directory with its spec inside, refusing one that exists (another
    run's results). Locally the directory appears whole (made aside, then renamed): a launch killed
    at any point leaves either nothing, to launch again, or an experiment that `resume` finishes."""
    _refuse_existing(exp)
    fs, path = storage.resolve(exp)
    if not isinstance(fs, pafs.LocalFileSystem):
        storage.write_json(storage.join(exp, SPEC_COPY), spec)
        storage.write_json(storage.join(exp, SPEC_FILE), spec)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    aside = Path(path).parent / f".{Path(path).name}.{os.getpid()}.claim"  # a killed launch's: hidden
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir()
    (aside / SPEC_COPY).parent.mkdir()
    storage.write_json(aside / SPEC_COPY, spec)
    storage.write_json(aside / SPEC_FILE, spec)
    try:
        os.rename(aside, path)  # atomic: of two launches with one name, one gets here first
    except OSError:
        shutil.rmtree(aside, ignore_errors=True)
        raise SweepError(f"experiment {exp} was just created by another launch; use --name") from None


def _refuse_existing(exp: str) -> None:
    if storage.exists(exp):
        raise SweepError(f"experiment {exp} already exists; continue it with `python -m sweep resume {exp}` "
                         "or start a new one with --name")


def trial_dirname(trial: Any) -> str:
    """Readable trial directories: <id>-<dataset>-<family>[-k<width>][-<axis><value>...]-s<seed>."""
    c = trial.config
    seeds = "-s" + "_".join(map(str, c["seeds"])) if c.get("seeds") else f"-s{c.get('seed')}"
    return f"{trial.trial_id}-{cell_slug(c['cell'])}{seeds}"


def _trainable(spec: SweepSpec):
    return tune.with_resources(train_trial, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})


def _run_config(spec: SweepSpec, name: str, storage: str, callbacks: list | None = None,
                verbose: bool = False) -> tune.RunConfig:
    return tune.RunConfig(
        name=name,
        storage_path=storage,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        # two kept: a damaged latest checkpoint still leaves the one before it, and `evaluate` can
        # measure the gap there too (evaluate.checkpoints)
        checkpoint_config=tune.CheckpointConfig(num_to_keep=KEPT_CHECKPOINTS),
        callbacks=[*_loggers(), *(callbacks or [])],
        verbose=2 if verbose else 0,  # quiet: the sweep's own display (SweepDisplay) instead of Tune's
    )


def _loggers() -> list:
    """Each trial's result.json (what status, export and the analysis read) and progress.csv."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    return [JsonLoggerCallback(), CSVLoggerCallback()]


def _callbacks(spec: SweepSpec, exp: str, verbose: bool) -> list:
    """The display (unless Ray's own output was asked for) and the trackers the spec names."""
    asked = capacity.request(spec.resources.cpu, spec.resources.gpu)
    out: list = [] if verbose else [SweepDisplay(list(spec.grid), asked)]
    if spec.tracking and "mlflow" in spec.tracking:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        settings = {"experiment_name": spec.name, **spec.tracking["mlflow"]}
        settings.setdefault("tracking_uri", default_tracking_uri(exp))
        out.append(MLflowLoggerCallback(**settings))
    if spec.tracking and "wandb" in spec.tracking:
        from ray.air.integrations.wandb import WandbLoggerCallback

        out.append(WandbLoggerCallback(**{"project": spec.name, **spec.tracking["wandb"]}))
    return out


def default_tracking_uri(exp: str) -> str:
    """MLflow's local store beside the results (offline). SQLite, not MLflow's file store, which
    MLflow 3 refuses unless MLFLOW_ALLOW_FILE_STORE is set; a bucket gets one in the working dir."""
    where = Path(exp) if not storage.is_uri(exp) else Path.cwd() / storage.name(exp)
    return f"sqlite:///{where / 'mlflow.db'}"


def refuse_unplaceable(spec: SweepSpec, verb: str = "run") -> None:
    """On a local Ray, a trial that asks for more than this machine has would wait forever: refuse
    it in one line that names the setting and the fix (on a cluster, nodes may join: the display
    says what the trials wait for instead)."""
    asked = capacity.request(spec.resources.cpu, spec.resources.gpu)
    if why := capacity.local_refusal(asked, ray.cluster_resources(), verb):
        raise SweepError(why)


def run_sweep(spec: SweepSpec, address: str | None = None, verbose: bool = False,
              resume_existing: bool = False) -> tuple[str, list[str]]:
    """Run the whole sweep (Optuna stage, grid, evaluation); returns (experiment dir, trial states).
    With ``resume_existing``, an experiment of this name launched with this same spec is resumed
    (a requeued batch job runs the same command again) instead of refused."""
    exp = experiment_dir(spec)
    if resume_existing and storage.exists(exp):
        return _resume(exp, _same_spec(exp, spec), address, verbose)
    _refuse_existing(exp)  # before Ray starts: the common mistake, answered at once
    with ray_session(address, verbose) as local:
        if local:
            refuse_unplaceable(spec)
        _claim(exp, spec.to_dict())
        return exp, _complete(spec, exp, verbose)


def _same_spec(exp: str, spec: SweepSpec) -> SweepSpec:
    """The spec ``exp`` was launched with; refused in one line where it is not ``spec``."""
    saved = read_spec(exp)
    have, given = saved.to_dict(), spec.to_dict()
    differ = sorted(k for k in {*have, *given} if have.get(k) != given.get(k))
    if differ:
        raise SweepError(f"experiment {exp} exists with another spec ({', '.join(differ)} differ); "
                         "resume it as it is with `python -m sweep resume`, or give this one a new --name")
    return saved


def resume_sweep(exp: str, address: str | None = None, verbose: bool = False) -> tuple[str, list[str]]:
    """Finish what a stopped sweep left: the Optuna stage's open cells, the grid's unfinished and
    errored trials (each from the newest readable checkpoint in its directory; finished ones stay
    as they are), the grid itself if Tune never began it, and the missing gap files."""
    return _resume(exp, read_spec(exp), address, verbose)


def _resume(exp: str, spec: SweepSpec, address: str | None, verbose: bool) -> tuple[str, list[str]]:
    with ray_session(address, verbose) as local:
        if local:
            refuse_unplaceable(spec, "resume")
        return exp, _complete(spec, exp, verbose)


def _tune_began(exp: str) -> bool:
    """Tune wrote its experiment state. Its tuner.pkl alone (a driver killed between the two) is
    not enough: restored from it, Tune rebuilds the grid without the sweep's param space."""
    return bool(experiment_states(exp)) and tune.Tuner.can_restore(storage.norm(exp))


def _complete(spec: SweepSpec, exp: str, verbose: bool = False) -> list[str]:
    best_lr = lr_search(spec, exp, verbose) if spec.optuna else {}
    callbacks = _callbacks(spec, exp, verbose)
    if _tune_began(exp):
        forget_missing_checkpoints(exp)
        tuner = tune.Tuner.restore(
            storage.norm(exp), trainable=_trainable(spec), resume_unfinished=True, resume_errored=True
        )
        # Tune restores the run config the sweep began with; this command's display and verbosity
        # replace its callbacks (no public setter in Ray 2.60: the internal tuner's config object)
        restored = restored_run_config(tuner)
        if restored is not None:
            restored.callbacks, restored.verbose = [*_loggers(), *callbacks], 2 if verbose else 0
    else:  # a first run, or one stopped before Tune wrote its state: the grid from the start
        cells = [c.tune() for c in spec.cells()]
        for c in cells if best_lr else ():
            c["settings"]["lr"] = best_lr[cell_slug(c)]
        seeds = {"seed": tune.grid_search(list(spec.seeds))}
        if spec.vectorize_seeds:  # one trial per cell trains all its seeds as a batch
            seeds = {"seeds": list(spec.seeds)}
        tuner = tune.Tuner(
            _trainable(spec),
            param_space={**spec.tune_base(), "cell": tune.grid_search(cells), **seeds},
            tune_config=tune.TuneConfig(reuse_actors=True, trial_dirname_creator=trial_dirname),
            run_config=_run_config(spec, spec.name, spec.storage, callbacks, verbose),
        )
    tuner.fit()
    # Read back from the state Tune saved last: a stop signal (SIGINT, SIGUSR1) ends Tune's loop
    # early and its results then call every trial terminated, while the saved state, which `resume`
    # continues, keeps the ones it cut short RUNNING or PENDING
    states = saved_states(exp)
    if stopped_early(states):
        print(f"stopped early, its state saved: python -m sweep resume {exp}", flush=True)
    elif spec.evaluate is not None and "TERMINATED" in states:
        evaluate_experiment(exp)
    return states


def stopped_early(states: list[str]) -> bool:
    """Some trial neither finished nor failed: a stop signal cut the sweep short."""
    return bool(set(states) - {"TERMINATED", "ERROR"})


def evaluate_experiment(exp: str, settings: dict[str, Any] | None = None, address: str | None = None) -> int:
    """The gap decomposition of every finished trial without one for these settings, as Ray tasks;
    each writes TRIAL_DIR/gap.json. Returns how many were evaluated now."""
    spec = read_spec(exp)
    settings = {**(spec.evaluate or {}), **(settings or {})}
    finished = [t for t in load_trials(exp, reports="none") if t.status == "TERMINATED"]
    if not finished:
        raise SweepError(f"{exp} has no finished trial to evaluate")
    todo = [t for t in finished if not t.gap or t.gap.get("settings") != settings]
    failed = []
    with ray_session(address) as local:
        if local:
            refuse_unplaceable(spec, "evaluate")
        task = ray.remote(_evaluate_trial).options(num_cpus=spec.resources.cpu, num_gpus=spec.resources.gpu)
        refs = [(t, task.remote(t.path, t.config, settings)) for t in todo]
        for t, ref in refs:  # each to its end, so one failure leaves the others' gap.json written
            try:
                ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                why = " ".join(str(getattr(e, "cause", None) or e).split())
                failed.append(f"{storage.name(t.path)}: {type(getattr(e, 'cause', e)).__name__}: {why}")
    if failed:
        raise SweepError(f"evaluate failed for {len(failed)} of {len(todo)} trial(s): " + "; ".join(failed))
    return len(todo)


def _evaluate_trial(trial_path: str, config: dict[str, Any], settings: dict[str, Any]) -> None:
    """Load a trial's newest checkpoint (``settings["checkpoints"]`` of them, newest first) and its
    data on this node, decompose its gap at each, write gap.json (a result per seed and checkpoint)."""
    from trainables.gap import evaluate_trial

    from .trialrun import checkpointed_trials

    device = task_device()
    fs, path = storage.resolve(trial_path)
    kwargs = {k: tuple(v) if k == "refine_steps" else v for k, v in settings.items() if k != "checkpoints"}
    results = []
    for newest in range(settings.get("checkpoints", 1)):
        try:
            trials = checkpointed_trials(fs, path, config, device, skip=newest)
        except FileNotFoundError:
            if newest:
                break  # no older checkpoint (a trial shorter than checkpoint_every): the newest alone
            raise SweepError(f"{trial_path}: no readable checkpoint to evaluate") from None
        results += [{"seed": t.cfg.seed, **evaluate_trial(t, **kwargs)} for t in trials]
    storage.write_json(storage.join(trial_path, GAP_FILE), {"settings": settings, "results": results})


def forget_missing_checkpoints(exp: str) -> int:
    """Drop from the experiment state the checkpoints the storage no longer has; returns how many.

    The state is a snapshot the driver takes now and then; between two snapshots Tune registers
    new checkpoints and deletes old ones (num_to_keep), so a driver killed in between leaves a
    state naming a deleted checkpoint, and Tune's restore fails that trial every time. Repairing
    the reference (rather than restarting the trial, which Tune does under a new trial id and
    directory) keeps the trial and its results; with no valid name left, Tune starts it without
    a checkpoint and the trainable resumes from the newest readable one in its own directory.
    """
    states = experiment_states(exp)
    if not states:
        return 0
    state = storage.read_json(states[-1])

    def exists(checkpoint: str) -> bool:  # where it is now: TRIAL_DIR/checkpoint_N under this experiment
        return storage.exists(storage.join(exp, Path(checkpoint).parent.name, Path(checkpoint).name))

    dropped = 0
    for entry in state["trial_data"]:
        entry[1], n = drop_missing_checkpoints(entry[1], exists)
        dropped += n
    if dropped:
        storage.write_json(states[-1], state)
    return dropped


def lr_search(spec: SweepSpec, exp: str, verbose: bool = False) -> dict[str, float]:
    """Optuna over the learning rate, per cell (dataset, family, width, axes), a short budget, ASHA
    stopping; each cell's best lr recorded in lr_search/best_lr.json as soon as it is known."""
    stage = spec.optuna
    record = storage.join(exp, LR_SEARCH_DIR, "best_lr.json")
    best: dict[str, float] = storage.read_optional_json(record) or {}
    for cell in [c.tune() for c in spec.cells() if c.slug not in best]:
        partial = storage.join(exp, LR_SEARCH_DIR, cell_slug(cell))
        if storage.exists(partial):  # a search cut short: again
            storage.delete_dir(partial)
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
            run_config=_run_config(spec, cell_slug(cell), storage.join(exp, LR_SEARCH_DIR), verbose=verbose),
        )
        result = tuner.fit().get_best_result(metric=METRIC, mode="min", scope="last")
        if stopped_early(saved_states(partial)):
            raise SweepError(f"stopped during the learning-rate search of {cell_slug(cell)}, the cells "
                             f"before it recorded: python -m sweep resume {exp}")
        best[cell_slug(cell)] = float(result.config["cell"]["settings"]["lr"])
        print(f"learning rate for {cell_slug(cell)}: {best[cell_slug(cell)]:.3g} "
              f"(Optuna, {stage.samples} trials of {stage.epochs} epochs)", flush=True)
        storage.write_json(record, best)  # cell by cell: a resume searches only the cells not done
    return best
