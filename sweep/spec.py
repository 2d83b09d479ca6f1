"""The sweep spec: one YAML file, validated whole before Ray starts.

    name: quick                      # experiment directory name under storage
    datasets: [fashion_mnist]
    families: [amortized, factorized, constant]
    widths: [1, 4, 16, 64, 256]      # encoder widths k, one trial per width for `amortized`
    seeds: [0, 1]
    train: {epochs: 300, n_train: 1000, ...}   # any TrialConfig setting but the four above
    family_train: {factorized: {lr: 0.01}}     # optional per-family overrides of `train`
    report_every: 1                  # epochs between tune.report calls (MSEs computed then)
    checkpoint_every: 50             # epochs between checkpoints (a multiple of report_every)
    resources: {cpu: 1, gpu: 0}      # per trial; gpu may be a fraction (0.25: 4 trials a GPU)
    storage: ./results               # local path, or a URI Ray's storage takes (s3://, gs://)
    max_failures: 0                  # times Tune restarts a failed trial from its checkpoint
    test_inference: {max_steps: 2000}  # test-time q at the end; false to skip
    optuna:                          # optional: a learning rate per (dataset, family, width)
      lr: [1.0e-4, 1.0e-2]           # log-uniform range
      samples: 8                     # Optuna trials per cell
      epochs: 50                     # short budget per Optuna trial
      grace_period: 5                # ASHA: epochs before a trial may be stopped

Fan-out: datasets x seeds x (every amortized width, factorized once, constant once).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainables.config import DATASETS, FAMILIES, ConfigError, TrialConfig, field_names

GRID_KEYS = ("dataset", "family", "width", "seed")  # set by the fan-out, not by `train`
ADAPTER_KEYS = ("cell", "seeds", "report_every", "checkpoint_every", "test_inference")  # not the engine's
EVALUATE_KEYS = ("points", "iwae_samples", "eval_samples", "refine_steps")  # trainables.gap.evaluate_trial
URI_SCHEMES = ("s3", "gs", "gcs", "hdfs", "abfs", "abfss", "az", "file")


class SpecError(ValueError):
    """The spec has problems; the message lists every one of them on one line."""


def _f(default: Any = dataclasses.MISSING, help: str = "", factory: Any = dataclasses.MISSING) -> Any:
    return field(default=default, default_factory=factory, metadata={"help": help})


@dataclass(frozen=True)
class OptunaStage:
    lr: tuple[float, float] = _f((1e-4, 1e-2), "log-uniform learning-rate range [low, high]")
    samples: int = _f(8, "Optuna trials per (dataset, family, width) cell")
    epochs: int = _f(50, "epochs of each Optuna trial (the short budget)")
    grace_period: int = _f(5, "ASHA: epochs before a trial may be stopped early")


@dataclass(frozen=True)
class SweepSpec:
    name: str = _f(help="experiment name: results go to STORAGE/NAME")
    datasets: tuple[str, ...] = _f(help="list from mnist, fashion_mnist, cifar10")
    families: tuple[str, ...] = _f(help="list from amortized, factorized, constant")
    seeds: tuple[int, ...] = _f(help="list of integer seeds, one trial per seed and cell")
    widths: tuple[int, ...] = _f((), "encoder widths k: one amortized trial per width")
    train: dict[str, Any] = _f(help="training settings shared by all trials (table below)", factory=dict)
    family_train: dict[str, dict[str, Any]] = _f(
        help="per-family overrides of train, e.g. {factorized: {lr: 0.01}}", factory=dict
    )
    report_every: int = _f(1, "epochs between reports (train/test MSE computed then)")
    checkpoint_every: int = _f(10, "epochs between checkpoints; a multiple of report_every")
    resources: dict[str, float] = _f(
        help="per trial: cpu (torch threads) and gpu (a fraction shares a GPU)",
        factory=lambda: {"cpu": 1, "gpu": 0},
    )
    storage: str = _f("./results", "local path or URI (s3://, gs://); shared storage on a cluster")
    max_failures: int = _f(0, "times Tune restarts a failed trial from its last checkpoint")
    test_inference: dict[str, Any] | None = _f(
        help="test-time q at the end: false, or {lr, max_steps, window, rtol, eval_samples}", factory=dict
    )
    optuna: OptunaStage | None = _f(None, "optional learning-rate search per cell (keys below)")
    vectorize_seeds: bool = _f(False, "train each cell's seeds as one trial, batched over seeds (vmap)")
    evaluate: dict[str, Any] | None = _f(
        None, "after training, the gap decomposition per trial: false, or {" + ", ".join(EVALUATE_KEYS) + "}"
    )

    def cells(self) -> list[dict[str, Any]]:
        """One dict per (dataset, family, width): the grid's cells, seeds apart."""
        out = []
        for ds in self.datasets:
            for fam in self.families:
                for w in self.widths if fam == "amortized" else (None,):
                    out.append({"dataset": ds, "family": fam, "width": w, **self.family_train.get(fam, {})})
        return out

    def tune_base(self) -> dict[str, Any]:
        """The Tune config every trial shares; the runner adds "cell" and "seed"."""
        return {
            **self.train,
            "report_every": self.report_every,
            "checkpoint_every": self.checkpoint_every,
            "test_inference": self.test_inference,
        }

    def trial_config(self, cell: dict[str, Any], seed: int) -> TrialConfig:
        """The engine's config of one trial; ``cell`` may carry its own ``lr``."""
        return split_config({**self.tune_base(), "cell": cell, "seed": seed})[0]

    @property
    def num_trials(self) -> int:
        """Tune trials: one per cell and seed, or one per cell with vectorize_seeds."""
        return len(self.cells()) * (1 if self.vectorize_seeds else len(self.seeds))

    @property
    def is_uri(self) -> bool:
        return _scheme(self.storage) is not None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["datasets"], d["families"] = list(self.datasets), list(self.families)
        d["seeds"], d["widths"] = list(self.seeds), list(self.widths)
        if self.optuna:
            d["optuna"]["lr"] = list(self.optuna.lr)
        if not self.widths:
            del d["widths"]
        return d


