"""The check of a complete board config (``board.resolve``'s result): one ValueError with a one-line reason for
a config that cannot be right. Runs on MicroPython (and CPython, for the tests and ``pgt flash --dry-run``).
"""

RP2040_WDT_MAX_MS = 8388


def check(cfg):
    """Raise ValueError if ``cfg`` cannot be right (channel counts, code ranges, watchdog limit)."""
    k = len(cfg["drive_pins"])
    if k < 1 or len(cfg["adc_pins"]) < 1:
        raise ValueError("need at least one drive pin and one ADC pin")
    if cfg["dac"] not in ("pwm", "mcp4922", "builtin"):
        raise ValueError("dac must be pwm, mcp4922 or builtin, not %r" % cfg["dac"])
    if cfg["dac"] == "builtin" and cfg["board"] != "esp32":
        raise ValueError("only the esp32 has a built-in DAC")
    if cfg["dac"] == "pwm" and cfg["board"] != "rp2":
        raise ValueError("dac pwm is implemented for rp2 only")
    if cfg["adc"] not in ("builtin", "mcp3208"):
        raise ValueError("adc must be builtin or mcp3208, not %r" % cfg["adc"])
    if cfg["adc"] == "mcp3208":
        chans = cfg["adc_pins"]
        for ch in chans:
            if ch not in (0, 1, 2, 3, 4, 5, 6, 7) or chans.count(ch) > 1:
                raise ValueError("with an MCP3208, adc_pins are its channels 0..7, each at most once")
    if cfg["dac"] == "mcp4922":
        for ch in cfg["drive_pins"]:
            if ch not in (0, 1):
                raise ValueError("with an MCP4922, drive_pins are its channels: 0 (A) and 1 (B)")
    full = (1 << cfg["dac_bits"]) - 1
    for name in ("zero_code", "limit_lo", "limit_hi"):
        if len(cfg[name]) != k:
            raise ValueError("%s needs %d values (one per drive pin)" % (name, k))
        for v in cfg[name]:
            if not 0 <= v <= full:
                raise ValueError("%s value %r outside 0..%d" % (name, v, full))
    for j in range(k):
        if not cfg["limit_lo"][j] <= cfg["zero_code"][j] <= cfg["limit_hi"][j]:
            raise ValueError("channel %d: zero_code must lie within limit_lo..limit_hi" % j)
    if not 1 <= cfg["adc_bits"] <= 16 or not 0 < cfg["adc_enob"] <= cfg["adc_bits"]:
        raise ValueError("need adc_bits 1..16 and adc_enob in 0..adc_bits")
    if cfg["board"] == "rp2" and cfg["wdt_ms"] > RP2040_WDT_MAX_MS:
        raise ValueError("wdt_ms above the RP2040's maximum of %d" % RP2040_WDT_MAX_MS)
    if cfg["poll_ms"] < 1 or cfg["frame_timeout_ms"] < cfg["poll_ms"]:
        raise ValueError("need poll_ms >= 1 and frame_timeout_ms >= poll_ms")
    if cfg["max_batch"] < 1 or cfg["max_frame"] < 512:
        raise ValueError("max_batch must be >= 1 and max_frame >= 512")
    return cfg
