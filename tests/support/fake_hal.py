"""A deterministic pure-Python HAL (runs under CPython and MicroPython) that records what it was told."""

import struct

from pgt.firmware.hal_base import HAL


class FakeHAL(HAL):
    def __init__(self, k=4, m=3, max_batch=64):
        self.k = k
        self.m = m
        self.max_batch = max_batch
        self.events = []
        self.out = bytearray(2 * m * max_batch)
        self.fail_next = False

    def info(self):
        return {"board": "fake", "uid": "f00d", "k": self.k, "m": self.m, "dac_bits": 12, "adc_bits": 12,
                "dac_mA_per_code": 0.025, "dac_mA_offset": 0.0, "adc_V_per_code": 3.3 / 65535,
                "adc_V_offset": 0.0, "limit_lo": [0] * self.k, "limit_hi": [3000] * self.k,
                "max_batch": self.max_batch}

    def zero(self):
        self.events.append("zero")

    def apply_and_sample(self, drive, n, settle_us, n_avg):
        if self.fail_next:
            self.fail_next = False
            raise OSError("adc timeout")
        k = self.k
        self.events.append("run n=%d max=%d min=%d" % (n, max(drive), min(drive)))
        for i in range(n):
            s = 0
            for j in range(k):
                s += drive[i * k + j] * (j + 1)
            for c in range(self.m):
                struct.pack_into("<H", self.out, 2 * (i * self.m + c), (s * (c + 3) + settle_us + n_avg) & 0xFFFF)
        self.elapsed_us = n * (settle_us + 10 * n_avg)
        return memoryview(self.out)[0 : 2 * n * self.m]


class FakeClock:
    def __init__(self):
        self.t = 0

    def __call__(self):
        return self.t
