"""The one declaration of what a board config may hold, and its check: ``check_value`` (one key's JSON type,
every number finite) and ``check`` (a complete config, ``board.resolve``'s result: types, ranges and limits
consistent). ValueError with a one-line reason for a config that cannot be right. The firmware checks its
board.json with it at boot; ``pgt flash --config``, ``pgt sim --config`` and ``sim://?config=`` check theirs
with the same code. Runs on MicroPython (and CPython).
"""

import json

RP2040_WDT_MAX_MS = 8388
MAX_CHANNELS = 256
MAX_NAME = 64  # the name travels in every hello reply
TEXT = ("board", "name", "dac", "adc", "adc_atten")
NUMBERS = ("dac_mA_per_code", "dac_mA_offset", "adc_V_per_code", "adc_V_offset", "adc_enob", "filter_tau_us",
           "write_us", "read_us")
CODES = ("zero_code", "limit_lo", "limit_hi")
LISTS = ("drive_pins", "adc_pins") + CODES  # lists of integers; every other key holds an integer
ATTEN = ("0db", "2.5db", "6db", "11db")


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _show(v):
    try:
        s = json.dumps(v)  # as it was written in board.json
    except (TypeError, ValueError):
        s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def check_value(key, v):
    """Raise ValueError unless ``v`` has the type of ``key``: text, a finite number, an integer, a list of them."""
    if key in TEXT:
        ok, want = isinstance(v, str), "a string"
    elif key in NUMBERS:
        ok, want = (_int(v) or isinstance(v, float)) and v - v == 0, "a finite number"  # inf - inf is nan
    elif key in LISTS:
        ok, want = isinstance(v, list) and all(_int(x) for x in v), "a list of integers"
    else:
        ok, want = _int(v), "an integer"
    if not ok:
        raise ValueError("%s must be %s, not %s" % (key, want, _show(v)))


def _at_least(cfg, low, *keys):
    for key in keys:
        if cfg.get(key, low) < low:
            raise ValueError("%s must be at least %d, not %s" % (key, low, cfg[key]))


def _channels(cfg, k):
    m = len(cfg["adc_pins"])
    if not (1 <= k <= MAX_CHANNELS and 1 <= m <= MAX_CHANNELS):
        raise ValueError("need 1..%d drive pins and 1..%d ADC pins" % (MAX_CHANNELS, MAX_CHANNELS))
    pins = cfg["adc_pins"]
    if cfg["adc"] == "mcp3208" and (not 0 <= min(pins) <= max(pins) <= 7 or len(set(pins)) < len(pins)):
        raise ValueError("with an MCP3208, adc_pins are its channels 0..7, each at most once")
    if cfg["dac"] == "mcp4922" and not 0 <= min(cfg["drive_pins"]) <= max(cfg["drive_pins"]) <= 1:
        raise ValueError("with an MCP4922, drive_pins are its channels: 0 (A) and 1 (B)")
    for name in ("drive_pins", "adc_pins"):
        pins = cfg[name]
        for p in pins:
            if p < 0 or pins.count(p) > 1:
                raise ValueError("%s: each pin (or channel) at most once, none negative" % name)


def _codes(cfg, k):
    full = (1 << cfg["dac_bits"]) - 1
    for name in CODES:
        if len(cfg[name]) != k:
            raise ValueError("%s needs %d values (one per drive pin)" % (name, k))
        for v in cfg[name]:
            if not 0 <= v <= full:
                raise ValueError("%s value %r outside 0..%d" % (name, v, full))
    for j in range(k):
        if not cfg["limit_lo"][j] <= cfg["zero_code"][j] <= cfg["limit_hi"][j]:
            raise ValueError("channel %d: zero_code must lie within limit_lo..limit_hi" % j)
        if cfg["limit_lo"][j] == cfg["limit_hi"][j]:
            raise ValueError("channel %d: limit_lo equals limit_hi (a single code drives nothing)" % j)


def check(cfg):
    """Raise ValueError if ``cfg`` cannot be right (types, channel counts, code ranges, calibration, timing)."""
    for key in cfg:
        check_value(key, cfg[key])
    if cfg["board"] not in ("rp2", "esp32") or len(cfg["name"]) > MAX_NAME:
        raise ValueError("need board rp2 or esp32 and a name of at most %d characters" % MAX_NAME)
    if cfg["dac"] not in ("pwm", "mcp4922", "builtin"):
        raise ValueError("dac must be pwm, mcp4922 or builtin, not %r" % cfg["dac"])
    if cfg["dac"] == "builtin" and cfg["board"] != "esp32":
        raise ValueError("only the esp32 has a built-in DAC")
    if cfg["dac"] == "pwm" and cfg["board"] != "rp2":
        raise ValueError("dac pwm is implemented for rp2 only")
    if cfg["adc"] not in ("builtin", "mcp3208"):
        raise ValueError("adc must be builtin or mcp3208, not %r" % cfg["adc"])
    if cfg.get("adc_atten", "11db") not in ATTEN:
        raise ValueError("adc_atten must be one of %s" % ", ".join(ATTEN))
    if not 1 <= cfg["dac_bits"] <= 16:
        raise ValueError("dac_bits must be 1..16, not %s" % cfg["dac_bits"])
    k = len(cfg["drive_pins"])
    _channels(cfg, k)
    _codes(cfg, k)
    if cfg["dac_mA_per_code"] == 0 or cfg["adc_V_per_code"] <= 0:
        raise ValueError("need dac_mA_per_code other than 0 and adc_V_per_code above 0")
    if not 1 <= cfg["adc_bits"] <= 16 or not 0 < cfg["adc_enob"] <= cfg["adc_bits"]:
        raise ValueError("need adc_bits 1..16 and adc_enob in 0..adc_bits")
    if cfg["board"] == "rp2" and cfg["wdt_ms"] > RP2040_WDT_MAX_MS:
        raise ValueError("wdt_ms above the RP2040's maximum of %d" % RP2040_WDT_MAX_MS)
    _at_least(cfg, 0, "wdt_ms", "settle_us", "settle_min_us", "write_us", "read_us")
    _at_least(cfg, -1, "loopback_pin")
    if not 0 < cfg["filter_tau_us"] <= 1e6 or cfg["filter_order"] not in (1, 2):
        raise ValueError("need filter_tau_us in 0..1000000 (above 0) and filter_order 1 or 2")
    if cfg["settle_us"] > 1000000 or 0 < cfg["settle_us"] < cfg["settle_min_us"]:
        raise ValueError("settle_us must be 0 (the default) or settle_min_us..1000000")
    _at_least(cfg, 1, "poll_ms", "max_batch", "pwm_freq", "spi_baud", "adc_spi_baud")
    if cfg["frame_timeout_ms"] < cfg["poll_ms"]:
        raise ValueError("need frame_timeout_ms >= poll_ms")
    if cfg["max_frame"] < 512 or cfg["max_batch"] > 65535 or cfg["max_frame"] > 1 << 20:
        raise ValueError("need max_batch 1..65535 and max_frame 512..%d" % (1 << 20))
    return cfg
