"""A fault-injecting transport between the host's link and a (simulated) device, for tests and benches.

:class:`FaultyTransport` wraps a :class:`pgt.ports.Transport` (pass ``wrap=faulty(...)`` to
:class:`~pgt.link.SerialLink`). It works on whole frames in both directions — the link writes one frame per
``write``; the device's byte stream is cut at frame boundaries by reading the (clean) headers — and on bytes:

- ``drop``: the frame is lost; ``corrupt``: 1..3 of its bytes are changed; ``truncate``: a run of its bytes is
  lost; ``duplicate``: it arrives twice; ``garbage``: junk bytes arrive before it (printable or high bytes,
  never the REPL control bytes 0x03/0x04 — line noise that types Ctrl-C/Ctrl-D is a separate hazard);
  ``delay``: it (and everything behind it: a serial line is FIFO) is held back ``delay_s``.
- ``byte_error_rate``: every byte is changed independently with this probability (note: at 1e-2 almost no
  frame of several kB survives; per-frame ``corrupt`` is the rate that a long run can live with).
- ``reset``: with this probability per request frame the device is reset (``reset_device`` callback, e.g. a
  sim server's ``reset_device``), before or after the frame is written.
- ``script``: exact faults for chosen frames, ``{("to_host", 0): "drop", ("to_device", 3): "reset"}`` (frames
  counted from 0 per direction, across reconnects), on top of the random ones — for deterministic tests. A
  scripted ``reset`` loses the frame it hits (it arrives while the board reboots).

Probabilities are per frame and per direction (``to_device``/``to_host`` select the directions); a seeded
generator makes a run reproducible. ``stats`` counts every fault injected.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from pgt.ports import Transport
from pgt.protocol import framing

_JUNK = np.array([b for b in range(0x20, 0x100) if b != 0x7F], dtype=np.uint8)


@dataclass
class FaultPlan:
    """What to inject; every probability is per frame and direction."""

    drop: float = 0.0
    corrupt: float = 0.0
    truncate: float = 0.0
    duplicate: float = 0.0
    garbage: float = 0.0
    delay: float = 0.0
    delay_s: float = 0.02
    byte_error_rate: float = 0.0
    reset: float = 0.0
    to_device: bool = True
    to_host: bool = True
    seed: int = 0
    script: Mapping[tuple[str, int], str] = field(default_factory=dict)


class FaultyTransport:
    """A Transport that injects the faults of a :class:`FaultPlan` (see the module doc)."""

    def __init__(self, inner: Transport, plan: FaultPlan, reset_device: Callable[[], None] | None = None,
                 rng: tuple[np.random.Generator, np.random.Generator] | None = None) -> None:
        self.inner = inner
        self.plan = plan
        self.reset_device = reset_device
        rngs = rng if rng is not None else _rngs(plan.seed)
        self.rngs = {"to_device": rngs[0], "to_host": rngs[1]}  # one per direction: reproducible runs
        self.stats: dict[str, int] = {}
        self.frames = {"to_device": 0, "to_host": 0}  # frames seen per direction (the script's index)
        self._lock = threading.Lock()  # the rng and stats are shared by the reader and the writer
        self._in = bytearray()  # device bytes not yet cut into frames
        self._out: deque[tuple[float, bytes]] = deque()  # (release time, bytes) for the host, FIFO

    def _count(self, what: str, direction: str) -> None:
        key = f"{what}_{direction}"
        self.stats[key] = self.stats.get(key, 0) + 1

    def _mangle(self, frame: bytes, direction: str) -> tuple[list[bytes], float]:
        """The bytes that arrive instead of ``frame`` (possibly none, or twice), and a delay in s."""
        p, rng = self.plan, self.rngs[direction]
        index = self.frames[direction]
        self.frames[direction] = index + 1
        scripted = p.script.get((direction, index))
        if scripted is not None:
            return self._scripted(frame, direction, scripted)
        active = p.to_device if direction == "to_device" else p.to_host
        if not active:
            return [frame], 0.0
        if rng.random() < p.drop:
            self._count("drop", direction)
            return [], 0.0
        data = bytearray(frame)
        if len(data) > 2 and rng.random() < p.truncate:
            start = int(rng.integers(0, len(data) - 1))
            stop = min(len(data), start + int(rng.integers(1, 65)))
            del data[start:stop]
            self._count("truncate", direction)
        if data and rng.random() < p.corrupt:
            for at in rng.integers(0, len(data), size=int(rng.integers(1, 4))):
                data[at] ^= int(rng.integers(1, 256))
            self._count("corrupt", direction)
        if data and p.byte_error_rate > 0:
            hits = int(rng.binomial(len(data), p.byte_error_rate))
            for at in rng.integers(0, len(data), size=hits):
                data[at] ^= int(rng.integers(1, 256))
            if hits:
                self.stats[f"byte_errors_{direction}"] = self.stats.get(f"byte_errors_{direction}", 0) + hits
        out = [bytes(data)]
        if rng.random() < p.garbage:
            out.insert(0, rng.choice(_JUNK, size=int(rng.integers(1, 33))).tobytes())
            self._count("garbage", direction)
        if rng.random() < p.duplicate:
            out.append(bytes(data))
            self._count("duplicate", direction)
        delay = 0.0
        if rng.random() < p.delay:
            delay = p.delay_s
            self._count("delay", direction)
        return out, delay

    def _scripted(self, frame: bytes, direction: str, what: str) -> tuple[list[bytes], float]:
        self._count(what, direction)
        data = bytearray(frame)
        if what == "drop":
            return [], 0.0
        if what == "corrupt":
            data[len(data) // 2] ^= 0x5A
        elif what == "truncate":
            del data[len(data) // 2: len(data) // 2 + 8]
        elif what == "duplicate":
            return [frame, frame], 0.0
        elif what == "garbage":
            return [b"noise on the line ", frame], 0.0
        elif what == "delay":
            return [frame], self.plan.delay_s
        elif what != "reset":
            raise ValueError(f"unknown scripted fault {what!r}")
        return [bytes(data)], 0.0

    # -- host -> device -----------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """``data`` is one frame (the link writes frame by frame)."""
        with self._lock:
            index = self.frames["to_device"]
            chunks, delay = self._mangle(bytes(data), "to_device")
            scripted_reset = self.plan.script.get(("to_device", index)) == "reset"
            if scripted_reset:  # the board resets as this frame arrives: the frame is lost
                reset, reset_first, chunks = True, True, []
            else:
                rng = self.rngs["to_device"]
                reset = self.reset_device is not None and rng.random() < self.plan.reset
                reset_first = bool(rng.random() < 0.5)
            if reset and scripted_reset is False:
                self._count("reset", "to_device")
            if reset and self.reset_device is None:
                raise ValueError("a reset fault needs a reset_device callback")
        if delay:
            time.sleep(delay)
        if reset and reset_first:
            assert self.reset_device is not None
            self.reset_device()
        for chunk in chunks:
            self.inner.write(chunk)
        if reset and not reset_first:
            assert self.reset_device is not None
            self.reset_device()

    # -- device -> host -----------------------------------------------------------------------------------

    def _cut(self) -> list[bytes]:
        """Whole frames (and stretches of non-frame bytes) at the front of the device's stream."""
        buf, out = self._in, []
        while buf:
            if buf[:2] != framing.MAGIC:
                at = buf.find(framing.MAGIC, 1)
                if at < 0:
                    keep = 1 if buf[-1:] == framing.MAGIC[:1] else 0
                    at = len(buf) - keep
                    if at == 0:
                        break
                out.append(bytes(buf[:at]))
                del buf[:at]
                continue
            if len(buf) < framing.HEADER_SIZE:
                break
            length, reason = framing.parse_header(bytes(buf[: framing.HEADER_SIZE]), 1 << 30)
            if reason is not None:
                out.append(bytes(buf[:1]))  # not a header: pass the byte on as it is
                del buf[:1]
                continue
            assert length is not None
            total = framing.HEADER_SIZE + length + framing.TRAILER_SIZE
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
        return out

    def read_some(self, wait: float) -> bytes:
        now = time.monotonic()
        if self._out:
            wait = min(wait, max(0.0, self._out[0][0] - now))
        data = self.inner.read_some(wait)
        now = time.monotonic()
        if data:
            self._in += data
            with self._lock:
                for piece in self._cut():
                    if piece[:2] == framing.MAGIC:
                        chunks, delay = self._mangle(piece, "to_host")
                    else:
                        chunks, delay = [piece], 0.0
                    release = max(now + delay, self._out[-1][0] if self._out else 0.0)
                    for chunk in chunks:
                        self._out.append((release, chunk))
        ready = []
        while self._out and self._out[0][0] <= now:
            ready.append(self._out.popleft()[1])
        return b"".join(ready)

    def close(self) -> None:
        self.inner.close()


def _rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    a, b = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(a), np.random.default_rng(b)


class Faulty:
    """A ``wrap`` for :class:`pgt.link.SerialLink`: every (re)opened transport gets the same plan, generators
    and counts (so a run stays reproducible across reconnects); ``stats`` counts every fault injected."""

    def __init__(self, plan: FaultPlan, reset_device: Callable[[], None] | None = None) -> None:
        self.plan = plan
        self.reset_device = reset_device
        self.stats: dict[str, int] = {}
        self.frames = {"to_device": 0, "to_host": 0}
        self._rngs = _rngs(plan.seed)

    def __call__(self, inner: Transport) -> FaultyTransport:
        t = FaultyTransport(inner, self.plan, self.reset_device, self._rngs)
        t.stats = self.stats
        t.frames = self.frames
        return t


def faulty(plan: FaultPlan, reset_device: Callable[[], None] | None = None) -> Faulty:
    """``SerialLink(url, wrap=faulty(plan))``: inject the plan's faults on every connection of the link."""
    return Faulty(plan, reset_device)