TOP_KEYS = tuple(f.name for f in dataclasses.fields(SweepSpec))
TRAIN_KEYS = tuple(k for k in field_names() if k not in GRID_KEYS and k != "eval_every")


def load_spec(path: str | os.PathLike, **overrides: Any) -> SweepSpec:
    """Read and validate a spec file; ``overrides`` (name, storage) replace its keys."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"spec {path}: no such file") from None
    except (OSError, yaml.YAMLError) as e:
        detail = " ".join(str(e).split())
        raise SpecError(f"spec {path}: not readable YAML: {detail}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"spec {path}: expected a mapping of keys, got {type(raw).__name__}")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return parse_spec(raw, source=str(path))


def parse_spec(raw: dict[str, Any], source: str = "spec") -> SweepSpec:
    problems: list[str] = []
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        problems.append(f"unknown key(s) {unknown} (accepted: {', '.join(TOP_KEYS)})")
    for key in ("name", "datasets", "families", "seeds"):
        if key not in raw:
            problems.append(f"missing key {key!r}")
    name = raw.get("name", "")
    if "name" in raw and (not isinstance(name, str) or not name or "/" in name or name.startswith(".")):
        problems.append(f"name={name!r} must be a non-empty string without '/'")
    datasets = _names(raw, "datasets", DATASETS, problems)
    families = _names(raw, "families", FAMILIES, problems)
    seeds = _ints(raw, "seeds", 0, problems)
    widths = _ints(raw, "widths", 1, problems) if "widths" in raw else ()
    if "amortized" in families and not widths:
        problems.append("widths must list at least one encoder width when families has 'amortized'")
    if widths and "amortized" not in families:
        problems.append("widths given but families has no 'amortized'")
    train = _train(raw.get("train", {}), problems)
    family_train = _family_train(raw.get("family_train", {}), families, problems)
    report_every = _pos_int(raw, "report_every", 1, problems)
    checkpoint_every = _pos_int(raw, "checkpoint_every", 10, problems)
    if report_every and checkpoint_every and checkpoint_every % report_every:
        problems.append(
            f"checkpoint_every={checkpoint_every} must be a multiple of report_every={report_every}"
        )
    resources = _resources(raw.get("resources", {"cpu": 1, "gpu": 0}), problems)
    storage = _storage(raw.get("storage", "./results"), problems)
    max_failures = raw.get("max_failures", 0)
    if not _is_int(max_failures) or max_failures < -1:
        problems.append(f"max_failures={max_failures!r} must be an integer >= 0 (or -1: no limit)")
    test_inference = _test_inference(raw.get("test_inference", {}), problems)
    optuna = _optuna(raw.get("optuna"), problems)
    evaluate = _evaluate(raw.get("evaluate"), problems)
    vectorize_seeds = raw.get("vectorize_seeds", False)
    if not isinstance(vectorize_seeds, bool):
        problems.append(f"vectorize_seeds={vectorize_seeds!r} must be true or false")
    if problems:
        raise SpecError(f"{source}: {len(problems)} problem(s): " + "; ".join(problems))
    spec = SweepSpec(
        name=name, datasets=datasets, families=families, seeds=seeds, widths=widths, train=train,
        family_train=family_train,
        report_every=report_every, checkpoint_every=checkpoint_every, resources=resources,
        storage=storage, max_failures=max_failures, test_inference=test_inference, optuna=optuna,
        vectorize_seeds=vectorize_seeds is True, evaluate=evaluate,
    )
    _check_trial_configs(spec, source)
    if not spec.is_uri:
        _check_space(spec, source)
    return spec


CHECKPOINTS_KEPT = 2  # the runner keeps two, so a damaged newest one leaves the one before


def checkpoint_bytes(cfg: TrialConfig, data_dim: int) -> int:
    """Size of one trial's saved state: parameters and Adam's two moments, float32."""
    d, h = cfg.latent_dim, cfg.hidden_dim
    decoder = 2 * (d * h + h + h * h + h + h * data_dim + data_dim)  # mean and log-sd of theta
    family = {
        "amortized": lambda k: data_dim * k + k + k * k + k + 2 * (k * d + d),
        "factorized": lambda k: 2 * cfg.n_train * d,
        "constant": lambda k: 2 * d,
    }[cfg.family](cfg.width)
    return 4 * 3 * (decoder + family)


def _check_space(spec: SweepSpec, source: str) -> None:
    """Refuse a launch whose checkpoints would not fit on the storage's disk."""
    from trainables.data import DATA_DIM

    need = sum(
        CHECKPOINTS_KEPT * checkpoint_bytes(spec.trial_config(c, spec.seeds[0]), DATA_DIM[c["dataset"]])
        for c in spec.cells()
    ) * len(spec.seeds)
    probe = _nearest_existing(Path(spec.storage))
    free = shutil.disk_usage(probe).free
    if free < need:
        raise SpecError(
            f"{source}: storage={spec.storage!r}: {free / 1e6:.1f} MB free at {probe}, "
            f"the sweep's checkpoints need about {need / 1e6:.1f} MB"
        )


