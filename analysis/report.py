"""OUTDIR: figures, gap_table.csv/.md (gap_by_AXIS_table.csv/.md for each numeric axis of the
sweep), a one-page report.md that embeds them, and report.html (analysis/html.py), the same numbers
drawn to hover and filter in a browser."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sweep import storage

from . import tables
from .closing import EPSILONS, closing_table, sentences
from .figures import drawn, figure_jobs
from .html import write_html
from .load import sweep_axes
from .markdown import axis_markdown, check_markdown, closing_markdown, gap_markdown, refine_markdown

CAPTIONS = {
    "neg_elbo": "Negative ELBO per datapoint (nats): A-VI widths, F-VI and constant; mean over seeds, "
    "band from lowest to highest seed.",
    "train_mse": "Reconstruction MSE on the training images (q-means of z and of theta).",
    "test_mse": "Reconstruction MSE on the test images (F-VI has no test-time q without new optimization).",
    "seeds": "The negative ELBO, one panel per seed.",
    "gap_vs_width": "Final negative ELBO per datapoint against encoder width; F-VI and constant as bands.",
    "compute": "Epochs and seconds to the MSE threshold ('never' marked), and test-time inference seconds.",
    "gap_split": "The gap of each trained model split (sweep evaluate): log p(x) - L[q*] and L[q*] - L[q].",
    "refine": "Semi-amortized inference: the encoder's q after K gradient steps per image, and the seconds.",
    "gap_vs_axis": "The gap against {axis}, a line per encoder width, error bars the SE over seeds: against "
    "F-VI (ELBO difference) and, where `sweep evaluate` ran, the measured amortization gap on training "
    "and test images.",
    "closing_width": "The closing width: the smallest encoder width whose amortization gap is below each "
    "epsilon there and at every wider width, against {axis}; bars: its interval (seed spread and "
    "evaluation error); open markers above the grid: no width up to the widest closes it.",
    "reference": "Train MSE against Margossian & Blei's ten published runs (band: their min-max; dashed: "
    "their median; dotted: the mean-image MSE, where the latents are unused).",
}


def write_report(
    table: pd.DataFrame, out: Path, measured: pd.DataFrame | None = None, refine: pd.DataFrame | None = None,
    limit: bool = True, formats: tuple[str, ...] = ("png",), workers: int | None = None,
    epsilons: tuple[tuple[str, float], ...] = EPSILONS, earlier: pd.DataFrame | None = None,
) -> dict[str, Path]:
    """OUT's figures (``limit``, ``formats``, ``workers``: see all_figures), tables, report.md and
    report.html; with measured gaps, the closing width for each of ``epsilons`` (closing.py), and
    with ``earlier`` (the gaps at an earlier checkpoint) whether it still moved."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    gap_table = tables.gap_table(table, measured)
    closing = closing_table(table, measured, epsilons, earlier)
    answer = tuple(sentences(closing, table))
    # report.html first, the longest job, then the figures: drawn side by side on the machine's cores
    jobs = [("", "html", write_html, (table, gap_table, measured, out / "report.html", answer)),
            *figure_jobs(table, out, measured, refine, limit, formats, closing)]
    made: dict[str, dict[str, list[Path]]] = {}
    for (ds, name, _, _), paths in list(zip(jobs, drawn(jobs, workers), strict=True))[1:]:
        made.setdefault(ds, {})[name] = paths
    _atomic_text(out / "gap_table.csv", gap_table.to_csv(index=False))
    md = gap_markdown(gap_table)
    _atomic_text(out / "gap_table.md", md + "\n")
    lines = ["# Amortization gap: results", ""]
    if tables.is_partial(table):
        lines += [
            "**Partial results**: some trials are still running; figures show epochs reported so far.",
            "",
        ]
    lines += [
        "Gap = ELBO(F-VI) - ELBO(variant) in nats per datapoint, paired by seed, at the last epoch "
        "every trial has reached. Speed-ups are F-VI's epochs (seconds) to the MSE threshold over "
        "the variant's.",
        "",
        md,
        "",
    ]
    lines += _closing_section(closing, answer, out)
    lines += _reference_section(table, out)
    for axis in [a for a in sweep_axes(table) if pd.api.types.is_numeric_dtype(table[a])]:
        at = tables.axis_table(table, measured, axis)
        if at.empty:
            continue
        _atomic_text(out / f"gap_by_{axis}_table.csv", at.to_csv(index=False))
        _atomic_text(out / f"gap_by_{axis}_table.md", axis_markdown(at, axis))
        lines += [f"The gap against {axis}, a column per value (gap_by_{axis}_table.md):", "",
                  axis_markdown(at, axis), ""]
    if measured is not None and refine is not None:
        steps = tables.refine_table(measured, refine)
        _atomic_text(out / "refine_table.csv", steps.to_csv(index=False))
        _atomic_text(out / "refine_table.md", refine_markdown(steps) + "\n")
        lines += [
            "Semi-amortized inference on the test images (refine_table.md):",
            "",
            refine_markdown(steps),
            "",
        ]
    for ds, figs in made.items():
        lines += [f"## {ds}", ""]
        for name, paths in figs.items():
            lines += [f"![{ds} {name}]({paths[0].name})", "", f"*{_caption(name)}*", ""]
    _atomic_text(out / "report.md", "\n".join(lines))
    return {"report": out / "report.md", "html": out / "report.html", "gap_csv": out / "gap_table.csv",
            "gap_md": out / "gap_table.md",
            **({"closing_md": out / "closing_width.md"} if len(closing) else {})}


def _caption(name: str) -> str:
    """A figure's caption by its name (those against an axis: gap_vs_AXIS, closing_width_vs_AXIS)."""
    if name in CAPTIONS:
        return CAPTIONS[name]
    if name.startswith("closing_width_vs_"):
        return CAPTIONS["closing_width"].format(axis=name.removeprefix("closing_width_vs_"))
    return CAPTIONS["gap_vs_axis"].format(axis=name.removeprefix("gap_vs_"))


def _closing_section(closing: pd.DataFrame, answer: tuple[str, ...], out: Path) -> list[str]:
    """closing_width.csv/.md, and the report's lines: the answer per cell, then the table."""
    if closing.empty:
        return []
    md = closing_markdown(closing)
    _atomic_text(out / "closing_width.csv", closing.to_csv(index=False))
    _atomic_text(out / "closing_width.md", md + "\n")
    return ["## How wide the encoder must be", "", *[f"- {s}" for s in answer], "",
            "The closing width per tolerance and split (closing_width.md): the smallest width whose "
            "amortization gap (sweep evaluate's L[q*] - L[q], nats per image) is below epsilon there "
            "and at every wider width; its interval from the gap's mean ± 1.96 SE (the spread over "
            "seeds and each trial's evaluation SE), widened to each seed's own width; the decay a "
            "least-squares line of log gap against log width.", "", md, ""]


def _reference_section(table: pd.DataFrame, out: Path) -> list[str]:
    """At their scale (Fashion-MNIST, N = 10,000, B = 1,000): ours beside their published range."""
    from .reference import check_table, comparable

    d = table[table.dataset == "fashion_mnist"]
    if not comparable(d):
        return []
    check = check_table(d)
    _atomic_text(out / "reference_check.csv", check.to_csv(index=False))
    if check.empty:
        return []
    md = check_markdown(check)
    _atomic_text(out / "reference_check.md", md + "\n")
    return [
        "Against Margossian & Blei's ten published runs (train MSE; reference_check.md):", "", md, "",
    ]


def _atomic_text(path: Path, text: str) -> None:
    storage.write_bytes(path, text.encode())  # whole or not at all
