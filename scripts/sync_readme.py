"""Fill the generated blocks of README.md and docs/*.md: the spec reference and the demo's gap table.

python scripts/sync_readme.py            # rewrite the pages in place
python scripts/sync_readme.py --check    # exit 1 if a page is out of date (the tests do this)

A block is the text between `<!-- NAME:start -->` and `<!-- NAME:end -->`. Every page is searched for
every known NAME (spec-reference: from the code, in docs/reference.md; gap-table: docs/demo/gap_table.md,
in README.md; slurm-demo-wall: docs/cluster/slurm_demo.json, in docs/guide.md), so a block may move
between pages; a known block that no page holds is an error.
Blocks of other names (paper-check, faults: tables pasted from a benchmark's output) are left alone.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sweep.docs import reference_markdown  # noqa: E402


def blocks() -> dict[str, str]:
    slurm = json.loads((ROOT / "docs" / "cluster" / "slurm_demo.json").read_text())
    return {
        "spec-reference": reference_markdown(),
        "gap-table": (ROOT / "docs" / "demo" / "gap_table.md").read_text().strip(),
        # `make slurm-demo`'s timing (benchmarks/slurm_demo.py --out, copied to docs/cluster/)
        "slurm-demo-wall": f"{slurm['wall_s']:.0f} s wall ({slurm['job_s']:.0f} s from sbatch to the "
                           f"job's end, {slurm['nodes']} nodes, `{slurm['spec']}`)",
    }


def pages() -> list[Path]:
    """The pages that may hold a block: the front page and every docs page."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def synced(text: str, bodies: dict[str, str]) -> tuple[str, set[str]]:
    """The text with every block of a known name refilled, and the names it holds. A block whose
    start marker ends its line holds lines; one within a line holds words."""
    found = set()
    for name, body in bodies.items():
        pattern = re.compile(rf"(<!-- {name}:start -->(\n?)).*?(<!-- {name}:end -->)", re.S)
        if pattern.search(text):
            found.add(name)
            text = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(2) + m.group(3), text)
    return text, found


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    bodies = blocks()
    found, stale = set(), []
    for page in pages():
        text = page.read_text()
        new, names = synced(text, bodies)
        found |= names
        if new != text:
            stale.append(page)
            if not args.check:
                page.write_text(new)
    missing = sorted(set(bodies) - found)
    if missing:
        raise SystemExit(f"no page (README.md, docs/*.md) has a <!-- NAME:start/end --> block for: "
                         f"{', '.join(missing)}")
    if args.check and stale:
        names = ", ".join(str(s.relative_to(ROOT)) for s in stale)
        print(f"{names}: out of date: run `python scripts/sync_readme.py`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
