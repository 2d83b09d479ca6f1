"""Variational families for the latents, by name; see ``base.Family`` for the contract.

A family registers itself with ``@register``; one in a user's own module is registered when
that module is imported (``import_modules``, which the sweep runs on every Ray worker). What a
family declares (``declared``) is read without torch; its implementation (``get``, ``build``) is
a torch module, imported when first asked for.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..settings import problems, unknown_keys
from .declared import BUILT_IN, Declared, NoOptions

if TYPE_CHECKING:
    from .base import Family

_REGISTERED: dict[str, type] = {}  # name -> implementation: users' families, and built-ins once imported
# the implementation classes, imported from this package on first use
_LAZY = {"Family": "base", "Amortized": "amortized", "Constant": "constant", "CouplingFlow": "flow",
         "Factorized": "factorized", "Flow": "flow", "FullCovariance": "fullcov", "SemiAmortized": "sa_vae"}


def __getattr__(attr: str) -> Any:
    if attr in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[attr]}", __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def names() -> tuple[str, ...]:
    """Every registered family's name: the built-ins, then users' in the order they registered."""
    return tuple(dict.fromkeys([*BUILT_IN, *_REGISTERED]))


def declared(name: str) -> type[Declared]:
    """What family ``name`` declares (``declared.Declared``), without importing torch for a built-in."""
    if isinstance(name, str) and name in _REGISTERED:
        return _REGISTERED[name]
    if isinstance(name, str) and name in BUILT_IN:
        return BUILT_IN[name][0]
    raise ValueError(f"family={name!r} is not one of {', '.join(names())}")


def get(name: str) -> type[Family]:
    """Family ``name``'s implementation, a ``base.Family`` (torch)."""
    declared(name)  # a clear error for an unknown name
    if name not in _REGISTERED:
        module, cls = BUILT_IN[name][1].split(":")
        _REGISTERED[name] = getattr(importlib.import_module(f".{module}", __name__), cls)
    return _REGISTERED[name]


class _Families(Mapping):
    """FAMILIES: name -> implementation class, every registered family (the built-ins imported as
    they are looked up); membership and iteration read the names alone."""

    def __getitem__(self, name: str) -> type[Family]:
        try:
            return get(name)
        except ValueError:
            raise KeyError(name) from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in names()

    def __iter__(self) -> Iterator[str]:
        return iter(names())

    def __len__(self) -> int:
        return len(names())


FAMILIES = _Families()


def register(cls: type[Family]) -> type[Family]:
    """Class decorator: make ``cls`` available by ``cls.name`` to configs, specs and the CLI."""
    from .base import Family

    if not (isinstance(cls, type) and issubclass(cls, Family)):
        raise TypeError(f"{cls!r} is not a subclass of trainables.families.Family")
    where = (cls.__module__, cls.__qualname__)
    if cls.name in _REGISTERED:
        prev = _REGISTERED[cls.name]
        taken = (prev.__module__, prev.__qualname__)
    elif cls.name in BUILT_IN:
        module, qualname = BUILT_IN[cls.name][1].split(":")
        taken = (f"{__name__}.{module}", qualname)
    else:
        taken = where
    if taken != where:
        raise ValueError(f"family name {cls.name!r} is taken by {taken[0]}.{taken[1]}")
    _REGISTERED[cls.name] = cls
    return cls


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
    cls = declared(name)
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
    import torch

    with torch.device("meta"):
        return build(cfg, 1, 1)


def build(cfg, n_data: int, data_dim: int) -> Family:
    """The family ``cfg.family`` sized for n_data points of dimension data_dim, its spread setting applied."""
    from .base import spread_factor

    family = get(cfg.family).from_config(cfg, n_data, data_dim)
    family.spread_factor = spread_factor(cfg)
    return family


__all__ = [
    "FAMILIES", "Amortized", "Constant", "CouplingFlow", "Declared", "Factorized", "Family", "Flow",
    "FullCovariance", "NoOptions", "SemiAmortized", "build", "declared", "get", "import_modules", "names",
    "probe", "register", "resolve_options",
]
