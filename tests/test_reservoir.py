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
    res = from_callable(lambda x: x[:, :1], 2, 2)
    with pytest.raises(UserError, match="shape"):
        res.forward(np.ones((4, 3)))
    with pytest.raises(UserError, match="NaN"):
        res.forward(np.array([[np.nan, 0.0]]))
    with pytest.raises(UserError, match="returned shape"):
        res.forward(np.ones((4, 2)))
    assert res.queries == 0
