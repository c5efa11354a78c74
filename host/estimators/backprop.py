"""The reference estimator: the reservoir's exact ``vjp`` (noise-free simulator only)."""

from __future__ import annotations

from ..errors import UserError
from ..layers import Grads
from ..models import HybridModel
from .base import Batch, Estimator, forward_loss


class Backprop(Estimator):
    """Exact gradient through the reservoir's ``vjp`` (the reference; one query per row)."""

    name = "backprop"
    needs_vjp = True

    def estimate(self, model: HybridModel, batch: Batch) -> tuple[float, Grads, int]:
        x, labels = batch
        ph = model.physical
        if ph.reservoir is None or not hasattr(ph.reservoir, "vjp"):
            raise UserError("backprop needs a differentiable reservoir (the noise-free simulator)")
        a, pre_cache = model.pre(x)
        u, mask = ph.drive(a)
        y = ph.query(u)
        loss, grads, gz, skip = forward_loss(model, ph.normalise(y), pre_cache, labels)
        gu = ph.reservoir.vjp(u, ph.normalise_backward(gz))
        grads |= model.pre_backward(ph.drive_backward(gu, mask), skip, pre_cache)
        return loss, grads, u.shape[0]
