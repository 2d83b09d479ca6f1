"""The read side at scale: the figures and the loading of `analysis figures`, on results tables of any size.

    python benchmarks/scale_read.py                            # 135 trials x 5,000 epochs: the paper
    python benchmarks/scale_read.py --sizes 135x5000 10000x100
    python benchmarks/scale_read.py --sizes 20x300 --analysis /tmp/old   # another copy of analysis/
    python benchmarks/scale_read.py --sizes --experiments results/quick-*   # make demo's results

A synthetic table of TRIALSxEPOCHS rows with the columns and dtypes `python -m sweep export` writes
(sweep.results.tidy, from sweep/specs/paper.yaml's configs, reporting every epoch): its trials are
the paper's grid (3 datasets x (7 widths + factorized + constant) x 5 seeds), and beyond 135 trials
more cells along a `lr` axis; plausible falling curves, the MSEs every epoch, the test-time inference
at the last. Beside it the gap split and the refinement tables of `sweep evaluate`. Prints the
rows, the wall seconds of `python -m analysis figures` (a subprocess: Python's start and imports
included; the median of --repeat runs), the figures it drew, the notebook's first cells (its
imports and the table's loading, as a fresh kernel runs them) and the seconds of loading the
table (`analysis.load.load_results`, imports excluded). --experiments times the same on a sweep's
own experiment directories. --json PATH writes them, the machine and the command line to a file.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweep.results import GAP_KEYS, config_columns, write_parquet  # noqa: E402
from sweep.specfile import load_spec  # noqa: E402
from trainables.metrics import REPORTED  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEEDS = 5
# final -ELBO per datapoint (nats) and final train MSE, by variant: wider encoders close the gap
FINAL = {1: (640, 0.060), 4: (600, 0.040), 16: (585, 0.030), 32: (580, 0.026), 64: (578, 0.024),
         128: (577, 0.023), 256: (577, 0.023), "factorized": (575, 0.033), "constant": (720, 0.087)}


def _cells(trials: int, report_every: int) -> list[dict]:
    """Config columns of each trial's cell but the seed: paper.yaml's cells, then its cells again
    at other learning rates (a grid axis) until there are trials / 5 of them."""
    spec = load_spec(ROOT / "sweep" / "specs" / "paper.yaml", report_every=report_every,
                     checkpoint_every=report_every)
    base = [config_columns(spec.trial_config(c, 0)) for c in spec.cells()]
    lrs = [float(f"{1e-3 * 1.1**i:.3g}") for i in range(math.ceil(trials / (SEEDS * len(base))))]
    return [{**cols, "lr": lr} for lr, cols in itertools.product(lrs, base)]


def _curves(cols: dict, seed: int, epochs: int, report_every: int, rng: np.random.Generator) -> dict:
    e = np.arange(report_every, epochs + 1, report_every, dtype=float)
    e = np.unique(np.append(e, epochs))
    elbo, mse = FINAL[cols["width"] or cols["family"]]
    decay = 1 / np.sqrt(e)
    neg = elbo + 400 * decay + rng.normal(0, 0.5, len(e)) + seed
    train = mse * (1 + 3 * decay) * np.exp(rng.normal(0, 0.01, len(e)))
    seconds = np.cumsum(np.full(len(e), 0.4 * report_every)) * (3.0 if cols["per_datapoint"] else 1.0)
    below = np.flatnonzero(train < cols["mse_threshold"])
    hit = np.full(len(e), np.nan)
    reach, reach_s = hit.copy(), hit.copy()
    if len(below):
        reach[below[0]:], reach_s[below[0]:] = e[below[0]], seconds[below[0]]
    last = np.where(e == epochs, 1.0, np.nan)
    n = cols["n_train"]
    return {
        "epoch": e, "neg_elbo": neg * n, "neg_elbo_per_datapoint": neg, "loglik": -(neg - 20) * n,
        "kl_z": 15.0 * n + 0 * e, "kl_z_per_datapoint": 15.0 + 0 * e, "kl_theta": 2e4 + 0 * e,
        "epoch_lr": cols["lr"] + 0 * e, "train_mse": train,
        "test_mse": train * 1.1 if cols["has_test_time_q"] else hit,
        "active_dims": 20.0 + 0 * e, "mean_image_mse": 0.0873 + 0 * e, "opt_seconds": seconds,
        "eval_seconds": 0.05 + 0 * e, "epochs_to_threshold": reach, "seconds_to_threshold": reach_s,
        "infer_seconds": last * (30.0 if cols["per_datapoint"] else 0.01),
        "infer_steps": last * (2000 if cols["per_datapoint"] else 0),
        "infer_elbo_per_datapoint": last * -elbo, "torch_threads": 1.0 + 0 * e,
    }


def synthetic_results(trials: int, epochs: int, report_every: int = 1, seed=0) -> pd.DataFrame:
    """The tidy table of ``trials`` trials of ``epochs`` epochs (a report every ``report_every``),
    assembled as sweep.results.tidy does: the metrics, then the trial's config columns."""
    rng = np.random.default_rng(seed)
    parts = []
    for i, cols in enumerate(_cells(trials, report_every)):
        seeds = range(min(SEEDS, trials - SEEDS * i))
        if not seeds:
            break
        frames = [pd.DataFrame(_curves(cols, s, epochs, report_every, rng)) for s in seeds]
        metrics = pd.concat(frames, ignore_index=True)[list(REPORTED)]
        for key, value in cols.items():  # as tidy inserts them: one value per trial
            metrics.insert(len(metrics.columns), key, value)
        seed_col = np.repeat(list(seeds), [len(f) for f in frames])
        metrics["seed"] = seed_col
        metrics.insert(0, "status", "TERMINATED")
        metrics.insert(0, "trial_id", [f"{i:05d}_{s}" for s in seed_col])
        parts.append(metrics)
    table = pd.concat(parts, ignore_index=True)
    table["width"] = table["width"].astype("Int64")
    table["epoch"] = table["epoch"].astype(int)
    return table


