"""The virtual board's "ROM" (MicroPython code: runs inside the VM as ``micropython -c``, one VM per boot).

It plays the part of a MicroPython port's C runtime: installs the virtual ``machine`` module, runs
``/main.py`` on a normal boot (as a board does after reset or a friendly-REPL soft reset), then serves the
REPL on stdin/stdout: the friendly REPL (echo, Ctrl-A/B/C/D), the raw REPL (code until Ctrl-D, answered
``OK`` output ``\\x04`` error ``\\x04>``) and raw-paste mode (``\\x05A\\x01``, flow-controlled windows). A soft
reset ends this VM with exit code 3 (friendly: the next boot runs main.py) or 4 (raw: it does not), and the
host starts a fresh VM on the same filesystem: a soft reset clears the heap, as on a board.
The host prepends ``BOOT_MODE = "main" | "raw"`` and ``UID = b"..."`` (this board's ``machine.unique_id()``).
``machine.reset()`` (``mpremote reset``) ends the VM like a soft reset from the friendly REPL: the next boot
runs main.py, as after a real reset. ``os`` is ``vboard_os`` (sizes in ``ilistdir``, ``statvfs`` for ``df``),
``sys`` is ``vboard_sys`` (``sys.platform`` is ``"rp2"``, as on a Pico), ``time`` is ``vboard_time`` (its
``sleep_us`` tells the host how long the board waits).
"""

import sys

BOOT_MODE = globals().get("BOOT_MODE", "main")  # noqa: F821 - set by the host
sys.path.append("/lib")
sys.path.insert(0, "/vb")
import vboard_machine  # noqa: E402
import vboard_os  # noqa: E402
import vboard_sys  # noqa: E402
import vboard_time  # noqa: E402

sys.path.pop(0)
sys.modules["machine"] = vboard_machine
sys.modules["time"] = vboard_time
sys.modules["os"] = vboard_os
sys.modules["vfs"] = vboard_os.vfs
sys.modules["sys"] = vboard_sys  # (this ROM keeps the builtin as its own ``sys``)
vboard_machine.UID[0] = globals().get("UID", b"\x76\x62\x6f\x61\x72\x64\x00\x01")

_in = sys.stdin.buffer
_out = sys.stdout.buffer
_one = bytearray(1)
BANNER = (b"MicroPython v1.27.0 on pgt-virtual-board; virtual rp2 with a simulated ring\r\n"
          b"Type \"help()\" for more information.\r\n")
WINDOW = 128


def getc():
    if not _in.readinto(_one):
        raise SystemExit(0)
    return _one[0]


def run_main():
    try:
        f = open("main.py")
    except OSError:
        return
    src = f.read()
    f.close()
    try:
        exec(src, {"__name__": "__main__"})
    except KeyboardInterrupt:
        pass
    except Exception as e:  # noqa: BLE001 - print it as a board does, then give the REPL
        sys.print_exception(e)


def execute(src, g):
    try:
        exec(src, g)
    except SystemExit:
        pass
    except vboard_machine.HardReset:
        raise
    except BaseException as e:  # noqa: BLE001
        _out.write(b"\x04")
        sys.print_exception(e, sys.stdout)
        _out.write(b"\x04")
        return
    _out.write(b"\x04\x04")


def raw_paste():
    _out.write(b"R\x01" + bytes((WINDOW & 0xFF, WINDOW >> 8)) + b"\x01")
    buf = bytearray()
    remain = WINDOW
    while True:
        c = getc()
        if c == 4:
            _out.write(b"\x04")
            return bytes(buf)
        if c == 3:
            _out.write(b"\x04")
            return None
        buf.append(c)
        remain -= 1
        if remain == 0:
            _out.write(b"\x01")
            remain = WINDOW


def raw_repl(g):
    _out.write(b"raw REPL; CTRL-B to exit\r\n>")
    buf = bytearray()
    while True:
        c = getc()
        if c == 1:  # Ctrl-A again: a fresh raw REPL
            buf = bytearray()
            _out.write(b"raw REPL; CTRL-B to exit\r\n>")
        elif c == 2:  # Ctrl-B: friendly REPL
            _out.write(b"\r\n")
            return
        elif c == 3:
            buf = bytearray()
        elif c == 5 and not buf:
            if getc() == 65 and getc() == 1:  # "\x05A\x01": raw paste
                src = raw_paste()
                if src is not None:
                    execute(src, g)
                    _out.write(b">")
        elif c == 4:
            if not buf:  # soft reset, staying in the raw REPL
                _out.write(b"OK\r\nMPY: soft reboot\r\n")
                raise SystemExit(4)
            _out.write(b"OK")
            execute(bytes(buf), g)
            _out.write(b">")
            buf = bytearray()
        else:
            buf.append(c)


def friendly(g):
    _out.write(BANNER + b">>> ")
    line = bytearray()
    while True:
        c = getc()
        if c in (1, 2) and line:  # Ctrl-A/B on a typed line move the cursor (ignored here), as on a board
            continue
        if c == 1:  # Ctrl-A on an empty line: the raw REPL
            _out.write(b"\r\n")
            raw_repl(g)
            _out.write(BANNER + b">>> ")
        elif c == 3:
            line = bytearray()
            _out.write(b"\r\nKeyboardInterrupt\r\n>>> ")
        elif c == 2:  # Ctrl-B: the banner again, as a board prints it
            line = bytearray()
            _out.write(b"\r\n" + BANNER + b">>> ")
        elif c == 4 and not line:
            _out.write(b"\r\nMPY: soft reboot\r\n")
            raise SystemExit(3) from None
        elif c in (13, 10):
            _out.write(b"\r\n")
            if line:
                src = bytes(line)
                line = bytearray()
                try:
                    try:
                        r = eval(src, g)
                        if r is not None:
                            print(repr(r))
                    except SyntaxError:
                        exec(src, g)
                except Exception as e:  # noqa: BLE001
                    sys.print_exception(e, sys.stdout)
            _out.write(b">>> ")
        elif c in (8, 127):
            if line:
                line = line[:-1]
                _out.write(b"\x08 \x08")
        elif c >= 32:
            line.append(c)
            _out.write(bytes((c,)))


g = {"__name__": "__main__"}
try:
    if BOOT_MODE == "main":
        run_main()
        friendly(g)
    else:
        raw_repl(g)
        friendly(g)
except vboard_machine.HardReset:  # machine.reset(): the next boot runs main.py
    raise SystemExit(3) from None
