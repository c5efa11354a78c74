"""Board configuration: pins, channel maps, calibration and safe limits, from ``board.json`` on the device.

``load(path)`` reads the JSON file (if present), picks the board type (``"board"`` key, else from
``sys.platform``) and fills every key the file leaves out from that board's defaults below, so a config file
only needs the keys that differ. ``check_given`` (a key board.json may not hold, a value of the wrong type)
and ``check(cfg)`` (``board_check.py``: the whole config) raise ValueError with a one-line reason for a config
that cannot be right; the hosts check a board.json with the same two. docs/hardware.md describes each key
and the wiring the defaults assume.

Keys (all boards):
  board            "rp2" or "esp32"
  name             free text reported by ``hello`` (default: the board type and the DAC kind)
  dac              "pwm" (rp2: PWM through an RC filter), "mcp4922" (rp2/esp32: SPI DAC), "builtin" (esp32)
  adc              "builtin" (the board's ADC pins) or "mcp3208" (an external 8-channel 12-bit SPI ADC)
  drive_pins       GPIO per drive channel (PWM/DAC outputs; with an MCP4922 its channels 0/1); k = len(...)
  adc_pins         GPIO per sample channel (ADC inputs; with an MCP3208 its channels 0..7); m = len(adc_pins)
  dac_bits         bits of a drive code (codes 0 .. 2**dac_bits - 1)
  adc_bits         the converter's own resolution (12 on rp2 and esp32), reported by hello for information:
                   sample codes are always on the 16-bit scale of machine.ADC.read_u16
  adc_enob         effective bits of one ADC read (noise and non-linearity included); the simulator's ADC
                   model reads it, the firmware does not
  zero_code        per drive channel: the code that means zero current (applied on boot, stop, watchdog)
  limit_lo/hi      per drive channel: safe code range; the Core clamps every drive into it
  dac_mA_per_code, dac_mA_offset   calibration of the current-source stage: mA = offset + code * per_code
  adc_V_per_code, adc_V_offset     calibration of the detector input: V = offset + code * per_code
  max_batch        vectors per ``run`` the HAL buffers
  max_frame        largest frame payload (bytes) the serve loop accepts and sends
  wdt_ms           hardware watchdog timeout in ms (0 = off; rp2 allows at most 8388)
  poll_ms          how often the idle loop wakes to feed the watchdog and check host silence
  frame_timeout_ms a frame whose bytes stop arriving for this long is dropped; a line quiet this long
                   puts the reader back in sync (Ctrl-C honoured again after a dropped frame)
  settle_us        starting settle time (0: the firmware's 1000 us; ``pgt selftest --write`` stores it)
  settle_min_us    lower bound on the settle time between setting the drive and sampling
  loopback_pin     ADC pin wired to drive 0's filter output (-1: none), read by ``status``
  filter_tau_us, filter_order, write_us, read_us   drive filter, call costs (read by the simulator only)
Keys (rp2, dac "pwm"):      pwm_freq (Hz)
Keys (dac "mcp4922"):      spi_id, spi_baud, sck_pin, mosi_pin, cs_pin, ldac_pin (-1: tied low)
Keys (adc "mcp3208"):      adc_spi_id, adc_spi_baud, adc_sck_pin, adc_mosi_pin, adc_miso_pin, adc_cs_pin
Keys (esp32):              adc_atten ("0db", "2.5db", "6db", "11db")
Keys (timer):              timer_id (the machine.Timer that checks host silence while a stdin read blocks, and
                            keeps feeding the watchdog after the loop exits)

Runs on MicroPython (and CPython, for the tests and ``pgt flash --dry-run``).
"""

import json
import sys

from . import timing
from .board_check import check, check_value

CONFIG_FILE = "board.json"

COMMON = {
    "max_batch": 64,
    "max_frame": 8192,
    "wdt_ms": 8000,
    "poll_ms": 200,
    "frame_timeout_ms": 1000,
    "settle_us": 0,
    "settle_min_us": 0,
    "loopback_pin": -1,
    "adc_V_offset": 0.0,
    "dac_mA_offset": 0.0,
    "adc": "builtin",
    "adc_spi_baud": 1000000,  # MCP3208: 1 MHz is within its limit at 2.7 V (2 MHz at 5 V)
}

# An MCP3208's own figures (used when adc is "mcp3208" and the config does not give them): 12 bits over its
# VREF (wired to 3.3 V), about 11 effective bits (assumed from its +-1 LSB INL/DNL; datasheet DS21298).
MCP3208 = {"adc_bits": 12, "adc_enob": 11.0, "adc_V_per_code": 3.3 / 65535}

