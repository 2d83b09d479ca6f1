"""The paper-style figures of the study, one set per dataset, as PNG (and PDF when asked).

Every figure uses the same colour per variant: each encoder family's widths on a sequential scale
of its own (amortized: viridis, light = narrow), then the families without a width: the
per-datapoint one (F-VI) in red, the others grey and beyond. Lines are the mean over seeds with
a band from the lowest to the highest seed. A sweep with axes (`grid`) gets one row of panels
per cell of its axes, and for each numeric axis a figure of the gap against it.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .load import FAMILY_COLUMNS, cells, sweep_axes, variant_order
from .tables import final_rows, is_partial, seed_table

# Past these, a per-cell figure draws the first cells (in the axes' order) and the first seeds, and
# its title says so: a grid of 100 cells x 20 seeds is 2,000 panels, minutes to draw and no reader's
# figure. `analysis figures --all` (all_figures(limit=False)) draws every one.
MAX_CELLS = 12
MAX_SEEDS = 10
DPI = 130
SEQUENTIAL = ("viridis_r", "flare", "crest", "magma_r", "Blues")  # one per encoder family
BASELINES = [(0.5, 0.5, 0.5), *sns.color_palette("tab10")[4:]]  # families without a width
LINES = ("black", "tab:purple", "tab:orange", "tab:green")  # gap_vs_width: one per encoder family
# A figure's layout in inches, set rather than measured: tight_layout and savefig's tight bounding
# box measured every panel's text, and took half of a large figure's time. GAPS: the room (beside,
# below) each panel, for its tick labels, axis labels and the next row's titles, per figure as its
# panels' text asks; LEFT: the first column's tick labels and axis label; a line of the title, and
# a character of it (12 points).
GAPS = (0.9, 0.9)
LEFT, TITLE_LINE, TITLE_CHAR = 0.95, 0.24, 0.095


def palette(table: pd.DataFrame) -> dict[str, tuple]:
    order = variant_order(table)
    kinds = table.drop_duplicates("variant").set_index("variant")
    colours: dict[str, tuple] = {}
    encoders = list(dict.fromkeys(kinds.loc[[v for v in order if kinds.loc[v, "has_width"]], "family"]))
    for fam, cmap in zip(encoders, SEQUENTIAL * 4, strict=False):
        own = [v for v in order if kinds.loc[v, "family"] == fam]
        colours.update(zip(own, sns.color_palette(cmap, max(len(own), 1)), strict=False))
    rest = iter(BASELINES * 4)
    for v in order:
        if v not in colours:
            colours[v] = (0.84, 0.15, 0.16) if kinds.loc[v, "per_datapoint"] else next(rest)
    return {v: colours[v] for v in order}


def title(ds_table: pd.DataFrame, what: str, cut: str = "") -> str:
    """A figure's title: the dataset, what it shows, the settings, and ``cut``, the cells it left out."""
    first, axes = ds_table.iloc[0], sweep_axes(ds_table)
    shown = {"n_train": "N={}", "batch_size": "batch {}", "sigma_x": "sigma_x={:g}", "epochs": "{} epochs"}
    settings = [fmt.format(first[k]) for k, fmt in shown.items() if k not in axes]
    settings.append(_seeds(ds_table.seed.nunique()))
    if axes:
        settings.append("axes: " + ", ".join(axes))
    partial = ""
    if is_partial(ds_table):
        partial = f" [partial: {int(ds_table.epoch.max())}/{first.epochs} epochs so far]"
    if cut:
        partial += f"\n{cut}; every one: python -m analysis figures --all"
    return f"{first.dataset}: {what}\n{', '.join(settings)}{partial}"


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def _subplots(nrows: int, ncols: int, panel: tuple[float, float], heading: str,
              gaps: tuple[float, float] = GAPS, right: float = 0.2, **kw) -> tuple[Figure, np.ndarray]:
    """A figure of nrows x ncols panels of ``panel`` inches (plt.subplots' keywords), ``gaps`` apart
    (GAPS), ``right`` inches beside the last column (a legend there), ``heading`` above: on a Figure
    of its own (no pyplot state and no backend to choose, so the notebook's inline figures and the
    saved files both work), sized to hold them."""
    beside, below = gaps
    top = 0.15 + TITLE_LINE * (heading.count("\n") + 1) + 0.35  # the heading, then the panels' titles
    width = LEFT + ncols * panel[0] + (ncols - 1) * beside + right
    # a heading wider than the panels widens the figure, half on each side (its longest line's
    # characters at TITLE_CHAR inches each)
    wider = max(0.0, TITLE_CHAR * max(map(len, heading.split("\n"))) + 0.4 - width)
    left, right, width = LEFT + wider / 2, right + wider / 2, width + wider
    bottom = below - 0.25  # the last row's tick labels and axis label, with no row's title below
    height = top + nrows * panel[1] + (nrows - 1) * below + bottom
    fig = Figure(figsize=(width, height), dpi=DPI)  # one resolution: text laid out once, cached
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                        top=1 - top / height, wspace=beside / panel[0], hspace=below / panel[1])
    fig.suptitle(heading, y=1 - 0.1 / height, va="top")
    return fig, fig.subplots(nrows, ncols, **kw)


