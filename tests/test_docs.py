"""docs/*.md say true things: the board.json keys and defaults of docs/hardware.md are firmware/board.py's, and
docs/protocol.md's error codes (and its examples of them) are what protocol/messages.py and the Core give."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

from pgt.firmware import board as fwboard
from pgt.protocol import messages

DOCS = Path(__file__).resolve().parents[1] / "docs"
HARDWARE = (DOCS / "hardware.md").read_text()
PROTOCOL = (DOCS / "protocol.md").read_text()


def _section(text: str, heading: str) -> str:
    """The text under the heading line ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ")[0]
    match = re.search(rf"^{re.escape(heading)}\n(.*?)(?=^#{{1,{len(level)}}} |\Z)", text, re.S | re.M)
    assert match, f"no section {heading!r}"
    return match.group(1)


def _rows(text: str) -> list[list[str]]:
    """The cells of every table body row in ``text`` (header and rule rows left out)."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|") and not line.startswith("|---")]
    return [r for r in rows if r[0] not in ("key", "code", "signal", "MCP3208 pin")]


BOARD_ROWS = _rows(_section(HARDWARE, "## Board config (`board.json` on the board)"))


def _documented_keys() -> set[str]:
    return {k for row in BOARD_ROWS for k in re.findall(r"`([a-z][A-Za-z0-9_]*)`", row[0])}


def _firmware_keys() -> set[str]:
    """Every key of a resolved config, on each board type, with each external converter."""
    keys: set[str] = set()
    for kind in fwboard.DEFAULTS:
        for extra in ({}, {"dac": "mcp4922"}, {"adc": "mcp3208"}):
            keys |= set(fwboard.resolve(dict(extra, board=kind)))
    return keys


def test_the_board_json_table_lists_exactly_the_firmware_keys() -> None:
    from pgt.board_config import config_keys

    documented = _documented_keys()
    assert documented == _firmware_keys(), (sorted(documented - _firmware_keys()),
                                            sorted(_firmware_keys() - documented))
    assert config_keys() == _firmware_keys()  # what `pgt flash/sim --config` accept


def test_the_example_board_json_is_valid(tmp_path: Path) -> None:
    import json

    example = re.search(r"```json\n(.*?)```", HARDWARE, re.S)
    assert example
    cfg = json.loads(example.group(1))
    assert set(cfg) <= _firmware_keys()
    fwboard.check(fwboard.resolve(cfg))
    from pgt.board_config import read_config

    path = tmp_path / "board.json"
    path.write_text(example.group(1))
    assert read_config(path) == cfg  # what `pgt flash --config` accepts


def _number(text: str) -> Any:
    return float(text) if "." in text else int(text)


def test_the_documented_numeric_defaults_are_the_firmwares() -> None:
    """Rows whose default cell is numbers only (``a`` for both boards or ``rp2 / esp32``, one value per key)."""
    checked = 0
    for row in BOARD_ROWS:
        keys = re.findall(r"`([a-z][A-Za-z0-9_]*)`", row[0])
        default = row[-1]
        if not re.fullmatch(r"-?\d[\d., -]*( / -?\d[\d., -]*)?", default):
            continue
        per_board = default.split(" / ") * (2 if " / " not in default else 1)
        for kind, values in zip(("rp2", "esp32"), per_board):
            numbers = [_number(v.strip()) for v in values.split(",")]
            assert len(numbers) == len(keys), row
            cfg = fwboard.resolve({"board": kind})
            for key, value in zip(keys, numbers):
                if key not in cfg:  # a key of one board type only (pwm_freq: rp2)
                    assert kind != "rp2", key
                    continue
                got = cfg[key]
                assert (got == [value] * len(got)) if isinstance(got, list) else got == value, (kind, key, got)
                checked += 1
    assert checked >= 12  # the table was read


def test_the_error_code_table_is_protocol_messages() -> None:
    rows = _rows(_section(PROTOCOL, "### Error codes (stable; new codes are only ever added)"))
    table = {int(r[0]): r[1] for r in rows}
    assert table == messages.ERROR_NAMES
    for code, name in table.items():
        assert getattr(messages, "E_" + name.upper()) == code


def _literal(text: str) -> Any:
    """A documented request or reply map (``nil`` is None, ``B`` the boot id) as Python, or None if it is prose."""
    try:
        return ast.literal_eval(re.sub(r"\bnil\b", "None", text).replace(": B,", ": 'B',"))
    except (ValueError, SyntaxError):
        return None


def _request_payload(cell: str) -> bytes | None:
    """The payload of a documented request: a ``payload `HEX` `` or a map literal with no repeated key (a bin
    written ``(N bytes)`` holds N zero bytes)."""
    from pgt.protocol import mpack

    raw = re.fullmatch(r"payload `([0-9a-f ]+)`.*", cell)
    if raw:
        return bytes.fromhex(raw.group(1))
    literal = re.fullmatch(r"`(\{.*\})`", cell)
    if literal is None or literal.group(1).count('"op"') > 1:  # a dict literal would drop the repeated key
        return None
    text = re.sub(r"\((\d+) bytes\)", lambda m: "b'" + "\\x00" * int(m.group(1)) + "'", literal.group(1))
    req = _literal(text)  # "(260 bytes)" stands for that many zero bytes
    return mpack.encode(req) if req is not None else None


ERROR_ROWS = [r for r in _rows(_section(PROTOCOL, "### One example per error code")) if r[0].isdigit()]
# The examples that are exact requests (the others describe a fault: a repeated key, a failing ADC, a bug).
EXAMPLES = [r for r in ERROR_ROWS if _request_payload(r[1]) is not None]


def test_every_error_code_has_an_example_and_most_are_exact() -> None:
    assert {int(r[0]) for r in ERROR_ROWS} == set(messages.ERROR_NAMES)
    assert {int(r[0]) for r in EXAMPLES} >= {1, 2, 3, 4, 5, 6, 7}


@pytest.mark.parametrize("row", EXAMPLES, ids=[f"code{r[0]}-{i}" for i, r in enumerate(EXAMPLES)])
def test_each_error_example_is_what_the_device_replies(row: list[str]) -> None:
    from pgt.protocol import mpack
    from pgt.sim.device import make_core

    code, request, reply = row
    payload = _request_payload(request)
    rep_text = re.match(r"`(\{.*?\})`", reply)
    assert payload is not None and rep_text
    expected = _literal(rep_text.group(1))
    core = make_core(noise_free=True, max_frame=16384)  # the default rp2 board the examples name ...
    core.max_batch = 64  # ... with a board's max_batch (the simulator keeps a larger one)
    got = mpack.decode(core.handle(payload))
    assert got["code"] == expected["code"] == int(code)
    assert (got["seq"], got["req"], got["op"]) == (expected["seq"], expected["req"], expected["op"])
    assert got["msg"] == expected["msg"]


def _reply(op: str, **fields: Any) -> dict[str, Any]:
    from pgt.protocol import mpack
    from pgt.sim.device import make_core

    core = make_core(noise_free=True)
    return dict(mpack.decode(core.handle(mpack.encode(dict(fields, op=op, seq=1)))))


def test_the_hello_table_lists_exactly_the_hello_reply() -> None:
    rows = _rows(_section(PROTOCOL, "### `hello` — who are you?"))
    documented = {k for row in rows for k in re.findall(r"`([a-z][A-Za-z_]*)`", row[0])}
    assert documented | {"op", "seq"} == set(_reply("hello"))


def test_the_status_and_config_replies_hold_the_documented_fields() -> None:
    status = _section(PROTOCOL, "### `status` — counters")
    documented = set(re.findall(r"`([a-z_]+)`", status.split("`link`")[0])) | {"link"}
    got = _reply("status")
    assert documented | {"op", "seq", "boot"} == set(got)
    assert isinstance(got["link"], dict)  # (its counters come from a serve loop; in process there is none)
    config = _reply("config")  # "Defaults after boot: 1000 µs, 4, 2000 ms, the board limits."
    assert (config["settle_us"], config["n_avg"], config["timeout_ms"]) == (1000, 4, 2000)
    hello = _reply("hello")
    assert (config["drive_lo"], config["drive_hi"]) == (hello["limit_lo"], hello["limit_hi"])


def test_the_sim_url_options_hardware_md_names_are_known() -> None:
    from pgt.link import sim_options

    named = re.search(r"\(options: (.*?)\)", HARDWARE, re.S)
    assert named
    options = re.findall(r"`([a-z_]+)`", named.group(1))
    assert len(options) >= 8
    values = {"board": "rp2", "channels": "2,3", "config": "", "seed": "1", "model": "B", "noise_free": "1",
              "settle": "skip", "max_frame": "4096"}
    for option in options:
        if option != "config":  # (a path to a board.json: the file's keys are checked by test_cli_client)
            sim_options(f"sim://?{option}={values[option]}")


def test_the_hello_board_field_is_described_as_it_is() -> None:
    row = next(r for r in _rows(_section(PROTOCOL, "### `hello` — who are you?")) if r[0] == "`board`")
    assert f"`{_reply('hello')['board']}`" in row[2]  # the simulated default board's name, as documented
    for kind in fwboard.DEFAULTS:
        assert f"`{fwboard.resolve({'board': kind})['name']}`" in row[2]


# -- the spec's settled points, checked from the text of docs/protocol.md -------------------------------------


def _doc_number(pattern: str, text: str = PROTOCOL) -> int:
    match = re.search(pattern, text.replace("\n", " "))
    assert match, pattern
    return int(match.group(1))


def test_an_error_reply_is_never_longer_than_the_stated_bound() -> None:
    from pgt.protocol import mpack
    from pgt.sim.device import make_core

    bound = _doc_number(r"An error reply's payload is therefore at most (\d+) bytes")
    echo = _doc_number(r"the request's op cut to its first (\d+) characters")
    msg = _doc_number(r"printable ASCII, at most (\d+) characters")
    worst = mpack.encode(messages.error_reply(0xFFFFFFFF, 0xFFFFFFFF, 9, "m" * 500, "\u00e9" * 500))
    assert len(worst) == bound  # the bound is reached, not exceeded, with every field at its limit
    reply = mpack.decode(worst)
    assert len(reply["msg"]) == msg and reply["req"] == "?" * echo
    core = make_core(noise_free=True)
    got = core.handle(mpack.encode({"op": "x" * 1000, "seq": 0xFFFFFFFF}))
    assert len(got) <= bound and mpack.decode(got)["req"] == "x" * echo


@pytest.mark.parametrize("max_frame", [4096, 1 << 17])
def test_no_reply_is_longer_than_max_frame(max_frame: int) -> None:
    """A ping's reply is its data plus at most the stated bytes; one that would not fit in max_frame is error 7,
    and so is a hello that would not."""
    from pgt.device_files import file_hashes
    from pgt.protocol import mpack
    from pgt.sim.device import make_core

    extra = _doc_number(r"The reply's payload is the data plus at most (\d+) bytes")
    core = make_core(noise_free=True, max_frame=max_frame, files=file_hashes())
    assert mpack.decode(core.handle(mpack.encode({"op": "hello", "seq": 1})))["max_frame"] == max_frame
    codes = {}
    for n in range(max_frame - extra - 8, max_frame + 2):
        reply = core.handle(mpack.encode({"op": "ping", "seq": 7, "data": b"\xab" * n}))
        assert len(reply) <= max_frame
        got = mpack.decode(reply)
        codes[n] = got.get("code")
        if got["op"] == "ping":
            assert got["data"] == b"\xab" * n and len(reply) - n <= extra
    assert codes[max_frame - extra] is None and codes[max_frame] == messages.E_TOO_LARGE
    core.max_frame = 1024  # a device whose hello would not fit
    hello = mpack.decode(core.handle(mpack.encode({"op": "hello", "seq": 2})))
    assert (hello["op"], hello["code"], hello["seq"]) == ("error", messages.E_TOO_LARGE, 2)


def test_the_frame_timeout_default_is_the_same_on_boards_and_in_the_simulator() -> None:
    stated = _doc_number(r"`hello`; (\d+) ms by default, on boards and in the simulator alike")
    assert _reply("hello")["frame_timeout_ms"] == stated
    for kind in fwboard.DEFAULTS:
        assert fwboard.resolve({"board": kind})["frame_timeout_ms"] == stated


def test_the_error_examples_board_and_the_simulators_max_batch() -> None:
    text = _section(PROTOCOL, "### One example per error code")
    board = _doc_number(r"and `max_batch` (\d+): the default rp2 board", text)
    assert fwboard.resolve({"board": "rp2"})["max_batch"] == board
    assert _reply("hello")["max_batch"] == _doc_number(r"report `max_batch` (\d+)", text)


class _Wire:
    """A client written from docs/protocol.md: frames to a simulated board on a pty, replies read back."""

    def __init__(self, path: str) -> None:
        import serial

        self.ser = serial.serial_for_url(path, timeout=5)

    def send(self, payload: bytes) -> bytes:
        from pgt.protocol import framing

        data = framing.encode(payload)
        self.ser.write(data)
        return data

    def reply(self) -> dict[str, Any]:
        """The next frame (section 1: the magic, the rest of the 12-byte header, the payload, its CRC-32)."""
        import binascii
        import struct

        import msgpack

        skipped = b""
        while not skipped.endswith(b"PG"):  # a reader looks for the magic (a REPL's text may come first)
            byte = self.ser.read(1)
            assert byte, f"no reply (heard {skipped!r})"
            skipped += byte
        head = b"PG" + self.ser.read(10)
        magic, version, flags, length, check = struct.unpack("<2sBBII", head)
        assert (magic, version, flags, check) == (b"PG", 1, 0, binascii.crc32(head[:8]))
        body = self.ser.read(length + 4)
        assert struct.unpack("<I", body[length:])[0] == binascii.crc32(body[:length])
        return dict(msgpack.unpackb(body[:length]))

    def ask(self, op: str, seq: int, **fields: Any) -> dict[str, Any]:
        import msgpack

        self.send(msgpack.packb({"op": op, "seq": seq, **fields}))
        reply = self.reply()
        assert reply["seq"] == seq
        return reply

    def until(self, marker: bytes) -> bytes:
        got = self.ser.read_until(marker)
        assert got.endswith(marker), got
        return got


def test_status_counts_as_documented_and_out_of_sync_bytes_are_not_garbage() -> None:
    import msgpack

    from pgt.sim.serve import PtyServer

    with PtyServer(_core()) as srv:
        wire = _Wire(srv.start())
        wire.ask("hello", 1)
        bad_run = msgpack.packb({"op": "run", "seq": 2, "n": 1, "k": 3, "drive": b"\0" * 6})
        wire.send(bad_run)
        assert wire.reply()["code"] == messages.E_BAD_SHAPE
        wire.send(bad_run)  # resent: answered from the cache
        assert wire.reply()["code"] == messages.E_BAD_SHAPE
        wire.ser.write(b"line noise ")  # in sync: one garbage drop
        status = wire.ask("status", 3)
        assert (status["requests"], status["errors"], status["duplicates"]) == (4, 1, 1)
        assert status["link"] == {"frames_in": 4, "frames_out": 3, "dropped": {"garbage": 1}}
        from pgt.protocol import framing

        bad = bytearray(framing.encode(msgpack.packb({"op": "ping", "seq": 4, "data": b"\x11" * 64})))
        bad[5] ^= 0x40  # a line error in the header's length: dropped; the rest of the frame follows, out of sync
        wire.ser.write(bytes(bad))
        status = wire.ask("status", 5)
        assert status["link"]["dropped"] == {"garbage": 1, "bad_header": 1}  # its rest is not garbage
        assert status["requests"] == status["link"]["frames_in"] == 5


def _core() -> Any:
    from pgt.sim.device import make_core

    return make_core(noise_free=True)


def test_the_simulators_repl_as_documented() -> None:
    import msgpack

    from pgt.sim.serve import PtyServer

    with PtyServer(_core()) as srv:
        wire = _Wire(srv.start())
        boot = wire.ask("config", 1, n_avg=7)["boot"]
        wire.ser.write(b"\x03")  # Ctrl-C between frames: the REPL, drive zero
        wire.until(b">>> ")
        wire.ser.write(b"print(1)\r")  # typing is ignored; Enter gives a new prompt
        wire.until(b"\r\n>>> ")
        resumed = wire.ask("hello", 2)  # a frame resumes the same device
        assert resumed["boot"] == boot and resumed["n_avg"] == 7
        wire.ser.write(b"\x03")
        wire.until(b">>> ")
        wire.ser.write(b"\x01")  # Ctrl-A: a raw REPL, which cannot run code
        wire.until(b"raw REPL; CTRL-B to exit\r\n>")
        wire.ser.write(b"import machine\x04")
        answer = wire.until(b"\x04>")
        assert answer.startswith(b"OK\x04") and b"OSError" in answer
        wire.ser.write(b"\x02")  # Ctrl-B: the friendly REPL's banner and prompt
        wire.until(b">>> ")
        wire.ser.write(b"\x04")  # Ctrl-D: a soft reset, a fresh device serving again
        wire.until(b"MPY: soft reboot")
        fresh = wire.ask("hello", 3)
        assert fresh["boot"] != boot and fresh["n_avg"] == _reply("hello")["n_avg"]
        assert wire.ask("status", 4)["requests"] == 2
        wire.send(msgpack.packb({"op": "exit", "seq": 5}))
        wire.reply()
        wire.until(b">>> ")
        wire.ser.write(b"\x01")
        wire.until(b"raw REPL; CTRL-B to exit\r\n>")
        wire.ser.write(b"\x04")  # from the raw REPL the fresh device stays at the raw REPL
        wire.until(b"MPY: soft reboot")
        wire.until(b"raw REPL; CTRL-B to exit\r\n>")
        assert not srv.serving
        assert wire.ask("hello", 6)["boot"] not in (boot, fresh["boot"])  # a frame resumes it
