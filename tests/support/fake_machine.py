"""A fake ``machine`` module (and ``time``) for running the board HALs in the MicroPython VM or CPython.

It records every output write in ``LOG`` as ``(kind, pin, value)`` tuples, in order, and answers ADC reads
from a small deterministic model of the ring: the reading of ADC pin p is ``BASE + GAIN[p] * level`` where
``level`` is the sum of the current output levels on the 16-bit scale (PWM duty_u16, DAC codes scaled, MCP4922
codes scaled), clipped to 0..65535, plus a dither pattern DITHER[i % len(DITHER)] (i counts the reads of that
pin) whose mean is zero, so that averaging over a whole number of dither periods gives the model value
exactly and a single read does not. An MCP3208 on a fake ``SPI`` answers a conversion of channel c with
``model(("mcp3208", c)) >> 4`` (12 bits) plus DITHER12, logged as ``("mcp3208", c, tx bytes)``.
``reset()`` clears everything.
"""

LOG = []
CHEAP = [False]  # True: PWM/ADC calls neither log nor model (for allocation measurements)
WDT_FEEDS = [0]
BASE = 1000
GAIN = {26: 0.5, 27: 0.25, 28: 0.125, 34: 0.5, 35: 0.25, ("mcp3208", 0): 0.5, ("mcp3208", 5): 0.25,
        ("mcp3208", 7): 0.125}
DITHER = [-24, 24, -8, 8]
DITHER12 = [-2, 2, -1, 1]
LEVELS = {}  # output pin -> level on the 16-bit scale
READS = {}  # adc pin -> reads so far
TIMERS = []
UID = b"\xe6\x61\x38\x52\x83\x2b\x4a\x2f"


def reset():
    del LOG[:]
    WDT_FEEDS[0] = 0
    LEVELS.clear()
    READS.clear()
    del TIMERS[:]
    CHEAP[0] = False


def unique_id():
    return UID


def model(pin):
    total = 0
    for p in LEVELS:
        total += LEVELS[p]
    v = BASE + int(GAIN.get(pin, 0.1) * total)
    return v


def _pid(pin):
    return pin.id if isinstance(pin, Pin) else pin


class Pin:
    IN = 0
    OUT = 1

    def __init__(self, id, mode=None, value=None):
        self.id = id
        self._v = value
        if value is not None:
            LOG.append(("pin", id, value))

    def value(self, v=None):
        if v is None:
            return self._v
        self._v = v
        if not CHEAP[0]:
            LOG.append(("pin", self.id, v))


class PWM:
    def __init__(self, pin):
        self.pin = _pid(pin)
        self._duty = 0
        self._freq = 0
        LOG.append(("pwm_init", self.pin, None))

    def duty_u16(self, v=None):
        if v is None:
            return self._duty
        if not 0 <= v <= 65535:
            raise ValueError("duty out of range")
        self._duty = v
        if CHEAP[0]:
            return
        LEVELS[self.pin] = v
        LOG.append(("pwm", self.pin, v))

    def freq(self, f=None):
        if f is None:
            return self._freq
        self._freq = f
        LOG.append(("freq", self.pin, f))


class DAC:
    def __init__(self, pin):
        self.pin = _pid(pin)
        LOG.append(("dac_init", self.pin, None))

    def write(self, v):
        if not 0 <= v <= 255:
            raise ValueError("dac value out of range")
        if CHEAP[0]:
            return
        LEVELS[self.pin] = v * 257
        LOG.append(("dac", self.pin, v))


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3

    def __init__(self, pin):
        self.pin = _pid(pin)
        READS[self.pin] = 0
        LOG.append(("adc_init", self.pin, None))

    def atten(self, a):
        LOG.append(("atten", self.pin, a))

    def read_u16(self):
        if CHEAP[0]:
            return BASE
        i = READS[self.pin]
        READS[self.pin] = i + 1
        v = model(self.pin) + DITHER[i % len(DITHER)]
        if v < 0:
            return 0
        if v > 65535:
            return 65535
        return v


