"""The sweep spec: one YAML file, validated whole before Ray starts. `sweep/specs/` has examples;
`python -m sweep keys` prints every key, its default and meaning (generated from this schema).

Fan-out: datasets x families (each width, for a family with an encoder) x every `grid` axis, one
cell each, x seeds. A cell's trial config is `train`, then `family_train[family]`, then the
cell's own values; `family_options[family]` are the family's own settings.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

import yaml

from trainables import families
from trainables.config import DATASETS, ConfigError, TrialConfig
from trainables.settings import (
    boolean,
    distinct_list,
    is_int,
    is_num,
    nested,
    positive_int,
    positive_number,
    problems,
    setting,
    unknown_keys,
)

from .preflight import storage_problems
from .rules import TRACKERS, grid_problems, normalized
from .tuneconfig import Cell, split_config


class SpecError(ValueError):
    """The spec has problems; the message lists every one of them on one line."""

    def __init__(self, problems: list[str], source: str = "spec"):
        self.problems = list(dict.fromkeys(problems))
        super().__init__(f"{source}: {len(self.problems)} problem(s): " + "; ".join(self.problems))


def _gpu(v: Any) -> str | None:
    ok = is_num(v) and v >= 0 and (v <= 1 or v == int(v))
    return None if ok else "must be a number >= 0 (a fraction shares a GPU; above 1, whole GPUs)"


def _lr_range(v: Any) -> str | None:
    ok = isinstance(v, (list, tuple)) and len(v) == 2 and all(is_num(x) and x > 0 for x in v) and v[0] < v[1]
    return None if ok else "must be [low, high] with 0 < low < high"


def _name(v: Any) -> str | None:
    ok = isinstance(v, str) and v and "/" not in v and not v.startswith(".")
    return None if ok else "must be a non-empty string without '/'"


@dataclass(frozen=True)
class Resources:
    cpu: float = setting(1, "CPUs per trial: its torch threads", check=positive_number)
    gpu: float = setting(0, "GPUs per trial; a fraction shares one (0.25: four trials a GPU)", check=_gpu)


@dataclass(frozen=True)
class OptunaStage:
    lr: tuple[float, float] = setting((1e-4, 1e-2), "log-uniform learning-rate range [low, high]",
                                      check=_lr_range)
    samples: int = setting(8, "Optuna trials per cell", check=positive_int)
    epochs: int = setting(50, "epochs of each Optuna trial (the short budget)", check=positive_int)
    grace_period: int = setting(5, "ASHA: epochs before a trial may be stopped early", check=positive_int)


@dataclass(frozen=True)
class SweepSpec:
    """A sweep spec as validated by ``parse_spec``, the one way to build one."""

    name: str = setting(help="experiment name: results go to STORAGE/NAME", check=_name)
    datasets: tuple[str, ...] = setting(
        help="list from mnist, fashion_mnist, cifar10", check=distinct_list(DATASETS))
    families: tuple[str, ...] = setting(
        help="list of registered families (the `families` table below), or ones a `family_modules` module "
        "registers")
    seeds: tuple[int, ...] = setting(
        help="integer seeds: one trial per seed and cell", check=distinct_list(least=0))
    widths: tuple[int, ...] = setting(
        (), "encoder widths k: one trial each, for every family with an encoder")
    grid: dict[str, list] = setting(
        help="axes: a `train` setting -> its values, e.g. {n_train: [250, 1000]}; each combination a cell",
        factory=dict)
    train: dict[str, Any] = setting(help="training settings of every trial (table below)", factory=dict)
    family_train: dict[str, dict] = setting(
        help="per-family overrides of train, e.g. {factorized: {lr: 0.01}}", factory=dict)
    family_options: dict[str, dict] = setting(
        help="a family's own settings, e.g. {factorized: {optimizer: dense}} (tables below)", factory=dict)
    family_modules: tuple[str, ...] = setting((), "modules that register families, imported on every node")
    report_every: int = setting(
        1, "epochs between reports (train/test MSE computed then)", check=positive_int)
    checkpoint_every: int = setting(
        10, "epochs between checkpoints; a multiple of report_every", check=positive_int)
    resources: Resources = setting(help="per trial: cpu and gpu (keys below)", factory=Resources)
    storage: str = setting("./results", "local path or URI (s3://, gs://); shared storage on a cluster")
    max_failures: int = setting(
        0, "times Tune restarts a failed trial from its last checkpoint (-1: no limit)",
        check=lambda v: None if is_int(v) and v >= -1 else "must be an integer >= -1")
    test_inference: dict | None = setting(
        help="test-time q at the end: false, or a mapping of the `test_inference` keys below ({} or true: "
        "their defaults)", factory=dict)
    optuna: OptunaStage | None = setting(None, "optional learning-rate search per cell (keys below)")
    vectorize_seeds: bool = setting(
        False, "train each cell's seeds as one trial, batched over seeds (vmap)", check=boolean)
    evaluate: dict | None = setting(
        None, "after training, each trial's gap split: false, or a mapping of the `evaluate` keys below "
        "({} or true: their defaults)")
    tracking: dict | None = setting(
        None, f"trackers fed every trial's config and metrics: a mapping of {' and/or '.join(TRACKERS)} to "
        "their settings (`tracking` keys below; {} for a tracker: its defaults)")

    def cells(self) -> list[Cell]:
        """One cell per trial but the seed: dataset, family, width, its axis values, and the
        family's overrides of `train` and own options."""
        axes = [[(k, v) for v in vs] for k, vs in self.grid.items()]
        out = []
        for ds, fam in itertools.product(self.datasets, self.families):
            widths = self.widths if families.declared(fam).has_width else (None,)
            for width, combo in itertools.product(widths, itertools.product(*axes)):
                out.append(Cell(ds, fam, width, dict(combo), dict(self.family_train.get(fam, {})),
                                dict(self.family_options.get(fam, {}))))
        return out

    def tune_base(self) -> dict[str, Any]:
        """The Tune config every trial shares; the runner adds "cell" (Cell.tune) and "seed" (or "seeds")."""
        return {**self.train, "report_every": self.report_every, "checkpoint_every": self.checkpoint_every,
                "test_inference": self.test_inference, "family_modules": list(self.family_modules)}

    def trial_config(self, cell: Cell, seed: int) -> TrialConfig:
        """The engine config of ``cell``'s trial with ``seed``, as the trial itself will read it."""
        return split_config({**self.tune_base(), "cell": cell.tune(), "seed": seed})[0]

    @property
    def num_trials(self) -> int:
        return len(self.cells()) * (1 if self.vectorize_seeds else len(self.seeds))

    def to_dict(self) -> dict[str, Any]:
        return yaml.safe_load(yaml.safe_dump(dataclasses.asdict(self)))  # tuples -> lists


