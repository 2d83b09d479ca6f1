"""Trial records (sweep/experiment.py) -> the status table, the progress lines, the tidy results
table and the gap tables (pandas, no Ray)."""

from __future__ import annotations

import dataclasses
import io
import json
import os
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd

from trainables import families
from trainables.config import TrialConfig
from trainables.metrics import GAP_KEYS, REPORTED, latents_unused

from . import storage
from .experiment import TrialRecord
from .progress import Line
from .tuneconfig import split_config

Rows = list[dict[str, Any]]  # a trial's reports, oldest first


@dataclass(frozen=True)
class SeedRecord:
    """One seed of a trial: a plain trial is one, a vectorized trial one per seed."""

    trial_id: str  # the trial's; "-s<S>" appended for seed S of a vectorized trial
    cfg: TrialConfig
    rows: Rows | None  # its reports (a vectorized trial's "seed<S>/" keys unprefixed); None: not read
    last: dict[str, Any]  # its last result, likewise


_CELLS: dict[str, tuple[TrialConfig, dict[str, Any]]] = {}  # split_config by config but its seed
_CELLS_KEPT = 4096  # a notebook reading many sweeps does not grow it without end


def _split(config: dict[str, Any]) -> tuple[TrialConfig, dict[str, Any]]:
    """split_config, the Tune config read once per cell (the trials of a cell differ in their seed
    alone; reading 10,000 configs whole took most of `status` at 10,000 trials), the seed set after."""
    seedless = {k: v for k, v in config.items() if k != "seed"}
    key = json.dumps(seedless, sort_keys=True, default=repr)
    if key not in _CELLS:
        if len(_CELLS) >= _CELLS_KEPT:
            _CELLS.clear()
        _CELLS[key] = split_config({**seedless, "seed": 0} if "seed" in config else seedless)
    cfg, opts = _CELLS[key]
    return (dataclasses.replace(cfg, seed=config["seed"]) if "seed" in config else cfg), opts


def per_seed(t: TrialRecord) -> list[SeedRecord]:
    """A trial's seeds: itself for a plain trial; for a vectorized trial one per seed, its "seed<S>/"
    keys unprefixed, its id suffixed "-s<S>"."""
    cfg, opts = _split(t.config)
    if not opts["seeds"]:
        return [SeedRecord(t.trial_id, cfg, t.rows, t.last_result)]
    out = []
    for seed in opts["seeds"]:
        prefix = f"seed{seed}/"

        def own(row: dict[str, Any], p: str = prefix) -> dict[str, Any]:
            return {k[len(p):]: v for k, v in row.items() if k.startswith(p)}

        rows = None if t.rows is None else [own(r) for r in t.rows]
        seed_cfg = dataclasses.replace(cfg, seed=seed)
        out.append(SeedRecord(f"{t.trial_id}-s{seed}", seed_cfg, rows, own(t.last_result)))
    return out


def status_table(trials: list[TrialRecord]) -> pd.DataFrame:
    """One row per trial (per seed of a vectorized one): its cell, state, progress, last metrics,
    and a note: its error, or 'latents unused: ...' when its latents carry nothing."""
    rows = []
    for trial, run in ((t, r) for t in trials for r in per_seed(t)):
        cfg, last = run.cfg, run.last
        evaluated = _last_evaluated(run.rows, last)
        note = trial.error or latents_unused(
            evaluated.get("train_mse"), evaluated.get("mean_image_mse"), evaluated.get("active_dims")
        )
        rows.append({
            "trial": run.trial_id,
            "dataset": cfg.dataset,
            "family": cfg.family,
            "width": cfg.width,
            **trial.axes,
            "seed": cfg.seed,
            "state": trial.status,
            "epochs": f"{last.get('epoch', 0)}/{cfg.epochs}",
            "neg_elbo/pt": last.get("neg_elbo_per_datapoint"),
            "train_mse": evaluated.get("train_mse"),
            "test_mse": evaluated.get("test_mse"),
            "kl_z/pt": last.get("kl_z_per_datapoint"),
            "active": evaluated.get("active_dims"),
            "note": note or "",
        })
    axes = list(trials[0].axes) if trials else []
    table = pd.DataFrame(rows).sort_values(["dataset", "family", "width", *axes, "seed"], na_position="last")
    table["width"] = table["width"].map(lambda w: "-" if w is None or pd.isna(w) else str(int(w)))
    table["active"] = table["active"].map(lambda a: "-" if a is None or pd.isna(a) else str(int(a)))
    return table


