"""This tree's ELBO step against another commit's, on this machine, measured in interleaved pairs.

    python benchmarks/step_compare.py 905c54d                  # 5 rounds, 5 epochs, all threads
    python benchmarks/step_compare.py HEAD~3 --rounds 9 --threads 1
    python benchmarks/step_compare.py HEAD~3 --families constant amortized:64   # only these

Checks the other commit out into a temporary git worktree. Each round times every family the two
trees' `benchmarks/step.py` share (its FAMILIES, at the paper's sizes), each in a fresh process
(`step.epoch_seconds(step.bench_config(family, width), ...)`), the two trees back to back, which
one first alternating: a machine whose speed drifts (a shared VM's does, by 10-20 % within
minutes) moves both halves of a pair alike. Prints the median steps per second of each tree and
the median of the per-pair ratios (--json PATH: also into this file, with the machine and the
command line). Both run with this tree's Python environment.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Run in a fresh process, in a tree: prints that tree's steps/s of one family.
TIMER = """
import json, sys, torch
tree, family, width, epochs, threads = sys.argv[1:6]
sys.path[:0] = [tree, tree + "/benchmarks"]
import step
torch.set_num_threads(int(threads))
cfg = step.bench_config(family, None if width == "-" else int(width))
seconds = step.epoch_seconds(cfg, torch.device("cpu"), int(epochs))
print(json.dumps({"steps_per_s": cfg.n_train / cfg.batch_size / seconds}))
"""
LIST = "import json, sys; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/benchmarks']; import step; " \
       "print(json.dumps(step.FAMILIES))"


def python(*args: str) -> str:
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"step_compare: error: {' '.join(args[2:])} failed:\n{out.stderr[-2000:]}")
    return out.stdout


def steps_per_second(tree: Path, family: str, width: int | None, epochs: int, threads: int) -> float:
    w = "-" if width is None else str(width)
    return json.loads(python("-c", TIMER, str(tree), family, w, str(epochs), str(threads)))["steps_per_s"]


def label(family: str, width: int | None) -> str:
    return family if width is None else f"{family} k={width}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("commit", help="the commit to compare with (any git revision)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=5, help="timed epochs per family and run")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    p.add_argument("--families", nargs="+", metavar="FAMILY[:WIDTH]",
                   help="only these of the shared list (default: all of them)")
    p.add_argument("--json", metavar="PATH", help="also write every figure to this file")
    args = p.parse_args()

    def rev(r: str) -> str:
        out = subprocess.run(["git", "rev-parse", "--short", r], cwd=ROOT, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"step_compare: error: {r!r} is not a revision of this repository")
        return out.stdout.strip()

    theirs = rev(args.commit)
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT).returncode != 0
    mine = rev("HEAD") + ("+changes" if dirty else "")
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "other"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(other), theirs], cwd=ROOT, check=True)
        try:
            both = [tuple(f) for f in json.loads(python("-c", LIST, str(other)))]
            common = [tuple(f) for f in json.loads(python("-c", LIST, str(ROOT))) if tuple(f) in both]
            if args.families:
                names = {":".join(str(x) for x in c if x is not None): c for c in common}  # "amortized:64"
                if unknown := [f for f in args.families if f not in names]:
                    raise SystemExit(f"step_compare: error: --families {' '.join(unknown)}: not among "
                                     f"the two trees' shared list: {' '.join(names)}")
                common = [names[f] for f in args.families]
            times: dict[tuple, dict[str, list[float]]] = {f: {"this": [], "other": []} for f in common}
            for r in range(args.rounds):
                for i, (family, width) in enumerate(common):
                    order = [("this", ROOT), ("other", other)][:: 1 if (r + i) % 2 == 0 else -1]
                    for name, tree in order:
                        times[family, width][name].append(
                            steps_per_second(tree, family, width, args.epochs, args.threads))
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT, check=False)
    print(f"steps/s at the paper's sizes, median of {args.rounds} interleaved pairs, "
          f"{args.epochs} epochs each, {args.threads} threads")
    print(f"| family | {mine} | {theirs} | ratio (median of pairs) |")
    print("|---|---|---|---|")
    rows = []
    for f, t in times.items():
        ratio = statistics.median(a / b for a, b in zip(t["this"], t["other"], strict=True))
        rows.append({"label": label(*f), "this_steps_per_s": statistics.median(t["this"]),
                     "other_steps_per_s": statistics.median(t["other"]), "ratio": ratio,
                     "pairs": [[a, b] for a, b in zip(t["this"], t["other"], strict=True)]})
        print(f"| {label(*f)} | {rows[-1]['this_steps_per_s']:.1f} | {rows[-1]['other_steps_per_s']:.1f} "
              f"| {ratio:.3f} |")
    if args.json:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from record import write

        write(args.json, {"this": mine, "other": theirs, "other_revision": args.commit, "rounds": args.rounds,
                          "epochs": args.epochs, "families": rows}, args.threads)


if __name__ == "__main__":
    main()
