"""The facts the docs quote, each computed from a committed artifact or from the code.

Every module of this package holding a ``facts()`` function contributes: it returns ``{key: text}``,
its keys starting with the module's name (``demo.k64.neg_elbo``), each text exactly what a page
shows. ``scripts/sync_docs.py`` puts them into the pages and ``--check`` fails where a page differs.
A text with a newline is a block (a table); any other is inline.
"""

from __future__ import annotations

import importlib
import pkgutil

MODULES = [m.name for m in pkgutil.iter_modules(__path__) if m.name != "artifacts"]


def collect(only: set[str] | None = None, failed: dict[str, str] | None = None) -> dict[str, str]:
    """All facts, or those of the modules named in ``only``; a key given twice is an error. With
    ``failed`` (a dict), a module whose artifact is missing is recorded there (module name: the
    error) and the others still give their facts; without it the error is raised."""
    out: dict[str, str] = {}
    for name in MODULES:
        if only is not None and name not in only:
            continue
        module = importlib.import_module(f"{__name__}.{name}")
        try:
            given = module.facts()
        except FileNotFoundError as e:
            if failed is None:
                raise
            failed[name] = str(e)
            continue
        for key, text in given.items():
            if not key.startswith(f"{name}."):
                raise ValueError(f"docfacts.{name}: key {key!r} must start with {name!r}.")
            if key in out:
                raise ValueError(f"docfacts: key {key!r} given twice")
            out[key] = text
    return out