def progress_lines(trials: list[TrialRecord]) -> list[Line]:
    """The trials as the progress display's lines (epochs, seconds), read from the files."""
    out = []
    for trial, run in ((t, r) for t in trials for r in per_seed(t)):
        cfg, last = run.cfg, run.last
        out.append(Line(cfg.dataset, cfg.family, cfg.width, trial.axes, str(cfg.seed), trial.status,
                        last.get("epoch", 0), cfg.epochs, last.get("neg_elbo_per_datapoint"),
                        _last_evaluated(run.rows, last).get("train_mse"),
                        trial.last_result.get("time_total_s", 0.0)))
    return out


def gap_summary(trials: list[TrialRecord]) -> str:
    """The measured gap split per dataset, axis values and variant: amortization and approximation
    gap on training and test images, nats per image, mean over seeds ± its standard error (from the
    per-trial standard errors over images)."""
    gaps, _ = newest_and_earlier(gap_tables(trials)[0])
    if gaps.empty:
        return "no gap.json yet"
    keys = ["dataset", *trials[0].axes, "variant_order", "variant"]
    cols = {}
    for split in ("train", "test"):
        for what, short in (("amortization_gap", "amort."), ("approximation_gap", "approx.")):
            g = gaps[gaps.split == split].groupby(keys)
            mean = g[what].mean()
            se = g[f"{what}_se"].apply(lambda s: (s.pow(2).mean() / len(s)) ** 0.5)
            cols[f"{short} {split}"] = [
                "-" if pd.isna(m) else f"{m:.1f} ± {e:.1f}" for m, e in zip(mean, se, strict=True)
            ]
    index = gaps[gaps.split == "train"].groupby(keys).size().index.to_frame(index=False)
    table = pd.concat([index.drop(columns="variant_order"), pd.DataFrame(cols)], axis=1)
    return table.to_string(index=False)


def _last_evaluated(rows: Rows | None, last: dict[str, Any]) -> dict[str, Any]:
    """The newest report that carries the MSEs (reports between evaluations have none)."""
    if last.get("train_mse") is not None or not rows:
        return last
    return next((r for r in reversed(rows) if r.get("train_mse") is not None), last)


def config_columns(cfg: TrialConfig) -> dict[str, Any]:
    """A trial's settings as table columns (its family's options as "family_options.KEY"), then
    its family_columns."""
    cols = cfg.to_dict()
    cols.update({f"family_options.{k}": v for k, v in cols.pop("family_options").items()})
    return {**cols, **family_columns(cfg.family, cfg.width)}


def family_columns(family: str, width: int | None) -> dict[str, Any]:
    """What a variant's family declares for the analysis, as table columns: "variant" (its label),
    "variant_order", and whether it has an encoder width, answers for test images, or is
    per-datapoint (F-VI)."""
    fam = families.declared(family)
    return {
        "variant": fam.variant(width),
        "variant_order": variant_order(fam.order, width),
        "has_width": fam.has_width,
        "has_test_time_q": fam.has_test_time_q,
        "per_datapoint": fam.per_datapoint,
    }


def variant_order(family_order: int, width: int | None) -> int:
    """The variants' order, the families' declared order then the width, as one integer: the sort
    key (family_order, width) packed into a column a parquet file holds and pandas sorts and
    aggregates (a tuple column does neither). Exact while widths stay below 100,000."""
    return family_order * 100_000 + (width or 0)


