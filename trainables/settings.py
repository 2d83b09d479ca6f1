"""Settings as frozen dataclasses whose fields carry their help, accepted values and check.

    @dataclass(frozen=True)
    class Options:
        init: str = setting("prior", "where q_n starts", choices=("prior", "random"))
        layers: int = setting(2, "flow layers", check=positive_int)

``problems(obj)`` lists every bad value at once, each naming the value and what is accepted;
the command lines and the generated spec reference (docs/reference.md) print each field's help
and default.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], "str | None"]


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    choices: tuple | None = None,
    check: Check | None = None,
    factory: Any = dataclasses.MISSING,
    sweep: str = "axis",
) -> Any:
    """A dataclass field with its help, and either the values it accepts or a check; ``sweep``: for a
    TrialConfig field, where a sweep spec sets it (trainables/config.py lists the roles)."""
    return dataclasses.field(
        default=default,
        default_factory=factory,
        metadata={"help": help, "choices": choices, "check": check, "sweep": sweep},
    )


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def positive_int(v: Any) -> str | None:
    return None if is_int(v) and v > 0 else "must be a positive integer"


def non_negative_int(v: Any) -> str | None:
    return None if is_int(v) and v >= 0 else "must be a non-negative integer"


def positive_number(v: Any) -> str | None:
    return None if is_num(v) and 0 < v < math.inf else "must be a positive finite number"


def unit_interval(v: Any) -> str | None:
    return None if is_num(v) and 0 <= v <= 1 else "must be a number in [0, 1]"


def optional(check: Check) -> Check:
    """``check``, or unset (None)."""
    def optional_check(v: Any) -> str | None:
        why = None if v is None else check(v)
        return why and f"{why}, or unset"
    return optional_check


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def problems(obj: Any, prefix: str = "") -> list[str]:
    """Every field of ``obj`` whose value its choices or check refuse, as 'name=value ...'."""
    out = []
    for f in dataclasses.fields(obj):
        v, choices, check = getattr(obj, f.name), f.metadata.get("choices"), f.metadata.get("check")
        if choices is not None and v not in choices:
            out.append(f"{prefix}{f.name}={v!r} is not one of {', '.join(map(str, choices))}")
        elif check is not None and (why := check(v)):
            out.append(f"{prefix}{f.name}={v!r} {why}")
    return out


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def unknown_keys(cls: type, given: dict[str, Any], what: str) -> str | None:
    """A one-line refusal of the keys of ``given`` that ``cls`` has no field for, or None."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(given) - set(names))
    if not unknown:
        return None
    return f"unknown {what} {unknown}; accepted: {', '.join(names) or 'none'}"


def distinct_list(accepted: tuple | None = None, least: int | None = None) -> Check:
    """A check: a non-empty list without repeats, of names from ``accepted`` or integers >= least."""
    what = f"from: {', '.join(map(str, accepted))}" if accepted else f"integers >= {least}"

    def ok(x: Any) -> bool:
        return x in accepted if accepted else is_int(x) and x >= least

    def check(v: Any) -> str | None:
        if not isinstance(v, (list, tuple)) or not v:
            return f"must be a non-empty list of {what}"
        if bad := [x for x in v if not ok(x)]:
            return f"has {bad}, not {what}"
        return "lists an entry twice" if len(set(map(repr, v))) != len(v) else None

    return check


def nested(cls: type, given: Any, key: str, out: list[str]) -> Any:
    """``given`` (a mapping from YAML) as the settings dataclass ``cls``, its problems added to ``out``."""
    if isinstance(given, cls):
        return given
    if not isinstance(given, dict):
        names = ", ".join(f.name for f in dataclasses.fields(cls))
        out.append(f"{key}={given!r} must be a mapping of {names}")
        return cls()
    if bad := unknown_keys(cls, given, f"{key} key(s)"):
        out.append(f"{key}: {bad}")
        return cls()
    obj = cls(**given)
    out += problems(obj, prefix=f"{key}.")
    return obj


def keyword_settings(func: Callable, skip: int, given: Any, key: str, out: list[str],
                     extra: dict[str, Any] | None = None) -> dict | None:
    """A mapping of ``func``'s keyword settings (its parameters after the first ``skip``, and the
    caller's own ``extra`` ones with their defaults), each of the type of its default; false or None:
    off (None); true: all defaults ({})."""
    if given is None or given is False:
        return None
    import inspect

    params = {n: p.default for n, p in list(inspect.signature(func).parameters.items())[skip:]}
    params |= extra or {}
    given = {} if given is True else given
    if not isinstance(given, dict) or set(given) - set(params):
        out.append(f"{key}={given!r} must be true, false, or a mapping of {', '.join(params)}")
        return None
    for name, v in given.items():
        want = params[name]
        if is_num(want):  # an integer setting whose default is 0 (a seed) may be 0; others positive
            check = non_negative_int if is_int(want) and want == 0 else positive_int if is_int(want) else (
                positive_number)
            why = check(v)
        elif isinstance(want, tuple):
            why = None if isinstance(v, list) and all(is_int(s) and s >= 0 for s in v) else (
                "must be a list of integers >= 0")
        else:
            why = None if v is None or isinstance(v, dict) else "must be a mapping"
        if why:
            out.append(f"{key}.{name}={v!r} {why}")
    return dict(given)

