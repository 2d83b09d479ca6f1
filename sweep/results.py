"""Trial records -> the status table and the tidy results table (pandas, no Ray)."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import os
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd

from trainables.config import TrialConfig
from trainables.metrics import REPORTED, latents_unused

from . import storage
from .progress import Line
from .tuneconfig import split_config

Rows = list[dict[str, Any]]  # a trial's reports, oldest first (sweep.experiment.load_trials)


_SPLIT: dict[str, tuple[TrialConfig, dict[str, Any]]] = {}  # split_config by config but its seed
_SPLIT_CELLS = 4096  # cells kept: a notebook reading many sweeps does not grow it without end


def _split(config: dict[str, Any]) -> tuple[TrialConfig, dict[str, Any]]:
    """split_config, validated once per cell: the trials of a cell differ in their seed alone, and
    validating 10,000 configs took most of `status` at 10,000 trials. The seed is set on a copy
    of the cell's config (an int from the spec's seed list, validated when the sweep began)."""
    seedless = {k: v for k, v in config.items() if k != "seed"}
    key = json.dumps(seedless, sort_keys=True, default=repr)
    if key not in _SPLIT:
        if len(_SPLIT) >= _SPLIT_CELLS:
            _SPLIT.clear()
        _SPLIT[key] = split_config({**seedless, "seed": 0} if "seed" in config else seedless)
    cfg, opts = _SPLIT[key]
    if "seed" in config:
        cfg = copy.copy(cfg)
        object.__setattr__(cfg, "seed", config["seed"])  # frozen: a copy, set as its __init__ would
    return cfg, opts


def per_seed(t: dict[str, Any]) -> list[tuple[str, TrialConfig, Rows | None, dict[str, Any]]]:
    """(trial id, config, reports, last result) per seed: one for a plain trial; for a vectorized
    trial one per seed, its "seed<S>/" keys unprefixed, its id suffixed "-s<S>"."""
    cfg, opts = _split(t["config"])
    if not opts["seeds"]:
        return [(t["trial_id"], cfg, t["rows"], t["last_result"])]
    out = []
    for seed in opts["seeds"]:
        prefix = f"seed{seed}/"

        def own(row: dict[str, Any], p: str = prefix) -> dict[str, Any]:
            return {k[len(p):]: v for k, v in row.items() if k.startswith(p)}

        rows = None if t["rows"] is None else [own(r) for r in t["rows"]]
        seed_cfg = dataclasses.replace(cfg, seed=seed)
        out.append((f"{t['trial_id']}-s{seed}", seed_cfg, rows, own(t["last_result"])))
    return out


def status_table(trials: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per trial (per seed of a vectorized one): its cell, state, progress, last metrics,
    and a note: its error, or 'latents unused: ...' when its latents carry nothing."""
    rows = []
    for trial, (trial_id, cfg, reports, last) in ((t, p) for t in trials for p in per_seed(t)):
        evaluated = _last_evaluated(reports, last)
        note = trial["error"] or latents_unused(
            evaluated.get("train_mse"), evaluated.get("mean_image_mse"), evaluated.get("active_dims")
        )
        rows.append({
            "trial": trial_id,
            "dataset": cfg.dataset,
            "family": cfg.family,
            "width": cfg.width,
            **trial["config"]["cell"]["axes"],
            "seed": cfg.seed,
            "state": trial["status"],
            "epochs": f"{last.get('epoch', 0)}/{cfg.epochs}",
            "neg_elbo/pt": last.get("neg_elbo_per_datapoint"),
            "train_mse": evaluated.get("train_mse"),
            "test_mse": evaluated.get("test_mse"),
            "kl_z/pt": last.get("kl_z_per_datapoint"),
            "active": evaluated.get("active_dims"),
            "note": note or "",
        })
    axes = [k for k in trials[0]["config"]["cell"]["axes"]] if trials else []
    table = pd.DataFrame(rows).sort_values(["dataset", "family", "width", *axes, "seed"], na_position="last")
    table["width"] = table["width"].map(lambda w: "-" if w is None or pd.isna(w) else str(int(w)))
    table["active"] = table["active"].map(lambda a: "-" if a is None or pd.isna(a) else str(int(a)))
    return table


