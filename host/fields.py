"""Declared fields: a value's kind and bounds, written once and checked the same way by constructors, the CLI
(as argparse types), configs and sweeps, with messages that name the field and its range."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import UserError, shown


@dataclass(frozen=True)
class Field:
    """One field's declaration: ``kind`` (int, float, str, dict), bounds (inclusive), choices, None allowed."""

    kind: str
    low: float | None = None
    high: float | None = None
    choices: Callable[[], Sequence[str]] | None = None
    optional: bool = False
    none_text: str = ""
    """What None means, for messages (e.g. "chosen at calibration")."""

    def describe(self, with_none: bool = True) -> str:
        if self.choices is not None:
            text = "one of " + ", ".join(self.choices())
        elif self.kind == "float":
            text = "a finite number > 0" if self.low == 0 else "a finite number"
        elif self.kind == "int":
            text = f"an integer from {self.low:,.0f} to {self.high:,.0f}" if self.high is not None else \
                f"an integer >= {self.low:,.0f}"
        else:
            text = f"a {self.kind}"
        return text + (f" or null ({self.none_text})" if self.optional and with_none else "")

    def check(self, name: str, value: Any) -> Any:
        """``value`` converted (ints accepted as floats), or UserError naming ``name`` and the range."""
        if value is None and self.optional:
            return None
        ok = value is not None and not isinstance(value, bool)
        if self.kind == "int":
            ok = ok and isinstance(value, int) and (self.low is None or value >= self.low) and (
                self.high is None or value <= self.high)
        elif self.kind == "float":
            ok = ok and isinstance(value, (int, float)) and math.isfinite(value) and (
                self.low is None or value > self.low)
            value = float(value) if ok else value
        elif self.kind == "str":
            ok = ok and isinstance(value, str) and (self.choices is None or value in self.choices())
        elif self.kind == "dict":
            ok = ok and isinstance(value, dict) and all(isinstance(k, str) for k in value)
        if not ok:
            raise UserError(f"{name} must be {self.describe()}, got {short(value)}")
        return value

    def argtype(self, flag: str) -> Callable[[str], Any]:
        """An argparse ``type`` for this field: parses the flag's text and checks it (errors name the range)."""
        def parse(text: str) -> Any:
            try:
                value: Any = {"int": int, "float": float}.get(self.kind, str)(text)
            except ValueError:
                value = text
            try:
                return self.check(flag, value)
            except UserError:
                raise argparse.ArgumentTypeError(f"must be {self.describe(with_none=False)}, got {short(text)}") \
                    from None
        parse.__name__ = flag  # argparse names the type in "invalid <name> value" messages
        return parse


def short(value: Any, limit: int = 60) -> str:
    """``value`` as a message shows user input (:func:`pgt.errors.shown`: escaped one way, cut when long)."""
    return f"'{shown(value, limit)}'" if isinstance(value, str) else shown(repr(value), limit)
