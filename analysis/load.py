"""The tidy results table, from an experiment directory or from `sweep export`'s parquet."""

from __future__ import annotations

import io
from pathlib import Path, PurePath
from typing import NamedTuple

import pandas as pd
from pyarrow.fs import FileType

REQUIRED = (
    "trial_id",
    "status",
    "epoch",
    "dataset",
    "family",
    "width",
    "seed",
    "epochs",
    "neg_elbo",
    "neg_elbo_per_datapoint",
    "train_mse",
    "test_mse",
    "opt_seconds",
    "epochs_to_threshold",
    "seconds_to_threshold",
    "infer_seconds",
)


class AnalysisError(ValueError):
    """Input the analysis cannot use; the message says what and why, on one line."""


class Results(NamedTuple):
    """An experiment read once: the tidy table, and `sweep evaluate`'s gap split (``measured``, a row
    per trial, seed and split, at its newest evaluated checkpoint) and refinement rows, and the gap
    split at earlier checkpoints (``earlier``: evaluate.checkpoints 2), each None where there is none."""

    table: pd.DataFrame
    measured: pd.DataFrame | None
    refine: pd.DataFrame | None
    earlier: pd.DataFrame | None = None


def load(path: str | Path) -> Results:
    """Read RESULTS (experiment dir or parquet, a path or a URI such as s3://bucket/exp) once: each
    trial's files are read one time, for the table and the gap split both."""
    from sweep import storage

    where = storage.kind(path)
    if where == FileType.Directory:
        from sweep.experiment import SweepError, load_trials
        from sweep.results import gap_tables, tidy

        try:
            trials = load_trials(str(path))
        except SweepError as e:
            raise AnalysisError(str(e)) from None
        table, frames = tidy(trials), gap_tables(trials)
    elif where == FileType.File:
        table, frames = _parquet(path), _beside(path)
    else:
        raise AnalysisError(f"{path}: no such file or directory")
    from sweep.results import newest_and_earlier

    (measured, earlier), (refine, _) = (newest_and_earlier(f) for f in frames)
    return Results(_checked(table, path), *(with_variant(f) if len(f) else None
                                            for f in (measured, refine, earlier)))


def load_results(path: str | Path) -> pd.DataFrame:
    """The tidy table of RESULTS (see ``load``), its columns checked."""
    return load(path).table


def _parquet(path: str | Path) -> pd.DataFrame:
    from sweep import storage

    try:
        return pd.read_parquet(io.BytesIO(storage.read_bytes(path)))
    except Exception as e:  # pyarrow's errors vary by what the file really is
        raise AnalysisError(f"{path} is not a readable parquet file ({type(e).__name__})") from None


def _beside(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """OUT.gaps.parquet and OUT.refine.parquet beside an exported OUT.parquet (empty where missing)."""
    from sweep import storage

    stem = PurePath(storage.name(path)).stem
    beside = [storage.sibling(path, f"{stem}.{name}.parquet") for name in ("gaps", "refine")]
    return tuple(pd.read_parquet(io.BytesIO(storage.read_bytes(p))) if storage.exists(p) else pd.DataFrame()
                 for p in beside)


def _checked(table: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise AnalysisError(
            f"{path} lacks column(s) {missing}; expected the table of `python -m sweep export`"
        )
    if table.empty:
        raise AnalysisError(f"{path} holds no reported epochs yet")
    return with_variant(table)


# what a family declares, as columns (sweep.results.family_columns)
FAMILY_COLUMNS = ("variant", "variant_order", "has_width", "has_test_time_q", "per_datapoint")


def sweep_axes(table: pd.DataFrame) -> list[str]:
    """The settings a sweep varied besides dataset, family, width and seed (its `grid` axes), read
    from the table: the config columns that differ between the trials of one variant."""
    from trainables.config import field_names

    fixed = ("dataset", "family", "width", "seed", "eval_every", "family_options")
    candidates = [c for c in field_names() if c not in fixed and c in table]
    if "trial_id" in table:  # the config columns hold one value per trial: read one row of each
        table = table[~table.trial_id.duplicated()]
    per_variant = table.groupby(["dataset", "variant"])
    return [c for c in candidates if (per_variant[c].nunique(dropna=False) > 1).any()]


def cells(table: pd.DataFrame) -> list[str]:
    """The "cell" labels of a table (its axis values, "" without axes), in the axes' order."""
    axes = sweep_axes(table)
    if not axes:
        return list(table.cell.unique())  # in order of appearance
    return list(dict.fromkeys(table[[*axes, "cell"]].drop_duplicates().sort_values(axes, kind="stable").cell))


def variant_order(table: pd.DataFrame) -> list[str]:
    """The variants in their families' declared order (encoders narrow to wide, then baselines),
    by the table's "variant_order" column (sweep.results.variant_order)."""
    return list(table.drop_duplicates("variant").sort_values("variant_order", kind="stable")["variant"])


def with_variant(table: pd.DataFrame) -> pd.DataFrame:
    """The table with its family columns (sweep export writes them; here they are filled in from
    the family registry where missing, e.g. for a hand-made table)."""
    table = table.copy(deep=False)  # copy-on-write: the caller's table stays as it was
    missing = [c for c in FAMILY_COLUMNS if c not in table]
    if missing:
        from sweep.results import family_columns

        pairs = table[["family", "width"]].drop_duplicates()  # once per variant, not per row
        kinds = pd.DataFrame([family_columns(f, None if pd.isna(w) else int(w))
                              for f, w in zip(pairs.family, pairs.width, strict=True)])
        rows = table[["family", "width"]].merge(pd.concat([pairs.reset_index(drop=True), kinds], axis=1),
                                                on=["family", "width"], how="left").set_axis(table.index)
        for c in missing:
            table[c] = rows[c]
    return table


def load_gaps(path: str | Path) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The gap decomposition (`sweep evaluate`), if any: from the experiment's gap.json files, or
    from OUT.gaps.parquet and OUT.refine.parquet beside an exported OUT.parquet."""
    from sweep import storage

    if storage.is_dir(path):
        from sweep.experiment import load_trials
        from sweep.results import gap_tables

        frames = gap_tables(load_trials(str(path), reports="none"))
    else:
        frames = _beside(path)
    from sweep.results import newest_and_earlier

    return tuple(with_variant(f) if len(f) else None for f in (newest_and_earlier(f)[0] for f in frames))
