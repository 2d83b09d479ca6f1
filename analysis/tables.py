"""The analysis's tables, as DataFrames (markdown.py writes them for people). The gap table: per
dataset, cell of the sweep's axes and variant, the amortization gap in nats per datapoint and the
costs, from the final epoch every trial of the cell has reached (so a half-finished sweep compares
like with like); beside it, the same per seed, against one axis, and under refinement.

``measured`` is always `sweep evaluate`'s rows, one per trial, seed and split (from the trials'
gap.json files); ``gap_table`` returns the gap table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from trainables.metrics import latents_unused

from .load import sweep_axes


def common_final_epoch(ds_table: pd.DataFrame) -> int:
    """The last epoch every trial of one dataset has reported."""
    return int(ds_table.groupby("trial_id")["epoch"].max().min())


def final_rows(ds_table: pd.DataFrame) -> pd.DataFrame:
    """Each trial's row at the common final epoch (its latest report at or before it)."""
    e = common_final_epoch(ds_table)
    upto = ds_table.loc[ds_table.epoch <= e, ["trial_id", "epoch"]]
    return ds_table.loc[upto.groupby("trial_id")["epoch"].idxmax()]


def is_partial(table: pd.DataFrame) -> bool:
    """True while some trial has not reached its configured epochs."""
    last = table.groupby("trial_id").agg(epoch=("epoch", "max"), epochs=("epochs", "first"))
    return bool((last.epoch < last.epochs).any())


def gap_table(table: pd.DataFrame, measured: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per dataset, cell of the sweep's axes and variant. With ``measured`` (sweep evaluate's rows),
    also the measured approximation and amortization gaps, nats per datapoint, mean over seeds, train
    and test. The gap to F-VI pairs each run with F-VI's of the same cell and seed (with_fvi)."""
    keys = ["dataset", *sweep_axes(table)]
    fin = _block_final_rows(table, keys)
    if fin.empty:
        return pd.DataFrame()
    # one row per block (dataset and axis values) and variant, blocks sorted, variants in their order
    fin = fin.assign(block=fin.groupby(keys, sort=True).ngroup().to_numpy(),
                     reach_s=fin.seconds_to_threshold.where(fin.epochs_to_threshold.notna()))
    by = fin.groupby(["block", "variant"], sort=False)
    firsts = fin.drop_duplicates(["block", "variant"])  # as by's groups: in order of first appearance
    out = firsts[["block", *keys, "variant", "family", "width", "has_width"]].assign(
        order=by["variant_order"].min().to_numpy())
    out = out.sort_values(["block", "order"], kind="stable").set_index(["block", "variant"])
    collapse = [c for c in ("kl_z_per_datapoint", "active_dims", "mean_image_mse") if c in fin]
    stats = by.agg(seeds=("variant", "size"), epoch=("epoch", "max"),
                   neg_elbo_pt_mean=("neg_elbo_per_datapoint", "mean"),
                   neg_elbo_pt_se=("neg_elbo_per_datapoint", "sem"),
                   reached=("epochs_to_threshold", "count"),
                   epochs_to_threshold=("epochs_to_threshold", "median"),
                   seconds_to_threshold=("reach_s", "median"), train_mse_mean=("train_mse", "mean"),
                   test_mse_mean=("test_mse", "mean"), infer_seconds_mean=("infer_seconds", "mean"),
                   **{c: (c, "mean") for c in collapse})
    out = out.join(stats)
    # the gap in ELBO: ELBO(F-VI) - ELBO(variant) = neg_elbo(variant) - neg_elbo(F-VI), per seed
    paired = with_fvi(fin, keys)
    gap = (paired.neg_elbo_per_datapoint - paired.fvi_neg_elbo).groupby(
        [paired.block, paired.variant]).agg(["mean", "sem"])
    fvi = paired.drop_duplicates("block").set_index("block").fvi  # each block's F-VI variant
    block = out.index.get_level_values("block")
    fvi_reach = out.reindex(pd.MultiIndex.from_arrays([block, fvi.reindex(block).to_numpy()]))
    rows = pd.DataFrame({k: out[k] for k in keys} | {
        "variant": out.index.get_level_values("variant"),
        "family": out.family,
        "width": list(out.width),  # as one value per row: int64, or object with a missing width
        "has_width": out.has_width,
        "seeds": out.seeds,
        "epoch": out["epoch"].astype(int),
        "neg_elbo_pt_mean": out.neg_elbo_pt_mean,
        "neg_elbo_pt_se": out.neg_elbo_pt_se,
        "gap_nats_mean": gap["mean"].reindex(out.index),
        "gap_nats_se": gap["sem"].reindex(out.index),
        "train_mse_mean": out.train_mse_mean,
        "test_mse_mean": out.test_mse_mean,
        "reached": [f"{n}/{s}" for n, s in zip(out.reached, out.seeds, strict=True)],
        "epochs_to_threshold": out.epochs_to_threshold,
        "seconds_to_threshold": out.seconds_to_threshold,
        "speedup_iterations": fvi_reach.epochs_to_threshold.to_numpy() / out.epochs_to_threshold,
        "speedup_seconds": fvi_reach.seconds_to_threshold.to_numpy() / out.seconds_to_threshold,
        "infer_seconds_mean": out.infer_seconds_mean,
        **_collapse(out),
    }).reset_index(drop=True)
    return rows if measured is None else rows.join(_measured_means(measured, rows, keys))


