"""Sweeps on Ray Tune: many training runs at once, each a Tune trial, rigs held one trial at a time.

A sweep is an explicit list of :class:`Trial` s (a :class:`~pgt.trainer.TrainConfig` plus the device it runs on),
made by :func:`expand` from a grid (or a random sample of one) over config fields and seeds. :func:`sweep` runs
them as Ray Tune trials and returns one :class:`TrialResult` per trial, in the order given. A trial on the
in-process simulator returns exactly what ``Trainer(open_sim_board(ring_seed, board=board), config).run()``
(``reference_ring`` for a noise-free trial) returns in one process: it is the same code with the same seeds.

- Each trial is a class-based Tune ``Trainable`` (:mod:`pgt.sweeps.trainable`): every ``step`` trains to the
  next evaluation and reports it; at multiples of ``lcm(eval_every, checkpoint_every)`` (and the last step),
  where the trainer checkpoints anyway, Tune takes pgt's run directory as the trial's checkpoint. A trial whose
  worker dies is restarted by Tune (``max_failures``) from its last checkpoint, through ``Trainer.resume``,
  on any worker.
- Rigs (``{"name": url}``) are Ray custom resources ``rig:<name>`` of capacity 1: trials are assigned to rigs
  round-robin, each holds its rig's resource while it runs, so no two trials ever use one rig. Simulator
  trials need CPUs only. A device error fails only its trial; its message goes into the results.
- Optional ASHA early stopping on the best validation accuracy so far. Ctrl-C stops the sweep with Tune's state
  saved; ``sweep(resume=dir)`` continues it.

Modules: :mod:`~pgt.sweeps.spec` (trials, rigs, spec files; no Ray), :mod:`~pgt.sweeps.trainable` (one trial on
a worker), :mod:`~pgt.sweeps.driver` (Ray and Tune), :mod:`~pgt.sweeps.report` (table, CSV, plot).
Ray is an optional dependency (``pip install 'pgt[ray]'``); it is imported only when a sweep runs.
"""

from __future__ import annotations

from .driver import sweep
from .report import COLUMNS, format_table, plot, read_history, rows, write_csv
from .spec import (
    MAX_TRIALS,
    RAY_HINT,
    RESULT_KEYS,
    SPEC,
    TUNE_DIR,
    SweepResult,
    Trial,
    TrialResult,
    assign_rigs,
    check_name,
    chunk_ends,
    expand,
    load_spec,
    load_sweep,
    parse_rigs,
    parse_seeds,
    rig_resource,
)

__all__ = ["COLUMNS", "MAX_TRIALS", "RAY_HINT", "RESULT_KEYS", "SPEC", "TUNE_DIR", "SweepResult", "Trial",
           "TrialResult", "assign_rigs", "check_name", "chunk_ends", "expand", "format_table", "load_spec",
           "load_sweep", "parse_rigs", "parse_seeds", "plot", "read_history", "rig_resource", "rows", "sweep",
           "write_csv"]