@dataclass(frozen=True)
class Folder:
    """Where figures are saved, and in which file formats (a plain path: PNG)."""

    path: Path
    formats: tuple[str, ...] = ("png",)


def _save(fig: Figure, out: Path | Folder, stem: str) -> list[Path]:
    where = out if isinstance(out, Folder) else Folder(Path(out))
    paths = [where.path / f"{stem}.{f}" for f in where.formats]
    _plain_log_labels(fig)
    for ax in fig.axes:  # each panel's title where set_title puts it, not placed again at every draw
        if label := ax.get_title():  # against its y axis' tick labels (a third of the tick updates of a
            ax.set_title(label, y=1.0)  # figure of many titled panels); no panel has ticks above it
    for p in paths:  # PNG at zlib level 3: half the encoding time of the default 6, a third more bytes
        fig.savefig(p, dpi=DPI, **({"pil_kwargs": {"compress_level": 3}} if p.suffix == ".png" else {}))
    return paths


def _plain_log_labels(fig: Figure) -> None:
    """Log (and symlog) axes labelled 100, 1000, 600 rather than in TeX-style powers of ten: easier
    to read, and typesetting those labels took a sixth of a figure's drawing time. A decimal one spanning more
    than one and a half decades, whose minor ticks carry no labels, has them at 2 and 5 times each
    power rather than at every multiple: each tick is an object to build and lay out, and they took
    a fifth of the time."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() not in ("log", "symlog"):
                continue
            base = axis.get_transform().base
            low, high = sorted(axis.get_view_interval())
            wide = base == 10 and 0 < 10**1.5 * low < high
            if wide and type(axis.get_minor_locator()) is matplotlib.ticker.LogLocator:
                axis.set_minor_locator(matplotlib.ticker.LogLocator(base, subs=(2.0, 5.0)))
            if type(axis.get_major_formatter()) is matplotlib.ticker.LogFormatterSciNotation:
                axis.set_major_formatter(matplotlib.ticker.LogFormatter(base))
            if type(axis.get_minor_formatter()) is matplotlib.ticker.LogFormatterSciNotation:
                axis.set_minor_formatter(matplotlib.ticker.LogFormatter(base, labelOnlyBase=False))


def _mean_and_spread(ax: Axes, data: pd.DataFrame, y: str, pal: dict[str, tuple], x: str = "epoch",
                     spread: str = "range", **line) -> None:
    """A line per variant (palette order): the mean of ``y`` over its rows at each ``x`` (the seeds),
    and a band where there are several: from the lowest to the highest (``spread`` "range") or one
    standard deviation either side ("sd"); what seaborn's lineplot(errorbar=("pi", 100) or "sd")
    draws, aggregated once rather than per variant and x. ``line``: Axes.plot's keywords."""
    code, names = pd.factorize(data["variant"])  # grouped by integer codes: no strings per group
    aggs = ["mean", "min", "max", "size"] if spread == "range" else ["mean", "std", "size"]
    stats = data[y].groupby([code, data[x].to_numpy()], sort=True).agg(aggs)
    stats.index.names = ["variant", x]
    for variant in [v for v in pal if v in names]:
        s = stats.loc[names.get_loc(variant)]
        ax.plot(s.index, s["mean"], color=pal[variant], label=variant, **line)
        several = s["size"] > 1
        if several.any():
            sd = s["std"] if spread == "sd" else None
            low, high = (s["min"], s["max"]) if sd is None else (s["mean"] - sd, s["mean"] + sd)
            ax.fill_between(s.index, low.where(several), high.where(several), color=pal[variant], alpha=0.2)


