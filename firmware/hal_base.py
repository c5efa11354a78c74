"""The block-level hardware interface the Core drives. Board HALs and the simulator's HAL implement it.

A HAL owns the DAC/PWM outputs and the ADC inputs of one board. Its methods:

- ``info()`` -> dict with ``board`` (str), ``uid`` (str), ``k`` (drive channels), ``m`` (sample channels),
  ``dac_bits``, ``adc_bits``, ``dac_mA_per_code``, ``dac_mA_offset`` (drive mA = offset + code * per_code),
  ``adc_V_per_code``, ``adc_V_offset`` (volts = offset + code * per_code), ``limit_lo``/``limit_hi`` (safe
  drive codes per channel, from the board config), ``max_batch`` (vectors per run the HAL can buffer).
- ``zero()``: drive every channel to its zero-current code, now. Called on boot, stop, exit, watchdog, fault.
- ``apply_and_sample(drive, n, settle_us, n_avg)``: for each of the n vectors of ``drive`` (an
  ``array('H')`` of n*k codes, row-major, already clamped by the Core): set the k outputs, wait
  ``settle_us``, read each of the m inputs ``n_avg`` times and average. Returns a bytes-like of n*m
  little-endian uint16 codes (it may be a view of a preallocated buffer, valid until the next call) and
  leaves the device time the block took in ``elapsed_us``.
"""


class HAL:
    """Base class documenting the interface; board HALs subclass it."""

    elapsed_us = 0

    def info(self):
        raise NotImplementedError

    def zero(self):
        raise NotImplementedError

    def apply_and_sample(self, drive, n, settle_us, n_avg):
        raise NotImplementedError
