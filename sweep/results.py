"""Trial records -> the status table and the tidy results table (pandas, no Ray)."""

from __future__ import annotations

import dataclasses
import io
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


def per_seed(t: dict[str, Any]) -> list[tuple[str, TrialConfig, pd.DataFrame | None, dict[str, Any]]]:
    """(trial id, config, reported frame, last result) per seed: one for a plain trial; for a
    vectorized trial one per seed, its "seed<S>/" columns unprefixed, its id suffixed "-s<S>"."""
    cfg, opts = split_config(t["config"])
    if not opts["seeds"]:
        return [(t["trial_id"], cfg, t["frame"], t["last_result"])]
    out = []
    for seed in opts["seeds"]:
        prefix = f"seed{seed}/"
        frame = t["frame"]
        if frame is not None:
            frame = frame[[c for c in frame.columns if c.startswith(prefix)]]
            frame = frame.rename(columns=lambda c, p=prefix: c.removeprefix(p))
        last = {k[len(prefix) :]: v for k, v in t["last_result"].items() if k.startswith(prefix)}
        out.append((f"{t['trial_id']}-s{seed}", dataclasses.replace(cfg, seed=seed), frame, last))
    return out


def status_table(trials: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per trial (per seed of a vectorized one): its cell, state, progress, last metrics,
    and a note: its error, or 'latents unused: ...' when its latents carry nothing."""
    rows = []
    for trial, (trial_id, cfg, frame, last) in ((t, p) for t in trials for p in per_seed(t)):
        evaluated = _last_evaluated(frame, last)
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
    for trial, (_, cfg, frame, last) in ((t, p) for t in trials for p in per_seed(t)):
        seconds = trial["last_result"].get("time_total_s", 0.0)
        out.append(Line(cfg.dataset, cfg.family, cfg.width, trial["config"]["cell"]["axes"], str(cfg.seed),
                        trial["status"], last.get("epoch", 0), cfg.epochs,
                        last.get("neg_elbo_per_datapoint"), _last_evaluated(frame, last).get("train_mse"),
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


def _last_evaluated(frame: pd.DataFrame | None, last: dict[str, Any]) -> dict[str, Any]:
    """The newest report that carries the MSEs (reports between evaluations have none)."""
    if last.get("train_mse") is not None or frame is None or "train_mse" not in frame:
        return last
    done = frame.dropna(subset=["train_mse"])
    return done.iloc[-1].to_dict() if len(done) else last


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
    parts, keys = [], []
    for trial, (trial_id, cfg, frame, _) in ((t, p) for t in trials for p in per_seed(t)):
        if frame is None or frame.empty or "epoch" not in frame:
            continue
        parts.append(frame[[c for c in REPORTED if c in frame]])
        keys.append({"trial_id": trial_id, "status": trial["status"], **config_columns(cfg)})
    if not parts:
        return pd.DataFrame(columns=["trial_id", "status", *REPORTED])
    # whole-table operations, not one per trial: the work grows with the rows, not trials x columns
    metrics = pd.concat(parts, ignore_index=True).apply(pd.to_numeric, errors="coerce")
    order = np.repeat(np.arange(len(parts)), [len(p) for p in parts])  # each row's trial, in order
    metrics.insert(0, "_trial", order)
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