def _check_trial_configs(spec: SweepSpec, source: str) -> None:
    """Every cell must make a valid TrialConfig (e.g. batch_size <= n_train)."""
    problems = []
    for cell in spec.cells():
        try:
            spec.trial_config(cell, spec.seeds[0])
        except ConfigError as e:
            problems.append(f"train settings for {cell['dataset']}/{cell['family']}: {e}")
    if problems:
        raise SpecError(f"{source}: {len(problems)} problem(s): " + "; ".join(sorted(set(problems))))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _names(raw, key, accepted, problems) -> tuple[str, ...]:
    v = raw.get(key)
    if key not in raw:
        return ()
    if not isinstance(v, list) or not v:
        problems.append(f"{key}={v!r} must be a non-empty list from: {', '.join(accepted)}")
        return ()
    bad = [x for x in v if x not in accepted]
    if bad:
        problems.append(f"{key}: unknown {bad} (accepted: {', '.join(accepted)})")
    if len(set(map(str, v))) != len(v):
        problems.append(f"{key}={v!r} lists an entry twice")
    return tuple(x for x in v if x in accepted)


def _ints(raw, key, least, problems) -> tuple[int, ...]:
    v = raw.get(key)
    if key not in raw:
        return ()
    if not isinstance(v, list) or not v:
        problems.append(f"{key}={v!r} must be a non-empty list of integers >= {least}")
        return ()
    bad = [x for x in v if not _is_int(x) or x < least]
    if bad:
        problems.append(f"{key}: {bad} are not integers >= {least}")
    if len(set(map(repr, v))) != len(v):
        problems.append(f"{key}={v!r} lists an entry twice")
    return tuple(x for x in v if _is_int(x) and x >= least)


