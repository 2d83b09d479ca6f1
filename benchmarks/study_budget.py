"""What a study spec costs on this machine, measured before it is run: for each distinct trial
shape of the spec (family, width and the settings that change a step's cost), a few epochs on one
thread and `evaluate` at the spec's settings on the model they trained; then the study's wall time
projected for the spec's epochs, seeds and cells on this machine's cores (trials run side by side,
one per core, as `sweep run` places them with resources.cpu 1).

    python benchmarks/study_budget.py sweep/specs/closing_width.yaml --json docs/bench/study_budget.json
    python benchmarks/study_budget.py sweep/specs/closing_width.yaml --set train.epochs=200

The projection is the sum of every trial's seconds over the cores: it assumes the trials pack
evenly (54 trials of unequal length on 2 cores leave little idle) and leaves out Ray's start
(seconds) and the analysis (seconds).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.record import write  # noqa: E402


def measure(spec_path: str, settings: list[str], epochs: int, points: int | None,
            widths: list[int] | None = None) -> dict:
    import torch

    from sweep.specfile import load_spec
    from trainables import load
    from trainables.fit import Fit, SeedRun
    from trainables.gap import evaluate_trial

    torch.set_num_threads(1)
    spec = load_spec(spec_path, settings=settings)
    evaluate = {k: tuple(v) if k == "refine_steps" else v for k, v in (spec.evaluate or {}).items()
                if k != "checkpoints"}
    if points:
        evaluate["points"] = points
    checkpoints = (spec.evaluate or {}).get("checkpoints", 1) if spec.evaluate is not None else 0
    rows, data_cache, timed = [], {}, {}
    measured_first = sorted(spec.cells(), key=lambda c: bool(widths) and c.width not in widths)
    for cell in measured_first:
        cfg = spec.trial_config(cell, spec.seeds[0])
        if widths and cfg.width is not None and cfg.width not in widths:
            # a width not measured costs what the nearest measured one does (in log width), same cell
            near = min(widths, key=lambda w: abs(math.log(w) - math.log(cfg.width)))
            rows.append({**timed[(near, cfg.sigma_x, cfg.n_train)], "cell": cell.slug, "width": cfg.width,
                         "as_width": near})
            continue
        key = (cfg.dataset, cfg.n_train, cfg.n_test)
        if key not in data_cache:
            data_cache[key] = load(cfg.dataset, cfg.n_train, cfg.n_test, cfg.data_root)
        short = dataclasses.replace(cfg, epochs=epochs, eval_every=epochs)
        fit = Fit([SeedRun(short, data_cache[key], "cpu")])
        start = time.perf_counter()
        for _ in fit.train(epochs):
            pass
        per_epoch = (time.perf_counter() - start) / epochs
        eval_s = 0.0
        if spec.evaluate is not None:
            start = time.perf_counter()
            evaluate_trial(fit.runs[0], **evaluate)
            eval_s = time.perf_counter() - start
        trial_s = cfg.epochs * per_epoch + checkpoints * eval_s
        rows.append({"cell": cell.slug, "width": cfg.width, "sigma_x": cfg.sigma_x, "n_train": cfg.n_train,
                     "epoch_s": round(per_epoch, 3), "evaluate_s": round(eval_s, 1),
                     "trial_s": round(trial_s, 1), "seeds": len(spec.seeds)})
        timed[(cfg.width, cfg.sigma_x, cfg.n_train)] = rows[-1]
        print(f"{cell.slug}: {per_epoch:.3f} s an epoch, evaluate {eval_s:.1f} s, a trial {trial_s:.0f} s",
              flush=True)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    slots = max(1, int(cores // max(spec.resources.cpu, 1)))
    total = sum(r["trial_s"] * r["seeds"] for r in rows)
    return {"spec": spec_path, "settings": settings, "epochs": spec.train.get("epochs"),
            "trials": spec.num_trials, "measured_epochs": epochs, "evaluate": evaluate,
            "checkpoints_evaluated": checkpoints, "cores": cores, "side_by_side": slots,
            "trial_seconds": round(total), "projected_wall_minutes": round(total / slots / 60, 1),
            "cells": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("spec")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="as `sweep run --set` (repeatable)")
    p.add_argument("--epochs", type=int, default=5, help="epochs measured per trial shape (default 5)")
    p.add_argument("--points", type=int, help="evaluate's points, if not the spec's")
    p.add_argument("--widths", type=int, nargs="+", help="measure these widths only; the others cost "
                   "what the nearest measured one does (default: every width)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    out = measure(args.spec, args.settings, args.epochs, args.points, args.widths)
    print(f"{out['trials']} trials of {out['epochs']} epochs, {out['side_by_side']} side by side: "
          f"{out['projected_wall_minutes']} minutes projected")
    if args.json:
        write(args.json, out, threads=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
