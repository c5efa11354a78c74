"""``pgt selftest``'s analysis (sans-IO): readings in, figures and verdicts out.

Each check turns what the board answered into a :class:`Check` with a verdict (``pass``, ``warn``, ``fail`` or
``skip``), one line for the user and its numbers for the JSON report. ``CHECKS`` names them, with the line
``pgt selftest --help`` shows. The measurement itself (which blocks to run) is ``pgt.commands.selftest``.

Conventions: sample codes are on the 16-bit ``read_u16`` scale (``FULL``); a noise sigma is the standard
deviation of one reading (at the ``n_avg`` it was taken with); effective bits follow the ENOB definition,
``log2(full scale / (sqrt(12) * sigma))``, sigma including the quantisation step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

FULL = 65535.0
VERDICTS = ("pass", "warn", "fail", "skip")

CHECKS = {
    "handshake": "the firmware answers hello; its file hashes match this pgt install's on-device files",
    "settle": "per drive channel, a step response: the settle time to one noise sigma and a settle_us to use; "
              "fails as \"settle too short\" when the board's settle_us is below it",
    "noise": "per tap, the repeat noise of single reads at zero drive and the effective bits (ENOB) it leaves",
    "dnl": "a slow ramp's code histogram: differential non-linearity spikes and missing codes",
    "span": "per tap, how far a drive sweep moves the reading against its repeat noise",
    "watchdog": "host silence: the firmware trips its watchdog and the drive goes to zero, seen on a loopback "
                "wire from drive channel 0's filter output to a spare ADC input (board.json loopback_pin)",
}


@dataclass
class Check:
    """One check's outcome."""

    name: str
    verdict: str
    line: str
    values: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, not {self.verdict!r}")


def report(checks: list[Check], info: dict[str, Any]) -> dict[str, Any]:
    """The JSON report: the board, every check, and the worst verdict."""
    order = {"pass": 0, "skip": 0, "warn": 1, "fail": 2}
    worst = max((c.verdict for c in checks), key=lambda v: order[v], default="pass")
    return {"board": info.get("board"), "uid": info.get("uid"), "k": info.get("k"), "m": info.get("m"),
            "verdict": worst, "checks": [asdict(c) for c in checks]}


# -- handshake ---------------------------------------------------------------------------------------------

def handshake(info: dict[str, Any], expected: dict[str, str]) -> Check:
    """The hello's file hashes against ``expected`` (on-device path -> sha256), main.py and board.json aside."""
    files = info.get("files") or {}
    wrong = sorted(rel for rel, digest in expected.items() if files.get(rel) != digest)
    values = {"proto": info.get("proto"), "fw": info.get("fw"), "files": len(files), "differ": wrong}
    what = f"{info.get('board')} uid {info.get('uid')}, firmware {info.get('fw')}, protocol {info.get('proto')}"
    if any(rel.startswith("pgt_prev/") for rel in files):
        return Check("handshake", "fail", f"{what}: runs the previous tree (/pgt_prev): the flashed one did not "
                     "import; reflash", values)
    if wrong:
        return Check("handshake", "warn", f"{what}: {len(wrong)} file(s) differ from this pgt install "
                     f"({', '.join(wrong[:3])}): reflash with pgt flash", values)
    return Check("handshake", "pass", f"{what}: {len(expected)} files as this pgt install", values)


# -- settle ------------------------------------------------------------------------------------------------

