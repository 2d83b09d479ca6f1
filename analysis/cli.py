"""Paper-style figures, the gap table and a report from a sweep's results.

    python -m analysis figures results/quick -o results/quick-figures
    python -m analysis figures results/quick.parquet -o figures/
    python -m analysis figures results/quick -o results/quick-figures --watch   # while it runs

RESULTS is an experiment directory (read without a running cluster) or `sweep export`'s parquet.
Bad input exits 2 with one line.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import pyarrow.fs as pafs

from trainables.oneline import OneLineParser, UsageError

from .closing import EPSILONS, epsilon_label, parse_epsilons
from .load import AnalysisError, load

FORMATS = ("png", "pdf")  # the figures' file formats matplotlib writes here


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m analysis", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    f = sub.add_parser("figures", help="figures, gap_table.csv/.md, report.md and report.html")
    f.add_argument("results", help="experiment directory or parquet from `sweep export`")
    f.add_argument("-o", "--output", required=True, help="output directory (a path or a URI such as s3://bucket/figures)")
    f.add_argument("--all", action="store_true", help="every cell and seed in the per-cell figures "
                   "(default: past 12 cells or 10 seeds, the first ones, as each figure's title says)")
    f.add_argument("--formats", type=formats, default=("png",), metavar="LIST",
                   help=f"the figures' file formats, comma-separated, from {', '.join(FORMATS)} "
                   "(default: png)")
    f.add_argument("--epsilon", type=epsilons, default=EPSILONS, metavar="LIST",
                   help="the closing width's tolerances, comma-separated: nats per image (1) or a share "
                   "of KL(q(z)) per image (10%%kl); default: "
                   + ", ".join(epsilon_label(k, v) for k, v in EPSILONS).replace("%", "%%"))
    f.add_argument("--watch", action="store_true", help="of a running sweep: write the report again as "
                   "results arrive, until every trial has ended (refresh report.html in the browser)")
    f.add_argument("--every", type=float, default=30.0,
                   help="with --watch: seconds between rewrites (default 30)")
    return p


def formats(value: str) -> tuple[str, ...]:
    asked = tuple(dict.fromkeys(v.strip() for v in value.split(",")))
    bad = [v for v in asked if v not in FORMATS]
    if bad or not asked:
        raise argparse.ArgumentTypeError(f"{value!r}: {', '.join(bad) or 'nothing'} is not one of "
                                         f"{', '.join(FORMATS)} (a comma-separated list, e.g. png,pdf)")
    return asked


def epsilons(value: str) -> tuple[tuple[str, float], ...]:
    try:
        return parse_epsilons(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    from sweep import storage

    try:
        args = build_parser().parse_args(argv)
        if args.every <= 0:
            raise UsageError(f"--every {args.every} must be a positive number of seconds")
        if storage.is_uri(args.output) and (problem := storage.write_problem(args.output)):
            raise UsageError(f"-o {args.output}: {problem}")  # before any figure is drawn
        if storage.kind(args.results) == pafs.FileType.NotFound:
            raise AnalysisError(f"{args.results}: no such file or directory")
    except (UsageError, AnalysisError) as e:
        print(f"python -m analysis: error: {e}", file=sys.stderr)
        return 2
    while True:
        try:
            results = load(args.results)  # each trial's files read once
        except AnalysisError as e:
            if not args.watch:
                print(f"python -m analysis: error: {e}", file=sys.stderr)
                return 2
            print(f"{args.results}: waiting for results ({e})", flush=True)
            time.sleep(args.every)
            continue
        if (rc := _write(results, args)) or not args.watch or ended(results.table):
            return rc
        time.sleep(args.every)


def ended(table) -> bool:
    """Every trial of the table has ended (finished or failed): nothing more will arrive."""
    return bool(table.groupby("trial_id").status.last().isin(["TERMINATED", "ERROR"]).all())


def _write(results, args: argparse.Namespace) -> int:
    """The report of ``results`` into -o (a folder, or a URI: drawn here, then copied there)."""
    from sweep import storage

    from .report import write_report

    table, measured, refine, earlier = results
    if not storage.is_uri(args.output):
        paths = write_report(table, args.output, measured, refine, limit=not args.all, formats=args.formats,
                             epsilons=args.epsilon, earlier=earlier)
        print(f"report: {paths['report']}\nin a browser: {paths['html']}\ngap table: {paths['gap_md']}",
              flush=True)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        write_report(table, tmp, measured, refine, limit=not args.all, formats=args.formats,
                     epsilons=args.epsilon, earlier=earlier)
        fs, path = storage.resolve(args.output)
        try:
            pafs.copy_files(tmp, path, destination_filesystem=fs)
        except OSError as e:
            why = " ".join(str(e).split())
            print(f"python -m analysis: error: -o {args.output}: cannot write there: {why}", file=sys.stderr)
            return 2
    print(f"report: {storage.join(args.output, 'report.md')}\n"
          f"in a browser: {storage.join(args.output, 'report.html')}\n"
          f"gap table: {storage.join(args.output, 'gap_table.md')}", flush=True)
    return 0
