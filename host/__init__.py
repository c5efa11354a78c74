"""pgt: train neural networks through physical reservoirs with Perturbative Gradient Training.

Kept free of heavy imports: ``import pgt`` must stay cheap (the CLI imports it for ``--version``).
"""

__version__ = "0.1.0"
