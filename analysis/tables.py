"""The gap table: per dataset, cell of the sweep's axes and variant, the amortization gap in nats
per datapoint and the costs, from the final epoch every trial of the cell has reached (so a
half-finished sweep compares like with like)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from trainables.metrics import latents_unused

from .load import sweep_axes, variant_order


def common_final_epoch(ds_table: pd.DataFrame) -> int:
    """The last epoch every trial of one dataset has reported."""
    return int(ds_table.groupby("trial_id")["epoch"].max().min())


def final_rows(ds_table: pd.DataFrame) -> pd.DataFrame:
    """Each trial's row at the common final epoch (its latest report at or before it)."""
    e = common_final_epoch(ds_table)
    upto = ds_table[ds_table.epoch <= e]
    return upto.loc[upto.groupby("trial_id")["epoch"].idxmax()]


def is_partial(table: pd.DataFrame) -> bool:
    """True while some trial has not reached its configured epochs."""
    last = table.groupby("trial_id").agg(epoch=("epoch", "max"), epochs=("epochs", "first"))
    return bool((last.epoch < last.epochs).any())


def gap_table(table: pd.DataFrame, gaps: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per dataset, cell of the sweep's axes and variant. With ``gaps`` (sweep evaluate), also the
    measured approximation and amortization gaps, nats per datapoint, mean over seeds, train and
    test. F-VI's runs pair with the variant's by seed within the same dataset and axis values."""
    rows = []
    axes = sweep_axes(table)
    for key, ds_table in table.groupby(["dataset", *axes], sort=True):
        ds, where = key[0], dict(zip(axes, key[1:], strict=True))
        fin = final_rows(ds_table)
        # the gap in ELBO: ELBO(F-VI) - ELBO(variant) = neg_elbo(variant) - neg_elbo(F-VI), per seed;
        # F-VI: the per-datapoint family (the first, if a spec has several)
        per_point = [v for v in variant_order(fin) if fin.loc[fin.variant == v, "per_datapoint"].all()]
        ref = fin[fin.variant == per_point[0]] if per_point else fin.iloc[:0]
        fvi = ref.set_index("seed")["neg_elbo_per_datapoint"]
        fvi_reach = _reach(ref)
        for variant in variant_order(fin):
            v = fin[fin.variant == variant].set_index("seed")
            gap = (
                v["neg_elbo_per_datapoint"] - fvi.reindex(v.index)
                if len(fvi)
                else v["neg_elbo_per_datapoint"] * np.nan
            )
            reach = _reach(v)
            rows.append(
                {
                    "dataset": ds,
                    **where,
                    "variant": variant,
                    "family": v["family"].iloc[0],
                    "width": v["width"].iloc[0],
                    "has_width": v["has_width"].iloc[0],
                    "seeds": len(v),
                    "epoch": int(v["epoch"].max()),
                    "neg_elbo_pt_mean": v["neg_elbo_per_datapoint"].mean(),
                    "neg_elbo_pt_sd": v["neg_elbo_per_datapoint"].std(ddof=1),
                    "gap_nats_mean": gap.mean(),
                    "gap_nats_sd": gap.std(ddof=1),
                    "train_mse_mean": v["train_mse"].mean(),
                    "test_mse_mean": v["test_mse"].mean(),
                    "reached": f"{reach['n']}/{len(v)}",
                    "epochs_to_threshold": reach["epochs"],
                    "seconds_to_threshold": reach["seconds"],
                    "speedup_iterations": fvi_reach["epochs"] / reach["epochs"],
                    "speedup_seconds": fvi_reach["seconds"] / reach["seconds"],
                    "infer_seconds_mean": v["infer_seconds"].mean(),
                    **_collapse(v),
                    **_measured(gaps, {"dataset": ds, **where}, variant),
                }
            )
    return pd.DataFrame(rows)


def _collapse(v: pd.DataFrame) -> dict:
    """KL(q(z)) per image and active dimensions, mean over seeds, and the plain-words flag when the
    variant's latents are unused (its mean train MSE at the mean-image level, or none active)."""
    out = {c: v[c].mean() if c in v else np.nan for c in ("kl_z_per_datapoint", "active_dims")}
    floor = v["mean_image_mse"].mean() if "mean_image_mse" in v else None
    out["note"] = latents_unused(v["train_mse"].mean(), floor, out["active_dims"]) or ""
    return out


def _measured(gaps: pd.DataFrame | None, where: dict, variant: str) -> dict[str, float]:
    """The measured gaps (sweep evaluate), mean over seeds, train and test; none without them."""
    if gaps is None:
        return {}
    out = {}
    here = gaps[(gaps.variant == variant) & np.logical_and.reduce([gaps[k] == v for k, v in where.items()])]
    for split in ("train", "test"):
        g = here[here.split == split]
        out[f"approx_gap_{split}"] = g["approximation_gap"].mean()
        out[f"amort_gap_{split}"] = g["amortization_gap"].mean()
    return out


def _reach(v: pd.DataFrame) -> dict:
    """Median epochs and seconds to the MSE threshold over the seeds that reached it (NaN: never)."""
    hit = v.dropna(subset=["epochs_to_threshold"])
    return {
        "n": len(hit),
        "epochs": hit["epochs_to_threshold"].median(),
        "seconds": hit["seconds_to_threshold"].median(),
    }


def to_markdown(gaps: pd.DataFrame) -> str:
    """The table for people: 'never' where a threshold was never reached."""
    show = pd.DataFrame(
        {
            "dataset": gaps.dataset,
            **{axis: gaps[axis] for axis in axis_columns(gaps)},
            "variant": gaps.variant,
            "seeds": gaps.seeds,
            "epoch": gaps.epoch,
            "-ELBO/pt": [
                _pm(m, s, 1) for m, s in zip(gaps.neg_elbo_pt_mean, gaps.neg_elbo_pt_sd, strict=True)
            ],
            "gap vs F-VI (nats/pt)": [
                _pm(m, s, 1) for m, s in zip(gaps.gap_nats_mean, gaps.gap_nats_sd, strict=True)
            ],
            "train MSE": gaps.train_mse_mean.map(_num(4)),
            "test MSE": gaps.test_mse_mean.map(_num(4)),
            "epochs to thr.": [
                _never(e, r) for e, r in zip(gaps.epochs_to_threshold, gaps.reached, strict=True)
            ],
            "s to thr.": [
                _never(s, r, 1) for s, r in zip(gaps.seconds_to_threshold, gaps.reached, strict=True)
            ],
            "speed-up iters": gaps.speedup_iterations.map(_ratio),
            "speed-up time": gaps.speedup_seconds.map(_ratio),
            "test-time s": gaps.infer_seconds_mean.map(_num(3)),
            "KL(q(z))/pt": gaps.kl_z_per_datapoint.map(_num(3)),
            "active dims": gaps.active_dims.map(lambda v: "-" if pd.isna(v) else f"{v:.0f}"),
        }
    )
    measured = {
        "approx_gap_train": "approx. gap train",
        "amort_gap_train": "amort. gap train",
        "approx_gap_test": "approx. gap test",
        "amort_gap_test": "amort. gap test",
    }
    for col, label in measured.items():
        if col in gaps:
            show[label] = gaps[col].map(lambda v: "-" if pd.isna(v) else f"{v:.1f}")
    if gaps.note.astype(bool).any():
        show["note"] = gaps.note
    return show.to_markdown(index=False)


def axis_columns(gaps: pd.DataFrame) -> list[str]:
    """The axis columns of a gap table: those between "dataset" and "variant"."""
    cols = list(gaps.columns)
    return cols[cols.index("dataset") + 1 : cols.index("variant")] if "variant" in cols else []


def _pm(m: float, s: float, digits: int) -> str:
    if pd.isna(m):
        return "-"
    return f"{m:.{digits}f}" + ("" if pd.isna(s) else f" ± {s:.{digits}f}")


def _num(digits: int):
    return lambda v: "-" if pd.isna(v) else f"{v:.{digits}g}"


def _never(v: float, reached: str, digits: int = 0) -> str:
    if pd.isna(v):
        return "never"
    return f"{v:.{digits}f} ({reached})"


def _ratio(v: float) -> str:
    return "-" if pd.isna(v) else f"{v:.2f}x"


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


def refine_markdown(table: pd.DataFrame) -> str:
    show = table.assign(
        elbo=table.elbo.map(lambda v: f"{v:.1f}"),
        seconds=table.seconds.map(lambda v: f"{v:.3f}"),
        gap_closed=table.gap_closed.map(lambda v: f"{100 * v:.0f}%"),
    ).drop(columns="width")
    return show.rename(
        columns={"steps": "K", "elbo": "test ELBO/pt", "gap_closed": "amort. gap closed"}
    ).to_markdown(index=False)
