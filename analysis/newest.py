"""The newest `make demo` experiment: what `make notebook` opens and the notebook reads by default.

`make demo` writes results/quick-STAMP (STAMP: YYYYMMDD-HHMMSS) and beside it quick-STAMP-report
(its figures) and, under `make readme-figures`, other *-timing.json files; the newest is the
experiment directory with the latest stamp (by name: the stamp sorts as the time it was made).

    python -m analysis.newest [RESULTS_DIR]   # prints its absolute path, or one line and exit 1
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

RESULTS_ENV = "AMORTIZATION_GAP_RESULTS"  # set: the notebook reads that instead
DEMO = re.compile(r"quick-\d{8}-\d{6}")


def newest_demo(results_dir: str | Path = "results") -> Path:
    """The absolute path of the newest results_dir/quick-STAMP experiment directory; the -report
    folders and any other file beside them are not experiments. FileNotFoundError if there is none."""
    root = Path(results_dir)
    found = sorted(p for p in root.glob("quick-*") if DEMO.fullmatch(p.name) and p.is_dir())
    if not found:
        raise FileNotFoundError(f"no demo results under {_shown(results_dir)}: run make demo first")
    return found[-1].resolve()


def notebook_results(start: str | Path | None = None) -> str:
    """What the notebook reads: AMORTIZATION_GAP_RESULTS if set (a directory, a parquet or a URI),
    else the newest demo in the nearest results/ at or above ``start`` (the kernel's working
    directory: the notebook's own, analysis/notebooks/, under JupyterLab)."""
    if os.environ.get(RESULTS_ENV):
        return os.environ[RESULTS_ENV]
    here = Path(start or Path.cwd()).resolve()
    results = next((f / "results" for f in (here, *here.parents) if (f / "results").is_dir()), None)
    try:
        return str(newest_demo(results or "results"))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e}, or set {RESULTS_ENV}") from None


def _shown(results_dir: str | Path) -> str:
    return str(results_dir).rstrip("/") + "/"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        print(newest_demo(args[0] if args else "results"))
    except FileNotFoundError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
