from __future__ import annotations

import numpy as np
import pytest

from pgt.errors import UserError
from pgt.reservoir import Reservoir, from_callable


def test_callable_is_a_counting_reservoir() -> None:
    w = np.arange(6.0).reshape(3, 2)
    res = from_callable(lambda x: np.tanh(x @ w), 3, 2, drive_low=-1.0, drive_high=1.0)
    assert isinstance(res, Reservoir)
    y = res.forward(np.ones((5, 3)))
    assert y.shape == (5, 2) and np.allclose(y, np.tanh(np.ones((5, 3)) @ w))
    res.forward(np.zeros((2, 3)))
    assert res.queries == 7
    assert res.drive_low.shape == (3,) and res.drive_high[0] == 1.0


def test_bad_input_and_bad_callable_are_user_errors() -> None:
    res = from_callable(lambda x: x[:, :1], 2, 2, drive_low=0.0, drive_high=1.0)
    with pytest.raises(UserError, match="shape"):
        res.forward(np.ones((4, 3)))
    with pytest.raises(UserError, match="NaN"):
        res.forward(np.array([[np.nan, 0.0]]))
    with pytest.raises(UserError, match="returned shape"):
        res.forward(np.ones((4, 2)))
    assert res.queries == 0


def test_from_callable_requires_a_safe_drive_range() -> None:
    with pytest.raises(UserError, match="drive_low= and drive_high="):
        from_callable(lambda x: x, 2, 2)
    with pytest.raises(UserError, match="finite with drive_low < drive_high"):
        from_callable(lambda x: x, 2, 2, drive_low=1.0, drive_high=0.0)
    with pytest.raises(UserError, match="finite"):
        from_callable(lambda x: x, 2, 2, drive_low=-np.inf, drive_high=1.0)


def test_training_a_callable_drives_only_inside_its_range_and_warns_nothing() -> None:
    """A box safe on [0, 1] only: every row the trainer sends stays inside, and numpy stays quiet."""
    import warnings

    from pgt.trainer import fit

    seen: list[np.ndarray] = []
    w = np.random.default_rng(0).normal(size=(2, 3))

    def box(u: np.ndarray) -> np.ndarray:
        seen.append(u)
        return np.tanh(u @ w)

    res = from_callable(box, 2, 3, drive_low=0.0, drive_high=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for est in ("surrogate", "node"):
            fit(res, estimator=est, steps=3, eval_every=3, val_size=8)
    rows = np.concatenate(seen)
    assert rows.min() >= 0.0 and rows.max() <= 1.0
