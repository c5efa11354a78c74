"""What the device adds on regression, and that your own file trains like the built-in task — on the board shape.

Every ring run goes through the simulated **default rp2 board** (2 drives, 3 taps, 8 slots per sample: a
16-drive / 24-reading ring layer) in process, through the firmware's own Core (``sim://?seed=0``), with the
default estimator (``twin``).

* ``narma10`` and ``mackey_glass`` (see :mod:`pgt.tasks`: a window of past inputs, one-step prediction; the ring
  is quasi-static, so memory comes from the window): test NMSE = MSE / var(y) of
  - ``ring_nmse`` — the hybrid MLP ``window -> Dense(16) -> tanh -> ring -> [Dense(32) -> tanh] -> Dense(1)``
    trained through the board (model selected on validation NMSE); ``queries`` = all its device rows;
  - ``linear_nmse`` — ridge regression on the same (scaled) window, closed form, the ridge strength picked on
    the validation split (stderr also says after how many device rows the ring network's validation NMSE
    reached the ridge model's: the regression crossing, threshold = ridge's validation NMSE);
  - ``random_tanh_nmse`` — the same network with the ring replaced by a fixed random ``tanh`` layer of the same
    width (16 -> 24), trained by exact backprop for the same steps, batch and optimizer.
* ``digits_from_npz`` — the shipped digits written to an ``.npz`` (raw pixels 0..16) and trained with
  ``data=FILE`` beside the built-in ``digits`` task, same seed and steps: ``builtin_test_acc``,
  ``npz_test_acc`` (the file's split rule and scaling reproduce the built-in task's, so these should agree).

Usage: ``python bench/tasks.py [--quick] [--tasks narma10,mackey_glass,digits_from_npz]``. The last line is one
JSON object with those keys and ``"bench": "tasks"``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402  (after the thread settings)

PLAN = {  # task -> (steps, eval_every, hidden, quick steps)
    "narma10": (1500, 50, (32,), 60),
    "mackey_glass": (1000, 50, (32,), 60),
}
DIGITS_STEPS = (300, 40)
NAMES = ("narma10", "mackey_glass", "digits_from_npz")


def ridge_nmse(task: Any) -> tuple[float, float]:
    """Ridge on the task's inputs (closed form), strength chosen on validation; (validation, test) NMSE."""
    from pgt.progress import nmse

    def fit(lam: float) -> np.ndarray:
        a = np.c_[task.x_train, np.ones(len(task.x_train))]
        reg = lam * np.eye(a.shape[1])
        reg[-1, -1] = 0.0
        return np.linalg.solve(a.T @ a + reg, a.T @ task.y_train)

    def predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.c_[x, np.ones(len(x))] @ w

    lam = min(10.0 ** np.arange(-8, 3), key=lambda lam: nmse(predict(fit(lam), task.x_val), task.y_val))
    w = fit(lam)
    return nmse(predict(w, task.x_val), task.y_val), nmse(predict(w, task.x_test), task.y_test)


def random_tanh_nmse(task: Any, steps: int, hidden: tuple[int, ...], batch: int = 32, seed: int = 0) -> float:
    """The ring network with a fixed random tanh layer (16 -> 24) where the ring was; exact backprop, Adam with
    the trainer's default learning rate rule; test NMSE of the best-validation iterate."""
    from pgt.layers import Dense, Layer, Sequential, Tanh, mean_squared_error
    from pgt.optim import apply_updates, make_optimizer, make_schedule
    from pgt.progress import nmse

    rng = np.random.default_rng(seed)
    front = Sequential(Dense(task.x_train.shape[1], 16, rng, gain=1.5), Tanh())
    fixed = Sequential(Dense(16, 24, rng, gain=1.5), Tanh())
    fixed.layers[0].params["b"][:] = rng.normal(0.0, 0.5, 24)
    layers: list[Layer] = []
    width = 24
    for h in hidden:
        layers += [Dense(width, h, rng), Tanh()]
        width = h
    back = Sequential(*layers, Dense(width, task.y_train.shape[1], rng))
    params = {f"f.{k}": v for k, v in front.params.items()} | {f"b.{k}": v for k, v in back.params.items()}
    lr = 0.1 * float(np.sqrt(np.mean(np.concatenate([p.ravel() for p in params.values() if p.ndim > 1]) ** 2)))
    opt = make_optimizer("adam", make_schedule("cosine", lr, steps))
    state = opt.init(params)

    def forward(x: np.ndarray) -> tuple[np.ndarray, Any]:
        a, c1 = front.forward(x)
        h, c2 = fixed.forward(a)
        out, c3 = back.forward(h)
        return out, (c1, c2, c3)

    best = (np.inf, np.inf)
    for step in range(1, steps + 1):
        idx = rng.choice(len(task.x_train), size=batch, replace=False)
        out, (c1, c2, c3) = forward(task.x_train[idx])
        _, g = mean_squared_error(out, task.y_train[idx])
        g, gb = back.backward(g, c3)
        g, _ = fixed.backward(g, c2)
        _, gf = front.backward(g, c1)
        grads = {f"f.{k}": v for k, v in gf.items()} | {f"b.{k}": v for k, v in gb.items()}
        updates, state = opt.update(grads, state, params)
        apply_updates(params, updates)
        if step % 50 == 0 or step == steps:
            val = nmse(forward(task.x_val)[0], task.y_val)
            if val < best[0]:
                best = (val, nmse(forward(task.x_test)[0], task.y_test))
    return float(best[1])


