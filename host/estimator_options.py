"""The one check of estimator options (constructors, ``make_estimator``, ``-E key=value``, sweeps and config).

The valid keys of an estimator are its constructor's keyword arguments; each known key has a range in
:data:`RULES` (declared once here), any other is checked against the type of its default. :func:`validate`
returns the options converted (a ``params`` prefix or ``"front,back"`` to a list, ``sigma_range`` to a tuple)
or raises a UserError of one line naming the valid keys and ranges for that estimator. Estimator constructors
call it on their own arguments, so an option is accepted or refused the same way wherever it comes from.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import UserError


def _number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _prefixes(v: Any) -> Any:
    """``params``: "all", or a list of name prefixes ("front", "front,back", ["front", "back"])."""
    if isinstance(v, str) and v != "all":
        return [p for p in v.split(",") if p]
    return list(v) if isinstance(v, tuple) else v


MAX_FEATURES = 8192
"""The largest random-feature twin/surrogate: memory grows as features^2 (ridge) and buffer x features."""
MAX_BUFFER = 100_000

Rule = tuple[str, Callable[[Any], bool]]
RULES: dict[str, Rule] = {
    "directions": ("int>=1", lambda v: _int(v) and v >= 1),
    "two_sided": ("true|false", lambda v: isinstance(v, bool)),
    "dist": ("rademacher|gaussian", lambda v: v in ("rademacher", "gaussian")),
    "sigma": ("number>0", lambda v: _number(v) and v > 0),
    "snr": ("number>0", lambda v: _number(v) and v > 0),
    "sigma_range": ("[lo,hi] with 0<lo<=hi", lambda v: isinstance(v, (list, tuple)) and len(v) == 2
                    and all(_number(x) for x in v) and 0 < v[0] <= v[1]),
    "params": ("all, a parameter-name prefix or [prefixes]", lambda v: v == "all" or (
        isinstance(v, list) and len(v) > 0 and all(isinstance(x, str) and x for x in v))),
    "order": ("auto|blocks|interleaved", lambda v: v in ("auto", "blocks", "interleaved")),
    "zero_tolerance": ("number in (0,1]", lambda v: _number(v) and 0 < v <= 1),
    "repeats": ("int>=3", lambda v: _int(v) and v >= 3),
    "window": ("int>=1", lambda v: _int(v) and v >= 1),
    "refit_every": ("int>=1", lambda v: _int(v) and v >= 1),
    "buffer": (f"int in [1, {MAX_BUFFER}] (buffer x features x 8 bytes of memory)",
               lambda v: _int(v) and 1 <= v <= MAX_BUFFER),
    "features": (f"int in [1, {MAX_FEATURES}] (the ridge system alone takes features^2 x 8 bytes: "
                 f"{MAX_FEATURES ** 2 * 8 / 1e9:.1f} GB at {MAX_FEATURES})",
                 lambda v: _int(v) and 1 <= v <= MAX_FEATURES),
    "ridge": ("number>=0", lambda v: _number(v) and v >= 0),
    "width": ("number>0", lambda v: _number(v) and v > 0),
    "probe_rows": ("int>=8", lambda v: _int(v) and v >= 8),
    "active_rows": ("int>=0", lambda v: _int(v) and v >= 0),
    "check_every": ("int>=1", lambda v: _int(v) and v >= 1),
    "gap": ("number in (0,1]", lambda v: _number(v) and 0 < v <= 1),
    "drift_every": ("int>=1", lambda v: _int(v) and v >= 1),
    "drift_rows": ("int>=2", lambda v: _int(v) and v >= 2),
    "max_heldout": ("number>0", lambda v: _number(v) and v > 0),
    "max_drifts": ("int>=1", lambda v: _int(v) and v >= 1),
}
CONVERT: dict[str, Callable[[Any], Any]] = {
    "params": _prefixes, "sigma_range": lambda v: tuple(v) if isinstance(v, list) else v,
}


def _default_rule(default: Any) -> Rule:
    if isinstance(default, bool):
        return RULES["two_sided"]
    if isinstance(default, int):
        return ("int", _int)
    if isinstance(default, float):
        return ("finite number", _number)
    if isinstance(default, str):
        return ("text", lambda v: isinstance(v, str))
    return ("JSON value", lambda v: True)


def rules_for(cls: type) -> dict[str, tuple[str, Callable[[Any], bool], bool]]:
    """key -> (range text, check, None allowed) for the keyword arguments of ``cls``'s constructor."""
    out = {}
    for name, p in inspect.signature(cls).parameters.items():
        if name == "seed" or p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        text, ok = RULES.get(name) or _default_rule(p.default)
        out[name] = (text, ok, p.default is None)
    return out


def describe(name: str, cls: type) -> str:
    """The valid keys and ranges of estimator ``name``, on one line."""
    parts = [f"{k}={text}{' or null (default)' if none_ok else ''}" for k, (text, _, none_ok) in rules_for(cls).items()]
    return f"valid -E keys for {name}: {', '.join(parts) if parts else 'none'}"


def validate(name: str, cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """The options of estimator ``name`` (class ``cls``) converted; a one-line UserError on a bad key/value."""
    rules = rules_for(cls)
    out = {}
    for key, value in options.items():
        if key not in rules:
            raise UserError(f"unknown option {key!r} for the {name} estimator; {describe(name, cls)}")
        text, ok, none_ok = rules[key]
        if value is not None and key in CONVERT:
            value = CONVERT[key](value)
        if not ((value is None and none_ok) or (value is not None and ok(value))):
            raise UserError(f"bad option {key}={value!r} for the {name} estimator (want {text}); "
                            f"{describe(name, cls)}")
        out[key] = value
    return out
