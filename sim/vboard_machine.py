"""The ``machine`` module of the virtual board (MicroPython code: runs inside the VM, not on the host).

Output writes (PWM duty, DAC, SPI words for an MCP4922) and ADC reads (``ADC.read_u16``, or an MCP3208's
conversions over ``SPI.write_readinto``, keyed by its channel) travel to the host as 6-byte messages
on stderr (``0xA5, op, pin, seq, value uint16 LE``); the host answers an ADC read (op ``R``) by writing
``seq, count, reps`` and ``reps`` rounds of one reading of every ADC pin created so far (op ``A``, in that
order; uint16 LE each) at the start of the file /vb/adc, which the guest polls until the sequence number
matches. The readings are kept until the next output write: one round trip per drive state; successive reads
of a pin take the next round's reading (independent ADC reads, so averaging lowers the noise).
(WASI cannot read or write a FIFO opened as a file: ESPIPE.)
Everything else (Pin, WDT, Timer) is local and inert.
"""

import struct
import sys

_TX = sys.stderr.buffer if hasattr(sys.stderr, "buffer") else sys.stderr
_RX = []  # type: list  # the readings file, opened at the first read (so the module imports anywhere, CPython included)
_MSG = bytearray(6)
_REPLY = bytearray(4 + 2 * 512)  # seq, count, reps (uint16), then reps x count readings (uint16 LE each)
_SEQ = [0]
_PINS = []  # type: list[int]  # ADC pins in the order the host reports them
_NEXT = {}  # type: dict[int, int]  # pin -> how many times it was read since the readings came
_VALID = [False]


def _send(op, pin, value):
    seq = (_SEQ[0] + 1) & 0xFF
    _SEQ[0] = seq
    struct.pack_into("<BBBBH", _MSG, 0, 0xA5, op, pin & 0xFF, seq, value & 0xFFFF)
    _TX.write(_MSG)
    if op != 82:
        _VALID[0] = False
    return seq


def _read(pin):
    if not _VALID[0]:
        # one round trip per drive state: the host answers with the readings of all ADC pins at once
        seq = _send(82, pin, 0)  # "R"
        if not _RX:
            _RX.append(open("/vb/adc", "rb"))
        rx = _RX[0]
        while True:
            rx.seek(0)
            rx.readinto(_REPLY)
            if _REPLY[0] == seq:
                break
        _NEXT.clear()
        _VALID[0] = True
    count = _REPLY[1]
    reps = _REPLY[2] | (_REPLY[3] << 8)
    r = _NEXT.get(pin, 0)
    _NEXT[pin] = r + 1
    at = 4 + 2 * ((r % reps) * count + _PINS.index(pin))
    return _REPLY[at] | (_REPLY[at + 1] << 8)


UID = [b"\x76\x62\x6f\x61\x72\x64\x00\x01"]  # set by the ROM to this board's id


class HardReset(BaseException):
    """Raised by ``reset()``: the ROM ends this VM and the host boots the board again into main.py."""


def unique_id():
    return UID[0]


def freq(hz=None):
    return 125000000


def reset():
    raise HardReset()


def soft_reset():
    reset()


def _pid(pin):
    return pin.id if isinstance(pin, Pin) else pin


class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, id, mode=None, pull=None, value=None):
        self.id = id
        self._v = value or 0

    def value(self, v=None):
        if v is None:
            return self._v
        self._v = v

    def __call__(self, v=None):
        return self.value(v)


class PWM:
    def __init__(self, pin, freq=None, duty_u16=None):
        self.pin = _pid(pin)
        self._duty = 0
        self._freq = freq or 1000
        if duty_u16 is not None:
            self.duty_u16(duty_u16)

    def duty_u16(self, v=None):
        if v is None:
            return self._duty
        self._duty = v
        _send(80, self.pin, v)  # "P"

    def freq(self, f=None):
        if f is None:
            return self._freq
        self._freq = f

    def deinit(self):
        self.duty_u16(0)


class DAC:
    def __init__(self, pin):
        self.pin = _pid(pin)

    def write(self, v):
        _send(68, self.pin, v)  # "D"


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3

    def __init__(self, pin, atten=None):
        self.pin = _pid(pin)
        if self.pin not in _PINS:
            _PINS.append(self.pin)
            _send(65, self.pin, 0)  # "A": the host adds the pin to the readings it reports

    def atten(self, a):
        pass

    def read_u16(self):
        return _read(self.pin)


class SPI:
    def __init__(self, id, baudrate=1000000, polarity=0, phase=0, sck=None, mosi=None, miso=None):
        self.id = id

    def write(self, buf):
        _send(83, buf[0], buf[1])  # "S": the host decodes MCP4922 words

    def write_readinto(self, tx, rx):
        """An MCP3208 conversion of channel ``ch`` (tx: start bit, SGL, D2 | D1 D0 | -): the ring's reading of
        the tap wired to that channel, as 12 bits in the last 12 bits of rx."""
        ch = ((tx[0] & 1) << 2) | (tx[1] >> 6)
        if ch not in _PINS:
            _PINS.append(ch)
            _send(65, ch, 0)  # "A": the host adds the channel to the readings it reports
        v = _read(ch) >> 4
        rx[0] = 0xFF
        rx[1] = 0xE0 | (v >> 8)
        rx[2] = v & 0xFF


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout

    def feed(self):
        pass


class Timer:
    PERIODIC = 1
    ONE_SHOT = 0

    def __init__(self, id=-1, **kw):
        self.id = id

    def init(self, period=1000, mode=1, callback=None, **kw):
        pass

    def deinit(self):
        pass