def _per_cell(
    ds_table: pd.DataFrame, ncols: int, size: tuple[float, float], draw: Callable, what: str,
    out: Path, stem: str, legend: tuple[int, dict] | None = None, same_y: bool = False, cut: str = "",
    gaps: tuple[float, float] = GAPS, right: float = 0.2,
) -> list[Path]:
    """One row of ``ncols`` panels of ``size`` inches per cell of the sweep's axes; draw(cell_table,
    axes_row, palette). ``legend``: (column, Axes.legend's keywords), one legend in the first row's
    panel of that column naming what every row drew there; ``same_y``: one y range per row, its
    tick labels on the first panel; ``cut``: the cells left out, for the title; ``gaps``, ``right``:
    _subplots'."""
    pal, labels = palette(ds_table), cells(ds_table)
    rows = dict.fromkeys(labels, slice(None))  # one cell: all of the table
    if len(labels) > 1:
        rows = ds_table.groupby("cell", sort=False).indices
    fig, axes = _subplots(len(labels), ncols, size, title(ds_table, what, cut), gaps, right, squeeze=False)
    for row, label in zip(axes, labels, strict=True):
        draw(ds_table.iloc[rows[label]], row, pal)
        if same_y:
            _same_y(row)
        if label:
            row[0].annotate(label, (0, 1.02), xycoords="axes fraction", fontsize=9, weight="bold")
    if legend is not None:
        col, kw = legend
        named: dict[str, object] = {}  # label -> its first handle, rows in order
        for ax in axes[:, col]:
            for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
                named.setdefault(name, handle)
        if named:
            axes[0][col].legend(list(named.values()), list(named), **kw)
    return _save(fig, out, stem)


def _same_y(row: np.ndarray) -> None:
    """The panels of a row on one y range, tick labels on the first only: what plt.subplots'
    sharey="row" shows (the union of the panels' data, then the margins), without sharing the axes,
    which lays out every panel's tick labels again for each of its siblings."""
    drawn = [ax for ax in row if ax.has_data()]
    if not drawn:
        return
    low = min(ax.dataLim.intervaly.min() for ax in drawn)
    high = max(ax.dataLim.intervaly.max() for ax in drawn)
    for ax in drawn:
        ax.dataLim.intervaly = low, high
        ax.autoscale_view(scalex=False)
    for ax in row[1:]:
        ax.tick_params(axis="y", which="both", labelleft=False)


def curve(ds_table: pd.DataFrame, metric: str, ylabel: str, out: Path, stem: str,
          cut: str = "") -> list[Path]:
    """``metric`` against the epoch, a line per variant: the mean over seeds, a band from the lowest
    to the highest."""

    def draw(cell: pd.DataFrame, row, pal) -> None:
        data, ax = cell.loc[cell[metric].notna(), ["variant", "epoch", metric]], row[0]
        if data.empty:
            return
        _mean_and_spread(ax, data, metric, pal)
        ax.set_xscale("log")
        if (data[metric] > 0).all():
            ax.set_yscale("log")
        ax.set(xlabel="epoch", ylabel=ylabel)

    return _per_cell(ds_table, 1, (5.6, 3.6), draw, ylabel, out, stem, (0, {"fontsize": 8, "ncol": 2}),
                     cut=cut)


def seeds(ds_table: pd.DataFrame, out: Path, stem: str, most: int | None = MAX_SEEDS,
          cut: str = "") -> list[Path]:
    """One panel per seed: the negative ELBO curves, so the reader sees the seeds agree; the first
    ``most`` seeds (None: every one)."""
    all_seeds = sorted(ds_table.seed.unique())
    what = "negative ELBO, one panel per seed"
    if most and len(all_seeds) > most:
        what += f" (the first {most} of {len(all_seeds)} seeds; every one: --all)"
        all_seeds = all_seeds[:most]

    def draw(cell: pd.DataFrame, row, pal) -> None:
        for ax, seed in zip(row, all_seeds, strict=True):
            one = cell.loc[cell.seed == seed, ["variant", "epoch", "neg_elbo_per_datapoint"]].dropna()
            _mean_and_spread(ax, one, "neg_elbo_per_datapoint", pal)  # one trial per variant: its curve
            ax.set(xscale="log", yscale="log", title=f"seed {seed}", xlabel="epoch",
                   ylabel="-ELBO per datapoint (nats)" if ax is row[0] else "")
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # one log y: no stray labels

    beside = (-1, {"loc": "upper left", "bbox_to_anchor": (1, 1), "fontsize": 8})  # the last panel's
    return _per_cell(ds_table, len(all_seeds), (3.0, 2.2), draw, what, out, stem, beside, same_y=True,
                     cut=cut, gaps=(0.25, 1.15), right=1.7)  # y tick labels on the first panel only; a
    # title above each; the legend beside the last


