"""One trial, no Ray.

    python -m trainables run --dataset fashion_mnist --family amortized --width 64 \
        --epochs 3 --n-train 1000 --n-test 1000 --json
    python -m trainables run --family factorized --epochs 20 --n-train 1000 --n-test 500 \
        --theta-init torch --sigma-x 0.3 --save /tmp/fvi.pt
    python -m trainables run --family factorized --epochs 40 ... --resume /tmp/fvi.pt
    python -m trainables run --family amortized --width 64 --seeds 0 1 2 3 --json   # one batch
    python -m trainables data --dataset fashion_mnist     # fetch it now; says where it came from

Every TrialConfig field is a flag (``--n-train`` for ``n_train``); ``--help`` lists them.
Bad input exits 2 with one line; a non-finite ELBO exits 1 naming the epoch and the term.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import types
import typing
from typing import Any

import torch
import yaml

from . import config as C
from . import families
from .data import DataFileError, DataUnavailableError, load, load_for
from .fit import Fit, NonFiniteELBOError, SeedRun
from .oneline import OneLineParser, UsageError
from .vectorized import Stacked


def _field_type(f: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(C.TrialConfig)
    t = hints[f.name]
    if isinstance(t, types.UnionType):  # int | None -> int
        t = next(a for a in t.__args__ if a is not type(None))
    return _boolean if t is bool else t


def _boolean(text: str) -> bool:
    words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    if text.lower() not in words:
        raise argparse.ArgumentTypeError(f"{text!r} is not true or false")
    return words[text.lower()]


def _option(text: str) -> tuple[str, Any]:
    """KEY=VALUE, VALUE read as YAML (so 4 is a number, random a string)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, yaml.safe_load(value)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m trainables", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    run = sub.add_parser("run", help="train one configuration and print its per-epoch metrics")
    for f in dataclasses.fields(C.TrialConfig):
        if f.name == "family_options":
            run.add_argument(
                "--family-option", dest="family_options", type=_option, action="append", default=[],
                metavar="KEY=VALUE", help=f"{f.metadata['help']}; repeat for several",
            )
            continue
        run.add_argument(
            "--" + f.name.replace("_", "-"),
            type=_field_type(f),
            choices=f.metadata["choices"],
            default=f.default,
            help=f"{f.metadata['help']} (default: {f.default})",
        )
    run.add_argument("--family-module", action="append", default=[], metavar="MODULE",
                     help="import this module first (it registers a family of its own); repeatable")
    run.add_argument("--device", default="auto", help="cpu, cuda, or auto (default: auto)")
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    run.add_argument("--json", action="store_true", help="one JSON object per line")
    run.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        metavar="SEED",
        help="train these seeds together as one vectorized batch (instead of --seed)",
    )
    run.add_argument("--save", metavar="PATH", help="write the full trial state here after every epoch")
    run.add_argument("--resume", metavar="PATH", help="continue from a state written by --save")
    run.add_argument("--skip-inference", action="store_true", help="skip test-time inference at the end")
    data = sub.add_parser("data", help="make a dataset available (Debian files or download); say from where")
    data.add_argument("--dataset", choices=C.DATASETS, default="fashion_mnist")
    data.add_argument("--data-root", default=None, help="torchvision-layout folder to try first")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return _data(args) if args.command == "data" else _run(args)
    except (UsageError, C.ConfigError, DataUnavailableError, DataFileError, ValueError) as e:
        print(f"python -m trainables: error: {e}", file=sys.stderr)
        return 2
    except NonFiniteELBOError as e:
        print(f"python -m trainables: error: {e}", file=sys.stderr)
        return 1


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise UsageError(f"--device {name!r} is not one of cpu, cuda, auto")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


def _run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    if args.threads is not None:
        if args.threads <= 0:
            raise UsageError(f"--threads {args.threads} must be a positive integer")
        torch.set_num_threads(args.threads)
    device = _device(args.device)
    if device.type == "cuda":  # TF32 matmuls (10-bit mantissa products, float32 sums) on GPUs
        torch.backends.cuda.matmul.allow_tf32 = True
    families.import_modules(args.family_module)
    given = {name: getattr(args, name) for name in C.field_names()}
    given["family_options"] = dict(args.family_options)
    cfg = C.TrialConfig(**given)
    data = load_for(cfg, device)
    if args.seeds:
        return _run_seeds(args, cfg, data, device, start)
    if args.resume:  # the same command again, plus --resume: continue where it stopped
        fit = Fit.restore(args.resume, data, device)
        differ = [k for k, v in cfg.to_dict().items() if fit.cfg.to_dict()[k] != v]
        if differ:
            raise UsageError(f"--resume {args.resume}: saved run differs in {', '.join(differ)}")
    else:
        fit = Fit([SeedRun(cfg, data, device)])
    for (metrics,) in fit.train():
        _emit({"event": "epoch", **metrics}, args.json)
        if args.save:
            fit.save(args.save)
    wall = time.perf_counter() - start  # data loading + training + saving, as Tune's time_total_s
    _finish(fit.runs, wall, args)
    return 0


def _run_seeds(args, cfg, data, device, start) -> int:
    """Several seeds as one vectorized batch (trainables.vectorized): a line per seed per epoch."""
    if args.save or args.resume:
        raise UsageError("--seeds trains a vectorized batch, which --save and --resume do not support")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise UsageError(f"--seeds {args.seeds} must be distinct non-negative integers")
    fit = Fit([SeedRun(dataclasses.replace(cfg, seed=s), data, device) for s in args.seeds], Stacked)
    for rows in fit.train():
        for seed, metrics in zip(args.seeds, rows, strict=True):
            _emit({"event": "epoch", "seed": seed, **metrics}, args.json)
    _finish(fit.runs, time.perf_counter() - start, args)
    return 0


def _finish(runs: list[SeedRun], wall: float, args: argparse.Namespace) -> None:
    for run in runs if not args.skip_inference else []:
        q = run.infer_test()
        row = {
            "event": "test_inference",
            "family": run.cfg.family,
            "seed": run.cfg.seed,
            "n_test": run.cfg.n_test,
            "seconds": q.seconds,
            "steps": q.steps,
            "elbo_per_datapoint": q.elbo_per_datapoint,
        }
        _emit(row, args.json)
    _emit({"event": "done", "epochs": runs[0].epoch, "wall_seconds": wall}, args.json)


def _data(args: argparse.Namespace) -> int:
    data = load(args.dataset, 1, 1, args.data_root)
    print(f"{args.dataset}: available from {data.source}")
    return 0


def _emit(row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(row), flush=True)
        return
    text = "  ".join(
        f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if v is not None
    )
    print(text, flush=True)