def _validated(written: SweepSpec) -> SweepSpec:
    """The spec as written, checked key by key, its values as the schema holds them (tuples,
    dataclasses, absolute paths), then checked across keys; every problem in one SpecError."""
    out = problems(written)
    values = normalized(written, out)
    values["resources"] = nested(Resources, written.resources, "resources", out)
    values["optuna"] = nested(OptunaStage, written.optuna, "optuna", out) if written.optuna else None
    spec = dataclasses.replace(written, **values)
    out += grid_problems(spec)
    if is_int(spec.report_every) and is_int(spec.checkpoint_every) and spec.checkpoint_every % max(
            1, spec.report_every):
        out.append(f"checkpoint_every={spec.checkpoint_every} must be a multiple of "
                   f"report_every={spec.report_every}")
    if not out:  # every cell must make a valid engine config (e.g. batch_size <= n_train)
        refining = {}
        for cell in spec.cells():
            try:
                cfg = spec.trial_config(cell, spec.seeds[0])
            except ConfigError as e:
                out.append(f"{cell.slug}: {e}")
                continue
            if spec.vectorize_seeds is True and families.probe(cfg).refines:  # as the trial's reads it
                refining[cfg.family] = None
        if refining:
            out.append(f"vectorize_seeds with {', '.join(refining)}: its refinement cannot be batched")
    if out:
        raise SpecError(out)
    return spec


def parse_spec(raw: dict[str, Any], source: str = "spec", launch: bool = False) -> SweepSpec:
    """A validated spec from a mapping; every problem, one line, in one SpecError. ``launch`` also
    checks the storage: writable, with room for the checkpoints (sweep/preflight.py)."""
    out = [f"missing key {k!r}" for k in ("name", "datasets", "families", "seeds") if k not in raw]
    out += [bad] if (bad := unknown_keys(SweepSpec, raw, "key(s)")) else []
    spec = None
    if not out:
        try:
            spec = _validated(SweepSpec(**raw))
        except SpecError as e:
            out += e.problems
    if launch:
        out += storage_problems(raw.get("storage", SweepSpec.storage), spec)
    if out:
        raise SpecError(out, source)
    return spec
