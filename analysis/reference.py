"""Margossian & Blei's published Fashion-MNIST trajectories, as data, and our runs set beside them.

``reference/mb2024_fashion_mnist_mse.csv`` (its README gives the source): per split, variant and
every 10th epoch, the minimum, median and maximum reconstruction MSE over their ten seeds. Their
study: Fashion-MNIST, N = 10,000, minibatch 1,000, widths 1, 64, 128, 256, F-VI, constant.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

CSV = Path(__file__).with_name("reference") / "mb2024_fashion_mnist_mse.csv"
CHECK_EPOCHS = (250, 500, 1000, 1500, 2000, 2500, 5000)
WIDEN = 0.2  # "inside their band widened by 20%": [0.8 x their min, 1.2 x their max]


def load_reference() -> pd.DataFrame:
    """split, variant (our labels: "k=64", "factorized", "constant"), epoch, n_seeds, min, median, max."""
    ref = pd.read_csv(CSV)
    ref["variant"] = ref["variant"].str.replace("amortized ", "", regex=False)
    return ref


def their_band(ref: pd.DataFrame, variant: str, epoch: float, split: str = "train") -> tuple[float, float]:
    """(min, max) of their seeds' MSE at ``epoch``, linear between their saved epochs; NaNs outside."""
    r = ref[(ref.variant == variant) & (ref.split == split)].sort_values("epoch")
    if r.empty or not r.epoch.min() <= epoch <= r.epoch.max():
        return float("nan"), float("nan")
    return float(np.interp(epoch, r.epoch, r["min"])), float(np.interp(epoch, r.epoch, r["max"]))


def comparable(table: pd.DataFrame) -> bool:
    """Whether a run is at their scale: Fashion-MNIST, N = 10,000, minibatch 1,000."""
    need = {"dataset": "fashion_mnist", "n_train": 10_000, "batch_size": 1_000}
    return all(k in table and (table[k] == v).all() for k, v in need.items()) and len(table) > 0


def check_table(table: pd.DataFrame, split: str = "train", widen: float = WIDEN) -> pd.DataFrame:
    """One row per (variant, check epoch) the run reached: our mean MSE over seeds, their range, and
    whether ours is inside their band widened by ``widen``."""
    ref = load_reference()
    metric = f"{split}_mse"
    rows = []
    for variant, v in table.dropna(subset=[metric]).groupby("variant", sort=False):
        for e in CHECK_EPOCHS:
            at = v[v.epoch == e]
            lo, hi = their_band(ref, variant, e, split)
            if at.empty or np.isnan(lo):
                continue
            ours = float(at[metric].mean())
            rows.append({
                "variant": variant, "epoch": e, "ours": ours, "seeds": at["seed"].nunique(),
                "their_min": lo, "their_max": hi,
                "inside": bool((1 - widen) * lo <= ours <= (1 + widen) * hi),
            })
    columns = ["variant", "epoch", "ours", "seeds", "their_min", "their_max", "inside"]
    return pd.DataFrame(rows, columns=columns)
