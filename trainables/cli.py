"""One trial, no Ray.

    python -m trainables run --dataset fashion_mnist --family amortized --width 64 \
        --epochs 3 --n-train 1000 --n-test 1000 --json
    python -m trainables run --family factorized --epochs 20 --n-train 1000 --n-test 500 \
        --theta-init torch --sigma-x 0.3 --save /tmp/fvi.pt
    python -m trainables run --family factorized --epochs 40 ... --resume /tmp/fvi.pt
    python -m trainables data --dataset fashion_mnist     # fetch it now; says where it came from

Every TrialConfig field is a flag (``--n-train`` for ``n_train``); ``--help`` lists them.
Bad input exits 2 with one line; a non-finite ELBO exits 1 naming the epoch and the term.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from typing import Any

import torch

from . import config as C
from .data import DataFileError, DataUnavailableError, load
from .fit import NonFiniteELBOError, Trial

CHOICES = {
    "dataset": C.DATASETS,
    "family": C.FAMILIES,
    "theta_init": C.THETA_INITS,
    "lr_schedule": C.LR_SCHEDULES,
}


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # one line, not usage + message
        raise UsageError(f"{message} (see --help)")


def _field_type(f: dataclasses.Field) -> type:
    hints = typing.get_type_hints(C.TrialConfig)
    t = hints[f.name]
    if isinstance(t, types.UnionType):  # int | None -> int
        t = next(a for a in t.__args__ if a is not type(None))
    return t


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m trainables", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="train one configuration and print its per-epoch metrics")
    for f in dataclasses.fields(C.TrialConfig):
        run.add_argument(
            "--" + f.name.replace("_", "-"),
            type=_field_type(f),
            choices=CHOICES.get(f.name),
            default=f.default,
            help=f"{f.metadata['help']} (default: {f.default})",
        )
    run.add_argument("--device", default="auto", help="cpu, cuda, or auto (default: auto)")
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    run.add_argument("--json", action="store_true", help="one JSON object per line")
    run.add_argument("--save", metavar="PATH", help="write the full trial state here after every epoch")
    run.add_argument("--resume", metavar="PATH", help="continue from a state written by --save")
    run.add_argument(
        "--skip-inference", action="store_true", help="skip test-time inference at the end"
    )
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
    if args.threads is not None:
        if args.threads <= 0:
            raise UsageError(f"--threads {args.threads} must be a positive integer")
        torch.set_num_threads(args.threads)
    device = _device(args.device)
    cfg = C.TrialConfig(**{name: getattr(args, name) for name in C.field_names()})
    data = load(cfg.dataset, cfg.n_train, cfg.n_test, cfg.data_root, device)
    if args.resume:  # the same command again, plus --resume: continue where it stopped
        trial = Trial.restore(args.resume, data, device)
        differ = [k for k, v in cfg.to_dict().items() if trial.cfg.to_dict()[k] != v]
        if differ:
            raise UsageError(f"--resume {args.resume}: saved run differs in {', '.join(differ)}")
    else:
        trial = Trial(cfg, data, device)
    for metrics in trial.train():
        _emit({"event": "epoch", **metrics}, args.json)
        if args.save:
            trial.save(args.save)
    if not args.skip_inference:
        q = trial.infer_test()
        _emit(
            {
                "event": "test_inference",
                "family": cfg.family,
                "n_test": cfg.n_test,
                "seconds": q.seconds,
                "steps": q.steps,
                "elbo_per_datapoint": q.elbo_per_datapoint,
            },
            args.json,
        )
    return 0


def _data(args: argparse.Namespace) -> int:
    data = load(args.dataset, 1, 1, args.data_root)
    print(f"{args.dataset}: available from {data.source}")
    return 0


def _emit(row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(row), flush=True)
        return
    text = "  ".join(
        f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in row.items()
        if v is not None
    )
    print(text, flush=True)
