"""README.md's answer and docs/studies.md's "The closing width": the closing_width study's committed
table (docs/closing_width/closing_width.csv, which `analysis figures` wrote) and its timing.json."""

from __future__ import annotations

import math

import pandas as pd

from .artifacts import ROOT, and_list, fmt, load_json, minutes, spec

CSV = "docs/closing_width/closing_width.csv"


def _table() -> pd.DataFrame:
    path = ROOT / CSV
    if not path.exists():
        raise FileNotFoundError(f"{CSV}: run `make study STUDY=closing_width`")
    return pd.read_csv(path)


def _k(row) -> str:
    """The closing width as the answer reads: "k >= 64 (32 to 128)", "no width up to 256"."""
    from analysis.closing import width_text

    text = width_text(row)
    return f"no width up to {row.widest:g}" + text.removeprefix(f"none up to {row.widest:g}") if (
        math.isnan(row.closing)) else f"k >= {text}"


def _slope(row) -> str:
    return "-" if math.isnan(row.slope) else f"{row.slope:.2f} ± {row.slope_se:.2f}"


def facts() -> dict[str, str]:
    t = _table()
    first = t.epsilon.iloc[0]  # the first tolerance asked for: 1 nat per image by default
    eps = t[t.epsilon == first]
    sigmas = sorted(eps.sigma_x.unique(), reverse=True)  # the paper's sigma_x (the widest) first
    at = {(s, split): eps[(eps.sigma_x == s) & (eps.split == split)].iloc[0]
          for s in sigmas for split in ("train", "test")}
    rows = ["| likelihood sd sigma_x | training images | test images | log-log slope of the gap ± SE |",
            "|---:|:--|:--|--:|"]
    rows += [f"| {s:g} | {_k(at[s, 'train'])} | {_k(at[s, 'test'])} | {_slope(at[s, 'train'])} |"
             for s in sigmas]
    words = [("no width up to " + f"{at[s, 'train'].widest:g}" if math.isnan(at[s, "train"].closing)
              else f"k >= {at[s, 'train'].closing:g}") + f" at sigma_x {s:g}" for s in sigmas]
    sp = spec("closing_width")
    decisive = eps.decisive_se.dropna()
    timing = load_json("docs/closing_width/timing.json")
    return {
        "closing.table": "\n".join(rows),
        "closing.sentence": f"To close the amortization gap to {first} per training image on Fashion-MNIST, "
                            f"an encoder needs {and_list(words)}",
        "closing.epsilon": first,
        "closing.trials": f"{sp.num_trials}",
        "closing.epochs": fmt(sp.train["epochs"]),
        "closing.seeds": f"{len(sp.seeds)}",
        "closing.points": fmt(sp.evaluate["points"]),
        "closing.n-train": fmt(sp.train["n_train"]),
        "closing.at-budget": f"{int(eps.at_budget.sum())} of {len(eps)}",
        "closing.largest-se": "-" if decisive.empty else f"{decisive.max():.2f}",
        "closing.wall": minutes(timing["run"]["seconds"]),
    }
