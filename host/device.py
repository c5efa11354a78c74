"""The device resolver: from a device URL (or a run's record of its device) to an open device.

The one place that tells a simulator URL from a port, checks either before anything opens, and opens it:

- ``sim://`` or ``sim://?seed=1&model=B&noise_free=1``: the simulated board in process — the firmware's own
  Core behind an :class:`pgt.link.InProcessLink` (options: :mod:`pgt.sim.url`, the one parser of them);
- anything else: a serial port or pyserial URL (``/dev/ttyACM0``, ``COM5``, a pty path, ``socket://HOST:PORT``)
  behind a :class:`pgt.link.SerialLink`.

:func:`check_device_url` refuses, with one line and before anything is opened, every URL that cannot work: a
malformed ``sim:`` URL (``sim:?seed=1``, ``sim://host``), an unknown or bad simulator option, a missing port.
:func:`open_device` returns a handshaken :class:`pgt.client.RingClient`; :func:`reopen` opens the device a run
recorded (``info`` of its checkpoint); :func:`default_device` is what a run uses when it is given none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pgt.client import RingClient
from pgt.errors import UserError
from pgt.link import InProcessLink, Link, SerialLink, sim_options
from pgt.ports import check_port
from pgt.reservoir import Reservoir


def is_sim_url(url: str) -> bool:
    """Does ``url`` name the in-process simulator (scheme ``sim:``, well formed or not)?"""
    return url[:4].lower() == "sim:"


def check_device_url(url: str) -> None:
    """UserError, before anything is opened, for a device URL that cannot work (see the module doc)."""
    if not url.strip():
        raise UserError("the device URL is empty (`pgt devices` lists the serial ports)")
    if is_sim_url(url):
        sim_options(url)
    else:
        check_port(url)


def open_link(url: str, **options: Any) -> Link:
    """A link for ``url`` (checked first): ``sim://...`` in process, anything else through pyserial
    (``options`` go to :class:`pgt.link.SerialLink`)."""
    check_device_url(url)
    if is_sim_url(url):
        return InProcessLink(url)
    return SerialLink(url, **options)


def open_device(url: str, *, out_of_range: str = "refuse", timeout: float = 1.0, link_rate: float = 10_000.0,
                log: Callable[[str], None] | None = None, **link_options: Any) -> RingClient:
    """Open ``url`` and handshake: a :class:`pgt.client.RingClient`. ``link_options`` go to the link
    (:class:`pgt.link.SerialLink`: ``baudrate``, ``retries``, ``reconnect_timeout``, ``wrap``...)."""
    if not is_sim_url(url):
        link_options.setdefault("timeout", timeout)
    link = open_link(url, **link_options)
    try:
        return RingClient(link, out_of_range=out_of_range, timeout=timeout, link_rate=link_rate, log=log)
    except BaseException:
        link.close()
        raise


def default_device(estimator: str = "surrogate", seed: int = 0) -> Reservoir:
    """The device a run uses when none is given: the simulated board through the firmware Core, in process
    (``sim://?seed=N``); for the backprop reference, the noise-free differentiable ring of the same shape."""
    if estimator == "backprop":
        from pgt.sim.reservoirs import reference_ring

        return reference_ring(seed=seed)
    return open_device(f"sim://?seed={seed}")


def reopen(info: dict[str, Any]) -> Reservoir:
    """Reopen the device a run recorded (its ``info``): its URL, or the differentiable reference ring of the
    same seed."""
    url = info.get("url")
    if url:
        return open_device(str(url))
    seed, level = int(info.get("seed", 0)), str(info.get("level", "A"))
    if info.get("kind") == "sim-ring" and "params" in info:  # the noise-free reference ring, in process
        from pgt.sim.reservoirs import RingReservoir
        from pgt.sim.ring import Ring, RingParams

        volts = (float(info["volts_low"]), float(info["volts_high"]))
        return RingReservoir(Ring(RingParams(**info["params"]), seed=seed, level=level), volts=volts)
    raise UserError("this run's device has no URL to reopen: give the device to resume on (--device URL)")
