"""What every benchmark's ``--json PATH`` file holds besides its figures: the command line that
measured them and the machine it ran on (the figures the docs quote come from these files,
docs/bench/*.json, through scripts/sync_docs.py)."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def command() -> str:
    """This process's command line as typed from the repository root: `python benchmarks/X.py ...`."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(ROOT)
    except ValueError:
        pass
    return shlex.join(["python", str(script), *sys.argv[1:]])


def machine(threads: int | None) -> dict:
    """CPU cores, Python, torch (its version, read without importing it) and the torch threads the
    timed work ran with (None where it is not one number)."""
    try:
        torch_version = metadata.version("torch").split("+")[0]
    except metadata.PackageNotFoundError:
        torch_version = None
    return {"cpu_cores": os.cpu_count(), "python": platform.python_version(), "torch": torch_version,
            "torch_threads": threads}


def write(path: str | Path, figures: dict, threads: int | None) -> None:
    """Write ``figures`` to ``path`` as JSON, with the command line and the machine."""
    doc = {"command": command(), "machine": machine(threads), **figures}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=float) + "\n")
