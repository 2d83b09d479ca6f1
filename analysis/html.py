"""report.html: a sweep's results as one self-contained interactive page, opened from disk with no
server and no network.

Plotly: parallel coordinates built in, hover and legend toggling without code, one inlined script.

Per dataset: the gap against encoder width and against every numeric axis of the sweep, the gap
split (where `sweep evaluate` ran), the -ELBO and MSE curves of every trial, and a
parallel-coordinates view of every trial's settings and final numbers. Each variant is one legend
entry (one trace, or one legend group of traces), so a click on it hides the variant; hovering a
point names its trial. Means and standard errors come from the gap table (tables.gap_table), the
per-trial numbers from tables.seed_table, as in the markdown report and the static figures. The
figures are plain dicts handed to Plotly unvalidated: its figure objects cost more than the page.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.io as pio
from plotly.offline import get_plotlyjs

from sweep import storage

from .figures import cell_labels, palette
from .load import sweep_axes
from .tables import is_partial, seed_table

# The gap panels: (gap table column of the mean, of its SE over seeds or None, seed_table column, title)
GAP_PANELS = (
    ("gap_nats_mean", "gap_nats_se", "gap_vs_fvi", "ELBO(F-VI) - ELBO, nats per image"),
    ("amort_gap_test", None, "amort_gap_test", "amortization gap, test images (nats)"),
    ("amort_gap_train", None, "amort_gap_train", "amortization gap, training images (nats)"),
)
CURVES = (("neg_elbo_per_datapoint", "-ELBO per image (nats)"), ("train_mse", "train MSE"),
          ("test_mse", "test MSE"))
# The parallel-coordinates view's final numbers: seed_table column and label.
FINAL = {"neg_elbo": "final -ELBO per image", "gap_vs_fvi": "gap vs F-VI (nats)",
         "amort_gap_test": "amortization gap, test (nats)", "train_mse": "train MSE"}
COLUMNS = ("trial_id", "dataset", "variant", "variant_order", "family", "has_width", "per_datapoint",
           "has_test_time_q", "seed", "width", "epoch", "epochs", *(c for c, _ in CURVES))
POINTS = 200  # epochs per curve at most (log-spaced)
MAX_LINES = 300  # lines per curve panel at most: a trial's each, else means (_line_kind)
CONFIG = {"displaylogo": False, "responsive": True}
STYLE = ("body{font-family:sans-serif;max-width:1400px;margin:1em auto;padding:0 1em;color:#222}"
         "p.caption{color:#555;font-size:90%;margin-top:0}")


def write_html(table: pd.DataFrame, gaps: pd.DataFrame, measured: pd.DataFrame | None,
               out_path: str | os.PathLike, answer: tuple[str, ...] = ()) -> Path:
    """Write report.html of ``table`` (load_results), ``gaps`` (its tables.gap_table) and
    ``measured`` (load_gaps' gap split rows, or None) to ``out_path``, ``answer`` (the closing
    width's sentences, closing.sentences) at its top; returns the path."""
    out_path, axes = Path(out_path), sweep_axes(table)
    table = table[[*COLUMNS, *axes]]  # seed_table finds the same axes in it: the columns that vary
    seeds = _seed_rows(table, measured, axes)
    body = [f"<h1>Amortization gap: {table.trial_id.nunique()} trials</h1>"]
    if is_partial(table):
        body.append("<p><b>Partial results</b>: some trials are still running; the numbers are those "
                    "of the last epoch every trial of a cell has reached.</p>")
    body += [f"<p>{html.escape(line)}</p>" for line in answer]
    for ds, d in table.groupby("dataset", sort=True):
        body.append(f"<h2>{html.escape(str(ds))}</h2>")
        split = measured[measured.dataset == ds] if measured is not None else None
        for slug, caption, fig in _dataset_figures(d, gaps[gaps.dataset == ds], seeds[seeds.dataset == ds],
                                                   split, axes):
            div = pio.to_html(fig, include_plotlyjs=False, full_html=False, config=CONFIG,
                              div_id=f"{ds}-{slug}", validate=False)
            body.append(f"{div}\n<p class=caption>{html.escape(caption)}</p>")
    page = ("<!DOCTYPE html>\n<html><head><meta charset=utf-8><title>Amortization gap</title>"
            f"<style>{STYLE}</style>\n<script>{get_plotlyjs()}</script></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    storage.write_bytes(out_path, page.encode())  # whole or not at all
    return out_path


def _dataset_figures(d: pd.DataFrame, gaps: pd.DataFrame, seeds: pd.DataFrame,
                     measured: pd.DataFrame | None, axes: list[str]) -> list[tuple[str, str, dict]]:
    """(div id suffix, caption, figure) of one dataset, in the page's order; no gap figures
    without a gap to plot (a sweep without F-VI)."""
    pal = {v: "rgb({:.0f},{:.0f},{:.0f})".format(*(255 * np.asarray(c))) for v, c in palette(d).items()}
    made = []
    if d.has_width.astype(bool).any():
        made.append(("gap-width", "The gap against encoder width: filled markers the mean over seeds with "
                     "its standard error (the gap table), open markers one trial each; the families without "
                     "a width as dashed levels.", _gap_against(gaps, seeds, "width", axes, pal)))
    for axis in [a for a in axes if pd.api.types.is_numeric_dtype(d[a])]:
        made.append((f"gap-{axis}", f"The gap against {axis}, a line per variant: the mean over seeds with "
                     "its standard error (the gap table); open markers one trial each.",
                     _gap_against(gaps, seeds, axis, axes, pal)))
    if measured is not None and len(measured) and "approx_gap_test" in gaps:
        made.append(("gap-split", "log p(x) - L[q] = approximation gap (grey) + amortization gap "
                     "(coloured), mean over seeds (the gap table); a marker per trial at its total.",
                     _gap_split(gaps, measured, axes, pal)))
    kind = _line_kind(d, axes)
    lines = {"trial": "a line per trial", "cell": "a line per variant and cell, the mean over its seeds",
             "variant": "a line per variant, the mean of its trials in every cell"}[kind]
    made.append(("curves", f"The curves, {lines}, at most {POINTS} epochs each, log-spaced (test MSE: "
                 "the variants with a test-time q).", _curves(d, axes, pal, kind)))
    made.append(("trials", "Every trial at the last epoch every trial of its cell has reached, coloured "
                 "by variant: drag along an axis to select a range.", _parallel(seeds, axes, pal)))
    return [(slug, caption, fig) for slug, caption, fig in made if fig is not None]


def _seed_rows(table: pd.DataFrame, measured: pd.DataFrame | None, axes: list[str]) -> pd.DataFrame:
    """tables.seed_table (a row per trial at its cell's common final epoch) with each row's trial
    id, width, train and test MSE."""
    seeds = seed_table(table, measured)
    keys = ["dataset", *axes, "variant", "seed", "epoch"]
    own = table[[*keys, "trial_id", "width", "train_mse", "test_mse"]].drop_duplicates(keys)
    return seeds.merge(own, on=keys, how="left")


def _gap_against(gaps: pd.DataFrame, seeds: pd.DataFrame, x: str, axes: list[str],
                 pal: dict[str, str]) -> dict | None:
    """The gap panels (GAP_PANELS, those measured) against ``x``: width, or a numeric axis of the
    sweep (then a line per variant and cell of the other axes); None without any."""
    panels = [p for p in GAP_PANELS if p[0] in gaps and gaps[p[0]].notna().any()]
    if not panels:
        return None
    others = [a for a in axes if a != x]
    gaps = gaps.assign(others=cell_labels(gaps, others)).sort_values(["others", x], kind="stable")
    seeds = seeds.assign(others=cell_labels(seeds, others))
    # the trials of each mean: its cell of the other axes, its variant, its x
    trials = (seeds.assign(x_value=seeds[x].astype(str))
              .groupby(["others", "variant", "x_value"], sort=False).trial_id.agg(_some))
    per_variant = dict(list(seeds.groupby("variant", sort=False)))
    widths = _floats(gaps.loc[gaps.has_width.astype(bool), "width"])
    span = [np.nanmin(widths), np.nanmax(widths)] if len(widths) else [1.0, 1.0]
    data = []
    for j, (mean, se, per_seed, _) in enumerate(panels):
        for variant, g in _by_variant(gaps, pal):
            s = per_variant.get(variant, seeds.iloc[:0])
            errors = g[se] if se else [np.nan] * len(g)
            text = [f"{variant} {o}<br>{_pm(m, e)} nats, mean of {n}: {trials.get((o, variant, str(v)), '')}"
                    for o, m, e, n, v in zip(g.others, g[mean], errors, g.seeds, g[x], strict=True)]
            common = {"type": "scatter", "name": variant, "legendgroup": variant, "hoverinfo": "text",
                      "line": {"color": pal[variant]}, "marker": {"color": pal[variant], "size": 9}, **_on(j)}
            if x == "width" and not g.has_width.astype(bool).any():  # no width: a level across them
                at = 2 * np.arange(1, len(g))
                data.append(common | {
                    "x": _with_gaps(np.tile(span, len(g)), at), "y": _with_gaps(np.repeat(g[mean], 2), at),
                    "hovertext": np.insert(np.repeat(np.asarray(text, dtype=object), 2), at, None),
                    "mode": "lines", "line": {"color": pal[variant], "dash": "dash"}, "showlegend": j == 0})
                continue
            at = _breaks(g.others)
            data.append(common | {
                "x": _with_gaps(g[x], at), "y": _with_gaps(g[mean], at), "showlegend": j == 0,
                "mode": "markers" if x == "width" else "lines+markers",
                "error_y": {"array": _with_gaps(errors, at), "visible": se is not None},
                "hovertext": np.insert(np.asarray(text, dtype=object), at, None)})
            data.append(common | {
                "x": _floats(s[x]), "y": _floats(s[per_seed]), "mode": "markers", "showlegend": False,
                "marker": {"color": pal[variant], "symbol": "circle-open", "size": 7},
                "hovertext": [f"trial {t}<br>{variant}, seed {sd} {o}<br>{_pm(v, np.nan)} nats"
                              for t, sd, o, v in zip(s.trial_id, s.seed, s.others, s[per_seed],
                                                     strict=True)]})
    layout = _panels([p[3] for p in panels], height=420)
    values = np.unique(widths if x == "width" else _floats(gaps[x]))
    values = values[np.isfinite(values)]
    axis = {"title": {"text": "encoder width k" if x == "width" else x},
            "type": "log" if (values > 0).all() else "linear"}  # as the static figures: log where positive
    if len(values) <= 12:  # labelled at the swept values
        axis |= {"tickvals": values, "ticktext": [f"{v:g}" for v in values]}
    for j in range(len(panels)):
        layout[f"xaxis{j + 1}"] |= axis
    return {"data": data, "layout": layout}


def _gap_split(gaps: pd.DataFrame, measured: pd.DataFrame, axes: list[str], pal: dict[str, str]) -> dict:
    """Stacked bars per variant (and cell): the approximation gap, the amortization gap above it,
    train and test; a marker per trial at its total, log p(x) - L[q]."""
    gaps = gaps.assign(cell=cell_labels(gaps, axes))
    measured = measured.assign(cell=cell_labels(measured, axes))
    data = []
    for j, split in enumerate(("train", "test")):
        per_variant = dict(list(measured[measured.split == split].groupby("variant", sort=False)))
        for variant, g in _by_variant(gaps, pal):
            s = per_variant.get(variant, measured.iloc[:0])
            approx, amort = g[f"approx_gap_{split}"], g[f"amort_gap_{split}"]
            text = [f"{variant} {c}<br>approximation gap {_pm(a, np.nan)}<br>amortization gap "
                    + ("none: no amortized q" if pd.isna(m) else _pm(m, np.nan)) + " (nats, mean over seeds)"
                    for c, a, m in zip(g.cell, approx, amort, strict=True)]
            bar = {"type": "bar", "x": _category(g, axes), "name": variant, "legendgroup": variant,
                   "hovertext": text, "hoverinfo": "text", **_on(j)}
            data.append(bar | {"y": _floats(approx), "showlegend": False,
                               "marker": {"color": "lightgray", "line": {"color": "black", "width": 1}}})
            data.append(bar | {"y": _floats(amort), "showlegend": j == 0,
                               "marker": {"color": pal[variant], "line": {"color": "black", "width": 1}}})
            data.append({
                "type": "scatter", "x": _category(s, axes), "mode": "markers", "name": variant,
                "y": _floats(s.approximation_gap + s.amortization_gap.fillna(0)), "legendgroup": variant,
                "showlegend": False, "marker": {"color": "black", "size": 6}, "hoverinfo": "text", **_on(j),
                "hovertext": [f"trial {t}<br>{variant}, seed {sd} {c}<br>approximation {_pm(a, np.nan)} + "
                              f"amortization {_pm(m, np.nan)} nats" for t, sd, c, a, m in
                              zip(s.get("trial_id", s.seed.map(lambda _: "(unnamed)")), s.seed, s.cell,
                                  s.approximation_gap, s.amortization_gap, strict=True)]})
    layout = _panels(["training images", "test images"], height=420) | {"barmode": "relative"}
    layout["yaxis1"]["title"] = {"text": "nats per image"}
    layout["yaxis2"]["matches"] = "y"
    return {"data": data, "layout": layout}


def _by_variant(frame: pd.DataFrame, pal: dict[str, str]) -> list[tuple[str, pd.DataFrame]]:
    """(variant, its rows) in the palette's order (the variants' declared order)."""
    parts = dict(list(frame.groupby("variant", sort=False)))
    return [(v, parts[v]) for v in pal if v in parts]


def _category(frame: pd.DataFrame, axes: list[str]) -> list:
    """The bars' x: the variant, or (cell, variant) on a two-level axis where the sweep has axes."""
    if not axes:
        return list(frame.variant)
    return [list(frame.cell), list(frame.variant)]


def _curves(d: pd.DataFrame, axes: list[str], pal: dict[str, str], kind: str) -> dict:
    """-ELBO per image, train and test MSE against epoch (log scale), at most POINTS epochs per line,
    log-spaced: per variant one trace of lines, each of ``kind`` (_line_kind: a trial's, or the mean
    of a cell's or of a variant's trials)."""
    d = d.sort_values(["trial_id", "epoch"], kind="stable")
    first = d.drop_duplicates("trial_id")
    d = d.assign(cell=d.trial_id.map(dict(zip(first.trial_id, cell_labels(first, axes), strict=True))))
    data = []
    for j, (col, _) in enumerate(CURVES):
        rows = d[d[col].notna() & (d.has_test_time_q.astype(bool) if col == "test_mse" else True)]
        rows = rows[rows.epoch.isin(_spaced(rows.epoch))]
        if kind == "trial":
            custom = ["trial_id", "seed", "cell"]
            hover = "trial %{customdata[0]}, seed %{customdata[1]} %{customdata[2]}"
        else:
            keys = ["variant", "cell"] if kind == "cell" else ["variant"]
            rows = (rows.groupby([*keys, "epoch"], sort=False)[col].agg(["mean", "size"]).reset_index()
                    .rename(columns={"mean": col}).sort_values([*keys, "epoch"]))
            if kind == "variant":
                rows["cell"] = "(every cell)"
            custom, hover = ["size", "cell"], "mean of %{customdata[0]} trials %{customdata[1]}"
        for variant, r in _by_variant(rows, pal):
            at = _breaks(r.trial_id if kind == "trial" else r.cell)
            data.append({
                "type": "scatter", "x": _with_gaps(r.epoch, at), "y": _with_gaps(r[col], at), "mode": "lines",
                "name": variant, "legendgroup": variant, "showlegend": j == 0,
                "line": {"color": pal[variant], "width": 1.5}, **_on(j),
                "customdata": np.insert(r[custom].to_numpy(object), at, None, axis=0),
                "hovertemplate": hover + "<br>epoch %{x}: %{y:.4g}<extra>" + variant + "</extra>"})
    layout = _panels([t for _, t in CURVES], height=420)
    for j in range(len(CURVES)):
        layout[f"xaxis{j + 1}"] |= {"title": {"text": "epoch"}, "type": "log"}
    return {"data": data, "layout": layout}


def _line_kind(d: pd.DataFrame, axes: list[str]) -> str:
    """What a curve is, the finest of which there are at most MAX_LINES: "trial" (one trial's),
    "cell" (the mean of a variant's trials in one cell of the axes: its seeds), or "variant"."""
    if d.trial_id.nunique() <= MAX_LINES:
        return "trial"
    return "cell" if len(d.drop_duplicates(["variant", *axes])) <= MAX_LINES else "variant"


def _spaced(epochs: pd.Series) -> np.ndarray:
    """At most POINTS of the epochs present, log-spaced (every one when there are fewer), the
    first and the last among them: a curve of 5,000 epochs drawn from 200 of them looks the same
    on a log axis and the page stays small."""
    present = np.unique(epochs.to_numpy())
    if len(present) <= POINTS:
        return present
    return present[np.unique(np.geomspace(1, len(present), POINTS).round().astype(int) - 1)]


def _parallel(seeds: pd.DataFrame, axes: list[str], pal: dict[str, str]) -> dict:
    """A line per trial through its variant, width (log2 scale), seed, numeric axes and final
    numbers (FINAL), coloured by variant."""
    order = [v for v in pal if v in set(seeds.variant)]
    code = seeds.variant.map({v: i for i, v in enumerate(order)}).to_numpy(float)
    log_width = np.log2(_floats(seeds.width))
    none = np.nanmin(log_width) - 1 if np.isfinite(log_width).any() else 0.0  # below the narrowest
    ticks = sorted(set(np.nan_to_num(log_width, nan=none)))
    dims = [{"label": "variant", "values": code, "tickvals": list(range(len(order))), "ticktext": order},
            {"label": "width", "values": np.nan_to_num(log_width, nan=none), "tickvals": ticks,
             "ticktext": ["none" if t == none else f"{2 ** t:g}" for t in ticks]},
            {"label": "seed", "values": _floats(seeds.seed), "tickvals": sorted(set(seeds.seed))[:20]}]
    dims += [{"label": a, "values": _floats(seeds[a])} for a in axes
             if pd.api.types.is_numeric_dtype(seeds[a])]
    dims += [{"label": label, "values": _floats(seeds[c])} for c, label in FINAL.items()
             if c in seeds and seeds[c].notna().any()]
    top = max(len(order) - 1, 1)
    scale = [[i / top, pal[v]] for i, v in enumerate(order)] + [[1, pal[order[-1]]]] * (len(order) == 1)
    return {"data": [{"type": "parcoords", "dimensions": dims,
                      "line": {"color": code, "colorscale": scale, "cmin": 0, "cmax": top}}],
            "layout": {"height": 460, "margin": {"t": 60, "b": 30, "l": 80, "r": 80}}}


def _panels(titles: list[str], height: int) -> dict:
    """A layout of panels side by side, each titled above."""
    pad = 0.06
    width = (1 - pad * (len(titles) - 1)) / len(titles)
    layout = {"height": height, "margin": {"t": 40, "b": 40}, "legend": {"title": {"text": "variant"}},
              "annotations": []}
    for j, title in enumerate(titles):
        lo = j * (width + pad)
        layout[f"xaxis{j + 1}"] = {"domain": [lo, lo + width], "anchor": f"y{j + 1}"}
        layout[f"yaxis{j + 1}"] = {"anchor": f"x{j + 1}"}
        layout["annotations"].append({"text": title, "x": lo + width / 2, "y": 1, "xref": "paper",
                                      "yref": "paper", "xanchor": "center", "yanchor": "bottom",
                                      "showarrow": False})
    return layout


def _on(j: int) -> dict:
    """A trace's axes in panel ``j`` (from 0) of _panels."""
    return {"xaxis": f"x{j + 1}", "yaxis": f"y{j + 1}"}


def _floats(values) -> np.ndarray:
    """``values`` as a float array, NaN where missing."""
    return (values if isinstance(values, pd.Series) else pd.Series(values)).to_numpy(float, na_value=np.nan)


def _breaks(keys) -> np.ndarray:
    """The positions where a line breaks: where consecutive keys differ."""
    k = np.asarray(keys)
    return np.flatnonzero(k[1:] != k[:-1]) + 1


def _with_gaps(values, at: np.ndarray) -> np.ndarray:
    """``values`` as floats with NaN inserted before each position ``at`` (a break in Plotly's line)."""
    return np.insert(_floats(values), at, np.nan)


def _some(ids: pd.Series, most: int = 10) -> str:
    """Trial ids for a hover text: every one up to ``most``, then how many more."""
    more = len(ids) - most
    return ", ".join(ids.iloc[:most]) + (f" and {more} more" if more > 0 else "")


def _pm(mean: float, se: float) -> str:
    if pd.isna(mean):
        return "-"
    return f"{mean:.3g}" + ("" if pd.isna(se) else f" ± {se:.2g}")
