"""The ``sys`` module of the virtual board (MicroPython code: runs inside the VM, not on the host).

The builtin ``sys`` of the WASI build, with the ``platform`` of the board it stands in for: ``"rp2"``, as a
Pico's MicroPython reports (the WASI build says ``"linux"``), so ``pgt flash`` detects the board type and the
firmware picks its rp2 defaults as on a Pico. The ROM puts it in ``sys.modules`` as ``sys``.
"""

import sys as _sys

for _name in dir(_sys):
    if not _name.startswith("__"):
        globals()[_name] = getattr(_sys, _name)

platform = "rp2"
