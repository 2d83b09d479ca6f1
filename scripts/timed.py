"""Run a command and record its wall time in a JSON file, with the machine it ran on.

python scripts/timed.py OUT.json LABEL [--tee LOG] [--du PATH] -- COMMAND [ARGS...]

OUT.json maps each LABEL to {"seconds": wall, "command": "..."} and holds "machine" (CPU cores,
Python, torch); a label measured again is replaced, other labels are kept. The command's exit status
is this script's; nothing is recorded when it fails. ``--tee LOG`` also writes what the command
prints (stdout and stderr) to LOG; ``--du PATH`` records the bytes under PATH after it ran (the
venv a `make test` built). The docs quote these times through
scripts/sync_docs.py (``make readme-figures`` and ``make study`` write one per study).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from record import machine  # noqa: E402  the benchmarks' record of the machine: one definition


def run(command: list[str], tee: Path | None) -> int:
    if tee is None:
        return subprocess.call(command)
    with tee.open("w") as log, subprocess.Popen(command, stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
    return proc.returncode


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def main(argv: list[str]) -> int:
    usage = "usage: python scripts/timed.py OUT.json LABEL [--tee LOG] [--du PATH] -- COMMAND [ARGS...]"
    if "--" not in argv or len(argv) < 4:
        print(usage, file=sys.stderr)
        return 2
    cut = argv.index("--")
    head, command = argv[:cut], argv[cut + 1:]
    out, label, options = Path(head[0]), head[1], dict(zip(head[2::2], head[3::2], strict=False))
    if not command or set(options) - {"--tee", "--du"} or len(head[2:]) % 2:
        print(usage, file=sys.stderr)
        return 2
    start = time.perf_counter()
    rc = run(command, Path(options["--tee"]) if "--tee" in options else None)
    seconds = time.perf_counter() - start
    if rc != 0:
        return rc
    record = json.loads(out.read_text()) if out.exists() else {}
    record["machine"] = machine(None)
    record[label] = {"seconds": round(seconds, 1), "command": shlex.join(command)}
    if "--du" in options:
        record[label]["du_bytes"] = du(Path(options["--du"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