def synthetic_gaps(table: pd.DataFrame, seed=0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`sweep evaluate`'s tables for ``table``'s trials: the gap split per split, and the refinement
    of the encoder's q at K = 0, 1, 5, 20, 100 (families with an encoder)."""
    rng = np.random.default_rng(seed)
    ids = table.drop_duplicates("trial_id", keep="last").drop(columns=["status", *REPORTED[1:]])
    elbo_q = -table.groupby("trial_id", sort=False).neg_elbo_per_datapoint.last().to_numpy()
    amort = np.where(ids.per_datapoint, 0.0, 200 / np.sqrt(ids.width.fillna(1).astype(float)))
    measured = {k: rng.uniform(0.1, 1.0, len(ids)) for k in GAP_KEYS}
    measured.update(elbo_q=elbo_q, amortization_gap=amort, approximation_gap=30 + rng.normal(0, 1, len(ids)))
    gaps = pd.concat([ids.assign(split=split, **measured) for split in ("train", "test")], ignore_index=True)
    enc = gaps[gaps.has_width]
    refine = pd.concat([enc[[*ids.columns, "split"]].assign(
        steps=k, elbo=enc.elbo_q + enc.amortization_gap * k / (1 + k), seconds=0.01 * (1 + k))
        for k in (0, 1, 5, 20, 100)], ignore_index=True)
    return gaps, refine


def _python(args: list[str], analysis: Path, **env: str) -> tuple[float, str]:
    """(wall seconds, stdout) of `python ARGS`, the analysis package taken from ``analysis``, with
    ``env`` added to the environment."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(analysis), str(ROOT)]), **env}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, *args], cwd=analysis, env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"python {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return time.perf_counter() - start, out.stdout


LOAD = ("import sys, time; from analysis.load import load_results; t = time.perf_counter(); "
        "load_results(sys.argv[1]); print(time.perf_counter() - t)")
NOTEBOOK = ROOT / "analysis" / "notebooks" / "explore.ipynb"


def notebook_start(path: str, analysis: Path) -> float:
    """Wall seconds of the notebook's first cells, its imports and the loading of ``path`` (the
    code cells up to the first that loads the table; IPython's %-lines left out), as a kernel
    runs them: a fresh Python, imports included."""
    cells = [c["source"] for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    upto = next(i for i, c in enumerate(cells) if any("load_results(" in line for line in c)) + 1
    code = "".join(line for c in cells[:upto] for line in [*c, "\n"] if not line.startswith("%"))
    return _python(["-c", code], analysis, AMORTIZATION_GAP_RESULTS=path)[0]


REPEAT = 3  # runs of `analysis figures` per table, their median reported: this machine's times vary


def timed_reads(path: str, out: str, analysis: Path, repeat: int = REPEAT) -> dict:
    """Seconds of `python -m analysis figures PATH` (into ``out``; the median of ``repeat`` runs, each
    run's beside it), the figures drawn, the notebook's first cells, and the loading alone (imports
    excluded)."""
    runs = [_python(["-m", "analysis", "figures", path, "-o", out], analysis)[0] for _ in range(repeat)]
    return {"figures_s": float(np.median(runs)), "figures_runs": runs,
            "figures": len(list(Path(out).glob("*.png"))),
            "notebook_s": notebook_start(path, analysis),
            "load_s": float(_python(["-c", LOAD, path], analysis)[1])}


def read_side(sizes: list[tuple[int, int]], analysis: Path = ROOT, repeat: int = REPEAT) -> list[dict]:
    """Per (trials, epochs): rows, seconds of `python -m analysis figures`, of the notebook's first
    cells and of loading; the ``analysis`` package taken from that folder (default: this checkout's)."""
    out = []
    for trials, epochs in sizes:
        table = synthetic_results(trials, epochs)
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp, "results.parquet"))
            write_parquet(table, path)
            for name, frame in zip(("gaps", "refine"), synthetic_gaps(table), strict=True):
                write_parquet(frame, Path(tmp, f"results.{name}.parquet"))
            out.append({"what": f"{trials}x{epochs}", "trials": trials, "epochs": epochs, "rows": len(table),
                        **timed_reads(path, f"{tmp}/figures", analysis, repeat)})
    return out


def experiment(path: Path, analysis: Path = ROOT, repeat: int = REPEAT) -> dict:
    """timed_reads of a sweep's own experiment directory (e.g. `make demo`'s), read where it is."""
    from analysis.load import load_results

    table = load_results(str(path))
    with tempfile.TemporaryDirectory() as tmp:
        return {"what": path.name, "trials": int(table.trial_id.nunique()), "epochs": int(table.epoch.max()),
                "rows": len(table), **timed_reads(str(path.resolve()), f"{tmp}/figures", analysis, repeat)}


def size(text: str) -> tuple[int, int]:
    """"135x5000" -> (135, 5000); a clear error for anything else."""
    try:
        trials, epochs = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"scale: error: size {text!r}: TRIALSxEPOCHS, e.g. 135x5000") from None
    if trials < 1 or epochs < 1:
        raise SystemExit(f"scale: error: size {text!r}: TRIALSxEPOCHS, each at least 1")
    return trials, epochs