def step_residual(delta: np.ndarray, final: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Per delay, how far one row still is from its settled reading, in noise sigmas (max over taps).

    ``delta`` (D, m): mean reading after a step up minus after a step down, at each delay; ``final`` (m,) the
    same, settled; ``sigma`` (m,) one reading's noise. A row sampled early reads a mix of the old and the new
    drive, so both rows of a pair miss by about the same and the difference by twice that."""
    s = np.maximum(np.asarray(sigma, dtype=np.float64), 1e-9)
    return np.asarray(np.max(np.abs(np.asarray(delta) - final) / (2.0 * s), axis=1))


def settle_time(delays: np.ndarray, residual: np.ndarray) -> float | None:
    """The delay (us) after which the residual stays below one sigma: interpolated on the exponential tail
    between the last delay above 1 and the next; 0 if it never was above; None if it never fell below."""
    d = np.asarray(delays, dtype=np.float64)
    r = np.asarray(residual, dtype=np.float64)
    above = np.nonzero(r >= 1.0)[0]
    if above.size == 0:
        return float(d[0]) if d[0] > 0 else 0.0
    i = int(above[-1])
    if i == d.size - 1:
        return None
    ra, rb = r[i], max(r[i + 1], 1e-3)
    ta, tb = d[i], d[i + 1]
    if ra <= rb:
        return float(tb)
    return float(ta + (tb - ta) * np.log(ra) / np.log(ra / rb))


def recommend_settle(times: list[float | None]) -> int | None:
    """The settle_us to use: the slowest channel's settle time, rounded up to 10 us (None: one never settled)."""
    if any(t is None for t in times):
        return None
    worst = max([float(t) for t in times if t is not None], default=0.0)
    return int(np.ceil(worst / 10.0) * 10)


def settle_check(channels: list[dict[str, Any]], board_settle_us: int, max_delay_us: int) -> Check:
    """Verdict on the settle times of ``channels`` (each: ``time_us`` measured) against the board's settle_us."""
    times = [c["time_us"] for c in channels]
    rec = recommend_settle(times)
    values: dict[str, Any] = {"channels": channels, "recommended_settle_us": rec, "board_settle_us": board_settle_us}
    per = ", ".join(f"ch{j} {'>' + str(max_delay_us) if t is None else format(t, '.0f')} us"
                    for j, t in enumerate(times))
    if rec is None:
        return Check("settle", "fail", f"the drive did not settle within {max_delay_us} us ({per}): check the "
                     "filter (or raise --max-settle-us)", values)
    if board_settle_us < 0.9 * rec:
        return Check("settle", "fail", f"settle too short: the board waits {board_settle_us} us, the drive needs "
                     f"{rec} us ({per}); rows mix with their predecessors (pgt selftest --write stores it)", values)
    if board_settle_us > 3 * max(rec, 100):
        return Check("settle", "warn", f"settle {board_settle_us} us is {board_settle_us / max(rec, 1):.0f}x the "
                     f"measured {rec} us ({per}): rows take longer than needed (--write stores {rec})", values)
    return Check("settle", "pass", f"settles in {rec} us ({per}); the board waits {board_settle_us} us", values)


# -- noise -------------------------------------------------------------------------------------------------

def effective_bits(sigma_codes: np.ndarray, adc_bits: int) -> np.ndarray:
    """ENOB from a single read's noise sigma (16-bit codes); a noise below the converter's quantisation step is
    the step's (a quiet converter has its own resolution)."""
    step = FULL / ((1 << int(adc_bits)) - 1)
    sigma = np.maximum(np.asarray(sigma_codes, dtype=np.float64), step / np.sqrt(12.0))
    return np.asarray(np.log2(FULL / (np.sqrt(12.0) * sigma)))


def noise_check(sigma_codes: np.ndarray, adc_bits: int, volts_per_code: float) -> Check:
    """Verdict on each tap's single-read noise: warn when a tap has fewer than 6 effective bits."""
    enob = effective_bits(sigma_codes, adc_bits)
    values = {"sigma_codes": [float(s) for s in sigma_codes], "sigma_mV": [float(s * volts_per_code * 1e3)
                                                                           for s in sigma_codes],
              "enob": [float(e) for e in enob]}
    per = ", ".join(f"tap{i} {e:.1f} bits ({s * volts_per_code * 1e3:.2f} mV)"
                    for i, (e, s) in enumerate(zip(enob, sigma_codes)))
    if np.any(enob < 6.0):
        return Check("noise", "warn", f"noisy taps: {per}; check the detector's wiring and grounding", values)
    return Check("noise", "pass", f"single reads: {per}", values)


# -- dnl ---------------------------------------------------------------------------------------------------

def dnl(codes: np.ndarray, adc_bits: int, window: int = 17, min_expected: float = 8.0) -> dict[str, Any]:
    """A ramp's code histogram: per converter code, DNL = count / smooth expectation - 1 (the expectation is a
    moving median, so any slow input distribution will do); codes whose expectation is below
    ``min_expected`` are not judged. Returns the judged codes, their DNL, spikes (DNL > 2) and missing codes."""
    shift = 16 - int(adc_bits)
    raw = np.asarray(codes, dtype=np.int64).ravel() >> shift
    n = 1 << int(adc_bits)
    hist = np.bincount(raw, minlength=n).astype(np.float64)
    half = window // 2
    padded = np.pad(hist, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, window)
    expected = np.median(windows, axis=1)
    judged = np.nonzero(expected >= min_expected)[0]
    judged = judged[(judged > 0) & (judged < n - 1)]
    d = hist[judged] / expected[judged] - 1.0
    return {"codes": judged.tolist(), "dnl": d.tolist(), "spikes": judged[d > 2.0].tolist(),
            "missing": judged[hist[judged] == 0].tolist(), "max_dnl": float(d.max()) if d.size else 0.0,
            "min_dnl": float(d.min()) if d.size else 0.0}


def dnl_check(result: dict[str, Any]) -> Check:
    """Verdict on a ramp's histogram: missing codes fail, DNL spikes warn (they are systematic: calibrate)."""
    judged = len(result["codes"])
    if judged < 32:
        return Check("dnl", "skip", f"the ramp covered {judged} codes: too few to judge", result)
    if result["missing"]:
        return Check("dnl", "fail", f"{len(result['missing'])} missing code(s) of {judged} "
                     f"({', '.join(map(str, result['missing'][:6]))})", result)
    if result["spikes"]:
        return Check("dnl", "warn", f"DNL spikes at code(s) {', '.join(map(str, result['spikes'][:6]))} "
                     f"(max {result['max_dnl']:+.1f} LSB; averaging does not remove them: calibrate with a sweep, "
                     "docs/hardware.md)", result)
    return Check("dnl", "pass", f"{judged} codes, DNL {result['min_dnl']:+.2f} .. {result['max_dnl']:+.2f} LSB, "
                 "no missing code", result)


# -- span --------------------------------------------------------------------------------------------------

def span_check(readings: np.ndarray, sigma_codes: np.ndarray) -> Check:
    """Per tap, the 1..99 % range of a drive sweep's readings against one reading's noise."""
    lo, hi = np.percentile(np.asarray(readings, dtype=np.float64), [1, 99], axis=0)
    span = hi - lo
    ratio = span / np.maximum(np.asarray(sigma_codes, dtype=np.float64), 1e-9)
    values = {"span_codes": span.tolist(), "span_over_noise": ratio.tolist()}
    per = ", ".join(f"tap{i} {r:.0f}x" for i, r in enumerate(ratio))
    if np.any(ratio < 3):
        dead = [i for i, r in enumerate(ratio) if r < 3]
        return Check("span", "fail", f"tap(s) {dead} do not follow the drive (span/noise {per}): check the "
                     "detector and the drive wiring", values)
    if np.any(ratio < 20):
        return Check("span", "warn", f"small spans against the noise ({per}): raise the drive range or n_avg",
                     values)
    return Check("span", "pass", f"span/noise {per}", values)


# -- watchdog ----------------------------------------------------------------------------------------------

def watchdog_check(before: dict[str, Any], driven: dict[str, Any], after: dict[str, Any], zero_code: int,
                   high_code: int, dac_bits: int, silent_s: float) -> Check:
    """Verdict from three ``status`` replies: before the drive, while driven (channel 0 at ``high_code``) and
    after ``silent_s`` of host silence. The loopback reads channel 0's filter output (0 .. full scale)."""
    tripped = int(after.get("watchdog_trips", 0)) - int(before.get("watchdog_trips", 0))
    values: dict[str, Any] = {"trips": tripped, "silent_s": silent_s, "driving_after": after.get("driving")}
    if "loopback" not in driven:
        verdict = "warn" if tripped == 1 else "fail"
        return Check("watchdog", verdict, f"watchdog tripped {tripped}x after {silent_s:.1f} s of silence (the "
                     "firmware's word; no loopback_pin in board.json to see the drive on a wire)", values)
    scale = FULL / ((1 << int(dac_bits)) - 1)
    want_hi, want_zero = high_code * scale, zero_code * scale
    hi, lo = float(driven["loopback"]), float(after["loopback"])
    values.update({"loopback_driven": hi, "loopback_after": lo, "expected_driven": want_hi,
                   "expected_zero": want_zero})
    tol = 0.05 * FULL
    if abs(hi - want_hi) > tol:
        return Check("watchdog", "fail", f"the loopback reads {hi:.0f}, not ~{want_hi:.0f}, while channel 0 is "
                     "driven: check the loopback wire (drive 0's filter output -> loopback_pin)", values)
    if tripped < 1 or abs(lo - want_zero) > tol:
        return Check("watchdog", "fail", f"after {silent_s:.1f} s of silence: {tripped} trip(s), loopback "
                     f"{lo:.0f} (zero drive reads ~{want_zero:.0f}): the drive was NOT cut", values)
    return Check("watchdog", "pass", f"silence of {silent_s:.1f} s: watchdog tripped, the loopback went from "
                 f"{hi:.0f} to {lo:.0f} (drive cut)", values)