def _pos_int(raw, key, default, problems) -> int:
    v = raw.get(key, default)
    if not _is_int(v) or v <= 0:
        problems.append(f"{key}={v!r} must be a positive integer")
        return 0
    return v


def _train(train, problems) -> dict[str, Any]:
    if not isinstance(train, dict):
        problems.append(f"train={train!r} must be a mapping of training settings")
        return {}
    grid = sorted(set(train) & set(GRID_KEYS))
    if grid:
        problems.append(f"train: {grid} are set by the grid (datasets, families, widths, seeds)")
    if "eval_every" in train:
        problems.append("train: eval_every is set by report_every")
    unknown = sorted(set(train) - set(TRAIN_KEYS) - set(GRID_KEYS) - {"eval_every"})
    if unknown:
        problems.append(f"train: unknown setting(s) {unknown} (accepted: {', '.join(TRAIN_KEYS)})")
    out = {k: v for k, v in train.items() if k in TRAIN_KEYS}
    if out.get("data_root") is not None and isinstance(out["data_root"], str):
        # trials run in their own directories: a relative path would break there
        out["data_root"] = str(Path(out["data_root"]).expanduser().resolve())
    return out


def _family_train(v, families, problems) -> dict[str, dict[str, Any]]:
    if not isinstance(v, dict):
        problems.append(f"family_train={v!r} must map a family to its training settings")
        return {}
    out = {}
    for fam, settings in v.items():
        if fam not in families:
            problems.append(f"family_train: {fam!r} is not in families {list(families)}")
            continue
        sub: list[str] = []
        out[fam] = _train(settings, sub)
        problems.extend(f"family_train.{fam}: {p.removeprefix('train: ')}" for p in sub)
    return out


def _resources(res, problems) -> dict[str, float]:
    if not isinstance(res, dict) or set(res) - {"cpu", "gpu"}:
        problems.append(f"resources={res!r} must be a mapping with keys cpu and gpu")
        return {"cpu": 1, "gpu": 0}
    cpu, gpu = res.get("cpu", 1), res.get("gpu", 0)
    if not isinstance(cpu, (int, float)) or isinstance(cpu, bool) or cpu <= 0:
        problems.append(f"resources.cpu={cpu!r} must be a positive number")
    if not isinstance(gpu, (int, float)) or isinstance(gpu, bool) or gpu < 0:
        problems.append(f"resources.gpu={gpu!r} must be a number >= 0 (a fraction shares a GPU)")
    elif gpu > 1 and gpu != int(gpu):
        problems.append(f"resources.gpu={gpu!r}: above 1 it must be a whole number")
    return {"cpu": cpu, "gpu": gpu}


def _scheme(storage: str) -> str | None:
    head, sep, _ = storage.partition("://")
    return head.lower() if sep else None


def _storage(storage, problems) -> str:
    if not isinstance(storage, str) or not storage:
        problems.append(f"storage={storage!r} must be a path or a URI")
        return ""
    scheme = _scheme(storage)
    if scheme is not None:
        if scheme not in URI_SCHEMES:
            problems.append(f"storage={storage!r}: scheme {scheme!r} is not one of {', '.join(URI_SCHEMES)}")
        return storage
    path = Path(storage).expanduser().resolve()
    problem = writable_problem(path)
    if problem:
        problems.append(f"storage={storage!r}: {problem}")
    return str(path)


def _nearest_existing(path: Path) -> Path:
    """``path`` itself, or its closest ancestor that exists (where it would be created)."""
    while not path.exists():
        path = path.parent
    return path


def writable_problem(path: Path) -> str | None:
    """Why results cannot be written under ``path`` (created later if missing), or None.

    Probes by creating (and at once removing) a temporary file in the nearest existing
    folder: os.access says yes to root even where a write would fail.
    """
    probe = _nearest_existing(path)
    if not probe.is_dir():
        return f"{probe} is a file, not a directory"
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        return f"{probe} is not writable ({e.strerror})"
    return None


