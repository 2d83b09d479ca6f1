"""How the sweep and the analysis grow with the number of trials: real sweeps of tiny trials, and
results tables of the paper's size and beyond, timed as the work grows.

    python benchmarks/scale.py                               # 10, 100 and 1,000 trials; the read side
    python benchmarks/scale.py --trials 10 100 1000 10000    # the largest as well (about 30 minutes)
    python benchmarks/scale.py --trials 10 --reads 135x50    # seconds: what the test runs

Each sweep: Fashion-MNIST, 1 epoch of N = 100 (latent_dim 8, decoder width 32, no test-time
inference), five variants (amortized k = 2, 4, 8, factorized, constant), a grid over lr and sigma_x
and seeds sized to the trial count, a checkpoint and a report every epoch, on a local Ray of 2
CPUs, one trial per CPU.
Per size it prints the sweep's wall time per trial, the marginal cost of the trials added since
the size before, Tune's overhead per trial beyond the trials' own time, the driver's peak memory
(RSS, sampled every 0.2 s), the experiment-state snapshot's size and JSON round-trip time, the
progress display's seconds when Tune's events for that many trials are fed to it (its share of
the wall time), and the seconds of `sweep status`, `sweep export`, `analysis figures` and the
notebook's loading (`analysis.load_results`). The read side (benchmarks/scale_read.py) times
`analysis figures` on synthetic tables. Last, each figure's log-log slope against the trials: 1 is
linear, more grows faster than the work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

VARIANTS = {"families": ["amortized", "factorized", "constant"], "widths": [2, 4, 8]}  # five variants


def spec_for(trials: int) -> dict:
    """A spec of exactly ``trials`` tiny trials (a multiple of 10): 5 variants x lr x sigma_x x seeds."""
    if trials % 10:
        raise SystemExit(f"scale: error: --trials {trials}: a multiple of 10 (5 variants x 2 seeds at least)")
    rest = trials // 10  # lr values x sigma_x values x seed pairs
    n_lr = min(rest, 10)
    n_sigma = min(rest // n_lr, 10)
    pairs = rest // (n_lr * n_sigma)
    if n_lr * n_sigma * pairs != rest:
        raise SystemExit(f"scale: error: --trials {trials}: use 10 x (up to 10, or a multiple of 100)")
    return {
        "name": f"scale-{trials}",
        "datasets": ["fashion_mnist"],
        **VARIANTS,
        "seeds": list(range(2 * pairs)),
        "grid": {"lr": [round(1e-3 * 1.5**i, 6) for i in range(n_lr)],
                 "sigma_x": [round(0.2 + 0.05 * i, 3) for i in range(n_sigma)]},
        "train": {"n_train": 100, "n_test": 100, "epochs": 1, "batch_size": 100, "latent_dim": 8,
                  "hidden_dim": 32, "theta_init": "torch"},
        "report_every": 1,
        "checkpoint_every": 1,
        "test_inference": False,  # tiny trials: F-VI's test-time q would be most of their work
        "resources": {"cpu": 1, "gpu": 0},
        "storage": "./results",
    }


def timed(cmd: list[str], env: dict | None = None, **kw) -> tuple[float, int, str]:
    """(wall seconds, peak RSS of the process in bytes, its output) of a command run to the end."""
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT), "RAY_DEDUP_LOGS": "0"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **kw)
    peak, handle = 0, psutil.Process(proc.pid)

    def sample() -> None:
        nonlocal peak
        while proc.poll() is None:
            try:
                peak = max(peak, handle.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"scale: error: {' '.join(cmd)} exited {proc.returncode}:\n{out[-3000:]}")
    return time.perf_counter() - start, peak, out


def display_seconds(trials: int, reports: int = 1) -> float:
    """The progress display's own seconds for a sweep of ``trials``: Tune's events for each trial
    (start, its reports, complete), a step of Tune's loop after each, fed to the sweep's callback."""
    from sweep.display import SweepDisplay

    cell = {"dataset": "fashion_mnist", "family": "constant", "width": None, "axes": {"lr": 0.001},
            "settings": {}, "family_options": {}}
    cfg = {"cell": cell,
           "seed": 0, **spec_for(10)["train"], "report_every": 1, "checkpoint_every": 1,
           "test_inference": None, "family_modules": []}
    pool = [SimpleNamespace(trial_id=f"t{i:05d}", config=cfg, status="PENDING", last_result={})
            for i in range(trials)]
    display = SweepDisplay(["lr"])
    display.progress.stream = open(os.devnull, "w")  # noqa: SIM115
    display.progress.tty = False
    start = time.perf_counter()
    display.on_step_end(0, pool)
    for i, trial in enumerate(pool):
        trial.status = "RUNNING"
        display.on_trial_start(i, pool, trial)
        display.on_step_end(i, pool)
        for epoch in range(1, reports + 1):
            result = {"epoch": epoch, "neg_elbo_per_datapoint": 900.0, "train_mse": 0.05,
                      "time_total_s": 0.1}
            display.on_trial_result(i, pool, trial, result)
            trial.last_result = result
            display.on_step_end(i, pool)
        trial.status = "TERMINATED"
        display.on_trial_complete(i, pool, trial)
        display.on_step_end(i, pool)
    display.on_experiment_end(pool)
    return time.perf_counter() - start


def snapshot(exp: Path) -> tuple[int, float]:
    """(bytes, seconds to decode and encode it) of Tune's newest experiment-state snapshot."""
    newest = max(exp.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    text = newest.read_text()
    start = time.perf_counter()
    json.dumps(json.loads(text))
    return len(text), time.perf_counter() - start


def trial_seconds(parquet: Path) -> float:
    """The trials' own seconds, summed: each one's training, evaluation and test-time inference."""
    import pandas as pd

    table = pd.read_parquet(parquet, columns=["trial_id", "opt_seconds", "eval_seconds", "infer_seconds"])
    last = table.groupby("trial_id")[["opt_seconds", "eval_seconds", "infer_seconds"]].max()
    return float(last.fillna(0).to_numpy().sum())


def readers(exp: Path) -> dict:
    """Milliseconds per trial to read an experiment's trials: Ray Tune's ExperimentAnalysis (each
    trial's state unpickled, its result.json read into a frame) against the sweep's own reader
    (sweep.experiment.load_trials: the snapshot's plain fields, the files read side by side)."""
    from ray import tune

    from sweep.experiment import load_trials

    start = time.perf_counter()
    n = len(tune.ExperimentAnalysis(str(exp)).trials)
    tune_s = time.perf_counter() - start
    start = time.perf_counter()
    load_trials(str(exp))
    ours_s = time.perf_counter() - start
    return {"trials": n, "tune_ms_per_trial": 1000 * tune_s / n, "sweep_ms_per_trial": 1000 * ours_s / n}


def on_bucket(exp: Path, s3, work: Path) -> dict:
    """`sweep status` and `sweep export` of the experiment ``exp`` copied into the S3 server ``s3``
    (testbed.s3.S3Server, counting requests): seconds and the requests each made."""
    import pyarrow.fs as pafs

    bucket = f"gap/{exp.name}"
    pafs.copy_files(str(exp), bucket, source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=s3.filesystem(), use_threads=True)
    out = {}
    for name, args in (("status", ["status", f"s3://{bucket}"]),
                       ("export", ["export", f"s3://{bucket}", "-o", f"s3://{bucket}.parquet"])):
        before = s3.requests()
        out[f"s3_{name}_s"], _, _ = timed([sys.executable, "-m", "sweep", *args], env=s3.env(), cwd=work)
        after = s3.requests()
        out[f"s3_{name}_requests"] = {k: n - before.get(k, 0) for k, n in after.items()
                                      if n > before.get(k, 0)}
    return out


def reads(exp: Path, table: Path, report: Path) -> dict[str, float]:
    """Seconds of `sweep status`, `sweep export` (to ``table``), `analysis figures` (of it, into
    ``report``) and the notebook's loading (analysis.load_results) of the experiment ``exp``."""
    py, work = sys.executable, exp.parent
    return {"status_s": timed([py, "-m", "sweep", "status", str(exp)], cwd=work)[0],
            "export_s": timed([py, "-m", "sweep", "export", str(exp), "-o", str(table)], cwd=work)[0],
            "figures_s": timed([py, "-m", "analysis", "figures", str(table), "-o", str(report)], cwd=work)[0],
            "notebook_load_s": timed([py, "-c", f"from analysis.load import load_results; "
                                                f"load_results({str(exp)!r})"], cwd=work)[0]}


def sweep_side(sizes: list[int], work: Path, address: str | None = None, s3=None) -> list[dict]:
    py = sys.executable
    join = ["--address", address] if address else []
    rows = []
    for n in sizes:
        spec = work / f"scale-{n}.yaml"
        spec.write_text(yaml.safe_dump(spec_for(n)))
        exp = work / "results" / f"scale-{n}"
        table = work / f"{n}.parquet"
        wall, peak, _ = timed([py, "-m", "sweep", "run", str(spec), "--storage", str(exp.parent), *join],
                              cwd=work)
        status, export, figures, notebook = reads(exp, table, work / f"{n}-report").values()
        size, snap = snapshot(exp)
        own = trial_seconds(work / f"{n}.parquet")
        shown = display_seconds(n)
        rows.append({"trials": n, "wall_s": wall, "per_trial_s": wall / n,
                     "overhead_per_trial_s": (wall - own / 2) / n, "driver_peak_mb": peak / 2**20,
                     "snapshot_kb": size / 1024, "snapshot_s": snap, "display_s": shown,
                     "display_share": shown / wall, "status_s": status, "export_s": export,
                     "figures_s": figures, "notebook_load_s": notebook})
        if s3 is not None:
            rows[-1].update(on_bucket(exp, s3, work))
        if len(rows) > 1:  # per trial added since the size before
            before, more = rows[-2], n - rows[-2]["trials"]
            rows[-1]["added_per_trial_s"] = (wall - before["wall_s"]) / more
            rows[-1]["added_mb_per_trial"] = (rows[-1]["driver_peak_mb"] - before["driver_peak_mb"]) / more
        print(_line(rows[-1]), flush=True)
    return rows


HEAD = (f"{'trials':>7} {'wall s':>8} {'s/trial':>8} {'added s':>8} {'overhead':>9} {'driver MB':>10} "
        f"{'added MB':>9} {'snap KB':>8} {'snap s':>7} {'display':>8} {'status s':>9} {'export s':>9} "
        f"{'figures s':>10} {'load s':>7}")


def _line(r: dict) -> str:
    added = f"{r['added_per_trial_s']:.3f}" if "added_per_trial_s" in r else "-"
    mb = f"{r['added_mb_per_trial']:.4f}" if "added_mb_per_trial" in r else "-"
    return (f"{r['trials']:>7} {r['wall_s']:>8.1f} {r['per_trial_s']:>8.3f} {added:>8} "
            f"{r['overhead_per_trial_s']:>9.3f} {r['driver_peak_mb']:>10.0f} {mb:>9} "
            f"{r['snapshot_kb']:>8.0f} {r['snapshot_s']:>7.3f} {r['display_share']:>7.2%} "
            f"{r['status_s']:>9.1f} {r['export_s']:>9.1f} "
            f"{r['figures_s']:>10.1f} {r['notebook_load_s']:>7.1f}" + _bucket(r))


def _bucket(r: dict) -> str:
    if "s3_status_s" not in r:
        return ""
    def calls(kind: str) -> str:
        return ", ".join(f"{v} {k}" for k, v in sorted(r[f"s3_{kind}_requests"].items()))
    return (f"\n{'':>7} on the bucket: status {r['s3_status_s']:.1f} s ({calls('status')}); "
            f"export {r['s3_export_s']:.1f} s ({calls('export')})")


def slopes(rows: list[dict], x: str, keys: list[str]) -> dict[str, float]:
    """The log-log slope of each figure against ``x`` (least squares over the sizes)."""
    out = {}
    if len(rows) < 2:
        return out
    lx = np.log([r[x] for r in rows])
    for k in keys:
        ys = [r[k] for r in rows]
        if all(y > 0 for y in ys):
            out[k] = float(np.polyfit(lx, np.log(ys), 1)[0])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, nargs="*", default=[10, 100, 1000],
                   help="sweep sizes, each a multiple of 10 (none: the read side only)")
    p.add_argument("--reads", nargs="*", default=["135x5000", "10000x100"],
                   help="synthetic results tables, TRIALSxREPORTS (none: the sweep side only)")
    p.add_argument("--work", help="keep the sweeps here (default: a temporary directory)")
    p.add_argument("--address", help="run the sweeps on this Ray (default: a new local one per sweep)")
    p.add_argument("--s3", action="store_true",
                   help="also copy each sweep to a local S3 server (SeaweedFS) and time status and "
                        "export there, counting the requests")
    p.add_argument("--reads-of", metavar="EXPERIMENT_DIR",
                   help="only this: time status, export, figures and loading of a sweep already run")
    p.add_argument("--readers", metavar="EXPERIMENT_DIR",
                   help="only this: ms per trial to read EXPERIMENT_DIR, Tune's reader against the sweep's")
    p.add_argument("--json", metavar="PATH",
                   help="also write every figure to this file, with the machine and the command line")
    args = p.parse_args()
    from scale_read import report, size

    if args.reads_of:
        exp = Path(args.reads_of).resolve()
        with tempfile.TemporaryDirectory() as tmp:
            got = reads(exp, Path(tmp) / "results.parquet", Path(tmp) / "report")
        print(f"{exp.name}: " + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in got.items()))
        return
    if args.readers:
        r = readers(Path(args.readers))
        print(f"{r['trials']} trials: Ray Tune's ExperimentAnalysis {r['tune_ms_per_trial']:.2f} ms a trial, "
              f"the sweep's load_trials {r['sweep_ms_per_trial']:.2f} ms a trial")
        return

    for t in args.trials:
        spec_for(t)  # a bad size: its one-line error now, not after the sweeps before it
    for r in args.reads:
        size(r)
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp).resolve()
        work.mkdir(parents=True, exist_ok=True)
        if args.trials:
            print("sweeps of tiny trials (2 CPUs; 'added': per trial added since the size above)")
            print(HEAD)
            with contextlib.ExitStack() as stack:
                s3 = None
                if args.s3:
                    from testbed.s3 import S3Server

                    s3 = stack.enter_context(S3Server(work / "s3", metrics=True))
                    s3.create_bucket("gap")
                out["sweeps"] = rows = sweep_side(sorted(args.trials), work, args.address, s3)
            keys = ["wall_s", "driver_peak_mb", "snapshot_kb", "display_s", "status_s", "export_s",
                    "figures_s", "notebook_load_s"]
            fitted = slopes(rows, "trials", keys)
            print("log-log slope against trials: " + ", ".join(f"{k} {v:.2f}" for k, v in fitted.items()))
            out["sweep_slopes"] = fitted
        if args.reads:
            print("\nanalysis of synthetic results tables (a report every epoch)")
            out["reads"] = synthetic = report(args.reads)
            if fitted := slopes(synthetic, "rows", ["figures_s", "load_s"]):
                print("log-log slope against rows: " + ", ".join(f"{k} {v:.2f}" for k, v in fitted.items()))
            out["read_slopes"] = fitted
    if args.json:
        from record import write

        write(args.json, out, 1)  # a trial a CPU, one thread each
    if any(not math.isfinite(v) for k in ("sweep_slopes", "read_slopes") for v in out.get(k, {}).values()):
        raise SystemExit("scale: error: a slope is not finite")


if __name__ == "__main__":
    main()
