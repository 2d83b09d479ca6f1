"""The sweep on Ray Tune.

    python -m sweep run sweep/specs/quick.yaml                  # local Ray sized to this machine
    python -m sweep run sweep/specs/paper.yaml --address auto --storage s3://bucket/gap
    python -m sweep status results/quick                        # no cluster needed
    python -m sweep resume results/quick                        # after a crash
    python -m sweep export results/quick -o results/quick.parquet
    python -m sweep evaluate results/quick                      # the gap, split (gap.json per trial)
    python -m sweep keys                                        # every spec key, documented

Bad input exits 2 with one line and launches nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import pandas as pd

from trainables.config import ConfigError
from trainables.oneline import OneLineParser, UsageError

from .progress import MANY
from .spec import SpecError
from .specfile import load_spec

ADDRESS_HELP = (
    "join this Ray cluster (auto: the one `ray start` made here; or host:port); default: RAY_ADDRESS, "
    "else a new local Ray instance for this command alone"
)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m sweep", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    run = sub.add_parser("run", help="launch the grid of a spec file")
    run.add_argument("spec", help="the sweep spec (YAML)")
    run.add_argument("--storage", help="results location (path or URI); overrides the spec's")
    run.add_argument("--address", help=ADDRESS_HELP)
    run.add_argument("--name", help="experiment name; overrides the spec's")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                     help="override one key of the spec, dotted, the value as YAML (repeatable): "
                     "--set train.epochs=5000 --set 'seeds=[0,1,2,3,4]' --set resources.gpu=0.25")
    run.add_argument("--resume-existing", action="store_true",
                     help="if the experiment exists, resume it instead of refusing (a requeued batch job "
                     "runs the same command again); it must have been launched with this same spec")
    run.add_argument("--verbose", action="store_true", help="Ray Tune's own output instead of the sweep's")
    res = sub.add_parser("resume", help="finish what a stopped sweep left (unfinished, errored trials)")
    res.add_argument("experiment", help="EXPERIMENT_DIR printed by `run`")
    res.add_argument("--address", help=ADDRESS_HELP)
    res.add_argument("--verbose", action="store_true", help="Ray Tune's own output instead of the sweep's")
    st = sub.add_parser("status", help="one row per trial; reads files, needs no cluster")
    st.add_argument("experiment")
    st.add_argument("--watch", action="store_true", help="refresh every few seconds until every trial ended")
    st.add_argument("--every", type=float, default=5.0, help="seconds between refreshes (default 5)")
    st.add_argument("--all", action="store_true",
                    help=f"a row per trial however many (past {MANY}: a row per variant, then the "
                         "trials running, failed or flagged)")
    ex = sub.add_parser("export", help="the tidy table, one row per (trial, epoch), as parquet")
    ex.add_argument("experiment")
    ex.add_argument("-o", "--output", required=True, help="output .parquet path")
    ev = sub.add_parser("evaluate", help="the gap decomposition of every finished trial (gap.json)")
    ev.add_argument("experiment")
    ev.add_argument("--points", type=int, help="training and test images per trial (default 1000)")
    ev.add_argument("--iwae-samples", type=int, help="importance samples for log p(x) (default 5000)")
    ev.add_argument("--checkpoints", type=int, help="how many of each trial's newest checkpoints, 1 or 2 "
                    "(default 1: the last; 2: also the one before, to see whether the gap still shrank)")
    ev.add_argument("--address", help=ADDRESS_HELP)
    sub.add_parser("keys", help="every spec key, its default and meaning (markdown)")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        return _fail(e)
    from .experiment import SweepError  # no Ray: status and export never load it

    try:
        return COMMANDS[args.command](args)
    except (UsageError, SpecError, SweepError, ConfigError) as e:
        return _fail(e)


def _fail(e: Exception) -> int:
    print(f"python -m sweep: error: {e}", file=sys.stderr)
    return 2


def _summary(exp: str, states: list[str]) -> int:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(Counter(states).items()))
    print(
        f"\nresults: {exp}\n  python -m sweep status {exp}\n"
        f"  python -m sweep export {exp} -o {exp}.parquet\n{len(states)} trials: {counts}"
    )
    return 0 if all(s == "TERMINATED" for s in states) else 1


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import run_sweep

    spec = load_spec(args.spec, launch=True, settings=args.settings, name=args.name, storage=args.storage)
    print(f"{spec.name}: {spec.num_trials} trials -> {spec.storage}/{spec.name}", flush=True)
    return _summary(*run_sweep(spec, args.address, args.verbose, args.resume_existing))


def cmd_resume(args: argparse.Namespace) -> int:
    from .runner import resume_sweep

    return _summary(*resume_sweep(args.experiment, args.address, args.verbose))


def cmd_status(args: argparse.Namespace) -> int:
    from .experiment import SweepError, load_trials
    from .progress import by_variant, summary
    from .results import progress_lines, status_table

    if args.every <= 0:
        raise UsageError(f"--every {args.every} must be a positive number of seconds")
    tty = sys.stdout.isatty()
    while True:
        try:
            trials = load_trials(args.experiment, reports="unevaluated", gaps=False)
        except SweepError:
            if not args.watch:
                raise
            trials = None  # the sweep has not written its state yet: wait for it
        if args.watch and tty:
            print("\x1b[H\x1b[2J", end="")  # redraw from the top of the terminal
        if trials is None:
            print(f"{args.experiment}: waiting for the sweep to write its state", flush=True)
        else:
            table, lines = status_table(trials), progress_lines(trials)
            if len(table) > MANY and not args.all:  # a row per variant, then the trials to look at
                print("\n".join(by_variant(lines, list(trials[0].axes))))
                table = table[(table.state != "TERMINATED") | (table.note != "")]
                if len(table):
                    print(f"\n{len(table)} trials running, waiting, failed or flagged"
                          + (f"; the first {MANY}:" if len(table) > MANY else ":"))
                table = table.head(MANY)
            if len(table):
                with pd.option_context("display.width", 250, "display.max_colwidth", 80):
                    print(table.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}"))
            print(summary(lines) + ("" if args.all or len(lines) <= MANY else
                                    f"; a row per trial: python -m sweep status {args.experiment} --all"),
                  flush=True)
        ended = trials is not None and all(t.status in ("TERMINATED", "ERROR") for t in trials)
        if not args.watch or ended:
            return 0
        time.sleep(args.every)


def cmd_export(args: argparse.Namespace) -> int:
    from . import storage
    from .experiment import load_trials
    from .results import tidy, write_gap_tables, write_parquet

    if problem := storage.credential_problem(args.output):  # None for a local path
        raise UsageError(f"-o {args.output}: {problem}")
    if storage.is_dir(args.output):
        raise UsageError(f"-o {args.output} is a directory; give a file path such as results.parquet")
    trials = load_trials(args.experiment)
    table = tidy(trials)
    try:
        out = write_parquet(table, args.output)
        print(f"{len(table)} rows, {table['trial_id'].nunique()} trials -> {out}")
        for path in write_gap_tables(trials, args.output):
            print(f"gap decomposition -> {path}")
    except OSError as e:  # no bucket, no permission, a full disk: pyarrow's or the OS's reason
        raise UsageError(f"-o {args.output}: cannot write there: {' '.join(str(e).split())}") from None
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .rules import KEPT_CHECKPOINTS
    from .runner import evaluate_experiment

    asked = (("points", args.points), ("iwae_samples", args.iwae_samples), ("checkpoints", args.checkpoints))
    settings = {k: v for k, v in asked if v is not None}
    for key, value in settings.items():
        if value <= 0:
            raise UsageError(f"--{key.replace('_', '-')} {value} must be a positive integer")
    if settings.get("checkpoints", 1) > KEPT_CHECKPOINTS:
        raise UsageError(f"--checkpoints {args.checkpoints} must be 1 to {KEPT_CHECKPOINTS}: Tune keeps "
                         f"each trial's {KEPT_CHECKPOINTS} newest checkpoints")
    from .experiment import load_trials
    from .results import gap_summary

    n = evaluate_experiment(args.experiment, settings, args.address)
    print(gap_summary(load_trials(args.experiment, reports="none")))
    print(
        f"{n} trials evaluated now, the others had a gap.json for these settings; nats per image, mean "
        f"over seeds ± standard error.\n`python -m sweep export {args.experiment} -o OUT.parquet` also "
        f"writes OUT.gaps.parquet"
    )
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from .docs import reference_markdown

    print(reference_markdown())
    return 0


COMMANDS = {
    "run": cmd_run,
    "resume": cmd_resume,
    "status": cmd_status,
    "export": cmd_export,
    "evaluate": cmd_evaluate,
    "keys": cmd_keys,
}