def tidy(trials: list[TrialRecord]) -> pd.DataFrame:
    """One row per (trial, reported epoch), with the trial's full config as columns.

    A trial restored from a checkpoint re-reports the epochs after that checkpoint; the last
    report of each epoch is kept, so each epoch appears once.
    """
    reports, counts, keys, present = [], [], [], {"epoch"}
    for trial, run in ((t, r) for t in trials for r in per_seed(t)):
        rows = [r for r in run.rows or () if r.get("epoch") is not None]
        if not rows:
            continue
        reports += rows
        counts.append(len(rows))
        present |= rows[0].keys() | rows[-1].keys()  # a trial's reports share their keys
        keys.append({"trial_id": run.trial_id, "status": trial.status, **config_columns(run.cfg)})
    if not reports:
        return pd.DataFrame(columns=["trial_id", "status", *REPORTED])
    # one table of every report at once, not a frame per trial: the work grows with the rows
    metrics = pd.DataFrame.from_records(reports, columns=[c for c in REPORTED if c in present])
    metrics = metrics.apply(pd.to_numeric, errors="coerce")
    metrics.insert(0, "_trial", np.repeat(np.arange(len(counts)), counts))  # each row's trial, in order
    metrics = metrics.drop_duplicates(["_trial", "epoch"], keep="last").sort_values(["_trial", "epoch"],
                                                                                    kind="stable")
    per_row = pd.DataFrame(keys).iloc[metrics["_trial"].to_numpy()].reset_index(drop=True)
    ids = ["trial_id", "status"]
    table = pd.concat([per_row[ids], metrics.drop(columns="_trial").reset_index(drop=True),
                       per_row.drop(columns=ids)], axis=1)
    table["width"] = table["width"].astype("Int64")
    table["epoch"] = table["epoch"].astype(int)
    return table


def write_parquet(table: pd.DataFrame, out: str | os.PathLike) -> str:
    """Write ``out`` (a path or a URI) whole: an interrupted export never leaves a half file there."""
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    storage.write_bytes(out, buf.getvalue())
    return storage.norm(out)


def newest_and_earlier(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """gap_tables' rows split: those of each trial and seed's newest evaluated checkpoint, and the
    rest (earlier checkpoints: evaluate.checkpoints 2)."""
    if frame.empty or "epoch" not in frame:
        return frame, frame.iloc[:0]
    newest = frame.epoch == frame.groupby(["trial_id", "seed"]).epoch.transform("max")
    return frame[newest], frame[~newest]


def gap_tables(trials: list[TrialRecord]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From each trial's gap.json: (one row per trial, seed, checkpoint and split; one row per
    refinement K). newest_and_earlier splits off the earlier checkpoints."""
    gaps, refine = [], []
    for t in trials:
        if not t.gap:
            continue
        runs = {run.cfg.seed: run for run in per_seed(t)}
        for r in t.gap["results"]:
            run = runs[r["seed"]]  # its config columns carry the seed
            ids = {**config_columns(run.cfg), "trial_id": run.trial_id, "epoch": r["epoch"]}
            for split in ("train", "test"):
                gaps.append({**ids, "split": split, **{k: r[split][k] for k in GAP_KEYS}})
                refine += [{**ids, "split": split, **p} for p in r[split].get("refine", [])]
    frames = (pd.DataFrame(gaps), pd.DataFrame(refine))
    for f in frames:
        if "width" in f:
            f["width"] = f["width"].astype("Int64")
    return frames


def write_gap_tables(trials: list[TrialRecord], out: str | os.PathLike) -> list[str]:
    """Beside OUT.parquet: OUT.gaps.parquet and OUT.refine.parquet, when trials were evaluated."""
    stem = PurePath(storage.name(out)).stem
    return [write_parquet(table, storage.sibling(out, f"{stem}.{name}.parquet"))
            for name, table in zip(("gaps", "refine"), gap_tables(trials), strict=True) if len(table)]
