"""The drive path's timing keys of a board config: the drive filter and the MicroPython call costs. The firmware
only carries them (``pgt selftest`` measures the real ones); the simulator's drive model reads them
(``pgt.sim.drive_filter``). ``defaults(board, dac, adc)`` gives the ones a config leaves out.
"""

# rp2 PWM: two RC stages of 1 kohm / 47 nF (docs/hardware.md), 12 bits in ~0.5 ms; duty_u16 costs 5-14 us a
# call on a Pico (published measurements; LESSONS.md); a read_u16 call about as much (assumed, 2 us converting).
BOARD = {"write_us": 10.0, "read_us": 10.0, "filter_tau_us": 47.0, "filter_order": 2}
# An ESP32's built-in DAC has an output buffer that settles within microseconds (assumed).
DAC = {"builtin": {"filter_tau_us": 1.0, "filter_order": 1},
       # MCP4922: ~4.5 us to 1/2 LSB (datasheet DS21897); a write: two SPI bytes plus chip-select calls (assumed)
       "mcp4922": {"filter_tau_us": 1.0, "filter_order": 1, "write_us": 30.0}}
# MCP3208: three SPI bytes at 1 MHz (24 us) plus the calls around them (assumed).
ADC = {"mcp3208": {"read_us": 40.0}}


def defaults(dac, adc):
    out = dict(BOARD)
    out.update(DAC.get(dac, {}))
    out.update(ADC.get(adc, {}))
    return out
