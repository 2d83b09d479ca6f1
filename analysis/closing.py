"""The closing width: how wide an encoder must be before its amortization gap closes.

For each cell of a sweep's other axes (dataset, `grid` values), each encoder family and each split
(training images, test images), and each tolerance epsilon, the smallest width k of the sweep's
grid whose amortization gap (`sweep evaluate`'s L[q*] - L[q], nats per image) is below epsilon
there and at every wider width of the grid. Epsilon is given in nats per image (``EPSILONS``'
"nats") or as a fraction of the variant's KL(q(z)) per image ("kl": the gap as a share of what the
latents carry).

The uncertainty of one width's gap (``se``) holds both of its sources: the spread over seeds
(their standard deviation over sqrt(seeds)) and each trial's own evaluation error (the standard
error of its mean over the evaluated images, gap.json's ``amortization_gap_se``), added in
quadrature. The spread over seeds already holds part of the evaluation error, so this errs wide,
and with one seed it is the evaluation error alone. The closing width's interval runs from the
width where the gap's lower end (mean - 1.96 se) closes to the width where its upper end closes,
widened to every seed's own closing width; "none up to W" where no width of the grid (W its
widest) reaches the tolerance.

Convergence is said, not assumed: with the gaps measured at an earlier checkpoint too (`evaluate:
{checkpoints: 2}`, e.g. at 90 % of the epochs), each width whose gap fell there by more than 1.96
standard errors of the difference is "still shrinking", and a closing width that moved between the
two checkpoints, or a width still open and still shrinking, marks the answer as holding "at this
budget": more epochs could close the gap at a narrower width.

The decay is a least-squares line through log gap against log width over every seed's positive
gaps: its slope with the slope's standard error, and the width where the line crosses epsilon, so a
reader can see how far beyond the grid the gap would close if the decay held.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd

from .load import sweep_axes

# the tolerances: (kind, value); "nats": nats per image, "kl": a fraction of KL(q(z)) per image
EPSILONS = (("nats", 1.0), ("kl", 0.1))
Z = 1.96  # the interval's half-width in standard errors: 95 % for a normal mean
SPLITS = ("train", "test")
DECISIVE = 3.0  # a gap within this factor of epsilon decides the answer (the study's precision check)


def epsilon_label(kind: str, value: float) -> str:
    return f"{value:g} nat" if kind == "nats" else f"{value:.0%} of KL(q(z))"


def parse_epsilons(text: str) -> tuple[tuple[str, float], ...]:
    """"1,0.5,10%kl" -> (("nats", 1.0), ("nats", 0.5), ("kl", 0.1)): numbers are nats per image, a
    number with "%kl" a percentage of KL(q(z)) per image."""
    out = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        kind, number = ("kl", part[: -len("%kl")]) if part.lower().endswith("%kl") else ("nats", part)
        try:
            value = float(number) / (100 if kind == "kl" else 1)
        except ValueError:
            value = math.nan
        if not value > 0 or not math.isfinite(value):
            raise ValueError(f"epsilon {part!r} is not a positive number of nats (1, 0.5) or a "
                             f"percentage of KL(q(z)) (10%kl)")
        out.append((kind, value))
    if not out:
        raise ValueError(f"--epsilon {text!r} names no tolerance; give e.g. 1 or 1,10%kl")
    return tuple(out)


def per_seed_gaps(table: pd.DataFrame, measured: pd.DataFrame, axes: list[str] | None = None) -> pd.DataFrame:
    """One row per encoder trial, seed and split: its measured amortization gap and that gap's
    evaluation SE (nats per image), its KL(q(z)) per image at the gap's epoch, and its configured
    epochs; only the families with a width, each trial's latest evaluated epoch. Matched to the
    results by their settings (dataset, axes, family, width, seed), so a hand-made table works too.
    ``axes``: the table's sweep_axes, where the caller has them."""
    m = measured[measured.has_width.astype(bool)]
    if m.empty:
        return m
    if {"trial_id", "epoch"} <= set(m):
        m = m[m.epoch == m.groupby(["trial_id", "seed"]).epoch.transform("max")]
    keys = ["dataset", *(sweep_axes(table) if axes is None else axes), "family", "width", "seed"]
    t = table[table.has_width.astype(bool)]
    kl = ["kl_z_per_datapoint"] if "kl_z_per_datapoint" in t else []
    t = t[[*keys, "epoch", "epochs", *kl]].astype({"width": "Int64"})
    last = t.sort_values("epoch", kind="stable").drop_duplicates(keys, keep="last")  # a trial's last
    m = m.drop(columns=[c for c in ("epochs", "kl_z_per_datapoint") if c in m]).astype({"width": "Int64"})
    if "epoch" not in m:
        m = m.merge(last[[*keys, "epoch"]], on=keys, how="left")
    at = t.drop_duplicates([*keys, "epoch"], keep="last")[[*keys, "epoch", *kl]]  # reports at the gap's epoch
    out = m.merge(at, on=[*keys, "epoch"], how="left").merge(last[[*keys, "epochs"]], on=keys, how="left")
    for c in ("kl_z_per_datapoint", "amortization_gap_se"):
        if c not in out:
            out[c] = np.nan
    return out.rename(columns={"amortization_gap": "gap", "amortization_gap_se": "gap_se",
                               "kl_z_per_datapoint": "kl_z"})