def gap_vs_width(ds_table: pd.DataFrame, out: Path, stem: str, cut: str = "") -> list[Path]:
    """Final -ELBO per datapoint against encoder width, a line per encoder family; the families
    without a width (F-VI, constant) as horizontal bands."""
    def draw(cell: pd.DataFrame, row, pal) -> None:
        fin, ax = final_rows(cell), row[0]
        encoders = fin[fin.has_width.astype(bool)]
        for i, (fam, rows) in enumerate(encoders.groupby("family", sort=False)):
            label = f"{fam} (mean ± sd over seeds)"
            _mean_and_spread(ax, rows.assign(variant=label), "neg_elbo_per_datapoint",
                             {label: LINES[i % len(LINES)]}, x="width", spread="sd", marker="o")
        bands = [v for v in pal if v in set(fin.variant) and not fin[fin.variant == v].has_width.any()]
        for variant in bands:
            v = fin.loc[fin.variant == variant, "neg_elbo_per_datapoint"]
            m, s = v.mean(), (v.std(ddof=1) if len(v) > 1 else 0.0)
            ax.axhline(m, color=pal[variant], label=f"{variant} (mean ± sd)")
            ax.axhspan(m - s, m + s, color=pal[variant], alpha=0.2)
        if len(encoders):
            ax.set_xscale("log", base=2)
        ax.set(xlabel="encoder width k", ylabel="final -ELBO per datapoint (nats)",
               title=f"epoch {int(fin.epoch.max())}")

    return _per_cell(ds_table, 1, (5.6, 3.6), draw, "where the gap closes", out, stem, (0, {"fontsize": 8}),
                     cut=cut)


def _bars(ax: Axes, data: pd.DataFrame, y: str, order: list[str], pal: dict[str, tuple], estimator: str,
          alpha: float = 1.0, points: bool = False) -> None:
    """A bar per variant of ``order`` at the ``estimator`` of ``y`` over its rows (the seeds), a line
    from their lowest to their highest and, with ``points``, each one's own value set side by side:
    what seaborn's barplot(errorbar=("pi", 100)) and stripplot draw, aggregated once per panel."""
    by = data.groupby("variant")
    stats = by[y].agg([estimator, "min", "max"]).reindex(order)
    x = np.arange(len(order))
    ax.bar(x, stats[estimator], width=0.8, color=[pal[v] for v in order], alpha=alpha)
    ax.vlines(x, stats["min"], stats["max"], color="0.26", lw=2.4)
    if points:
        spread = 0.3 * ((by.cumcount() + 0.5) / by[y].transform("size") - 0.5)  # within the bar
        at = pd.Series(x, index=order)[data.variant].to_numpy() + spread.to_numpy()
        ax.plot(at, data[y].to_numpy(), "o", color="black", ms=3, ls="")


def compute(ds_table: pd.DataFrame, out: Path, stem: str, cut: str = "") -> list[Path]:
    """Epochs and seconds to the MSE threshold ('never' drawn as such) and test-time inference."""
    thr = ds_table.mse_threshold.iloc[0]

    def draw(cell: pd.DataFrame, row, pal) -> None:
        fin = final_rows(cell)
        order = [v for v in pal if v in set(fin.variant)]
        for ax, col, label in ((row[0], "epochs_to_threshold", "epochs"),
                               (row[1], "seconds_to_threshold", "optimization seconds")):
            reached = fin.dropna(subset=[col])
            if len(reached):  # bar: the median seed; line: the seeds' range (a boxplot of 2-3 says no more)
                _bars(ax, reached, col, order, pal, "median", alpha=0.6, points=True)
            top = reached[col].max() * 1.15 if len(reached) else 1.0
            for i, v in enumerate(order):
                never = fin[(fin.variant == v) & fin[col].isna()]
                if len(never):
                    ax.text(i, top, f"never\n({len(never)}/{(fin.variant == v).sum()})", ha="center",
                            va="bottom", fontsize=8, color="crimson")
            ax.set_ylim(0, top * 1.25)
            ax.set(xlabel="", ylabel=f"{label} to train MSE < {thr:g}")
            ax.set_xticks(range(len(order)), order, rotation=45)
            ax.set_xlim(-0.5, len(order) - 0.5)
        test_time, ax = fin.dropna(subset=["infer_seconds"]), row[2]
        if len(test_time):
            shown = [v for v in order if v in set(test_time.variant)]
            _bars(ax, test_time, "infer_seconds", shown, pal, "mean")
            ax.set_yscale("log")
            ax.set_xticks(range(len(shown)), shown, rotation=45)
        ax.set(xlabel="", ylabel=f"test-time inference seconds ({cell.n_test.iloc[0]} images)")

    return _per_cell(ds_table, 3, (4.1, 3.2), draw, "compute: to the MSE threshold, and at test time",
                     out, stem, cut=cut, gaps=(0.9, 1.4))  # the variants' names at 45 degrees