def ring_run(cfg: Any, label: str) -> Any:
    """One run through the simulated board (``sim://?seed=0``, the firmware's Core) as ``cfg`` says."""
    from pgt.device import default_device
    from pgt.trainer import Trainer

    t0 = time.perf_counter()
    trainer = Trainer(default_device(cfg.estimator, 0), cfg, log=lambda line: None)
    result = trainer.run()
    ph = trainer.physical
    print(f"{label}: board k={ph.k} drives, m={ph.m} taps, {ph.slots} slots; test "
          f"{result.metric} {result.best_test:.4g}; {result.queries:,} device rows; "
          f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return result


def regression(name: str, quick: bool) -> dict[str, Any]:
    from pgt.progress import crossing
    from pgt.tasks import load_task
    from pgt.trainer import TrainConfig

    steps, eval_every, hidden, quick_steps = PLAN[name]
    if quick:
        steps, eval_every = quick_steps, quick_steps // 2
    cfg = TrainConfig(task=name, steps=steps, eval_every=eval_every, schedule="cosine",
                      model_options={"hidden": hidden})
    result = ring_run(cfg, name)
    task = load_task(name)
    linear_val, linear_test = ridge_nmse(task)
    rows = crossing(result.history, linear_val, key="val_nmse")
    print(f"{name}: the ring network's validation NMSE reached the linear model's ({linear_val:.4g}) on two "
          f"consecutive evaluations after {'-' if rows is None else format(rows, ',')} device rows",
          file=sys.stderr, flush=True)
    return {"ring_nmse": float(result.best_test_nmse), "linear_nmse": linear_test,
            "random_tanh_nmse": random_tanh_nmse(task, steps, hidden), "queries": int(result.queries)}


def digits_from_npz(quick: bool) -> dict[str, Any]:
    from pgt.trainer import TrainConfig

    steps, eval_every = (40, 20) if quick else DIGITS_STEPS
    with np.load(os.path.join(os.path.dirname(__file__), "..", "host", "data", "digits.npz")) as d:
        images, labels = d["images"], d["labels"]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="pgt-bench-tasks-") as tmp:
        path = os.path.join(tmp, "digits.npz")
        np.savez(path, x=images, y=labels)
        for key, extra in (("builtin_test_acc", {"task": "digits"}), ("npz_test_acc", {"task": "data", "data": path})):
            cfg = TrainConfig(steps=steps, eval_every=eval_every, **extra)
            out[key] = float(ring_run(cfg, f"digits ({key.split('_')[0]})").best_test_acc)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a few steps per run (seconds; for the test suite)")
    p.add_argument("--tasks", default=",".join(NAMES), help=f"comma-separated subset of {', '.join(NAMES)}")
    args = p.parse_args(argv)
    chosen = [t for t in args.tasks.split(",") if t]
    unknown = set(chosen) - set(NAMES)
    if unknown:
        p.error(f"unknown task(s) {', '.join(sorted(unknown))} (choose from {', '.join(NAMES)})")
    figures: dict[str, Any] = {"bench": "tasks"}
    for name in chosen:
        figures[name] = digits_from_npz(args.quick) if name == "digits_from_npz" else regression(name, args.quick)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
