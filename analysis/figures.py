"""The paper-style figures of the seed write-up, one set per dataset, as PNG and PDF.

Every figure uses the same colour per variant: each encoder family's widths on a sequential scale
of its own (amortized: viridis, light = narrow), then the families without a width: the
per-datapoint one (F-VI) in red, the others grey and beyond. Lines are the mean over seeds with
a band from the lowest to the highest seed.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .load import variant_order  # noqa: E402
from .tables import final_rows, is_partial  # noqa: E402

SPREAD = ("pi", 100)  # band: from the lowest to the highest seed


SEQUENTIAL = ("viridis_r", "flare", "crest", "magma_r", "Blues")  # one per encoder family
BASELINES = [(0.5, 0.5, 0.5), *sns.color_palette("tab10")[4:]]  # families without a width
SEQUENTIAL_LINES = ("tab:purple", "tab:orange", "tab:green")  # gap_vs_width: encoders after the first


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


def title(ds_table: pd.DataFrame, what: str) -> str:
    first = ds_table.iloc[0]
    settings = (
        f"N={first.n_train}, batch {first.batch_size}, sigma_x={first.sigma_x:g}, "
        f"{first.epochs} epochs, {ds_table.seed.nunique()} seeds"
    )
    partial = ""
    if is_partial(ds_table):
        partial = f" [partial: {int(ds_table.epoch.max())}/{first.epochs} epochs so far]"
    return f"{first.dataset}: {what}\n{settings}{partial}"


def _save(fig: plt.Figure, out: Path, stem: str) -> list[Path]:
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return paths


def curve(
    ds_table: pd.DataFrame, metric: str, ylabel: str, out: Path, stem: str, log_y: bool = True
) -> list[Path]:
    data = ds_table.dropna(subset=[metric])
    pal = palette(ds_table)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    sns.lineplot(
        data=data,
        x="epoch",
        y=metric,
        hue="variant",
        hue_order=[v for v in pal if v in set(data.variant)],
        palette=pal,
        errorbar=SPREAD,
        ax=ax,
    )
    ax.set_xscale("log")
    if log_y and (data[metric] > 0).all():
        ax.set_yscale("log")
    ax.set(xlabel="epoch", ylabel=ylabel, title=title(ds_table, ylabel))
    ax.legend(title=None, fontsize=8, ncol=2)
    return _save(fig, out, stem)


def seeds(ds_table: pd.DataFrame, out: Path, stem: str) -> list[Path]:
    """One panel per seed: the negative ELBO curves, so the reader sees the seeds agree."""
    pal = palette(ds_table)
    g = sns.relplot(
        data=ds_table,
        x="epoch",
        y="neg_elbo_per_datapoint",
        hue="variant",
        hue_order=list(pal),
        palette=pal,
        col="seed",
        col_wrap=min(ds_table.seed.nunique(), 5),
        kind="line",
        height=3,
        aspect=1.1,
    )
    g.set(xscale="log", yscale="log")
    for ax in g.axes.flat:  # shared log y: the minor labels would stray onto the next panel
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    g.set_axis_labels("epoch", "-ELBO per datapoint (nats)")
    g.figure.suptitle(title(ds_table, "negative ELBO, one panel per seed"), y=1.02)
    g.figure.subplots_adjust(top=0.78)
    return _save(g.figure, out, stem)


def gap_vs_width(ds_table: pd.DataFrame, out: Path, stem: str) -> list[Path]:
    """Final -ELBO per datapoint against encoder width, a line per encoder family; the families
    without a width (F-VI, constant) as horizontal bands."""
    fin = final_rows(ds_table)
    pal = palette(ds_table)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    encoders = fin[fin.has_width.astype(bool)]
    for i, (fam, rows) in enumerate(encoders.groupby("family", sort=False)):
        sns.lineplot(
            data=rows,
            x="width",
            y="neg_elbo_per_datapoint",
            errorbar="sd",
            marker="o",
            color=("black", *SEQUENTIAL_LINES)[i % 4],
            ax=ax,
            label=f"{fam} (mean ± sd over seeds)",
        )
    for variant in [v for v in pal if v in set(fin.variant) and not fin[fin.variant == v].has_width.any()]:
        v = fin.loc[fin.variant == variant, "neg_elbo_per_datapoint"]
        m, s = v.mean(), (v.std(ddof=1) if len(v) > 1 else 0.0)
        ax.axhline(m, color=pal[variant], label=f"{variant} (mean ± sd)")
        ax.axhspan(m - s, m + s, color=pal[variant], alpha=0.2)
    ax.set_xscale("log", base=2)
    ax.set(
        xlabel="encoder width k",
        ylabel="final -ELBO per datapoint (nats)",
        title=title(ds_table, f"where the gap closes (epoch {int(fin.epoch.max())})"),
    )
    ax.legend(fontsize=8)
    return _save(fig, out, stem)


def compute(ds_table: pd.DataFrame, out: Path, stem: str) -> list[Path]:
    """Epochs and seconds to the MSE threshold ('never' drawn as such) and test-time inference."""
    fin = final_rows(ds_table)
    pal = palette(ds_table)
    order = list(pal)
    thr = ds_table.mse_threshold.iloc[0]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, col, label in (
        (axes[0], "epochs_to_threshold", "epochs"),
        (axes[1], "seconds_to_threshold", "optimization seconds"),
    ):
        reached = fin.dropna(subset=[col])
        if len(reached):
            sns.boxplot(data=reached, x="variant", y=col, order=order, hue="variant", palette=pal, ax=ax)
            sns.stripplot(data=reached, x="variant", y=col, order=order, color="black", size=3, ax=ax)
        top = reached[col].max() * 1.15 if len(reached) else 1.0
        for i, v in enumerate(order):
            never = fin[(fin.variant == v) & fin[col].isna()]
            if len(never):
                ax.text(
                    i,
                    top,
                    f"never\n({len(never)}/{(fin.variant == v).sum()})",
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    color="crimson",
                )
        ax.set_ylim(0, top * 1.25)
        ax.set(xlabel="", ylabel=f"{label} to train MSE < {thr:g}")
        ax.tick_params(axis="x", rotation=45)
    test_time = fin.dropna(subset=["infer_seconds"])
    ax = axes[2]
    if len(test_time):
        sns.barplot(
            data=test_time,
            x="variant",
            y="infer_seconds",
            order=[v for v in order if v in set(test_time.variant)],
            hue="variant",
            palette=pal,
            errorbar=SPREAD,
            ax=ax,
        )
        ax.set_yscale("log")
    ax.set(xlabel="", ylabel=f"test-time inference seconds ({ds_table.n_test.iloc[0]} images)")
    ax.tick_params(axis="x", rotation=45)
    fig.suptitle(title(ds_table, "compute: to the MSE threshold, and at test time"), y=1.04)
    return _save(fig, out, stem)


def gap_split(ds_table: pd.DataFrame, gaps: pd.DataFrame, out: Path, stem: str) -> list[Path]:
    """Stacked bars per variant: approximation gap below, amortization gap above, train and test,
    error bars the sd over seeds (Cremer, Li & Duvenaud's decomposition, measured)."""
    pal = palette(ds_table)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharey=True)
    for ax, split in zip(axes, ("train", "test"), strict=True):
        g = gaps[gaps.split == split]
        order = [v for v in pal if v in set(g.variant)]
        stats = (
            g.groupby("variant")[["approximation_gap", "amortization_gap"]]
            .agg(["mean", "std"])
            .reindex(order)
        )
        x = np.arange(len(order))
        approx, amort = stats["approximation_gap"], stats["amortization_gap"]
        ax.bar(
            x,
            approx["mean"],
            yerr=approx["std"],
            color="lightgray",
            edgecolor="black",
            label="approximation gap",
        )
        ax.bar(
            x,
            amort["mean"].fillna(0),
            bottom=approx["mean"],
            yerr=amort["std"],
            color=[pal[v] for v in order],
            edgecolor="black",
            label="amortization gap",
        )
        for i in range(len(order)):
            if pd.isna(amort["mean"].iloc[i]):
                ax.text(i, approx["mean"].iloc[i], "no q", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(x, order, rotation=45)
        ax.set(title=f"{split} images", ylabel="nats per datapoint")
    axes[0].legend(fontsize=8)
    fig.suptitle(title(ds_table, "log p(x) - L[q] = approximation + amortization gap"), y=1.04)
    return _save(fig, out, stem)


def refine_curves(ds_table: pd.DataFrame, refine: pd.DataFrame, out: Path, stem: str) -> list[Path]:
    """Semi-amortized: the ELBO and the seconds as the encoder's q takes K refinement steps."""
    pal = palette(ds_table)
    r = refine[refine.split == "test"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    order = [v for v in pal if v in set(r.variant)]
    sns.lineplot(
        data=r,
        x="steps",
        y="elbo",
        hue="variant",
        hue_order=order,
        palette=pal,
        marker="o",
        errorbar="sd",
        ax=axes[0],
    )
    sns.lineplot(
        data=r,
        x="steps",
        y="seconds",
        hue="variant",
        hue_order=order,
        palette=pal,
        marker="o",
        errorbar="sd",
        ax=axes[1],
        legend=False,
    )
    for ax in axes:
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=0)
        ax.set_xlabel("refinement steps K (0: the encoder's q)")
    axes[0].set_ylabel("ELBO per test datapoint, theta fixed (nats)")
    axes[1].set_ylabel("seconds for the test images")
    fig.suptitle(title(ds_table, "semi-amortized: refining the encoder's q"), y=1.04)
    return _save(fig, out, stem)


def against_reference(ds_table: pd.DataFrame, out: Path, stem: str) -> list[Path]:
    """Our train-MSE curves (mean over seeds) over Margossian & Blei's published band (min-max of
    their ten seeds, median dashed), one panel per variant they ran; 'latents unused' floor dotted."""
    from .reference import load_reference

    ref = load_reference()
    ref = ref[ref.split == "train"]
    pal = palette(ds_table)
    variants = [v for v in pal if v in set(ref.variant)]
    fig, axes = plt.subplots(1, len(variants), figsize=(4 * len(variants), 3.8), sharey=True, squeeze=False)
    for ax, v in zip(axes[0], variants, strict=True):
        r = ref[ref.variant == v]
        ax.fill_between(r.epoch, r["min"], r["max"], color="lightgray", label="theirs: 10 seeds, min-max")
        ax.plot(r.epoch, r["median"], color="gray", ls="--", lw=1, label="theirs: median")
        ours = ds_table[ds_table.variant == v].dropna(subset=["train_mse"])
        mean = ours.groupby("epoch")["train_mse"].mean()
        ax.plot(mean.index, mean.values, color=pal[v], lw=2, label=f"ours ({ours.seed.nunique()} seeds)")
        if "mean_image_mse" in ours and len(ours):
            ax.axhline(ours.mean_image_mse.mean(), color="black", ls=":", lw=1, label="mean-image MSE")
        ax.set(title=v, xlabel="epoch", yscale="log", xlim=(1, max(ds_table.epoch.max(), r.epoch.max())))
    axes[0][0].set_ylabel("train reconstruction MSE")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(title(ds_table, "train MSE against Margossian & Blei's published runs"), y=1.06)
    return _save(fig, out, stem)


def all_figures(
    table: pd.DataFrame, out: Path, gaps: pd.DataFrame | None = None, refine: pd.DataFrame | None = None
) -> dict[str, dict[str, list[Path]]]:
    """Every figure for every dataset; returns {dataset: {figure name: [png, pdf]}}."""
    out.mkdir(parents=True, exist_ok=True)
    made: dict[str, dict[str, list[Path]]] = {}
    for ds, d in table.groupby("dataset", sort=True):
        d = d.sort_values(["trial_id", "epoch"])
        made[ds] = {
            "neg_elbo": curve(
                d, "neg_elbo_per_datapoint", "-ELBO per datapoint (nats)", out, f"{ds}_neg_elbo"
            ),
            "train_mse": curve(d, "train_mse", "train reconstruction MSE", out, f"{ds}_train_mse"),
            "test_mse": curve(
                d[d.has_test_time_q.astype(bool)], "test_mse", "test reconstruction MSE", out,
                f"{ds}_test_mse",
            ),
            "seeds": seeds(d, out, f"{ds}_seeds"),
            "gap_vs_width": gap_vs_width(d, out, f"{ds}_gap_vs_width"),
            "compute": compute(d, out, f"{ds}_compute"),
        }
        from .reference import comparable

        if comparable(d):
            made[ds]["reference"] = against_reference(d, out, f"{ds}_reference")
        if gaps is not None and (gaps.dataset == ds).any():
            made[ds]["gap_split"] = gap_split(d, gaps[gaps.dataset == ds], out, f"{ds}_gap_split")
        if refine is not None and (refine.dataset == ds).any():
            made[ds]["refine"] = refine_curves(d, refine[refine.dataset == ds], out, f"{ds}_refine")
    return made
