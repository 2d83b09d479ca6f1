"""Fill README.md's generated blocks: the spec reference (from the code) and the demo's gap table.

python scripts/sync_readme.py            # rewrite README.md in place
python scripts/sync_readme.py --check    # exit 1 if README.md is out of date (the tests do this)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sweep.docs import reference_markdown  # noqa: E402


def blocks() -> dict[str, str]:
    return {
        "spec-reference": reference_markdown(),
        "gap-table": (ROOT / "docs" / "demo" / "gap_table.md").read_text().strip(),
    }


def synced(text: str) -> str:
    for name, body in blocks().items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- {name}:start/end --> block")
        text = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), text)
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    readme = ROOT / "README.md"
    text = readme.read_text()
    new = synced(text)
    if args.check:
        if new != text:
            print("README.md is out of date: run `python scripts/sync_readme.py`", file=sys.stderr)
            return 1
        return 0
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