def progress_lines(trials: list[dict[str, Any]]) -> list[Line]:
    """The trials as the progress display's lines (epochs, seconds), read from the files."""
    out = []
    for trial, (_, cfg, reports, last) in ((t, p) for t in trials for p in per_seed(t)):
        seconds = trial["last_result"].get("time_total_s", 0.0)
        out.append(Line(cfg.dataset, cfg.family, cfg.width, trial["config"]["cell"]["axes"], str(cfg.seed),
                        trial["status"], last.get("epoch", 0), cfg.epochs,
                        last.get("neg_elbo_per_datapoint"), _last_evaluated(reports, last).get("train_mse"),
                        seconds))
    return out


def gap_summary(trials: list[dict[str, Any]]) -> str:
    """The measured gap split per dataset, axis values and variant: amortization and approximation
    gap on training and test images, nats per image, mean over seeds ± its standard error (from the
    per-trial standard errors over images)."""
    gaps, _ = gap_tables(trials)
    if gaps.empty:
        return "no gap.json yet"
    axes = list(trials[0]["config"]["cell"]["axes"])
    keys = ["dataset", *axes, "variant_order", "variant"]
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
    """A trial's settings as table columns (its family's options as "family_options.KEY"), and
    what its family declares for the analysis: "variant" (its label), "variant_order", and
    whether it has an encoder width, answers for test images, or is per-datapoint (F-VI)."""
    cols = cfg.to_dict()
    cols.update({f"family_options.{k}": v for k, v in cols.pop("family_options").items()})
    fam = cfg.family_class
    return {
        **cols,
        "variant": fam.variant(cfg.width),
        "variant_order": fam.order * 100_000 + (cfg.width or 0),
        "has_width": fam.has_width,
        "has_test_time_q": fam.has_test_time_q,
        "per_datapoint": fam.per_datapoint,
    }


def tidy(trials: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (trial, reported epoch), with the trial's full config as columns.

    A trial restored from a checkpoint re-reports the epochs after that checkpoint; the last
    report of each epoch is kept, so each epoch appears once.
    """
    reports, counts, keys, present = [], [], [], {"epoch"}
    for trial, (trial_id, cfg, rows, _) in ((t, p) for t in trials for p in per_seed(t)):
        rows = [r for r in rows or () if r.get("epoch") is not None]
        if not rows:
            continue
        reports += rows
        counts.append(len(rows))
        present |= rows[0].keys() | rows[-1].keys()  # a trial's reports share their keys
        keys.append({"trial_id": trial_id, "status": trial["status"], **config_columns(cfg)})
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


GAP_KEYS = (
    "n",
    "elbo_q",
    "elbo_q_se",
    "elbo_qstar",
    "elbo_qstar_se",
    "log_px",
    "log_px_se",
    "log_px_mc_se",
    "amortization_gap",
    "amortization_gap_se",
    "approximation_gap",
    "approximation_gap_se",
    "qstar_steps",
    "qstar_seconds",
)


def gap_tables(trials: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From each trial's gap.json: (one row per trial, seed and split; one row per refinement K)."""
    gaps, refine = [], []
    for t in trials:
        if not t.get("gap"):
            continue
        cfg, opts = split_config(t["config"])
        for r in t["gap"]["results"]:
            trial_id = f"{t['trial_id']}-s{r['seed']}" if opts["seeds"] else t["trial_id"]
            ids = {**config_columns(cfg), "trial_id": trial_id, "seed": r["seed"], "epoch": r["epoch"]}
            for split in ("train", "test"):
                gaps.append({**ids, "split": split, **{k: r[split][k] for k in GAP_KEYS}})
                refine += [{**ids, "split": split, **p} for p in r[split].get("refine", [])]
    frames = (pd.DataFrame(gaps), pd.DataFrame(refine))
    for f in frames:
        if "width" in f:
            f["width"] = f["width"].astype("Int64")
    return frames


def write_gap_tables(trials: list[dict[str, Any]], out: str | os.PathLike) -> list[str]:
    """Beside OUT.parquet: OUT.gaps.parquet and OUT.refine.parquet, when trials were evaluated."""
    stem = PurePath(storage.name(out)).stem
    return [write_parquet(table, storage.sibling(out, f"{stem}.{name}.parquet"))
            for name, table in zip(("gaps", "refine"), gap_tables(trials), strict=True) if len(table)]