def gap_split(ds_table: pd.DataFrame, measured: pd.DataFrame, out: Path, stem: str,
              cut: str = "") -> list[Path]:
    """Stacked bars per variant: approximation gap below, amortization gap above, train and test,
    error bars the sd over seeds (Cremer, Li & Duvenaud's decomposition, measured)."""
    measured = measured.assign(cell=cell_labels(measured, sweep_axes(ds_table)))

    def draw(cell: pd.DataFrame, row, pal) -> None:
        here = measured[measured.cell == cell.cell.iloc[0]]
        for ax, split in zip(row, ("train", "test"), strict=True):
            g = here[here.split == split]
            order = [v for v in pal if v in set(g.variant)]
            stats = g.groupby("variant")[["approximation_gap", "amortization_gap"]].agg(["mean", "std"])
            stats = stats.reindex(order)
            x, approx, amort = np.arange(len(order)), stats["approximation_gap"], stats["amortization_gap"]
            ax.bar(x, approx["mean"], yerr=approx["std"], color="lightgray", edgecolor="black",
                   label="approximation gap")
            ax.bar(x, amort["mean"].fillna(0), bottom=approx["mean"], yerr=amort["std"], edgecolor="black",
                   color=[pal[v] for v in order], label="amortization gap")
            for i in range(len(order)):
                if pd.isna(amort["mean"].iloc[i]):
                    ax.text(i, approx["mean"].iloc[i], "no q", ha="center", va="bottom", fontsize=8)
            ax.set_xticks(x, order, rotation=45)
            ax.set(title=f"{split} images", ylabel="nats per datapoint")

    return _per_cell(ds_table, 2, (5.6, 3.0), draw, "log p(x) - L[q] = approximation + amortization gap",
                     out, stem, (0, {"fontsize": 8}), same_y=True, cut=cut, gaps=(0.6, 1.65))  # names at
    # 45 degrees, titles


def refine_curves(ds_table: pd.DataFrame, refine: pd.DataFrame, out: Path, stem: str,
                  cut: str = "") -> list[Path]:
    """Semi-amortized: the ELBO and the seconds as the encoder's q takes K refinement steps."""
    refine = refine[refine.split == "test"].assign(cell=cell_labels(refine[refine.split == "test"],
                                                                 sweep_axes(ds_table)))

    def draw(cell: pd.DataFrame, row, pal) -> None:
        r = refine[refine.cell == cell.cell.iloc[0]]
        for ax, y in ((row[0], "elbo"), (row[1], "seconds")):
            _mean_and_spread(ax, r, y, pal, x="steps", spread="sd", marker="o")
            ax.set_xscale("symlog", linthresh=1)
            ax.set_xlim(left=0)
            ax.set_xlabel("refinement steps K (0: the encoder's q)")
        row[0].set_ylabel("ELBO per test datapoint, theta fixed (nats)")
        row[1].set_ylabel("seconds for the test images")

    return _per_cell(ds_table, 2, (5.1, 3.6), draw, "semi-amortized: refining the encoder's q", out, stem,
                     (0, {"fontsize": 8, "title": "variant"}), cut=cut)


