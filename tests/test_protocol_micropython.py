"""The protocol code gives byte-identical results under CPython and in a real MicroPython VM."""

from __future__ import annotations

import binascii
from collections.abc import Callable

import parity_probe
import pytest
from corpus import codec_corpus, frame_corpus, request_corpus
from mpvm import MicroPythonVM


def _in_vm(vm: MicroPythonVM, probe: str, corpus: list[bytes], extra_args: str = "") -> list[str]:
    path = vm.put("corpus.txt", "\n".join(binascii.hexlify(d).decode() for d in corpus).encode())
    out = vm.run(
        "import binascii, parity_probe\n"
        "for h in open(%r).read().split('\\n'):\n"
        "    print(parity_probe.%s(binascii.unhexlify(h)%s))\n" % (path, probe, extra_args)
    )
    return out.splitlines()


def _check(vm: MicroPythonVM, name: str, fn: Callable[..., str], corpus: list[bytes], *args: int) -> None:
    expected = [fn(d, *args) for d in corpus]
    extra = "".join(", %d" % a for a in args)
    got = _in_vm(vm, name, corpus, extra)
    assert len(got) == len(expected)
    for i, (e, g) in enumerate(zip(expected, got)):
        assert g == e, "corpus item %d: %r" % (i, corpus[i][:40])


def test_codec_parity(mpvm: MicroPythonVM) -> None:
    _check(mpvm, "probe_codec", parity_probe.probe_codec, codec_corpus())


@pytest.mark.parametrize("chunk", [1, 5, 64, 100000])
def test_frame_decoder_parity(mpvm: MicroPythonVM, chunk: int) -> None:
    _check(mpvm, "probe_frames", parity_probe.probe_frames, frame_corpus(), chunk)


def test_stream_reader_parity(mpvm: MicroPythonVM) -> None:
    _check(mpvm, "probe_stream", parity_probe.probe_stream, frame_corpus())


def test_request_validation_parity(mpvm: MicroPythonVM) -> None:
    _check(mpvm, "probe_validate", parity_probe.probe_validate, request_corpus())


def test_probes_see_real_differences() -> None:
    """The probes are not blind: different inputs give different descriptions."""
    assert parity_probe.probe_codec(b"\x01") != parity_probe.probe_codec(b"\x02")
    assert "drops:bad_crc=1" in parity_probe.probe_frames(frame_corpus()[5], 7)
