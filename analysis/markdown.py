"""The analysis's tables (tables.py, reference.py) as markdown for people: numbers rounded, '-' or
'never' where there is none."""

from __future__ import annotations

import pandas as pd

from .reference import WIDEN
from .tables import AXIS_QUANTITIES

MEASURED = {  # the gap table's measured columns (sweep evaluate) and their headers
    "approx_gap_train": "approx. gap train",
    "amort_gap_train": "amort. gap train",
    "approx_gap_test": "approx. gap test",
    "amort_gap_test": "amort. gap test",
}


def gap_markdown(gap_table: pd.DataFrame) -> str:
    """The gap table (tables.gap_table): 'never' where a threshold was never reached."""
    g = gap_table
    show = pd.DataFrame(
        {
            "dataset": g.dataset,
            **{axis: g[axis] for axis in axis_columns(g)},
            "variant": g.variant,
            "seeds": g.seeds,
            "epoch": g.epoch,
            "-ELBO/pt ± SE": [_pm(m, s, 1) for m, s in zip(g.neg_elbo_pt_mean, g.neg_elbo_pt_se,
                                                             strict=True)],
            "gap vs F-VI ± SE": [_pm(m, s, 1) for m, s in zip(g.gap_nats_mean, g.gap_nats_se, strict=True)],
            "train MSE": g.train_mse_mean.map(_num(4)),
            "test MSE": g.test_mse_mean.map(_num(4)),
            "epochs to thr.": [_never(e, r) for e, r in zip(g.epochs_to_threshold, g.reached, strict=True)],
            "s to thr.": [_never(s, r, 1) for s, r in zip(g.seconds_to_threshold, g.reached, strict=True)],
            "speed-up iters": g.speedup_iterations.map(_ratio),
            "speed-up time": g.speedup_seconds.map(_ratio),
            "test-time s": g.infer_seconds_mean.map(_num(3)),
            "KL(q(z))/pt": g.kl_z_per_datapoint.map(_num(3)),
            "active dims": g.active_dims.map(lambda v: "-" if pd.isna(v) else f"{v:.0f}"),
        }
    )
    for col, label in MEASURED.items():
        if col in g:
            show[label] = g[col].map(lambda v: "-" if pd.isna(v) else f"{v:.1f}")
    if g.note.astype(bool).any():
        show["note"] = g.note
    return show.to_markdown(index=False)


def axis_columns(gap_table: pd.DataFrame) -> list[str]:
    """The axis columns of a gap table: those between "dataset" and "variant"."""
    cols = list(gap_table.columns)
    return cols[cols.index("dataset") + 1 : cols.index("variant")] if "variant" in cols else []


def refine_markdown(refine_table: pd.DataFrame) -> str:
    """The semi-amortized table (tables.refine_table): test ELBO, seconds and the share of the gap closed."""
    t = refine_table
    show = t.assign(
        elbo=t.elbo.map(lambda v: f"{v:.1f}"),
        seconds=t.seconds.map(lambda v: f"{v:.3f}"),
        gap_closed=t.gap_closed.map(lambda v: f"{100 * v:.0f}%"),
    ).drop(columns="width")
    return show.rename(
        columns={"steps": "K", "elbo": "test ELBO/pt", "gap_closed": "amort. gap closed"}
    ).to_markdown(index=False)


