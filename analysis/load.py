"""The tidy results table, from an experiment directory or from `sweep export`'s parquet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

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


def load_results(path: str | Path) -> pd.DataFrame:
    """Read RESULTS (experiment dir or parquet) into the tidy table, checking its columns."""
    path = Path(path)
    if path.is_dir():
        from sweep.results import tidy  # reads the experiment through Ray Tune's own reader
        from sweep.runner import SweepError, load_trials

        try:
            table = tidy(load_trials(str(path)))
        except SweepError as e:
            raise AnalysisError(str(e)) from None
    elif path.is_file():
        try:
            table = pd.read_parquet(path)
        except Exception as e:  # pyarrow's errors vary by what the file really is
            raise AnalysisError(f"{path} is not a readable parquet file ({type(e).__name__})") from None
    else:
        raise AnalysisError(f"{path}: no such file or directory")
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise AnalysisError(
            f"{path} lacks column(s) {missing}; expected the table of `python -m sweep export`"
        )
    if table.empty:
        raise AnalysisError(f"{path} holds no reported epochs yet")
    return with_variant(table)


def variant_label(family: str, width) -> str:
    return f"k={int(width)}" if family == "amortized" else family


def variant_order(table: pd.DataFrame) -> list[str]:
    """Amortized widths ascending, then factorized, then constant."""
    widths = sorted({int(w) for w in table.loc[table.family == "amortized", "width"].dropna()})
    rest = [f for f in ("factorized", "constant") if f in set(table.family)]
    return [f"k={w}" for w in widths] + rest


def with_variant(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    table["variant"] = [variant_label(f, w) for f, w in zip(table.family, table.width, strict=True)]
    return table


def load_gaps(path: str | Path) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The gap decomposition (`sweep evaluate`), if any: from the experiment's gap.json files, or
    from OUT.gaps.parquet and OUT.refine.parquet beside an exported OUT.parquet."""
    path = Path(path)
    if path.is_dir():
        from sweep.results import gap_tables
        from sweep.runner import load_trials

        frames = gap_tables(load_trials(str(path)))
    else:
        frames = tuple(
            pd.read_parquet(p) if p.is_file() else pd.DataFrame()
            for p in (path.with_name(f"{path.stem}.{name}.parquet") for name in ("gaps", "refine"))
        )
    return tuple(with_variant(f) if len(f) else None for f in frames)
