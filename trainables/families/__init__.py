"""Variational families for the latents, by name; see ``base.Family`` for the contract.

A family registers itself with ``@register``; one in a user's own module is registered when
that module is imported (``import_modules``, which the sweep runs on every Ray worker).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import torch

from ..settings import problems, unknown_keys
from .amortized import Amortized
from .base import Family, NoOptions, spread_factor
from .constant import Constant
from .factorized import Factorized
from .flow import CouplingFlow, Flow
from .fullcov import FullCovariance
from .sa_vae import SemiAmortized

FAMILIES: dict[str, type[Family]] = {}


def register(cls: type[Family]) -> type[Family]:
    """Class decorator: make ``cls`` available by ``cls.name`` to configs, specs and the CLI."""
    if not (isinstance(cls, type) and issubclass(cls, Family)):
        raise TypeError(f"{cls!r} is not a subclass of trainables.families.Family")
    prev = FAMILIES.get(cls.name)
    if prev is not None and (prev.__module__, prev.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"family name {cls.name!r} is taken by {prev.__module__}.{prev.__qualname__}")
    FAMILIES[cls.name] = cls
    return cls


for _cls in (Amortized, Factorized, Constant, FullCovariance, SemiAmortized, Flow):
    register(_cls)


def get(name: str) -> type[Family]:
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"family={name!r} is not one of {', '.join(FAMILIES)}") from None


def import_modules(modules: list[str] | tuple[str, ...]) -> None:
    """Import users' modules that register families: a module name (on the path), or a .py file's
    path (absolute, or relative to here); a one-line error names one that cannot be imported."""
    for mod in modules:
        try:
            if not isinstance(mod, str):
                raise ImportError("not a module name or a file path")
            if mod.endswith(".py"):
                _import_file(Path(mod).expanduser().resolve())
            else:
                importlib.import_module(mod)
        except Exception as e:  # ImportError, or whatever the module itself raised
            raise ValueError(f"family module {mod!r} cannot be imported: {type(e).__name__}: {e}") from None


def _import_file(path: Path) -> None:
    name = f"family_module_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    if name in sys.modules:  # once per process, as an import by name
        return
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or not path.is_file():
        raise ImportError(f"no such file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def resolve_options(name: str, given: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the family's options with defaults filled in, problems with the given ones)."""
    cls = FAMILIES[name]
    if not isinstance(given, dict):
        return {}, [f"family_options={given!r} must be a mapping of {name}'s settings"]
    bad = unknown_keys(cls.Options, given, f"{name} option(s)")
    if bad:
        return {}, [f"family_options: {bad}"]
    opts = cls.Options(**given)
    return dataclasses.asdict(opts), problems(opts, prefix="family_options.")


def probe(cfg) -> Family:
    """The family ``cfg`` asks for, with its options, built on the meta device (no memory, no data):
    what it can do (``refines``, ...) is read off an instance, as the trial's own family reads."""
    with torch.device("meta"):
        return build(cfg, 1, 1)


def build(cfg, n_data: int, data_dim: int) -> Family:
    """The family ``cfg.family`` sized for n_data points of dimension data_dim, its spread setting applied."""
    family = get(cfg.family).from_config(cfg, n_data, data_dim)
    family.spread_factor = spread_factor(cfg)
    return family


__all__ = [
    "FAMILIES", "Amortized", "Constant", "CouplingFlow", "Factorized", "Family", "Flow", "FullCovariance",
    "NoOptions",
    "SemiAmortized", "build", "get", "import_modules", "probe", "register", "resolve_options",
]