def _block_final_rows(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Each trial's row at its block's common final epoch (final_rows of each block of ``keys``)."""
    if (missing := table[keys].isna().any(axis=1)).any():  # as groupby: no block for missing keys
        table = table[~missing]
    last = table.groupby([*keys, "trial_id"])["epoch"].transform("max")  # each row's trial's last epoch
    common = last.groupby([table[k] for k in keys]).transform("min")
    upto = table.loc[table.epoch <= common, [*keys, "trial_id", "epoch"]]
    return table.loc[upto.groupby([*keys, "trial_id"])["epoch"].idxmax()]


def _collapse(out: pd.DataFrame) -> dict:
    """KL(q(z)) per image and active dimensions, mean over seeds, and the plain-words flag when the
    variant's latents are unused (its mean train MSE at the mean-image level, or none active)."""
    cols = {c: out[c] if c in out else np.nan for c in ("kl_z_per_datapoint", "active_dims")}
    floor = out["mean_image_mse"] if "mean_image_mse" in out else [None] * len(out)
    active = out["active_dims"] if "active_dims" in out else [np.nan] * len(out)
    cols["note"] = [latents_unused(m, f, a) or "" for m, f, a in zip(out.train_mse_mean, floor, active,
                                                                    strict=True)]
    return cols


def with_fvi(fin: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``fin``'s final rows, each beside F-VI's run of the same cell (``keys``) and seed: F-VI is the
    per-datapoint family, the first in variant order if a spec has several. Adds ``fvi``, the cell's
    F-VI variant, and ``fvi_neg_elbo``, that run's -ELBO per datapoint (NaN where there is none)."""
    ref = fin[fin.per_datapoint.astype(bool)].sort_values("variant_order", kind="stable")
    ref = ref[ref.variant == ref.groupby(keys, sort=False).variant.transform("first")]
    cell = ref.drop_duplicates(keys)[[*keys, "variant"]].rename(columns={"variant": "fvi"})
    runs = ref[[*keys, "seed", "neg_elbo_per_datapoint"]].rename(
        columns={"neg_elbo_per_datapoint": "fvi_neg_elbo"})
    return fin.merge(cell, on=keys, how="left").merge(runs, on=[*keys, "seed"], how="left")


def _measured_means(measured: pd.DataFrame, rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The measured gaps (sweep evaluate), mean over seeds, train and test, per row of the gap
    table; NaN where none were measured."""
    means = measured.groupby([*keys, "variant", "split"])[["approximation_gap", "amortization_gap"]].mean()
    out = {}
    for split in ("train", "test"):
        m = means[means.index.get_level_values("split") == split].droplevel("split").reset_index()
        m = rows[[*keys, "variant"]].merge(m, on=[*keys, "variant"], how="left")
        out[f"approx_gap_{split}"] = m["approximation_gap"].to_numpy()
        out[f"amort_gap_{split}"] = m["amortization_gap"].to_numpy()
    return pd.DataFrame(out, index=rows.index)


def refine_table(measured: pd.DataFrame, refine: pd.DataFrame) -> pd.DataFrame:
    """Semi-amortized inference on the test images, per dataset, width and K: mean ELBO and seconds
    over seeds, and the share of the amortization gap closed, (L_K - L[q]) / (L[q*] - L[q])."""
    r = refine[refine.split == "test"]
    m = measured[measured.split == "test"][["trial_id", "seed", "elbo_q", "elbo_qstar"]]
    both = r.merge(m, on=["trial_id", "seed"])
    both["gap_closed"] = (both["elbo"] - both["elbo_q"]) / (both["elbo_qstar"] - both["elbo_q"])
    axes = sweep_axes(both) if "variant" in both else []
    out = both.groupby(["dataset", *axes, "variant", "width", "steps"], sort=False).agg(
        seeds=("seed", "nunique"),
        elbo=("elbo", "mean"),
        seconds=("seconds", "mean"),
        gap_closed=("gap_closed", "mean"),
    )
    return out.reset_index().sort_values(["dataset", *axes, "width", "steps"])


# What a table against one axis shows (axis_table), in this order: label, and whether it is in nats
# per image measured by `sweep evaluate` (the others come from the training reports).
AXIS_QUANTITIES = {
    "neg_elbo": "-ELBO per image (nats)",
    "gap_vs_fvi": "ELBO(F-VI) - ELBO, nats per image, paired by seed",
    "amort_gap_train": "amortization gap, training images (nats)",
    "amort_gap_test": "amortization gap, test images (nats)",
    "approx_gap_train": "approximation gap, training images (nats)",
    "approx_gap_test": "approximation gap, test images (nats)",
}


def seed_table(table: pd.DataFrame, measured: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per dataset, cell of the sweep's axes, variant and seed, at the block's common final
    epoch: its -ELBO per image, its gap to F-VI's run of the same seed (ELBO(F-VI) - ELBO; with_fvi)
    and, with ``measured`` (sweep evaluate's rows), its measured amortization and approximation gaps
    on training and test images."""
    keys = ["dataset", *sweep_axes(table)]
    fin = _block_final_rows(table, keys)
    if fin.empty:
        return pd.DataFrame()
    out = with_fvi(fin, keys)[[*keys, "variant", "variant_order", "has_width", "per_datapoint", "seed",
                               "epoch", "neg_elbo_per_datapoint", "fvi_neg_elbo"]]
    out = out.rename(columns={"neg_elbo_per_datapoint": "neg_elbo"})
    out["gap_vs_fvi"] = out.neg_elbo - out.pop("fvi_neg_elbo")
    if measured is not None and len(measured):
        short = {"amortization_gap": "amort_gap", "approximation_gap": "approx_gap"}
        wide = measured.pivot_table(index=[*keys, "variant", "seed"], columns="split", values=list(short),
                                    aggfunc="mean")
        wide.columns = [f"{short[what]}_{split}" for what, split in wide.columns]
        out = out.merge(wide.reset_index(), on=[*keys, "variant", "seed"], how="left")
    return out.sort_values([*keys, "variant_order", "seed"], kind="stable").reset_index(drop=True)


def axis_table(table: pd.DataFrame, measured: pd.DataFrame | None, axis: str) -> pd.DataFrame:
    """The gap against one axis, as the question reads: per dataset, cell of the other axes and
    quantity (AXIS_QUANTITIES, those measured), a row per variant and a column per value of
    ``axis``; each cell the mean over seeds, its standard error over seeds and their number."""
    seeds = seed_table(table, measured)
    if seeds.empty:
        return pd.DataFrame()
    others = [a for a in sweep_axes(table) if a != axis]
    shown = [q for q in AXIS_QUANTITIES if q in seeds and seeds[q].notna().any()]
    long = seeds.melt(id_vars=["dataset", *others, axis, "variant", "variant_order", "seed"],
                      value_vars=shown, var_name="quantity").dropna(subset=["value"])
    by = long.groupby(["dataset", *others, "quantity", "variant", axis], sort=False, dropna=False)
    stats = by.agg(order=("variant_order", "first"), mean=("value", "mean"), sd=("value", "std"),
                   seeds=("value", "size")).reset_index()
    stats["se"] = stats.sd / np.sqrt(stats.seeds)
    stats["quantity_order"] = stats.quantity.map(list(AXIS_QUANTITIES).index)
    return (stats.sort_values(["dataset", *others, "quantity_order", "order", axis], kind="stable")
            .drop(columns=["order", "quantity_order", "sd"]).reset_index(drop=True))
