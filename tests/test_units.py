"""The one unit scale (pgt.units.UnitScale): codes <-> mA and V from a hello reply, used alike by the client and
the simulated board; a calibration that cannot be is refused at the handshake."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from pgt.client import RingClient
from pgt.errors import DeviceError
from pgt.link import InProcessLink
from pgt.sim.boards import board_config, ring_params
from pgt.units import UnitScale

HELLO = {"dac_mA_per_code": 0.025, "dac_mA_offset": -1.0, "adc_V_per_code": 3.3 / 65535, "adc_V_offset": 0.1,
         "limit_lo": [0, 100], "limit_hi": [2000, 4095]}


def test_codes_and_units_round_trip() -> None:
    u = UnitScale.from_hello(HELLO)
    codes = np.arange(0, 4096, 7)
    assert np.array_equal(u.mA_to_codes(u.codes_to_mA(codes)), codes)
    assert u.codes_to_mA([0, 4000]).tolist() == [-1.0, 99.0]
    assert u.mA_to_codes([-1.0124, -0.9874]).tolist() == [0.0, 1.0]  # nearest code
    assert u.codes_to_volts([0, 65535]).tolist() == pytest.approx([0.1, 3.4])
    assert (u.volts_low, u.volts_high) == pytest.approx((0.1, 3.4))
    assert u.volts_to_code_position(3.4) == pytest.approx(65535)
    assert u.limit_low_mA.tolist() == [-1.0, 1.5] and u.limit_high_mA.tolist() == [49.0, 101.375]
    assert u.drive_range_mA == (-1.0, 101.375)
    flipped = UnitScale.from_hello({**HELLO, "dac_mA_per_code": -0.025})  # an inverting current stage
    assert flipped.drive_range_mA == (-1.0 - 0.025 * 4095, -1.0)


@pytest.mark.parametrize("change, why", [
    ({"dac_mA_per_code": math.inf}, "dac_mA_per_code must be a finite number"),
    ({"adc_V_offset": math.nan}, "adc_V_offset must be a finite number"),
    ({"adc_V_per_code": 0}, "must not be zero"),
    ({"limit_hi": [1]}, "one code per drive channel"),
    ({"limit_lo": None}, "no limit_lo"),
    ({"adc_V_offset": "x"}, "not numbers"),
])
def test_a_calibration_that_cannot_be_is_refused(change: dict[str, Any], why: str) -> None:
    hello = {k: v for k, v in {**HELLO, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=why):
        UnitScale.from_hello(hello)


def test_the_client_refuses_a_hello_whose_calibration_cannot_be() -> None:
    class Link(InProcessLink):
        def request(self, msg: Any, timeout: float | None = None, retries: int | None = None,
                    reconnect: bool = True) -> dict:
            reply = super().request(msg, timeout, retries, reconnect)
            return {**reply, "dac_mA_per_code": math.inf} if msg["op"] == "hello" else reply

    with pytest.raises(DeviceError, match="calibration that cannot be: dac_mA_per_code must be a finite number"):
        RingClient(Link("sim://"))


def test_the_client_and_the_simulated_board_share_one_scale() -> None:
    """What the host reads from hello is what the simulated board drives its ring with: the ring's drive range is
    the client's widest safe range, and the client reports the ADC's rails."""
    for url, board in (("sim://", None), ("sim://?board=wide", "wide"), ("sim://?board=esp32", "esp32")):
        client = RingClient(InProcessLink(url))
        hal: Any = client.link.core.hal  # type: ignore[attr-defined]
        assert client.units == hal.units == UnitScale.from_hello(board_config(board))
        params = ring_params(board_config(board))
        assert client.units.drive_range_mA == (params.drive_low_mA, params.drive_high_mA)
        assert (client.info["volts_low"], client.info["volts_high"]) == (hal.adc.volts_low, hal.adc.volts_high)
