"""The ``time`` module of the virtual board (MicroPython code: runs inside the VM, not on the host).

The builtin ``time`` with ``sleep_us`` made visible to the host: before it sleeps it tells the ring how long
(op ``W``, microseconds, on the pin channel of ``vboard_machine``), so the drive filter settles on the board's
own device clock — the settle waits and the call costs — not on the VM's slow wall clock.
"""

import time as _time

import vboard_machine

for _name in dir(_time):
    if not _name.startswith("__"):
        globals()[_name] = getattr(_time, _name)


def sleep_us(us):
    left = us
    while left > 0:
        part = left if left < 60000 else 60000
        vboard_machine._send(87, 0, part)  # "W"
        left -= part
    _time.sleep_us(us)