# Defaults per board type. Drive codes are DAC codes of ``dac_bits``; ADC codes are always on the 16-bit
# scale of machine.ADC.read_u16, whatever the converter's own resolution (adc_bits).
DEFAULTS = {
    "rp2": {
        "dac": "pwm",
        "drive_pins": [16, 17],  # GP16, GP17: PWM slices 0A and 0B -> RC filters -> current sources
        "adc_pins": [26, 27, 28],  # ADC0..ADC2 (GP26..GP28)
        "dac_bits": 12,
        "pwm_freq": 30000,  # 125 MHz / 30 kHz = 4166 counts per period: a little over 12 bits
        "dac_mA_per_code": 100.0 / 4095,  # 3.3 V full scale into a 33 ohm sense resistor -> 100 mA
        "adc_V_per_code": 3.3 / 65535,
        "adc_bits": 12,
        "adc_enob": 8.7,  # RP2040 datasheet, ADC section: ENOB 8.7 (the DNL spikes of erratum E11 included)
        "spi_id": 0,
        "spi_baud": 10000000,
        "sck_pin": 18,
        "mosi_pin": 19,
        "cs_pin": 17,
        "ldac_pin": -1,
        "adc_spi_id": 1,  # SPI1: GP10 SCK, GP11 TX (to the MCP3208's DIN), GP12 RX (from DOUT), GP13 CS
        "adc_sck_pin": 10,
        "adc_mosi_pin": 11,
        "adc_miso_pin": 12,
        "adc_cs_pin": 13,
        "timer_id": -1,
        "max_frame": 16384,
    },
    "esp32": {
        "dac": "builtin",
        "drive_pins": [25, 26],  # the two 8-bit DACs
        "adc_pins": [34, 35],  # ADC1 (ADC2 is unusable while Wi-Fi runs); input-only pins
        "dac_bits": 8,
        "dac_mA_per_code": 100.0 / 255,
        "adc_atten": "11db",  # about 0.15 .. 2.45 V usable span (3.3 V nominal); see docs/hardware.md
        "adc_V_per_code": 2.45 / 65535,
        "adc_bits": 12,
        "adc_enob": 9.0,  # assumed: an unfiltered ESP32 ADC1 read scatters by several raw LSB (Espressif docs)
        "spi_id": 1,
        "spi_baud": 10000000,
        "sck_pin": 14,
        "mosi_pin": 13,
        "cs_pin": 15,
        "ldac_pin": -1,
        "adc_spi_id": 2,  # VSPI: SCK 18, MOSI 23, MISO 19, CS 5
        "adc_sck_pin": 18,
        "adc_mosi_pin": 23,
        "adc_miso_pin": 19,
        "adc_cs_pin": 5,
        "timer_id": 0,
    },
}

# Limits that apply when the config gives none: half of full scale, so that a first connection to a ring
# whose current-source stage has not been checked cannot drive it to full current. Raise them in board.json.
SAFE_FRACTION_DEFAULT = 0.5

def keys():
    """Every key a board.json may hold (hosts refuse others: a misspelt key would be ignored silently)."""
    out = set(COMMON) | set(MCP3208) | set(timing.BOARD) | set(("board", "name", "zero_code", "limit_lo", "limit_hi"))
    for kind in DEFAULTS:
        out |= set(DEFAULTS[kind])
    return out


def board_type(platform=None):
    """The board type for a ``sys.platform`` value ("rp2", "esp32"), or None for any other platform."""
    p = sys.platform if platform is None else platform
    if p in DEFAULTS:
        return p
    return None


def read_file(path):
    """The decoded JSON object in ``path``, or an empty dict when the file does not exist."""
    try:
        f = open(path)
    except OSError:
        return {}
    try:
        data = json.load(f)
    finally:
        f.close()
    if not isinstance(data, dict):
        raise ValueError("%s: expected a JSON object" % path)
    return data


def check_given(given):
    """Raise ValueError for a key a board.json may not hold, or a value of the wrong type."""
    known = keys()
    unknown = sorted([key for key in given if key not in known])
    if unknown:
        raise ValueError("unknown key(s) %s (docs/hardware.md lists the keys)" % ", ".join(unknown))
    for key in given:
        check_value(key, given[key])


def resolve(given, platform=None):
    """A complete config: ``given`` (a dict from board.json, checked first) over the defaults of its board type."""
    check_given(given)
    kind = given.get("board") or board_type(platform)
    if kind not in DEFAULTS:
        raise ValueError("unknown board %r (set \"board\" to one of %s in %s)"
                         % (kind, ", ".join(sorted(DEFAULTS)), CONFIG_FILE))
    cfg = {}  # type: dict
    ext_adc = MCP3208 if given.get("adc") == "mcp3208" else {}
    for src in (COMMON, DEFAULTS[kind], ext_adc, timing.defaults(given.get("dac") or DEFAULTS[kind]["dac"],
                                                                 given.get("adc")), given):
        for key in src:
            cfg[key] = src[key]
    cfg["board"] = kind
    if cfg["dac"] == "mcp4922":  # drive "pins" are the DAC's channels A (0) and B (1)
        if "dac_bits" not in given:
            cfg["dac_bits"] = 12
        if "drive_pins" not in given:
            cfg["drive_pins"] = [0, 1]
    if cfg["adc"] == "mcp3208" and "adc_pins" not in given:  # adc "pins" are the MCP3208's channels
        cfg["adc_pins"] = [0, 1, 2, 3, 4, 5, 6, 7]
    k = len(cfg["drive_pins"])
    full = (1 << cfg["dac_bits"]) - 1
    if "zero_code" not in given:
        cfg["zero_code"] = [0] * k
    if "limit_lo" not in given:
        cfg["limit_lo"] = list(cfg["zero_code"])
    if "limit_hi" not in given:
        cfg["limit_hi"] = [int(full * SAFE_FRACTION_DEFAULT)] * k
    if "name" not in given:
        cfg["name"] = kind + "-" + cfg["dac"] + ("-" + cfg["adc"] if cfg["adc"] != "builtin" else "")
    return cfg


def load(path=CONFIG_FILE, platform=None):
    """Read, complete and check the board config."""
    return check(resolve(read_file(path), platform))
