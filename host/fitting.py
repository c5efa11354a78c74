"""``pgt.fit``: train a hybrid model through any reservoir in one call (a :class:`~pgt.trainer.Trainer` run)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .config import TrainConfig, check_config
from .device import default_device
from .errors import UserError
from .progress import Result, progress_line
from .reservoir import Reservoir
from .tasks import Task


def fit(
    reservoir: Reservoir | None = None, task: str = "digits", model: str | None = None,
    estimator: str = "twin", steps: int = 300, seed: int = 0, out_dir: str | Path | None = None,
    verbose: bool = False, data: Any = None, **options: Any,
) -> Result:
    """Train a hybrid model through any :class:`~pgt.reservoir.Reservoir` and return a :class:`Result`.

    Without ``reservoir``: the simulated board in process (``sim://``; the noise-free reference ring for
    ``estimator="backprop"``). ``options`` are further :class:`TrainConfig` fields (``batch_size``, ``lr``,
    ``optimizer``, ``estimator_options``, ...). Example: ``pgt.fit(from_callable(f, 2, 3, drive_low=0,
    drive_high=1), steps=200)``.

    ``data``: your own data instead of ``task``: a file name (as ``pgt train --data``; ``label``, ``loss``,
    ``scale`` are further options), an ``(x, y)`` pair of arrays, or a :class:`~pgt.tasks.Task` (e.g.
    ``Task.from_arrays(x, y, loss="mse")``). ``model`` defaults to the task's (mlp for vectors, transformer for
    sequences).
    """
    given: Task | None = None
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise UserError("data=(x, y): give a pair of arrays")
        given = Task.from_arrays(data[0], data[1], loss=options.get("loss"), scale=options.get("scale", "global"))
    elif isinstance(data, Task):
        given = data
    elif data is not None:
        options["data"] = str(data)
    if data is not None:
        task = "data"
    cfg = TrainConfig(task=task, model=model or "mlp", estimator=estimator, steps=steps, seed=seed, **options)
    task_data = given or check_config(cfg)
    if model is None:
        cfg.model = "mlp" if task_data.info["kind"] == "vector" else "transformer"
    task_data = check_config(cfg, task_data)
    device = reservoir if reservoir is not None else default_device(estimator, seed)
    on_eval = (lambda r: print(progress_line(r), file=sys.stderr)) if verbose else None
    from .trainer import Trainer

    return Trainer(device, cfg, out_dir=out_dir, on_eval=on_eval, task=task_data).run()
