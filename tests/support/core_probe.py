"""Drive a Core with a script of requests and clock steps; describe every reply and HAL event as text.

Runs unchanged under CPython and MicroPython, so the parity test can compare the two byte for byte.
Script lines: ``req <hex payload>``, ``wait <ms>``, ``poll``, ``fail`` (the HAL fails its next block).
"""

import binascii

from fake_hal import FakeClock, FakeHAL

from pgt.firmware.core import Core


def run_script(lines):
    hal = FakeHAL()
    clock = FakeClock()
    core = Core(hal, clock, max_frame=1024, files={"core.py": "0"}, boot_id=0x0B007ED)
    out = []
    for line in lines:
        word, _, arg = line.partition(" ")
        if word == "req":
            out.append("reply " + binascii.hexlify(core.handle(binascii.unhexlify(arg))).decode())
        elif word == "wait":
            clock.t += int(arg)
        elif word == "poll":
            out.append("poll %r" % core.poll())
        elif word == "fail":
            hal.fail_next = True
        for e in hal.events:
            out.append("hal " + e)
        hal.events = []
    out.append("exit %r driving %r" % (core.exit_requested, core.driving))
    return out