def gap_vs_axis(ds_table: pd.DataFrame, axis: str, measured: pd.DataFrame | None, out: Path,
                stem: str) -> list[Path]:
    """The gap against a numeric axis, a line per encoder width, error bars the standard error over
    seeds: against F-VI (ELBO difference, nats per datapoint) and, where `evaluate` ran, the measured
    amortization gap on training and on test images; one column per value of the other axes. A
    panel whose values are all positive and span more than 20x has a log y axis."""
    table = seed_table(ds_table, measured)
    table = table[table.has_width.astype(bool)]
    others = [a for a in sweep_axes(ds_table) if a != axis]
    table = table.assign(others=cell_labels(table, others))
    panels = [("gap_vs_fvi", "gap vs F-VI (nats per datapoint)")]
    measured = (("amort_gap_train", "amortization gap, training images (nats)"),
                ("amort_gap_test", "amortization gap, test images (nats)"))
    panels += [(col, label) for col, label in measured if col in table and table[col].notna().any()]
    columns = list(dict.fromkeys(table.others))
    fig, axes = _subplots(len(panels), len(columns), (5.1, 3.1), title(ds_table, f"the gap against {axis}"),
                          (0.9, 1.15), squeeze=False)
    pal = palette(ds_table)
    for j, other in enumerate(columns):
        sub = table[table.others == other]
        for i, (col, label) in enumerate(panels):
            ax = axes[i][j]
            sns.lineplot(data=sub, x=axis, y=col, hue="variant", palette=pal, marker="o", ax=ax,
                         errorbar="se", err_style="bars", hue_order=[v for v in pal if v in set(sub.variant)])
            ax.set(xlabel=axis, ylabel=label, title=other or None)
            if (sub[axis] > 0).all():  # a log axis labelled at the swept values, as written
                values = sorted(set(sub[axis]))
                ax.set_xscale("log")
                ax.set_xticks(values, [f"{v:g}" for v in values])
                ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            y = sub[col].dropna()
            if len(y) and (y > 0).all() and y.max() > 20 * y.min():
                ax.set_yscale("log")
            ax.legend(fontsize=8, title=None)
    return _save(fig, out, stem)


def against_reference(ds_table: pd.DataFrame, out: Path, stem: str) -> list[Path]:
    """Our train-MSE curves (mean over seeds) over Margossian & Blei's published band (min-max of
    their ten seeds, median dashed), one panel per variant they ran; 'latents unused' floor dotted."""
    from .reference import load_reference

    ref = load_reference()
    ref = ref[ref.split == "train"]
    pal = palette(ds_table)
    variants = [v for v in pal if v in set(ref.variant)]
    heading = title(ds_table, "train MSE against Margossian & Blei's published runs")
    fig, axes = _subplots(1, len(variants), (3.6, 2.9), heading, (0.3, 0.9), sharey=True, squeeze=False)
    for ax, v in zip(axes[0], variants, strict=True):
        r = ref[ref.variant == v]
        ax.fill_between(r.epoch, r["min"], r["max"], color="lightgray", label="theirs: 10 seeds, min-max")
        ax.plot(r.epoch, r["median"], color="gray", ls="--", lw=1, label="theirs: median")
        ours = ds_table[ds_table.variant == v].dropna(subset=["train_mse"])
        mean = ours.groupby("epoch")["train_mse"].mean()
        ax.plot(mean.index, mean.values, color=pal[v], lw=2, label=f"ours ({_seeds(ours.seed.nunique())})")
        if "mean_image_mse" in ours and len(ours):
            ax.axhline(ours.mean_image_mse.mean(), color="black", ls=":", lw=1, label="mean-image MSE")
        ax.set(title=v, xlabel="epoch", yscale="log", xlim=(1, max(ds_table.epoch.max(), r.epoch.max())))
    axes[0][0].set_ylabel("train reconstruction MSE")
    axes[0][-1].legend(fontsize=7)
    return _save(fig, out, stem)


