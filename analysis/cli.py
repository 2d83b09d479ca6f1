"""Paper-style figures, the gap table and a report from a sweep's results.

    python -m analysis figures results/quick -o results/quick-figures
    python -m analysis figures results/quick.parquet -o figures/

RESULTS is an experiment directory (read without a running cluster) or `sweep export`'s parquet.
Bad input exits 2 with one line.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import pyarrow.fs as pafs

from trainables.oneline import OneLineParser, UsageError

from .load import AnalysisError, load_gaps, load_results


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m analysis", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    f = sub.add_parser("figures", help="figures (PNG, PDF), gap_table.csv/.md and report.md")
    f.add_argument("results", help="experiment directory or parquet from `sweep export`")
    f.add_argument("-o", "--output", required=True, help="output directory (a path or a URI such as s3://bucket/figures)")
    f.add_argument("--all", action="store_true", help="every cell and seed in the per-cell figures "
                   "(default: past 12 cells or 10 seeds, the first ones, as each figure's title says)")
    return p


def main(argv: list[str] | None = None) -> int:
    from sweep import storage

    try:
        args = build_parser().parse_args(argv)
        if storage.is_uri(args.output) and (problem := storage.write_problem(args.output)):
            raise UsageError(f"-o {args.output}: {problem}")  # before any figure is drawn
        table = load_results(args.results)
        measured, refine = load_gaps(args.results)
    except (UsageError, AnalysisError) as e:
        print(f"python -m analysis: error: {e}", file=sys.stderr)
        return 2
    from .report import write_report

    if not storage.is_uri(args.output):
        paths = write_report(table, args.output, measured, refine, limit=not args.all)
        print(f"report: {paths['report']}\ngap table: {paths['gap_md']}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:  # drawn here, then copied to the bucket
        write_report(table, tmp, measured, refine, limit=not args.all)
        fs, path = storage.resolve(args.output)
        try:
            pafs.copy_files(tmp, path, destination_filesystem=fs)
        except OSError as e:
            why = " ".join(str(e).split())
            print(f"python -m analysis: error: -o {args.output}: cannot write there: {why}", file=sys.stderr)
            return 2
    print(f"report: {storage.join(args.output, 'report.md')}\n"
          f"gap table: {storage.join(args.output, 'gap_table.md')}")
    return 0
