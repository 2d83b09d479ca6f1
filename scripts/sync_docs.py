"""Fill every number and generated table the pages quote, from the committed artifacts and the code.

python scripts/sync_docs.py            # rewrite README.md and docs/*.md in place
python scripts/sync_docs.py --check    # exit 1, listing each difference, if a page is out of date
python scripts/sync_docs.py --list     # every fact: its key and text

The facts come from scripts/docfacts/ (one module per source: the demo's and the studies' tables,
the benchmarks' JSON, the code's own counts). A page holds a fact in one of two forms:

    <!-- KEY:start -->            a block of lines (a table), or words within a line
    ...
    <!-- KEY:end -->
    <!-- =KEY -->TEXT<!-- / -->   inline: a number in a sentence

A key no fact has is an error, as is a block fact that no page holds; rerunning a study or a
benchmark, then this script, updates every page that quotes it.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from docfacts import collect  # noqa: E402

BLOCK = re.compile(r"<!-- ([\w.\-]+):start -->(\n?)(.*?)(\n?)<!-- \1:end -->", re.S)
INLINE = re.compile(r"<!-- =([\w.\-]+) -->(.*?)<!-- / -->", re.S)


def pages() -> list[Path]:
    """The pages that may quote a fact: the front page and every docs page."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def synced(text: str, facts: dict[str, str], skip: set[str] = frozenset()
           ) -> tuple[str, list[tuple[str, str, str]], set[str]]:
    """The text with every fact refilled; the differences (key, page's text, fact's text); the keys
    it holds. A key no fact has raises KeyError, but for the modules in ``skip`` (their artifacts
    are missing): those are left as they are."""
    diffs: list[tuple[str, str, str]] = []
    used: set[str] = set()

    def fill(key: str, old: str) -> str:
        if key not in facts and key.split(".")[0] in skip:
            return old
        if key not in facts:
            raise KeyError(key)
        used.add(key)
        if old != facts[key]:
            diffs.append((key, old, facts[key]))
        return facts[key]

    def block(m: re.Match) -> str:
        body = fill(m[1], m[3])
        gap = "\n" if "\n" in body else ""  # a block of lines on lines of its own; words within the line
        return f"<!-- {m[1]}:start -->{gap or m[2]}{body}{gap or m[4]}<!-- {m[1]}:end -->"

    text = BLOCK.sub(block, text)
    text = INLINE.sub(lambda m: f"<!-- ={m[1]} -->{fill(m[1], m[2])}<!-- / -->", text)
    return text, diffs, used


def _short(s: str) -> str:
    s = s.strip()
    return s if "\n" not in s and len(s) < 80 else s.splitlines()[0][:60] + " ..."


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a page differs")
    p.add_argument("--list", action="store_true", help="print every fact's key and text")
    args = p.parse_args()
    failed: dict[str, str] = {}
    facts = collect(failed=failed)
    if args.list:
        for key, text in facts.items():
            print(f"{key}: {_short(text)}")
        return 0
    problems, used = [], set()
    for page in pages():
        rel = page.relative_to(ROOT)
        text = page.read_text()
        try:
            new, diffs, keys = synced(text, facts, set(failed))
        except KeyError as e:
            raise SystemExit(f"{rel}: no fact named {e.args[0]!r} "
                             "(python scripts/sync_docs.py --list)") from None
        used |= keys
        problems += [f"{rel}: {key}: the page says {_short(old)!r}, its source gives {_short(want)!r}"
                     for key, old, want in diffs]
        if new != text and not args.check:
            page.write_text(new)
    unused = sorted(k for k, v in facts.items() if "\n" in v and k not in used)
    if unused:
        raise SystemExit(f"no page holds the block(s) {', '.join(unused)} (<!-- KEY:start/end -->)")
    problems += [f"docfacts.{name}: its artifact is missing ({why}): its facts were not filled"
                 for name, why in failed.items()]
    if failed:
        print("\n".join(problems[-len(failed):]), file=sys.stderr)
        return 1
    if args.check and problems:
        print("\n".join(problems), file=sys.stderr)
        print(f"{len(problems)} out of date: run `python scripts/sync_docs.py`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
