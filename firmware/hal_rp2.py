"""HAL for the Raspberry Pi Pico (RP2040 / RP2350).

Drive: the RP2040 has no DAC. With ``dac: "pwm"`` each drive pin is a PWM output (default 30 kHz, a little
over 12 bits of duty resolution at 125 MHz) followed by an RC low-pass filter and the current-source stage;
a 12-bit code c becomes the duty ``c * 65535 / 4095`` (exact at 0 and full scale). With ``dac: "mcp4922"`` an
external MCP4922 on SPI gives two true 12-bit outputs. Either way the outputs are created at their zero codes.

Sample: ``machine.ADC.read_u16`` (12-bit converter, reported on the 16-bit scale), averaged ``n_avg`` times.
The RP2040 ADC has about 8.7 effective bits, and differential non-linearity spikes at the raw codes 512,
1536, 2560 and 3584 (erratum RP2040-E11): those codes are several LSB wide. Averaging divides the random
noise by about sqrt(n_avg) (n_avg 4 -> ~9.7 bits, 16 -> ~10.7 bits) but not the DNL spikes, which are a
fixed property of the transfer curve: near those four levels the host sees a step of a few raw LSB
(about 0.1 % of full scale). docs/hardware.md says what to do about it. With ``adc: "mcp3208"`` the samples
come from an external MCP3208 on SPI instead (up to 8 taps; ``hal_common.MCP3208``).
"""

import machine

from pgt.firmware.hal_common import MCP4922, BoardHAL


class RP2HAL(BoardHAL):
    def _setup(self):
        cfg = self.cfg
        bits = cfg["dac_bits"]
        self._shift = 16 - bits
        self._back = bits - self._shift
        if cfg["dac"] == "mcp4922":
            self.dac = MCP4922(cfg)
            self._write = self.dac.write  # type: ignore[method-assign]
        else:
            self.pwms = []
            for j in range(self.k):
                pwm = machine.PWM(machine.Pin(cfg["drive_pins"][j]))
                pwm.duty_u16(self._duty(self.zero_code[j]))
                pwm.freq(cfg["pwm_freq"])
                pwm.duty_u16(self._duty(self.zero_code[j]))
                self.pwms.append(pwm)
            self._duties = [p.duty_u16 for p in self.pwms]

    def _setup_adcs(self):
        cfg = self.cfg
        for pin in cfg["adc_pins"]:
            self.adcs.append(machine.ADC(machine.Pin(pin)))

    def _duty(self, code):
        # c << s | c >> (bits - s): 0 -> 0, full scale -> 65535, monotonic, no multiply or division
        return (code << self._shift) | (code >> self._back)

    def _write(self, j, code):
        self._duties[j]((code << self._shift) | (code >> self._back))


def make(cfg, timer=None):
    return RP2HAL(cfg, timer)