def axis_markdown(axis_table: pd.DataFrame, axis: str) -> str:
    """The gap against ``axis`` (tables.axis_table): a table per dataset, cell of the other axes and
    quantity, 'mean ± SE (over seeds)' in each cell, '-' where nothing was measured."""
    at = axis_table
    if at.empty:
        return ""
    fixed = ("dataset", "quantity", "variant", axis, "mean", "se", "seeds")
    others = [c for c in at.columns if c not in fixed]
    parts = []
    for key, block in at.groupby(["dataset", *others, "quantity"], sort=False, dropna=False):
        where = ", ".join([key[0], *(f"{a}={v}" for a, v in zip(others, key[1:-1], strict=True))])
        seeds = sorted(set(block.seeds))
        n = f"{seeds[0]} seeds" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]} seeds"
        cells = block.assign(text=[_pm_se(m, s) for m, s in zip(block["mean"], block.se, strict=True)])
        wide = cells.pivot(index="variant", columns=axis, values="text")
        wide = wide.reindex(index=list(dict.fromkeys(block.variant)), columns=sorted(set(block[axis])))
        wide.columns = [f"{axis}={v:g}" if isinstance(v, float) else f"{axis}={v}" for v in wide.columns]
        parts += [f"**{AXIS_QUANTITIES[key[-1]]}**: {where}; mean ± SE over {n}", "",
                  wide.fillna("-").reset_index().to_markdown(index=False), ""]
    return "\n".join(parts).rstrip() + "\n"


def check_markdown(check: pd.DataFrame) -> str:
    """Ours beside Margossian & Blei's range (reference.check_table), and whether it is inside."""
    show = pd.DataFrame({
        "variant": check.variant,
        "epoch": check.epoch,
        "ours": check.ours.map(lambda v: f"{v:.4f}"),
        "their range": [f"{a:.4f}-{b:.4f}" for a, b in zip(check.their_min, check.their_max, strict=True)],
        f"inside (±{WIDEN:.0%})?": check.inside.map({True: "yes", False: "no"}),
    })
    return show.to_markdown(index=False, disable_numparse=True)


def _pm(m: float, s: float, digits: int) -> str:
    """'mean ± SE' to ``digits`` decimals; the mean alone without an SE, '-' without a mean."""
    if pd.isna(m):
        return "-"
    return f"{m:.{digits}f}" + ("" if pd.isna(s) else f" ± {s:.{digits}f}")


def _pm_se(m: float, se: float) -> str:
    """'mean ± SE', two decimals under 10 nats and one above (an SE of one seed: the mean alone)."""
    digits = 2 if abs(m) < 10 else 1
    return f"{m:.{digits}f}" + ("" if pd.isna(se) else f" ± {se:.{digits}f}")


def _num(digits: int):
    """A formatter to ``digits`` significant digits, '-' for a missing value."""
    return lambda v: "-" if pd.isna(v) else f"{v:.{digits}g}"


def _never(v: float, reached: str, digits: int = 0) -> str:
    """Epochs or seconds to the threshold with how many seeds reached it; 'never' when none did."""
    if pd.isna(v):
        return "never"
    return f"{v:.{digits}f} ({reached})"


def _ratio(v: float) -> str:
    return "-" if pd.isna(v) else f"{v:.2f}x"


def closing_markdown(closing: pd.DataFrame) -> str:
    """The closing width (closing.closing_table): per cell, family, epsilon and split, the width
    with its interval, each seed's own, the gap's decay against width and where it meets epsilon."""
    from .closing import width_text

    c = closing
    axes = [a for a in c.columns[c.columns.get_loc("dataset") + 1 : c.columns.get_loc("family")]]
    show = pd.DataFrame({
        "dataset": c.dataset,
        **{a: c[a] for a in axes},
        "family": c.family,
        "epsilon": c.epsilon,
        "images": c.split.map({"train": "training", "test": "test"}),
        "closing k (interval)": [width_text(r) for r in c.itertuples()],
        "per seed": c.per_seed,
        "decay slope ± SE": [_pm(m, s, 2) for m, s in zip(c.slope, c.slope_se, strict=True)],
        "fitted k at epsilon": c.fit_width.map(lambda v: "-" if pd.isna(v) else f"{v:.3g}"),
        "largest SE near epsilon": c.decisive_se.map(_num(2)),
        "seeds": c.seeds,
        "epoch": [f"{e}/{n}" for e, n in zip(c.epoch, c.epochs, strict=True)],
    })
    return show.to_markdown(index=False, disable_numparse=True)
