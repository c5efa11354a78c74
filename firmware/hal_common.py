"""What the rp2 and esp32 HALs share: the block loop (drive, settle, oversample, pack) and the hello info.

A board HAL subclasses ``BoardHAL`` and provides ``_setup()``, which creates the outputs (already at their
zero codes), ``_setup_adcs()``, which creates the board's own ADC inputs (``adc: "builtin"``), and
``_write(j, code)``, which sets drive channel j. With ``adc: "mcp3208"`` the inputs are the channels of an
external MCP3208 on SPI instead (``MCP3208`` below), on any board. The block loop in
``apply_and_sample`` allocates nothing per sample: the ADC read functions are bound once, averages are small
ints, and the samples go into a preallocated bytearray as little-endian uint16 (two byte stores each).

``timer`` is the module that provides ``ticks_us``, ``ticks_diff`` and ``sleep_us`` (``time`` on the board; a
recording fake in the tests). ``machine`` is the board's module; the tests put a fake one in ``sys.modules``
first. (Importing it here, not passing it in, lets mypy check every call against the port's stubs.)
"""

import binascii

import machine

from pgt.firmware.hal_base import HAL


def _uid():
    try:
        return binascii.hexlify(machine.unique_id()).decode()
    except Exception:  # noqa: BLE001 - a board without unique_id still works
        return "unknown"


class BoardHAL(HAL):
    def __init__(self, cfg, timer=None):
        if timer is None:
            import time as timer
        self.cfg = cfg
        self.timer = timer
        self.k = len(cfg["drive_pins"])
        self.m = len(cfg["adc_pins"])
        self.max_batch = cfg["max_batch"]
        self.zero_code = list(cfg["zero_code"])
        self.settle_min_us = cfg["settle_min_us"]
        self.elapsed_us = 0
        self.feed = None  # the serve loop sets this to the watchdog's feed: called once per vector
        self.out = bytearray(2 * self.m * self.max_batch)
        self.out_mv = memoryview(self.out)
        self.adcs = []  # type: list
        self._setup()  # outputs exist from here on, already at their zero codes
        self.zero()
        if cfg["adc"] == "mcp3208":
            self.adcs = MCP3208(cfg).channels(cfg["adc_pins"])
        else:
            self._setup_adcs()
        self._reads = [adc.read_u16 for adc in self.adcs]
        self.uid = _uid()
        self.loopback = None  # type: ignore[assignment]
        pin = cfg["loopback_pin"]
        if pin >= 0:  # a spare ADC input wired to drive channel 0's filter output (pgt selftest)
            if cfg["adc"] == "mcp3208":
                self.loopback = MCP3208(cfg).channels([pin])[0].read_u16
            else:
                self.loopback = machine.ADC(machine.Pin(pin)).read_u16

    # -- subclass hooks -------------------------------------------------------------------------------------

    def _setup(self):
        raise NotImplementedError

    def _setup_adcs(self):
        raise NotImplementedError

    def _write(self, j, code):
        raise NotImplementedError

    # -- the HAL interface ----------------------------------------------------------------------------------

    def info(self):
        cfg = self.cfg
        return {"board": cfg["name"], "uid": self.uid, "k": self.k, "m": self.m,
                "dac_bits": cfg["dac_bits"], "adc_bits": cfg["adc_bits"],
                "dac_mA_per_code": cfg["dac_mA_per_code"], "dac_mA_offset": cfg["dac_mA_offset"],
                "adc_V_per_code": cfg["adc_V_per_code"], "adc_V_offset": cfg["adc_V_offset"],
                "limit_lo": list(cfg["limit_lo"]), "limit_hi": list(cfg["limit_hi"]),
                "max_batch": self.max_batch, "settle_us": cfg["settle_us"], "settle_min_us": self.settle_min_us}

    def zero(self):
        for j in range(self.k):
            self._write(j, self.zero_code[j])

    def apply_and_sample(self, drive, n, settle_us, n_avg):
        timer = self.timer
        t0 = timer.ticks_us()
        write = self._write
        reads = self._reads
        out = self.out
        k = self.k
        m = self.m
        settle = settle_us if settle_us > self.settle_min_us else self.settle_min_us
        half = n_avg >> 1
        feed = self.feed
        base = 0
        idx = 0
        for _i in range(n):
            if feed is not None:  # a block may outlast the watchdog (64 vectors x 1 s settle)
                feed()
            for j in range(k):
                write(j, drive[base + j])
            base += k
            if settle:
                timer.sleep_us(settle)
            for c in range(m):
                read = reads[c]
                acc = 0
                for _a in range(n_avg):
                    acc += read()
                v = (acc + half) // n_avg
                out[idx] = v & 0xFF
                out[idx + 1] = v >> 8
                idx += 2
        self.elapsed_us = timer.ticks_diff(timer.ticks_us(), t0)
        return self.out_mv[0:idx]


class MCP4922:
    """Microchip MCP4922: two 12-bit channels over SPI (16-bit words: channel, BUF, GA=1x, SHDN=active)."""

    def __init__(self, cfg):
        self.cs = machine.Pin(cfg["cs_pin"], machine.Pin.OUT, value=1)
        self.spi = machine.SPI(cfg["spi_id"], baudrate=cfg["spi_baud"], polarity=0, phase=0,
                               sck=machine.Pin(cfg["sck_pin"]), mosi=machine.Pin(cfg["mosi_pin"]))
        if cfg["ldac_pin"] >= 0:  # LDAC held low: each write updates the output at once
            self.ldac = machine.Pin(cfg["ldac_pin"], machine.Pin.OUT, value=0)
        self.buf = bytearray(2)

    def write(self, j, code):
        w = (j << 15) | 0x3000 | (code & 0x0FFF)
        buf = self.buf
        buf[0] = w >> 8
        buf[1] = w & 0xFF
        cs = self.cs
        cs.value(0)
        self.spi.write(buf)
        cs.value(1)


class MCP3208:
    """Microchip MCP3208: eight 12-bit single-ended inputs over SPI (mode 0, at most 2 MHz at 5 V, 1 MHz at
    2.7 V). A read sends the start bit, SGL=1 and the channel (D2 D1 D0) in three bytes and gets the 12-bit
    result in the last 12 bits back; ``read_u16`` reports it on the 16-bit scale as ``machine.ADC.read_u16``
    does on an rp2 (``c << 4 | c >> 8``). No allocation per read: each channel owns its two 3-byte buffers.
    """

    def __init__(self, cfg):
        self.cs = machine.Pin(cfg["adc_cs_pin"], machine.Pin.OUT, value=1)
        self.spi = machine.SPI(cfg["adc_spi_id"], baudrate=cfg["adc_spi_baud"], polarity=0, phase=0,
                               sck=machine.Pin(cfg["adc_sck_pin"]), mosi=machine.Pin(cfg["adc_mosi_pin"]),
                               miso=machine.Pin(cfg["adc_miso_pin"]))

    def channels(self, chans):
        return [_MCP3208Channel(self.spi, self.cs, ch) for ch in chans]


class _MCP3208Channel:
    def __init__(self, spi, cs, ch):
        self.tx = bytearray((0x06 | (ch >> 2), (ch & 3) << 6, 0))
        self.rx = bytearray(3)
        self._xfer = spi.write_readinto
        self._cs = cs.value

    def read_u16(self):
        self._cs(0)
        self._xfer(self.tx, self.rx)
        self._cs(1)
        rx = self.rx
        c = ((rx[1] & 0x0F) << 8) | rx[2]
        return (c << 4) | (c >> 8)
