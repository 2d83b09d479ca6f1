"""The house drawn from its code: lines per package, the longest functions, the largest files, import
circles (function-level imports included), product modules only harnesses import, private names
imported across modules, and the `duplicates` pairs where that command is on the PATH.

    python scripts/house.py                 # this tree
    python scripts/house.py --tree DIR      # another checkout (e.g. a `git worktree` of an older commit)
    python scripts/house.py --json OUT.json
    python scripts/house.py --against DIR   # a markdown table: DIR's house (before) beside this one
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

PACKAGES = ("trainables", "sweep", "analysis", "testbed", "benchmarks", "scripts", "tests")
PRODUCT = ("trainables", "sweep", "analysis")
HARNESSES = ("tests", "testbed", "benchmarks", "scripts")
ENTRY = ("__main__", "cli")  # modules a user runs: imported by nobody and still the product


def modules(tree: Path) -> dict[str, Path]:
    """Dotted name -> file of every .py file under the packages (a package's __init__ is its name)."""
    out = {}
    for pkg in PACKAGES:
        for f in sorted((tree / pkg).rglob("*.py")) if (tree / pkg).is_dir() else []:
            parts = list(f.relative_to(tree).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = f
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file (inside functions too), and the
    packages that import runs on the way."""
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(here[: len(here) - node.level + 1]) if node.level else ""
            mod = ".".join(p for p in (base, node.module or "") if p)
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # `import a.b.c` of a function's module: its nearest module
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
            while (t := t.rpartition(".")[0]) and not name.startswith(t + "."):
                if t in known:  # importing a.b.c runs a.b's __init__ first (unless inside a.b)
                    found.add(t)
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def functions(mods: dict[str, Path], tree: Path) -> list[tuple[int, str]]:
    out = []
    for name, path in mods.items():
        if name.startswith("tests"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((node.end_lineno - node.lineno + 1,
                            f"{path.relative_to(tree)}:{node.lineno} {node.name}"))
    return sorted(out, reverse=True)


def private_imports(mods: dict[str, Path], known: set[str]) -> list[str]:
    out = []
    for name, path in mods.items():
        if not name.startswith(PRODUCT):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level or (node.module or "").split(".")[0] in PACKAGES:
                out += [f"{name} imports {node.module or '.'}.{a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    return out


def duplicates(tree: Path) -> int | None:
    if not shutil.which("duplicates"):
        return None
    out = subprocess.run(["duplicates", "--most", "200", "--seconds", "120"], cwd=tree,
                         capture_output=True, text=True).stdout
    first = out.splitlines()[0] if out.strip() else ""
    return 0 if first.startswith("no duplicates") else int(re.match(r"(\d+) pairs?", first).group(1))


def house(tree: Path) -> dict:
    mods = modules(tree)
    known = set(mods)
    graph = {m: imports(m, p, known) for m, p in mods.items()}
    importers = defaultdict(set)
    for m, targets in graph.items():
        for t in targets:
            importers[t].add(m)
    harness_only = sorted(
        m for m in mods if m.startswith("sweep.") and m.rpartition(".")[2] not in ENTRY and importers[m]
        and not any(i.startswith(PRODUCT) for i in importers[m]))
    lines = {pkg: sum(len(p.read_text().splitlines()) for m, p in mods.items() if m.split(".")[0] == pkg)
             for pkg in PACKAGES}
    files = sorted(((len(p.read_text().splitlines()), str(p.relative_to(tree))) for p in mods.values()
                    if not str(p.relative_to(tree)).startswith("tests")), reverse=True)
    code = "\n".join(p.read_text() for m, p in mods.items() if m.startswith((*PRODUCT, "benchmarks")))
    return {
        "lines": lines,
        "longest_functions": functions(mods, tree)[:5],
        "longest_product_functions": [f for f in functions(mods, tree) if f[1].startswith(PRODUCT)][:5],
        "largest_files": files[:5],
        "circles": circles(graph),
        "sweep_modules_only_harnesses_import": harness_only,
        "private_imports": private_imports(mods, known),
        "setattr_or_globals": len(re.findall(r"object\.__setattr__|globals\(\)\[", code)),
        "duplicate_pairs": duplicates(tree),
    }


def compared(before: dict, after: dict) -> str:
    """A markdown table of two houses side by side."""
    rows = ["| | before | after |", "|---|---|---|"]
    rows += [f"| lines in {k}/ | {before['lines'][k]:,} | {after['lines'][k]:,} |" for k in before["lines"]]

    def fn(h: dict, i: int) -> str:
        n, where = h["longest_product_functions"][i]
        path, name = where.split(" ")
        return f"{name} ({path.split(':')[0]}, {n})"

    rows += [f"| longest product function {i + 1} | {fn(before, i)} | {fn(after, i)} |" for i in range(5)]
    rows += [f"| largest file {i + 1} | {before['largest_files'][i][1]} ({before['largest_files'][i][0]}) | "
             f"{after['largest_files'][i][1]} ({after['largest_files'][i][0]}) |" for i in range(5)]

    def circ(h: dict) -> str:
        return "; ".join(" - ".join(c) for c in h["circles"]) or "none"

    rows += [f"| circles | {circ(before)} | {circ(after)} |",
             f"| object.__setattr__, globals()[...] | {before['setattr_or_globals']} | "
             f"{after['setattr_or_globals']} |",
             f"| duplicates pairs | {before['duplicate_pairs']} | {after['duplicate_pairs']} |"]
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--against", type=Path, help="another checkout: print a before/after table")
    args = ap.parse_args()
    h = house(args.tree.resolve())
    if args.against:
        print(compared(house(args.against.resolve()), h))
        return
    print("lines per package: " + ", ".join(f"{k} {v:,}" for k, v in h["lines"].items()))
    print("longest functions: " + "; ".join(f"{f} ({n})" for n, f in h["longest_functions"]))
    print("longest product functions: " + "; ".join(f"{f} ({n})" for n, f in h["longest_product_functions"]))
    print("largest files: " + "; ".join(f"{f} ({n})" for n, f in h["largest_files"]))
    print(f"circles: {h['circles'] or 'none'}")
    print(f"sweep modules only harnesses import: {h['sweep_modules_only_harnesses_import'] or 'none'}")
    print(f"private names imported across product modules: {h['private_imports'] or 'none'}")
    print(f"object.__setattr__ / globals()[...]: {h['setattr_or_globals']}")
    print(f"duplicates pairs: {h['duplicate_pairs']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(h, indent=1) + "\n")


if __name__ == "__main__":
    main()
