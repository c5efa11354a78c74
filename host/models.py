"""Hybrid models: digital layers before and after one physical reservoir layer.

A model is split at the device: ``pre(x)`` maps a batch to the activations ``a`` that drive the reservoir,
as device rows ``(rows, k)`` (``slots`` rows per sample, or per token: see :mod:`pgt.physical`), and
``post(z, pre_cache)`` maps the normalised readings ``z`` ``(rows, m)`` to class logits. Estimators
(:mod:`pgt.estimators`) decide how the device is queried and how a gradient crosses it;
``post_backward`` and ``pre_backward`` are exact backprop through the digital sides.

Two architectures (after the PGT paper, arXiv 2506.04523):

* :class:`ReservoirMLP` — ``input -> Dense -> tanh -> ring -> [Dense -> tanh]* -> Dense -> classes``; the
  ring layer is ``slots * k`` units in, ``slots * m`` out.
* :class:`ReservoirTransformer` — token embedding + sinusoidal positions, one pre-LN transformer block whose
  **feed-forward sublayer is the ring**, applied per token: ``h1 = h + MHSA(LN(h))``, then
  ``h2 = h1 + Dense_out(ring(tanh(Dense_in(LN(h1)))))``; mean-pool over tokens, LN, Dense -> classes. The
  ring thus sees ``slots`` rows per token (a batch of B sequences of T tokens is one block of B*T*slots drive
  vectors).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .layers import (
    Dense,
    Embedding,
    Grads,
    Layer,
    LayerNorm,
    MeanPool,
    MultiHeadSelfAttention,
    PositionalEncoding,
    Residual,
    Sequential,
    Tanh,
    mean_squared_error,
    softmax_cross_entropy,
)
from .physical import PhysicalLayer

Array = np.ndarray


def _prefixed(prefix: str, params: dict[str, Array]) -> dict[str, Array]:
    return {f"{prefix}.{k}": v for k, v in params.items()}


class HybridModel:
    """Base: named parameters (``params`` maps names to the live arrays) and the split at the device."""

    physical: PhysicalLayer
    params: dict[str, Array]
    rows_per_sample: int = 1
    config: dict[str, Any]

    def loss(self, out: Array, y: Array) -> tuple[float, Array]:
        """The head's loss on a batch and its gradient at ``out``: softmax cross-entropy on class logits, or
        mean-squared error on regression outputs (``config["loss"]`` ``"ce"``/``"mse"``)."""
        if self.config.get("loss", "ce") == "mse":
            return mean_squared_error(out, y)
        return softmax_cross_entropy(out, y)

    def pre(self, x: Array) -> tuple[Array, Any]:
        """Batch -> activations as device rows ``(rows, k)`` for the physical layer, and a cache."""
        raise NotImplementedError

    def post(self, z: Array, pre_cache: Any) -> tuple[Array, Any]:
        """Normalised readings ``(rows, m)`` -> logits ``(batch, classes)``, and a cache."""
        raise NotImplementedError

    def post_backward(self, grad_logits: Array, cache: Any) -> tuple[Array, Grads, Any]:
        """Returns the gradient at ``z``, the post-side parameter gradients and any skip-path gradient."""
        raise NotImplementedError

    def pre_backward(self, grad_a: Array, skip: Any, cache: Any) -> Grads:
        raise NotImplementedError

    def n_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def state(self) -> dict[str, Any]:
        """The parameters (copies), for checkpoints."""
        return {"params": {k: v.copy() for k, v in self.params.items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        """Copy checkpointed parameters into the live arrays (the layers hold references to them)."""
        params = state["params"]
        if set(params) != set(self.params) or any(params[k].shape != v.shape for k, v in self.params.items()):
            raise ValueError("the checkpoint's parameters do not fit this model")
        for k, v in self.params.items():
            v[...] = params[k]


class ReservoirMLP(HybridModel):
    """``input -> Dense(k) -> tanh -> ring(k -> m) -> hidden dense layers -> Dense(classes)``."""

    def __init__(
        self, n_in: int, n_classes: int, physical: PhysicalLayer, rng: np.random.Generator,
        hidden: tuple[int, ...] = (),
    ) -> None:
        self.physical = physical
        self.rows_per_sample = physical.slots
        self.config = {"model": "mlp", "n_in": n_in, "n_classes": n_classes, "hidden": list(hidden),
                       "slots": physical.slots}
        self.front = Sequential(Dense(n_in, physical.width_in, rng, gain=1.5), Tanh())
        layers: list[Layer] = []
        width = physical.width_out
        for h in hidden:
            layers += [Dense(width, h, rng), Tanh()]
            width = h
        layers.append(Dense(width, n_classes, rng))
        self.back = Sequential(*layers)
        self.params = _prefixed("front", self.front.params) | _prefixed("back", self.back.params)

    def pre(self, x: Array) -> tuple[Array, Any]:
        a, cache = self.front.forward(x)
        return self.physical.to_rows(a), (cache, a.shape[:-1])

    def post(self, z: Array, pre_cache: Any) -> tuple[Array, Any]:
        return self.back.forward(self.physical.from_rows(z, pre_cache[1]))

    def post_backward(self, grad_logits: Array, cache: Any) -> tuple[Array, Grads, Any]:
        gz, grads = self.back.backward(grad_logits, cache)
        return self.physical.from_rows_backward(gz), _prefixed("back", grads), None

    def pre_backward(self, grad_a: Array, skip: Any, cache: Any) -> Grads:
        front_cache, lead = cache
        _, grads = self.front.backward(self.physical.rows_backward(grad_a, lead), front_cache)
        return _prefixed("front", grads)


class ReservoirTransformer(HybridModel):
    """One transformer block whose feed-forward sublayer is the ring (see the module docstring).

    ``vocab`` set: the input is integer tokens ``(B, T)``; otherwise it is real vectors ``(B, T, token_dim)``.
    """

    def __init__(
        self, seq_len: int, n_classes: int, physical: PhysicalLayer, rng: np.random.Generator,
        token_dim: int | None = None, vocab: int | None = None, d_model: int = 32, heads: int = 4,
    ) -> None:
        if (token_dim is None) == (vocab is None):
            raise ValueError("give exactly one of token_dim and vocab")
        self.physical = physical
        self.rows_per_sample = seq_len * physical.slots
        self.config = {
            "model": "transformer", "seq_len": seq_len, "n_classes": n_classes, "token_dim": token_dim,
            "vocab": vocab, "d_model": d_model, "heads": heads, "slots": physical.slots,
        }
        embed: Layer = Embedding(vocab, d_model, rng) if vocab else Dense(int(token_dim or 0), d_model, rng)
        self.attn = Sequential(
            embed,
            PositionalEncoding(seq_len, d_model),
            Residual(Sequential(LayerNorm(d_model), MultiHeadSelfAttention(d_model, heads, rng))),
        )
        self.ff_in = Sequential(LayerNorm(d_model), Dense(d_model, physical.width_in, rng, gain=1.5), Tanh())
        self.ff_out = Dense(physical.width_out, d_model, rng, gain=0.5)
        self.head = Sequential(LayerNorm(d_model), MeanPool(), Dense(d_model, n_classes, rng))
        self.params = (
            _prefixed("attn", self.attn.params) | _prefixed("ff_in", self.ff_in.params)
            | _prefixed("ff_out", self.ff_out.params) | _prefixed("head", self.head.params)
        )

    def pre(self, x: Array) -> tuple[Array, Any]:
        h1, c_attn = self.attn.forward(x)
        a, c_in = self.ff_in.forward(h1)
        return self.physical.to_rows(a), (h1, c_attn, c_in)

    def post(self, z: Array, pre_cache: Any) -> tuple[Array, Any]:
        h1 = pre_cache[0]
        b, t, d = h1.shape
        f, c_out = self.ff_out.forward(self.physical.from_rows(z, (b, t)))
        logits, c_head = self.head.forward(h1 + f)
        return logits, (c_out, c_head, (b, t))

    def post_backward(self, grad_logits: Array, cache: Any) -> tuple[Array, Grads, Any]:
        c_out, c_head, (b, t) = cache
        g_h2, g_head = self.head.backward(grad_logits, c_head)
        g_f, g_out = self.ff_out.backward(g_h2, c_out)
        grads = _prefixed("head", g_head) | _prefixed("ff_out", g_out)
        return self.physical.from_rows_backward(g_f), grads, g_h2

    def pre_backward(self, grad_a: Array, skip: Any, cache: Any) -> Grads:
        h1, c_attn, c_in = cache
        b, t, _ = h1.shape
        g_h1, g_in = self.ff_in.backward(self.physical.rows_backward(grad_a, (b, t)), c_in)
        _, g_attn = self.attn.backward(g_h1 + skip, c_attn)
        return _prefixed("attn", g_attn) | _prefixed("ff_in", g_in)


def build_model(
    kind: str, task_info: dict[str, Any], physical: PhysicalLayer, rng: np.random.Generator,
    **options: Any,
) -> HybridModel:
    """Make ``mlp`` or ``transformer`` for a task described by ``task_info`` (see :mod:`pgt.tasks`).

    ``options`` may carry ``slots``: it belongs to the physical layer (which the caller built with it) and
    must agree with it.
    """
    from .errors import UserError
    from .tasks import n_outputs

    options = dict(options)
    slots = options.pop("slots", None)
    if slots is not None and slots != physical.slots:
        raise UserError(f"model option slots={slots!r} but the physical layer has {physical.slots} slots")

    if kind == "mlp":
        if task_info["kind"] != "vector":
            raise UserError(f"task {task_info['name']!r} is a sequence task; use --model transformer")
        model: HybridModel = ReservoirMLP(task_info["n_in"], n_outputs(task_info), physical, rng, **options)
    elif kind == "transformer":
        if task_info["kind"] != "sequence":
            raise UserError(f"task {task_info['name']!r} is not a sequence task; use --model mlp")
        model = ReservoirTransformer(
            task_info["seq_len"], n_outputs(task_info), physical, rng,
            token_dim=task_info.get("token_dim"), vocab=task_info.get("vocab"), **options,
        )
    else:
        raise UserError(f"unknown model {kind!r} (choose mlp or transformer)")
    model.config["loss"] = task_info.get("loss", "ce")
    return model
