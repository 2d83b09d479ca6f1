"""docs/extending.md's Layout, drawn from the tree: every folder of code with each file in it and the
first sentence of what the file says it is (a module's docstring, a script's or a manifest's opening
comment), so the page lists a new module the day it is added."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOPS = ("trainables", "sweep", "analysis", "testbed", "cluster", "benchmarks", "scripts")
KINDS = (".py", ".sh", ".sbatch", ".yaml", ".ipynb", ".md", ".csv")
SKIP = ("__init__.py", "__main__.py")


def first_sentence(text: str) -> str:
    """The first sentence of a paragraph of prose, on one line."""
    words = " ".join(text.split("\n\n")[0].split())
    m = re.search(r"(?<![ .]\w)(?<!e\.g)(?<!i\.e)(?<! al)\.(\s|$)", words)
    return words[: m.start() + 1] if m else words


def opening_comment(path: Path) -> str:
    """A script's or manifest's first comment paragraph (after a #! line)."""
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("#!"):
            continue
        if not line.startswith("#") or line.strip() == "#":
            if lines:
                break
            continue
        lines.append(line.lstrip("# "))
    return "\n".join(lines)


def what(path: Path) -> str:
    if path.suffix == ".py":
        doc = ast.get_docstring(ast.parse(path.read_text()))
    elif path.suffix in (".sh", ".sbatch", ".yaml"):
        doc = opening_comment(path)
    elif path.suffix == ".md":
        doc = re.sub(r"^#+\s*", "", path.read_text().strip()).split("\n")[0]
    else:
        return ""
    return first_sentence(doc or "")


def folder(name: str) -> list[str]:
    d = ROOT / name
    init = d / "__init__.py"
    head = f"- **`{name}/`**" + (f": {first_sentence(ast.get_docstring(ast.parse(init.read_text())))}"
                                 if init.exists() else "")
    rows = [head]
    for path in sorted(p for p in d.iterdir() if p.suffix in KINDS and p.name not in SKIP):
        text = what(path)
        rows.append(f"  - `{path.name}`" + (f": {text}" if text else ""))
    return rows


def folders() -> list[str]:
    """Every folder under TOPS with a file of KINDS in it, each top before its subfolders."""
    out = []
    for top in TOPS:
        for d in sorted([ROOT / top, *(ROOT / top).rglob("*")]):
            if d.is_dir() and "__pycache__" not in d.parts and any(
                    p.suffix in KINDS and p.name not in SKIP for p in d.iterdir()):
                out.append(str(d.relative_to(ROOT)))
    return out


def facts() -> dict[str, str]:
    return {"layout.tree": "\n".join(row for name in folders() for row in folder(name))}