def _test_inference(v, problems) -> dict[str, Any] | None:
    if v is False or v is None:
        return None
    if v is True:
        return {}
    accepted = ("lr", "max_steps", "window", "rtol", "eval_samples")
    if not isinstance(v, dict) or set(v) - set(accepted):
        problems.append(f"test_inference={v!r} must be true, false, or a mapping of {', '.join(accepted)}")
        return None
    return dict(v)


def _evaluate(v, problems) -> dict[str, Any] | None:
    if v is None or v is False:
        return None
    if v is True:
        return {}
    if not isinstance(v, dict) or set(v) - set(EVALUATE_KEYS):
        problems.append(f"evaluate={v!r} must be true, false, or a mapping of {', '.join(EVALUATE_KEYS)}")
        return None
    for key in ("points", "iwae_samples", "eval_samples"):
        if key in v and (not _is_int(v[key]) or v[key] <= 0):
            problems.append(f"evaluate.{key}={v[key]!r} must be a positive integer")
    steps = v.get("refine_steps", [0])
    if not isinstance(steps, list) or not all(_is_int(k) and k >= 0 for k in steps):
        problems.append(f"evaluate.refine_steps={steps!r} must be a list of integers >= 0")
    return dict(v)


def _optuna(v, problems) -> OptunaStage | None:
    if v is None or v is False:
        return None
    accepted = [f.name for f in dataclasses.fields(OptunaStage)]
    if not isinstance(v, dict) or set(v) - set(accepted):
        problems.append(f"optuna={v!r} must be a mapping of {', '.join(accepted)}")
        return None
    stage = OptunaStage()
    lr = v.get("lr", list(stage.lr))
    if (not isinstance(lr, list) or len(lr) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in lr)
            or lr[0] >= lr[1]):
        problems.append(f"optuna.lr={lr!r} must be [low, high] with 0 < low < high")
        lr = list(stage.lr)
    ints = {}
    for key in ("samples", "epochs", "grace_period"):
        x = v.get(key, getattr(stage, key))
        if not _is_int(x) or x <= 0:
            problems.append(f"optuna.{key}={x!r} must be a positive integer")
            x = getattr(stage, key)
        ints[key] = x
    if ints["grace_period"] > ints["epochs"]:
        problems.append(f"optuna.grace_period={ints['grace_period']} exceeds optuna.epochs={ints['epochs']}")
    return OptunaStage(lr=(float(lr[0]), float(lr[1])), **ints)


def split_config(config: dict[str, Any]) -> tuple[TrialConfig, dict[str, Any]]:
    """(engine config, adapter settings) from a Tune config; unknown keys raise ConfigError.

    A vectorized trial carries "seeds" (a list) instead of "seed"; its engine config has the first.
    """
    engine = {k: v for k, v in config.items() if k not in ADAPTER_KEYS}
    seeds = config.get("seeds")
    if seeds:
        engine["seed"] = seeds[0]
    cell = config.get("cell", {})
    cfg = TrialConfig.from_dict({**engine, **cell, "eval_every": config.get("report_every", 1)})
    opts = {
        "seeds": list(seeds) if seeds else None,
        "report_every": config.get("report_every", 1),
        "checkpoint_every": config.get("checkpoint_every", 10),
        "test_inference": config.get("test_inference"),
    }
    return cfg, opts


def reference_markdown() -> str:
    """Every spec key, its default and meaning, generated from the code (README embeds it)."""

    def default(f: dataclasses.Field) -> str:
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            return "required"
        return f"`{value}`" if value not in ((), None, {}) else ("`{}`" if value == {} else "-")

    def table(cls: type, prefix: str = "") -> list[str]:
        rows = ["| key | default | meaning |", "|---|---|---|"]
        for f in dataclasses.fields(cls):
            if cls is TrialConfig and f.name in (*GRID_KEYS, "eval_every"):
                continue
            rows.append(f"| `{prefix}{f.name}` | {default(f)} | {f.metadata['help']} |")
        return rows

    return "\n".join([
        "Top-level keys:", "", *table(SweepSpec), "",
        "`train` keys (also allowed under `family_train.FAMILY`):", "", *table(TrialConfig, "train."), "",
        "`optuna` keys:", "", *table(OptunaStage, "optuna."),
    ])
