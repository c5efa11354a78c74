"""HAL for the ESP32 (classic: the one with DACs).

Drive: the two built-in 8-bit DACs on GPIO25 and GPIO26 (``dac: "builtin"``; 0..~3.2 V, so the current
source sees 256 steps), or an external MCP4922 on SPI (``dac: "mcp4922"``, 12 bits). Created at zero codes.

Sample: ``machine.ADC`` on ADC1 pins (ADC2 cannot be used while Wi-Fi is on) with the attenuation from the
config (``adc_atten``: 0db ~0-0.95 V, 2.5db ~0-1.25 V, 6db ~0-1.75 V, 11db ~0.15-2.45 V usable), read with
``read_u16`` (12-bit converter on the 16-bit scale) and averaged ``n_avg`` times. The ESP32's ADC is
non-linear near both ends of each range; ``read_uv`` is calibrated but slow, so the HAL reports raw codes and
the host calibrates (docs/hardware.md). With ``adc: "mcp3208"`` the samples come from an external MCP3208 on
SPI instead (up to 8 taps; ``hal_common.MCP3208``).
"""

import machine

from pgt.firmware.hal_common import MCP4922, BoardHAL

ATTEN = {"0db": "ATTN_0DB", "2.5db": "ATTN_2_5DB", "6db": "ATTN_6DB", "11db": "ATTN_11DB"}


class ESP32HAL(BoardHAL):
    def _setup(self):
        cfg = self.cfg
        if cfg["dac"] == "mcp4922":
            self.dac = MCP4922(cfg)
            self._write = self.dac.write  # type: ignore[method-assign]
        else:
            self.dacs = []
            for j in range(self.k):
                dac = machine.DAC(machine.Pin(cfg["drive_pins"][j]))
                dac.write(self.zero_code[j])
                self.dacs.append(dac)
            self._dac_writes = [d.write for d in self.dacs]

    def _setup_adcs(self):
        cfg = self.cfg
        atten = getattr(machine.ADC, ATTEN[cfg["adc_atten"]])
        for pin in cfg["adc_pins"]:
            adc = machine.ADC(machine.Pin(pin))
            adc.atten(atten)
            self.adcs.append(adc)

    def _write(self, j, code):
        self._dac_writes[j](code)


def make(cfg, timer=None):
    return ESP32HAL(cfg, timer)
