"""One declaration per TrainConfig field (issue 17 item 3): the constructor, fit, sweeps and the CLI check a
value against the same table and say the same range."""

from __future__ import annotations

import dataclasses

import pytest

from pgt.cli import main
from pgt.config import CONSTRAINTS, TrainConfig, check_config, check_field
from pgt.errors import UserError


def test_every_field_is_declared_once() -> None:
    assert [f.name for f in dataclasses.fields(TrainConfig)] == list(CONSTRAINTS)


BAD = {"steps": -1, "batch_size": 0, "lr": float("nan"), "lr_rel": -0.1, "clip": 0, "eval_every": 0,
       "val_size": -1, "checkpoint_every": 0, "seed": -3, "probe": 1, "task": "", "model": "cnn",
       "estimator": "", "optimizer": "lbfgs", "schedule": "warp"}


@pytest.mark.parametrize(("name", "value"), BAD.items())
def test_constructor_sweeps_and_cli_say_the_same_range(
    name: str, value: object, capsys: pytest.CaptureFixture[str],
) -> None:
    rng = CONSTRAINTS[name].describe(with_none=False)
    with pytest.raises(UserError, match=f"^{name} must be {rng}"):
        TrainConfig(**{name: value})  # the constructor (and so fit, and resume)
    with pytest.raises(UserError, match=f"^{name} must be {rng}"):
        check_field(name, value)  # a sweep's base or grid value
    flag = "--" + name.replace("_", "-")
    with pytest.raises(SystemExit):
        main(["train", flag, str(value)])  # the CLI: argparse's error, from the declaration
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"argument {flag}: must be {rng}" in err, err


def test_values_are_converted_and_model_options_checked() -> None:
    assert check_field("lr", 1) == 1.0 and isinstance(check_field("lr", 1), float)
    cfg = TrainConfig(model_options={"hidden": [8, 4]})
    assert cfg.model_options["hidden"] == (8, 4)
    with pytest.raises(UserError, match="unknown model option 'width'"):
        TrainConfig(model_options={"width": 3})
    with pytest.raises(UserError, match="the transformer takes model options d_model, heads, slots, not hidden"):
        TrainConfig(task="majority", model="transformer", model_options={"hidden": [3]})
    with pytest.raises(UserError, match="hidden width must be an integer >= 1, got 0"):
        TrainConfig(model_options={"hidden": [8, 0]})
    with pytest.raises(UserError, match="unknown config field 'colour'"):
        check_field("colour", 1)


def test_memory_bound_names_the_memory_before_anything_is_allocated() -> None:
    import pgt

    with pytest.raises(UserError, match=r"would need about 1\.\d+ TB of memory"):
        check_config(TrainConfig(model_options={"hidden": [100_000_000]}))
    with pytest.raises(UserError, match="memory"):  # fit checks before it opens a device
        pgt.fit(model_options={"hidden": [10**12]})
    check_config(TrainConfig(model_options={"hidden": [4096, 4096]}))  # big but fits
