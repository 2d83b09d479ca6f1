"""Trial records -> the status table and the tidy results table (pandas, no Ray)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pandas as pd

from trainables.config import TrialConfig

from .spec import split_config

METRICS = (
    "epoch", "neg_elbo", "neg_elbo_per_datapoint", "loglik", "kl_z", "kl_theta", "epoch_lr",
    "train_mse", "test_mse", "opt_seconds", "eval_seconds", "epochs_to_threshold",
    "seconds_to_threshold", "infer_seconds", "infer_steps", "infer_elbo_per_datapoint", "torch_threads",
)


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
    rows = []
    for trial, (trial_id, cfg, _, last) in ((t, p) for t in trials for p in per_seed(t)):
        rows.append({
            "trial": trial_id, "dataset": cfg.dataset, "family": cfg.family,
            "width": cfg.width, "seed": cfg.seed, "state": trial["status"],
            "epochs": f"{last.get('epoch', 0)}/{cfg.epochs}",
            "neg_elbo/pt": last.get("neg_elbo_per_datapoint"),
            "train_mse": last.get("train_mse"), "test_mse": last.get("test_mse"),
            "error": trial["error"] or "",
        })
    table = pd.DataFrame(rows).sort_values(["dataset", "family", "width", "seed"], na_position="last")
    table["width"] = table["width"].map(lambda w: "-" if w is None or pd.isna(w) else str(int(w)))
    return table


def tidy(trials: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (trial, reported epoch), with the trial's full config as columns.

    A trial restored from a checkpoint re-reports the epochs after that checkpoint; the last
    report of each epoch is kept, so each epoch appears once.
    """
    parts = []
    for trial, (trial_id, cfg, frame, _) in ((t, p) for t in trials for p in per_seed(t)):
        if frame is None or frame.empty or "epoch" not in frame:
            continue
        metrics = frame[[c for c in METRICS if c in frame]].apply(pd.to_numeric, errors="coerce")
        metrics = metrics.drop_duplicates("epoch", keep="last").sort_values("epoch")
        for key, value in cfg.to_dict().items():
            metrics.insert(len(metrics.columns), key, value)
        metrics.insert(0, "status", trial["status"])
        metrics.insert(0, "trial_id", trial_id)
        parts.append(metrics)
    if not parts:
        return pd.DataFrame(columns=["trial_id", "status", *METRICS])
    table = pd.concat(parts, ignore_index=True)
    table["width"] = table["width"].astype("Int64")
    table["epoch"] = table["epoch"].astype(int)
    return table


def write_parquet(table: pd.DataFrame, out: str | os.PathLike) -> Path:
    """Write atomically: an interrupted export never leaves a half file at ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    table.to_parquet(tmp, index=False)
    os.replace(tmp, out)
    return out
