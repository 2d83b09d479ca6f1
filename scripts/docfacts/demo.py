"""The demo (`make readme-figures`: `make demo`, `sweep evaluate`, `analysis figures`, each timed),
from what it committed in docs/demo/: gap_table.csv (mean and SE over seeds), gap_table.md,
and timing.json; display.log beside them is the progress display as it printed."""

from __future__ import annotations

import pandas as pd

from .artifacts import csv_table, fmt, from_width, load_json, minutes, sig, spec

CSV = "docs/demo/gap_table.csv"


def _pm(m: float, se: float, digits: int = 1) -> str:
    return "-" if pd.isna(m) else f"{m:.{digits}f}" + ("" if pd.isna(se) else f" ± {se:.{digits}f}")


def _nats(v: float) -> str:
    """A gap in nats: one decimal under 100, none above."""
    return "-" if pd.isna(v) else f"{v:.1f}" if abs(v) < 100 else f"{v:,.0f}"


def _epochs(row) -> str:
    return "never" if pd.isna(row.epochs_to_threshold) else f"{row.epochs_to_threshold:.0f} ({row.reached})"


def front_table(t: pd.DataFrame) -> str:
    """The front page's table: the columns that carry the demo's story."""
    head = ["variant", "-ELBO/image ± SE", "ELBO gap to F-VI ± SE", "amort. gap, train",
            "amort. gap, test", "test MSE", "epochs to MSE thr."]
    rows = [f"| {' | '.join(head)} |", "|:--|" + "--:|" * (len(head) - 1)]
    for r in t.itertuples():
        rows.append("| " + " | ".join([
            r.variant, _pm(r.neg_elbo_pt_mean, r.neg_elbo_pt_se), _pm(r.gap_nats_mean, r.gap_nats_se),
            _nats(r.amort_gap_train), _nats(r.amort_gap_test),
            "-" if pd.isna(r.test_mse_mean) else f"{r.test_mse_mean:.4f}", _epochs(r)]) + " |")
    return "\n".join(rows)


def _widths(t: pd.DataFrame, mask) -> list[int]:
    return [int(float(w)) for w in t[mask & t.has_width].width]


def facts() -> dict[str, str]:
    t = csv_table(CSV)
    sp = spec("quick")
    tr = sp.train
    enc = t[t.has_width].assign(w=lambda d: d.width.astype(float).astype(int))
    fvi = t[t.family == "factorized"].iloc[0]
    const = t[t.family == "constant"].iloc[0]
    best = enc.loc[enc.neg_elbo_pt_mean.idxmin()]
    widest = enc.loc[enc.w.idxmax()]
    trailing = enc[enc.gap_nats_mean > 0].w.tolist()
    # the narrowest width from which every wider encoder has a better ELBO than F-VI
    gap = enc.set_index("variant").gap_nats_mean
    passing = from_width(gap.index, lambda v: gap[v] < 0)
    fast = enc[enc.speedup_iterations.notna()]
    timing = load_json("docs/demo/timing.json")
    n_widths = len(enc)
    return {
        "demo.table": front_table(t),
        "demo.wall": minutes(timing["demo"]["seconds"]),
        "demo.evaluate-wall": minutes(timing["evaluate"]["seconds"]),
        "demo.figures-wall": minutes(timing["figures"]["seconds"]),
        "demo.cores": f"{timing['machine']['cpu_cores']}",
        "demo.python": ".".join(timing["machine"]["python"].split(".")[:2]),
        "demo.trials": f"{sp.num_trials}",
        "demo.n-train": fmt(tr["n_train"]),
        "demo.n-test": fmt(tr["n_test"]),
        "demo.batch": fmt(tr["batch_size"]),
        "demo.epochs": fmt(tr["epochs"]),
        "demo.seeds": f"{len(sp.seeds)}",
        "demo.sigma": f"{tr['sigma_x']}",
        "demo.lr": f"{tr['lr']}",
        "demo.fvi-lr": f"{sp.family_train['factorized']['lr']}",
        "demo.threshold": f"{tr['mse_threshold']}",
        "demo.const-mse": f"{const.train_mse_mean:.3f}",
        "demo.const-active": f"{const.active_dims:.0f}",
        "demo.best-width": f"{best.w}",
        "demo.best-elbo": fmt(best.neg_elbo_pt_mean),
        "demo.fvi-elbo": fmt(fvi.neg_elbo_pt_mean),
        "demo.trailing": " and ".join(f"k = {w}" for w in trailing) or "none",
        "demo.passing-width": f"{passing}" if passing else "none",
        "demo.widest": f"{widest.w}",
        "demo.widest-elbo": _pm(widest.neg_elbo_pt_mean, widest.neg_elbo_pt_se),
        "demo.best-elbo-se": _pm(best.neg_elbo_pt_mean, best.neg_elbo_pt_se),
        "demo.amort-train-range": f"{enc.amort_gap_train.min():.0f}-{enc.amort_gap_train.max():.0f}",
        "demo.amort-test-range": f"{enc.amort_gap_test.min():.0f}-{enc.amort_gap_test.max():.0f}",
        "demo.fvi-amort-train": f"{fvi.amort_gap_train:.0f}",
        "demo.fast-widths": f"k >= {fast.w.min()}" if len(fast) else "none",
        "demo.speedup-range": (f"{sig(fast.speedup_iterations.min())}-{sig(fast.speedup_iterations.max())}x"
                               if len(fast) else "-"),
        "demo.fvi-infer-s": f"{fvi.infer_seconds_mean:.0f}",
        "demo.enc-infer-ms": f"{1000 * enc.infer_seconds_mean.max():.0f}",
        "demo.n-widths": f"{n_widths}",
    }
