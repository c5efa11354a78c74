"""The ``os`` and ``vfs`` modules of the virtual board (MicroPython code: runs inside the VM, not on the host).

The VM's filesystem is a host directory seen through WASI, where ``os.ilistdir`` reports no sizes and
``os.statvfs`` / ``vfs.mount()`` are not implemented. This module is the builtin ``os`` with those three made
to answer as on a Pico: entries carry their sizes (``mpremote ls``), and the filesystem is one littlefs of
352 blocks of 4096 bytes mounted at ``/`` (a Pico's 1408 KiB), its used blocks counted from the files in it
(``mpremote df``). The ROM puts it in ``sys.modules`` as ``os`` and its ``vfs`` object as ``vfs``.
"""

import os as _os

for _name in dir(_os):
    if not _name.startswith("__"):
        globals()[_name] = getattr(_os, _name)

BLOCK = 4096
BLOCKS = 352  # a Pico (2 MB flash): 1408 KiB of littlefs at /


def _join(path, name):
    if path in ("", "."):
        return name
    return path + name if path.endswith("/") else path + "/" + name


def ilistdir(*args):
    path = args[0] if args else ""
    for entry in _os.ilistdir(*args):  # (no argument: the current directory, which "." is not in WASI)
        size = 0
        if entry[1] & 0x8000:  # a file
            try:
                size = _os.stat(_join(path, entry[0]))[6]
            except OSError:
                pass
        yield (entry[0], entry[1], entry[2] if len(entry) > 2 else 0, size)


def _used(path):
    blocks = 1  # the directory itself
    for entry in ilistdir(path):
        if entry[1] & 0x4000:
            blocks += _used(_join(path, entry[0]))
        else:
            blocks += (entry[3] + BLOCK - 1) // BLOCK
    return blocks


def statvfs(path):
    free = BLOCKS - min(_used("/"), BLOCKS)
    return (BLOCK, BLOCK, BLOCKS, free, free, 0, 0, 0, 0, 255)


class _Vfs:
    def __repr__(self):
        return "<VfsLfs2>"

    def statvfs(self, path):
        return statvfs(path)


class vfs:  # noqa: N801 - stands in for the vfs module
    @staticmethod
    def mount(*args, **kw):
        if args or kw:
            raise OSError(1)  # EPERM: the virtual board has one filesystem
        return [(_Vfs(), "/")]
