"""The path one call takes through the project's files: each stay in a file (a run of calls and
returns that stays in it), the files, the calls that climb back up a floor (from trainables to sweep
or analysis, from sweep to analysis), and the stays in sweep/storage.py.

    python scripts/trace_path.py load_gaps EXP            # analysis.load.load_gaps(EXP)
    python scripts/trace_path.py load_results EXP
    python scripts/trace_path.py load_gaps EXP --tree DIR # another checkout's code (an older commit)

The imports are done before the trace starts: what is counted is the work, not loading modules.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

FLOORS = {"trainables": 0, "sweep": 1, "analysis": 2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("function", choices=("load_gaps", "load_results"))
    ap.add_argument("experiment")
    ap.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--list", action="store_true", help="also print each stay")
    args = ap.parse_args()
    tree = args.tree.resolve()
    sys.path.insert(0, str(tree))
    import analysis.load

    fn = getattr(analysis.load, args.function)
    fn(args.experiment)  # once untraced: every module it imports on the way is loaded now

    stays: list[str] = []
    climbs = 0

    def where(frame) -> str | None:
        f = frame.f_code.co_filename
        if not f.startswith(str(tree)):
            return None
        rel = str(Path(f).relative_to(tree))
        return rel if rel.split("/")[0] in FLOORS else None

    def profile(frame, event, arg) -> None:
        nonlocal climbs
        if event not in ("call", "return"):
            return
        here = where(frame)
        if here is None:
            return
        if event == "call" and stays and FLOORS[here.split("/")[0]] > FLOORS[stays[-1].split("/")[0]]:
            caller = frame.f_back and where(frame.f_back)
            if caller == stays[-1]:
                climbs += 1
        if not stays or stays[-1] != here:
            stays.append(here)

    sys.setprofile(profile)
    try:
        fn(args.experiment)
    finally:
        sys.setprofile(None)
    if args.list:
        print("\n".join(stays))
    print(f"{args.function}: {len(stays)} stays in {len(set(stays))} files, {climbs} calls back up a floor, "
          f"{stays.count('sweep/storage.py')} stays in sweep/storage.py")


if __name__ == "__main__":
    main()