def closing_width(closing: pd.DataFrame, ds_table: pd.DataFrame, axis: str, out: Path,
                  stem: str) -> list[Path]:
    """The closing width (closing.closing_table) against a numeric axis: a panel per cell of the other
    axes and encoder family, a colour per epsilon, training images solid and test images dashed;
    bars the interval, open markers above the grid where no width up to the widest closes the gap.
    The lines are set a little apart along the axis, so that equal answers stay visible."""
    others = [a for a in sweep_axes(ds_table) if a != axis and a in closing]
    closing = closing.assign(panel=[f"{lab}{', ' if lab else ''}{fam}" for lab, fam in
                                    zip(cell_labels(closing, others), closing.family, strict=True)])
    panels = list(dict.fromkeys(closing.panel))
    heading = title(ds_table, "how wide the encoder must be to close the amortization gap")
    fig, axes = _subplots(1, len(panels), (4.6, 3.3), heading, (0.9, 0.9), squeeze=False)
    widest = float(closing.widest.max())
    top = widest * 2  # "none up to the widest" drawn here
    colours = dict(zip(dict.fromkeys(closing.epsilon), sns.color_palette("tab10"), strict=False))
    for ax, panel in zip(axes[0], panels, strict=True):
        sub = closing[closing.panel == panel]
        lines = list(sub.groupby(["epsilon", "split"], sort=False))
        log_x = bool((sub[axis] > 0).all())
        for j, ((eps, split), line) in enumerate(lines):
            line = line.sort_values(axis)
            apart = 0.03 * (j - (len(lines) - 1) / 2)
            x = line[axis].to_numpy(dtype=float)
            x = x * np.exp(apart) if log_x else x + apart * (np.ptp(x) or 1)
            k = line.closing.to_numpy(dtype=float)
            style = {"color": colours[eps], "ls": "-" if split == "train" else "--"}
            shown = np.where(np.isnan(k), top, k)
            ax.plot(x, shown, **style, label=f"{eps}, {'training' if split == 'train' else 'test'} images")
            closed = ~np.isnan(k)
            ax.plot(x[closed], k[closed], "o", color=colours[eps], ms=6)
            ax.plot(x[~closed], shown[~closed], "o", mfc="white", color=colours[eps], ms=7)
            low = np.where(np.isnan(line.low), top, line.low)
            high = np.where(np.isnan(line.high), top, line.high)
            ax.vlines(x[closed], low[closed], high[closed], color=colours[eps], lw=1.5, alpha=0.6)
        ticks = sorted({w for w in (2.0 ** np.arange(0, 20)) if w <= widest} | {widest})
        ax.set_yscale("log", base=2)
        ax.set_yticks([*ticks, top], [*(f"{t:g}" for t in ticks), f"none\nup to {widest:g}"])
        ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        values = sorted(set(sub[axis]))
        if log_x:
            ax.set_xscale("log")
            ax.set_xticks(values, [f"{v:g}" for v in values])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set(xlabel=axis, ylabel="closing width k", title=panel)
        ax.legend(fontsize=7)
    return _save(fig, out, stem)


def cell_labels(frame: pd.DataFrame, axes: list[str]) -> list[str]:
    """The cell label of each row of a table (the results, measured gaps, refinement, seed table)."""
    if not axes:
        return [""] * len(frame)
    key = frame[axes]
    combos = key.drop_duplicates()  # each column's own scalars: "n_train=100", never "100.0"
    labels = [", ".join(f"{a}={v}" for a, v in zip(axes, values, strict=True))
              for values in combos.itertuples(index=False, name=None)]
    at = key.merge(combos.assign(_at=np.arange(len(combos))), on=axes, how="left")["_at"].to_numpy()
    return list(np.asarray(labels, dtype=object)[at])  # by position: no string column to iterate


def all_figures(
    table: pd.DataFrame, out: Path, measured: pd.DataFrame | None = None, refine: pd.DataFrame | None = None,
    limit: bool = True, formats: tuple[str, ...] = ("png",), workers: int | None = None,
) -> dict[str, dict[str, list[Path]]]:
    """Every figure for every dataset, each saved in ``formats``; returns {dataset: {figure name:
    its files}}. With ``limit``, the per-cell figures draw the first MAX_CELLS cells and the seeds
    figure MAX_SEEDS seeds. The figures are drawn side by side in ``workers`` processes (default:
    one per core this process may use; 1: here, one after another)."""
    jobs = figure_jobs(table, out, measured, refine, limit, formats)
    made: dict[str, dict[str, list[Path]]] = {}
    for (ds, name, _, _), paths in zip(jobs, drawn(jobs, workers), strict=True):
        made.setdefault(ds, {})[name] = paths
    return made


# the columns the figures read (with the sweep's axes): each figure's table is cut to these once
DRAWN = ("trial_id", "status", "epoch", "dataset", "family", "width", "seed", *FAMILY_COLUMNS,
         "neg_elbo_per_datapoint", "train_mse", "test_mse", "mean_image_mse", "epochs_to_threshold",
         "seconds_to_threshold", "infer_seconds", "mse_threshold", "n_train", "n_test", "batch_size",
         "sigma_x", "epochs")
Job = tuple[str, str, Callable, tuple]  # (dataset, figure name, what draws and saves it, its arguments)