def closing_table(table: pd.DataFrame, measured: pd.DataFrame | None,
                  epsilons: tuple[tuple[str, float], ...] = EPSILONS,
                  earlier: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per dataset, cell of the other axes, encoder family, split and epsilon: the closing width
    (``closing``; NaN: none up to ``widest``), its interval (``low``, ``high``; ``high`` NaN: beyond
    the grid), each seed's own closing width, the gap's decay (``slope``, ``slope_se``,
    ``fit_width``: where the fitted line meets epsilon), the largest SE of a gap within a factor of
    DECISIVE of epsilon, and the seeds, widths and epoch it holds at; with ``earlier`` (the gaps at an
    earlier checkpoint), the closing width there (``closing_before`` at ``epoch_before``), the widths
    whose gap was still shrinking and ``at_budget`` (module docstring). Empty without measured gaps."""
    if measured is None or measured.empty:
        return pd.DataFrame()
    axes = sweep_axes(table)
    seeds = per_seed_gaps(table, measured, axes)
    if seeds.empty:
        return pd.DataFrame()
    before = per_seed_gaps(table, earlier, axes) if earlier is not None and len(earlier) else seeds.iloc[:0]
    keys = ["dataset", *axes, "family"]
    by = [*keys, "split"]
    rows = []
    for (kind, eps) in epsilons:
        now, then = _cells(_scaled(seeds, kind), by), _cells(_scaled(before, kind), by)
        for key, cell in now.items():
            stats = width_stats(cell)
            found = _closing(cell, stats, eps)
            rows.append({**dict(zip(by, key, strict=True)), "epsilon": epsilon_label(kind, eps), "kind": kind,
                         "eps": eps, **found, **_moved(stats, then.get(key), eps, found["closing"])})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    split_order = out.split.map({s: i for i, s in enumerate(SPLITS)})
    eps_order = out.epsilon.map({epsilon_label(k, v): i for i, (k, v) in enumerate(epsilons)})
    return (out.assign(_s=split_order, _e=eps_order).sort_values([*keys, "_e", "_s"], kind="stable")
            .drop(columns=["_s", "_e"]).reset_index(drop=True))


def _scaled(seeds: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The per-seed gaps as the tolerance reads them (``value``, ``value_se``): in nats, or as a share
    of KL(q(z)) (its error scaled with it)."""
    if kind == "kl":
        scaled = seeds.assign(value=seeds.gap / seeds.kl_z, value_se=seeds.gap_se / seeds.kl_z)
    else:
        scaled = seeds.assign(value=seeds.gap, value_se=seeds.gap_se)
    return scaled.dropna(subset=["value"])


class Cell(NamedTuple):
    """One cell's per-seed gaps (a row per trial), as arrays in ascending width, and its epochs."""

    width: np.ndarray
    seed: np.ndarray
    value: np.ndarray
    value_se: np.ndarray
    epoch: int  # of the gaps
    epochs: int  # configured


def _cells(scaled: pd.DataFrame, by: list[str]) -> dict[tuple, Cell]:
    """The per-seed gaps of each cell ``by`` (keys in sorted order): arrays cut once from one table
    rather than a frame per cell, which thousands of cells (a grid of 10,000 trials) make slow."""
    if scaled.empty:
        return {}
    scaled = scaled.sort_values("width", kind="stable")
    cols = {c: scaled[c].to_numpy(dtype=float) for c in ("width", "value", "value_se", "epoch", "epochs")}
    seed = scaled.seed.to_numpy()
    groups = scaled.groupby(by, sort=True, dropna=False).indices
    return {key if isinstance(key, tuple) else (key,): Cell(
        cols["width"][i], seed[i], cols["value"][i], cols["value_se"][i], int(cols["epoch"][i].max()),
        int(cols["epochs"][i].max())) for key, i in groups.items()}


def _per_width(width: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(the widths ascending, each row's index among them, the rows per width, their mean value)."""
    widths, at = np.unique(width, return_inverse=True)
    n = np.bincount(at)
    return widths, at, n, np.bincount(at, value) / n


def width_stats(cell: Cell) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per width of one cell (ascending): (widths, the mean over seeds, its SE: the seed spread and
    the evaluation error in quadrature, module docstring; the number of seeds)."""
    widths, at, n, mean = _per_width(cell.width, cell.value)
    sd2 = np.bincount(at, (cell.value - mean[at]) ** 2) / np.maximum(n - 1, 1)  # 0 for one seed
    eval_var = np.bincount(at, np.nan_to_num(cell.value_se**2))  # a missing SE counts as none
    return widths, mean, np.sqrt(sd2 / n + eval_var / n**2), n


def _moved(stats: tuple, before: Cell | None, eps: float, closing: float) -> dict:
    """Between the earlier checkpoint and the last (``stats``, width_stats of the last): the closing
    width there, the widths whose gap fell by more than Z standard errors of the difference, and
    whether the answer (``closing``, at the last) holds only at this budget (it moved, or a width
    still open was still shrinking)."""
    if before is None:
        return {"closing_before": math.nan, "epoch_before": math.nan, "shrinking": "", "at_budget": False}
    w, mean, se, _ = stats
    w_then, mean_then, se_then, _ = width_stats(before)
    both, now, then = np.intersect1d(w, w_then, return_indices=True)
    fell = mean_then[then] - mean[now] > Z * np.sqrt(se[now] ** 2 + se_then[then] ** 2)
    closing_before = first_closed(w_then, mean_then < eps)
    moved = not (closing == closing_before or (math.isnan(closing) and math.isnan(closing_before)))
    open_and_falling = bool((fell & (mean[now] >= eps)).any())
    return {"closing_before": closing_before, "epoch_before": before.epoch,
            "shrinking": ", ".join(f"{k:g}" for k in both[fell]), "at_budget": moved or open_and_falling}


def first_closed(widths: np.ndarray, below: np.ndarray) -> float:
    """The smallest width from which every wider one of the grid is below epsilon (widths ascending);
    NaN where the widest is not."""
    widths, below = np.asarray(widths, dtype=float), np.asarray(below, dtype=bool)
    if not below.size or not below[-1]:
        return math.nan
    open_ = np.flatnonzero(~below)
    return float(widths[open_[-1] + 1] if open_.size else widths[0])


def _closing(cell: Cell, stats: tuple, eps: float) -> dict:
    w, mean, se, _ = stats
    closing = first_closed(w, mean < eps)
    low = first_closed(w, mean - Z * se < eps)
    high = first_closed(w, mean + Z * se < eps)
    own = []
    for seed in np.unique(cell.seed):  # each seed's own closing width
        mine = cell.seed == seed
        widths, _, _, mean_own = _per_width(cell.width[mine], cell.value[mine])
        own.append(first_closed(widths, mean_own < eps))
    known = [x for x in own if not math.isnan(x)]
    if known:
        low = min([low, *known]) if not math.isnan(low) else min(known)
    if any(math.isnan(x) for x in own):
        high = math.nan  # some seed never closes on the grid
    elif known and not math.isnan(high):
        high = max(high, *known)
    slope, slope_se, fit_width = _decay(cell, eps)
    near = (mean <= DECISIVE * eps) & (mean >= eps / DECISIVE)
    return {"closing": closing, "low": low, "high": high,
            "per_seed": ", ".join("none" if math.isnan(x) else f"{x:g}" for x in own),
            "slope": slope, "slope_se": slope_se, "fit_width": fit_width,
            "decisive_se": float(se[near].max()) if near.any() else math.nan,
            "seeds": len(own), "widths": len(w), "widest": float(w.max()),
            "epoch": cell.epoch, "epochs": cell.epochs}


def _decay(cell: Cell, eps: float) -> tuple[float, float, float]:
    """Least squares of log gap on log width over the positive gaps: (slope, its SE, the width where
    the line meets ``eps``; NaN where it does not fall)."""
    pos = cell.value > 0
    x, y = np.log(cell.width[pos]), np.log(cell.value[pos])
    if len(np.unique(x)) < 2:
        return math.nan, math.nan, math.nan
    slope, icept = np.polyfit(x, y, 1)
    resid = y - (icept + slope * x)
    dof = len(x) - 2
    spread = float(((x - x.mean()) ** 2).sum())
    slope_se = math.sqrt(float(resid @ resid) / dof / spread) if dof > 0 else math.nan
    fit = math.exp((math.log(eps) - icept) / slope) if slope < 0 else math.nan
    return float(slope), slope_se, fit


def width_text(row) -> str:
    """A closing width and its interval in words: "64 (32 to 128)", "none up to 256 (possibly from
    128)", and ", at this budget" where it still moved (``at_budget``)."""
    return _width_words(row) + (", at this budget" if getattr(row, "at_budget", False) else "")


def _width_words(row) -> str:
    def k(v: float) -> str:
        return f"{v:g}"

    if math.isnan(row.closing):
        if math.isnan(row.low):
            return f"none up to {k(row.widest)}"
        return f"none up to {k(row.widest)} (possibly from {k(row.low)})"
    high = f"beyond {k(row.widest)}" if math.isnan(row.high) else k(row.high)
    if row.low == row.closing and not math.isnan(row.high) and row.high == row.closing:
        return k(row.closing)
    return f"{k(row.closing)} ({k(row.low)} to {high})"


def sentences(closing: pd.DataFrame, table: pd.DataFrame) -> list[str]:
    """The answer in one sentence per cell and family: the first epsilon, training and test images."""
    if closing.empty:
        return []
    axes = [a for a in sweep_axes(table) if a in closing]
    first = closing.epsilon.iloc[0]
    out = []
    for _, cell in closing[closing.epsilon == first].groupby(["dataset", *axes, "family"], sort=False):
        r = cell.iloc[0]
        where = ", ".join([r.dataset, *(f"{a} {r[a]:g}" if isinstance(r[a], float) else f"{a} {r[a]}"
                                       for a in axes)])
        parts = [f"{_from(s)} on {'training' if s.split == 'train' else 'test'} images"
                 for s in cell.itertuples()]
        decay = "" if math.isnan(r.slope) else f"; it falls as k^{r.slope:.2f} ± {r.slope_se:.2f}"
        budget = ""
        if cell.at_budget.any() if "at_budget" in cell else False:
            widths = ", ".join(dict.fromkeys(w for s in cell.shrinking for w in s.split(", ") if w))
            budget = (f"; at this budget: between epochs {r.epoch_before:g} and {r.epoch} the gap was still "
                      f"shrinking" + (f" at k = {widths}" if widths else ", and the answer moved"))
        out.append(f"{where} ({r.family}): the amortization gap falls below {first} per image "
                   f"{' and '.join(parts)} (at {r.epoch} of {r.epochs} epochs, {r.seeds} "
                   f"seed{'s' if r.seeds != 1 else ''}){decay}{budget}.")
    return out


def _from(row) -> str:
    """Where a closing width was found, for a sentence: "from k = 64 (32 to 128)", "at no width up to 256"."""
    if math.isnan(row.closing):
        return f"at no width up to {row.widest:g}" + ("" if math.isnan(row.low) else
                                                     f" (possibly from k = {row.low:g})")
    return f"from k = {_width_words(row)}"
