"""Choosing the final iterate: the few best by the validation subsample, measured again on the rest of the set.

A small validation subsample (``val_size``) is cheap to evaluate every few steps but picks noisy iterates
(on unseen devices the chosen iterate sat 1-4 points below the best one). The trainer keeps the
:data:`CANDIDATES` best iterates by subsample accuracy; at the run's end each is evaluated on the validation
samples outside the subsample (counted as evaluation rows), and the one with the best accuracy on the whole
validation set becomes the final iterate, the one the test set measures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

CANDIDATES = 2


def keep(candidates: list[dict[str, Any]], step: int, val_acc: float, params: dict[str, np.ndarray],
         n: int = CANDIDATES) -> list[dict[str, Any]]:
    """The ``n`` best iterates by subsample accuracy (ties: the later step), with this one offered."""
    if any(c["step"] == step for c in candidates):
        return candidates
    mine = {"step": step, "val_acc": val_acc, "params": {k: v.copy() for k, v in params.items()}}
    return sorted(candidates + [mine], key=lambda c: (-c["val_acc"], -c["step"]))[:n]


def whole_set(sub_acc: float, n_sub: int, rest_acc: float, n_rest: int) -> float:
    """Accuracy on the whole validation set from the subsample's and the rest's."""
    return (sub_acc * n_sub + rest_acc * n_rest) / max(n_sub + n_rest, 1)


def choose(candidates: list[dict[str, Any]], n_sub: int, n_rest: int,
           rest_accuracy: Callable[[dict[str, np.ndarray]], float]) -> tuple[float, dict[str, Any], str]:
    """The candidate with the best whole-set accuracy (``rest_accuracy(params)`` measures the rest): its
    accuracy, the candidate, and a line saying what was chosen among what."""
    scored = [(whole_set(c["val_acc"], n_sub, rest_accuracy(c["params"]), n_rest), c) for c in candidates]
    acc, best = max(scored, key=lambda sc: (sc[0], sc[1]["step"]))
    listed = ", ".join(f"step {c['step']} {100 * a:.1f}%" for a, c in scored)
    return acc, best, (f"final iterate: step {best['step']}, {100 * acc:.1f}% on the whole validation set "
                       f"(candidates: {listed})")