def figure_jobs(
    table: pd.DataFrame, out: Path, measured: pd.DataFrame | None = None, refine: pd.DataFrame | None = None,
    limit: bool = True, formats: tuple[str, ...] = ("png",), closing: pd.DataFrame | None = None,
) -> list[Job]:
    """all_figures' figures, each as a job to hand to ``drawn`` (with others, e.g. report.html); with
    ``closing`` (closing.closing_table), the closing width against each numeric axis too."""
    from .reference import comparable

    Path(out).mkdir(parents=True, exist_ok=True)
    out = Folder(Path(out), tuple(formats))
    jobs: list[Job] = []
    # what is drawn, not every setting (each dataset's axes are among the table's): cut once
    table = table[[c for c in dict.fromkeys([*DRAWN, *sweep_axes(table)]) if c in table]]
    for ds, d in table.groupby("dataset", sort=True):
        axes = sweep_axes(d)
        d = d.sort_values(["trial_id", "epoch"])
        d = d.assign(cell=cell_labels(d, axes))
        whole, (d, cut) = d, _first_cells(d) if limit else (d, "")
        jobs += [
            (ds, "neg_elbo", curve, (d, "neg_elbo_per_datapoint", "-ELBO per datapoint (nats)", out,
                                     f"{ds}_neg_elbo", cut)),
            (ds, "train_mse", curve, (d, "train_mse", "train reconstruction MSE", out, f"{ds}_train_mse",
                                      cut)),
            (ds, "test_mse", curve, (d[d.has_test_time_q.astype(bool)], "test_mse", "test reconstruction MSE",
                                     out, f"{ds}_test_mse", cut)),
            (ds, "seeds", seeds, (d, out, f"{ds}_seeds", MAX_SEEDS if limit else None, cut)),
            (ds, "gap_vs_width", gap_vs_width, (d, out, f"{ds}_gap_vs_width", cut)),
            (ds, "compute", compute, (d, out, f"{ds}_compute", cut)),
        ]
        ds_measured = measured[measured.dataset == ds] if measured is not None else None
        for axis in [a for a in axes if pd.api.types.is_numeric_dtype(d[a])]:
            jobs.append((ds, f"gap_vs_{axis}", gap_vs_axis, (whole, axis, ds_measured, out,
                                                               f"{ds}_gap_vs_{axis}")))
        if comparable(whole):
            jobs.append((ds, "reference", against_reference, (whole, out, f"{ds}_reference")))
        if ds_measured is not None and len(ds_measured):
            jobs.append((ds, "gap_split", gap_split, (d, ds_measured, out, f"{ds}_gap_split", cut)))
        if refine is not None and (refine.dataset == ds).any():
            jobs.append((ds, "refine", refine_curves, (d, refine[refine.dataset == ds], out, f"{ds}_refine",
                                                       cut)))
        c = closing[closing.dataset == ds] if closing is not None and len(closing) else None
        for axis in [a for a in axes if c is not None and a in c and pd.api.types.is_numeric_dtype(d[a])]:
            jobs.append((ds, f"closing_width_vs_{axis}", closing_width, (c, whole, axis, out,
                                                                         f"{ds}_closing_width_vs_{axis}")))
    return jobs


_JOBS: list[Job] = []  # the figures being drawn, for the forked workers
# the figures that take longest (several panels a cell), handed out first so that
# no worker starts one as the others finish
LONGEST = ("compute", "seeds", "gap_split", "refine")


def _draw(i: int) -> list[Path]:
    _, _, draw, args = _JOBS[i]
    return draw(*args)


def drawn(jobs: list[Job], workers: int | None = None) -> list:
    """Each job run (a figure drawn and saved): what it returned (its files), in the jobs' order.
    Several workers are forked processes that inherit the tables (nothing is copied to them); where
    fork is unavailable, one at a time."""
    global _JOBS
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(workers or cores, len(jobs))
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [draw(*args) for _, _, draw, args in jobs]
    _JOBS = jobs
    gc.freeze()  # the tables and modules as they are: no collection walks them, in a worker or at exit
    try:
        with warnings.catch_warnings():  # Python 3.12+ warns of fork beside threads; the workers only draw
            warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                first = sorted(range(len(jobs)), key=lambda i: LONGEST.index(jobs[i][1])
                               if jobs[i][1] in LONGEST else len(LONGEST))  # the longest handed out first
                done = dict(zip(first, pool.map(_draw, first, chunksize=1), strict=True))
                return [done[i] for i in range(len(jobs))]
    finally:
        _JOBS = []


def _first_cells(d: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """``d`` cut to its first MAX_CELLS cells, and what a figure's title says of the cut ("" when
    nothing was left out)."""
    labels = cells(d)
    if len(labels) <= MAX_CELLS:
        return d, ""
    return d[d.cell.isin(labels[:MAX_CELLS])], f"the first {MAX_CELLS} of {len(labels)} cells"