class SPI:
    def __init__(self, id, baudrate=1000000, polarity=0, phase=0, sck=None, mosi=None, miso=None):
        self.id = id
        LOG.append(("spi_init", id, baudrate))

    def write_readinto(self, tx, rx):
        """An MCP3208 conversion: start bit and SGL in tx[0] (with D2), D1 D0 in the top of tx[1]."""
        if not tx[0] & 0x04:
            raise ValueError("no start bit")
        ch = ((tx[0] & 1) << 2) | (tx[1] >> 6)
        if CHEAP[0]:
            v = BASE >> 4
        else:
            key = ("mcp3208", ch)
            i = READS.get(key, 0)
            READS[key] = i + 1
            v = (model(key) >> 4) + DITHER12[i % len(DITHER12)]
            v = 0 if v < 0 else 4095 if v > 4095 else v
            LOG.append(("mcp3208", ch, [tx[0], tx[1], tx[2]] if tx[0] & 0x02 else "differential"))
        rx[0] = 0xFF  # (the MCP3208 drives DOUT only from the null bit on: the rest is what the bus floats to)
        rx[1] = 0xE0 | (v >> 8)
        rx[2] = v & 0xFF

    def write(self, buf):
        word = (buf[0] << 8) | buf[1]
        ch = word >> 15
        code = word & 0x0FFF
        LEVELS[("mcp", ch)] = code * 16
        LOG.append(("spi", ch, word))


class WDT:
    def __init__(self, id=0, timeout=5000):
        LOG.append(("wdt", id, timeout))

    def feed(self):
        WDT_FEEDS[0] += 1


class Timer:
    PERIODIC = 1
    ONE_SHOT = 0

    def __init__(self, id=-1):
        self.id = id
        TIMERS.append(self)

    def init(self, period=1000, mode=1, callback=None):
        self.period = period
        self.callback = callback
        LOG.append(("timer", self.id, period))

    def deinit(self):
        pass


class FakeTime:
    """``ticks_us`` advances by ``step`` per call; ``sleep_us`` advances by its argument and is recorded."""

    def __init__(self, step=7):
        self.t = 0
        self.step = step
        self.sleeps = []

    def ticks_us(self):
        self.t += self.step
        return self.t

    def ticks_diff(self, a, b):
        return a - b

    def sleep_us(self, us):
        self.sleeps.append(us)
        self.t += us


class BlockingStdin:
    """A board's ``sys.stdin.buffer``: ``readinto(buf)`` returns only once all of ``buf`` has come, as
    MicroPython's does. Input arrives on a schedule of ``(at_ms, bytes)`` on the clock ``clock()`` (ms), which
    only a blocked read moves, 1 ms at a time; meanwhile the callbacks of the Timers made so far run when due
    (every ``period`` ms), as the scheduler runs soft-timer callbacks from the event-poll hook a blocked read
    waits in. A read that the rest of the schedule cannot fill ends the input (returns 0). ``zeroed`` lists the
    times at which the outputs went back to zero (all LEVELS 0 after a non-zero one) during a blocked read."""

    def __init__(self, chunks):
        self.chunks = list(chunks)
        self.now = 0
        self.buf = b""
        self.zeroed = []
        self.callbacks = 0

    def clock(self):
        return self.now

    def readinto(self, mv):
        n = len(mv)
        while True:
            while self.chunks and self.chunks[0][0] <= self.now:
                self.buf += self.chunks.pop(0)[1]
            if len(self.buf) >= n:
                break
            if not self.chunks:
                return 0
            self._tick()
        mv[0:n] = self.buf[0:n]
        self.buf = self.buf[n:]
        return n

    def _tick(self):
        self.now += 1
        driving = any(LEVELS[p] for p in LEVELS)
        for t in TIMERS:
            cb = getattr(t, "callback", None)
            if cb is not None and self.now % t.period == 0:
                self.callbacks += 1
                cb(t)
        if driving and not any(LEVELS[p] for p in LEVELS):
            self.zeroed.append(self.now)
