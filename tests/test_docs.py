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