def report(sizes: list[str], experiments: list[Path] = (), analysis: Path = ROOT,
           repeat: int = REPEAT) -> list[dict]:
    """read_side of each size (TRIALSxEPOCHS), then of each experiment directory, a line printed as
    each is done."""
    print(f"{'results':>28} {'trials':>7} {'rows':>10} {'figures s':>10} {'drawn':>6} {'notebook s':>11} "
          f"{'load s':>8}")
    out = []
    for what in [*map(size, sizes), *experiments]:
        if isinstance(what, tuple):
            out += read_side([what], analysis.resolve(), repeat)
        else:
            out.append(experiment(what, analysis, repeat))
        r = out[-1]
        print(f"{r['what'][-28:]:>28} {r['trials']:>7} {r['rows']:>10,} {r['figures_s']:>10.1f} "
              f"{r['figures']:>6} {r['notebook_s']:>11.1f} {r['load_s']:>8.2f}", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="*", default=["135x5000"], help="TRIALSxEPOCHS, reported every epoch")
    p.add_argument("--experiments", nargs="*", type=Path, default=[], metavar="DIR",
                   help="also a sweep's experiment directories (e.g. make demo's results/quick-*)")
    p.add_argument("--analysis", type=Path, default=ROOT, help="the folder holding the analysis package")
    p.add_argument("--repeat", type=int, default=REPEAT,
                   help=f"runs of `analysis figures` per table, the median reported (default {REPEAT})")
    p.add_argument("--json", metavar="PATH", help="also write every figure to this file")
    args = p.parse_args()
    if args.repeat < 1:
        raise SystemExit(f"scale: error: --repeat {args.repeat}: a number of runs, at least 1")
    for d in args.experiments:
        if not d.is_dir():
            raise SystemExit(f"scale: error: --experiments {d}: no such directory")
    rows = report(args.sizes, args.experiments, args.analysis, args.repeat)
    if args.json:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from record import write

        analysis = args.analysis.resolve()
        write(args.json, {"analysis": "." if analysis == ROOT else str(analysis), "sizes": rows}, None)


if __name__ == "__main__":
    main()
