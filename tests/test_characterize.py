"""characterize() writes its plots and summary and returns the figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pgt.sim.boards import board_config
from pgt.sim.characterize import characterize
from pgt.sim.ring import RingParams


def test_characterize_writes_files(tmp_path: Path) -> None:
    out = tmp_path / "char"
    figs = characterize(out, seed=1)
    for name in ("transfer.png", "threshold.png", "modes.png", "noise.png", "drift.png", "summary.txt"):
        path = out / name
        assert path.exists() and path.stat().st_size > 100, name
    assert (out / "transfer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "summary.txt").read_text()
    assert "level_b_stm" in text and "level_b_pc" in text
    assert 3.0 < figs["level_b_stm"] < 7.0 and 0.8 < figs["level_b_pc"] < 3.0
    p = RingParams()
    assert figs["board"] == "rp2-pwm" and (figs["n_inputs"], figs["n_outputs"]) == (2, 3)
    # repeat noise of one drive as a run reads it: the ADC's per-read noise over sqrt(n_avg), and gain noise
    expected = np.hypot(figs["adc_noise_per_read_V"] / np.sqrt(figs["n_avg"]),
                        p.gain_noise_rel * (figs["noise_mean_V"] - p.v_offset))
    assert abs(figs["noise_std_V"] / expected - 1.0) < 0.2
    assert figs["hysteresis_loop_area_V"] > 0.0
    assert 0.2 < figs["fraction_above_threshold_uniform_drive"] < 0.8


def test_characterize_level_b(tmp_path: Path) -> None:
    figs = characterize(tmp_path, seed=0, level="B")
    assert (tmp_path / "transfer.png").exists() and (tmp_path / "summary.txt").exists()
    assert figs["level"] == "B" and "level_b_stm" in figs


def test_every_panel_has_labelled_axes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    saved: list[tuple[str, Any]] = []
    real = Figure.savefig

    def record(self: Any, path: Any, *args: Any, **kwargs: Any) -> None:
        saved.append((Path(path).name, self))
        real(self, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    characterize(tmp_path, seed=2, cfg=board_config("wide"))
    assert sorted(name for name, _ in saved) == ["drift.png", "modes.png", "noise.png", "threshold.png",
                                                 "transfer.png"]
    for name, fig in saved:
        for ax in fig.axes:
            if ax.axison:
                assert ax.get_xlabel() or ax.get_shared_x_axes().get_siblings(ax) != [ax], (name, ax)
                assert ax.get_ylabel(), (name, ax.get_title())
    transfer = dict(saved)["transfer.png"]
    assert [t.get_text() for t in transfer.legends[0].get_texts()] == [f"tap {j}" for j in range(32)]
    drift = dict(saved)["drift.png"].axes[0]  # every drift curve named by its tap
    names = [t.get_text() for t in drift.get_legend().get_texts()]
    assert len(names) == len(drift.get_lines()) and all(n.startswith("tap ") for n in names)
    noise = dict(saved)["noise.png"].axes[0]  # bins: whole ADC steps (no picket fence)
    widths = np.array([p.get_width() for p in noise.patches])
    assert np.allclose(widths, widths[0]) and "whole ADC steps" in noise.get_xlabel()


def test_noise_bins_hold_the_same_number_of_reading_levels() -> None:
    from pgt.sim.characterize import noise_bins

    step = 0.25e-3
    values = np.round(np.random.default_rng(0).normal(0, 5, 2000)) * step
    edges = noise_bins(values, step)
    assert edges[0] < values.min() and edges[-1] > values.max() and len(edges) <= 51
    levels = np.arange(values.min(), values.max() + step / 2, step)
    assert len(set(np.histogram(levels, edges)[0][:-1])) == 1  # every full bin: the same count of levels
