"""Reading the committed artifacts the docs quote, and writing numbers as the pages show them."""

from __future__ import annotations

import json
import math
import re
from functools import cache
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


@cache
def load_json(rel: str) -> dict:
    """A JSON artifact, by its path relative to the repository root."""
    return json.loads((ROOT / rel).read_text())


@cache
def md_table(rel: str, index: str | None = None) -> pd.DataFrame:
    """A markdown table an analysis or benchmark wrote (the first table of the file), as strings,
    indexed by column ``index`` if given. Cells are stripped; nothing is converted."""
    lines = [ln.strip() for ln in (ROOT / rel).read_text().splitlines()]
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    rows = []
    for ln in lines[start:]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip("|").split("|")])
    head, body = rows[0], [r for r in rows[2:]]
    frame = pd.DataFrame(body, columns=head)
    return frame.set_index(index) if index else frame


@cache
def md_sections(rel: str, index: str = "variant") -> dict[str, pd.DataFrame]:
    """The tables of a file that writes several, each under a bold title (`gap_by_AXIS_table.md`:
    '**amortization gap, training images (nats)**: ...'), by title, indexed by column ``index``."""
    out, title, rows = {}, None, []

    def close():
        if title is not None and rows:
            out[title] = pd.DataFrame(rows[2:], columns=rows[0]).set_index(index)

    for ln in (ROOT / rel).read_text().splitlines():
        if ln.startswith("**"):
            close()
            title, rows = ln[2:ln.index("**", 2)], []
        elif ln.startswith("|"):
            rows.append([c.strip() for c in ln.strip().strip("|").split("|")])
    close()
    return out


@cache
def csv_table(rel: str) -> pd.DataFrame:
    return pd.read_csv(ROOT / rel)


PM = re.compile(r"^\s*(-?[\d.,]+)\s*±\s*([\d.,]+)\s*$")


def pm(cell: str) -> tuple[float, float]:
    """'331.2 ± 6.7' -> (331.2, 6.7)."""
    m = PM.match(cell)
    if not m:
        raise ValueError(f"not 'mean ± error': {cell!r}")
    return float(m.group(1).replace(",", "")), float(m.group(2).replace(",", ""))


def num(cell: str) -> float:
    """A table cell's number: '1,009 MB' -> 1009.0, '1.86x' -> 1.86, '35 (3/3)' -> 35.0."""
    m = re.match(r"^\s*(-?[\d,]*\.?\d+)", cell)
    if not m:
        raise ValueError(f"no number in {cell!r}")
    return float(m.group(1).replace(",", ""))


def fmt(x: float, digits: int = 0, comma: bool = True) -> str:
    """A number as prose shows it: fixed digits, thousands separated by commas."""
    if isinstance(x, float) and math.isnan(x):
        return "-"
    return f"{x:,.{digits}f}" if comma else f"{x:.{digits}f}"


def sig(x: float, figures: int = 2) -> str:
    """``figures`` significant figures, no exponent: 0.0734 -> '0.073', 13.6 -> '14'."""
    if x == 0:
        return "0"
    digits = max(0, figures - 1 - math.floor(math.log10(abs(x))))
    return fmt(round(x, digits), digits)


def minutes(seconds: float) -> str:
    """'14 minutes', '1 minute', or under 2 minutes '95 s'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{round(seconds / 60):.0f} minutes"


def span(values, show) -> str:
    """'lo-hi' over ``values``, each written by ``show``, or one value where the two agree."""
    lo, hi = show(min(values)), show(max(values))
    return lo if lo == hi else f"{lo}-{hi}"


def and_list(items) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def width(variant: str) -> int | None:
    """The encoder width of a variant label ('k=64', 'flow k=64'), None without one."""
    m = re.search(r"k=(\d+)$", variant)
    return int(m.group(1)) if m else None


def from_width(variants, ok) -> int | None:
    """The narrowest width w such that every variant of width w or more is ``ok``; None if none is."""
    best = None
    for v in sorted((v for v in variants if width(v) is not None), key=width, reverse=True):
        if not ok(v):
            break
        best = width(v)
    return best


_SHARES = {"half": 1 / 2, "a third": 1 / 3, "a quarter": 1 / 4, "a fifth": 1 / 5, "a sixth": 1 / 6,
           "a seventh": 1 / 7, "an eighth": 1 / 8, "a tenth": 1 / 10, "two thirds": 2 / 3,
           "three quarters": 3 / 4}


def share(x: float) -> str:
    """A fraction in words, the nearest of the plain ones (on a log scale): 0.198 -> 'a fifth'."""
    if x <= 0:
        raise ValueError(f"share of {x}: not a positive fraction")
    return min(_SHARES, key=lambda w: abs(math.log(x / _SHARES[w])))


@cache
def spec(name: str):
    """A shipped spec (sweep/specs/NAME.yaml), parsed as a sweep reads it."""
    from sweep.specfile import load_spec

    return load_spec(ROOT / "sweep" / "specs" / f"{name}.yaml")
