"""pgt: train neural networks through physical reservoirs with Perturbative Gradient Training.

Kept free of heavy imports: ``import pgt`` must stay cheap (the CLI imports it for ``--version``).
"""

__version__ = "0.1.0"

_LAZY = {"fit": "pgt.trainer", "Trainer": "pgt.trainer", "TrainConfig": "pgt.trainer", "sweep": "pgt.sweeps",
         "load": "pgt.model_file", "Task": "pgt.tasks"}


def __getattr__(name: str) -> object:
    """``pgt.fit``, ``pgt.Trainer``, ``pgt.TrainConfig``, ``pgt.sweep``, ``pgt.load`` and ``pgt.Task``, imported
    on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pgt' has no attribute {name!r}")
