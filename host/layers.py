"""Digital layers in numpy, each with a forward pass and its exact backward pass.

A layer holds its parameters in ``params`` (name -> array, updated in place by the trainer) and is otherwise
stateless: ``forward(x)`` returns ``(y, cache)`` and ``backward(grad_y, cache)`` returns
``(grad_x, grads)`` with ``grads`` keyed like ``params``. Keeping the cache outside the layer lets several
forward passes (e.g. perturbed copies of a model) coexist. Arrays are float64; the last axis is features, any
leading axes are batch (and token) axes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Array = np.ndarray
Grads = dict[str, Array]


class Layer:
    """Base class: a differentiable map with named parameters."""

    params: dict[str, Array]

    def __init__(self) -> None:
        self.params = {}

    def forward(self, x: Array) -> tuple[Array, Any]:
        raise NotImplementedError

    def backward(self, grad_y: Array, cache: Any) -> tuple[Array, Grads]:
        raise NotImplementedError


class Dense(Layer):
    """Affine map ``y = x W + b`` on the last axis (applied to every leading index, e.g. per token)."""

    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator, gain: float = 1.0) -> None:
        super().__init__()
        self.params = {
            "W": rng.normal(0.0, gain / np.sqrt(n_in), size=(n_in, n_out)),
            "b": np.zeros(n_out),
        }

    def forward(self, x: Array) -> tuple[Array, Any]:
        return x @ self.params["W"] + self.params["b"], x

    def backward(self, grad_y: Array, cache: Any) -> tuple[Array, Grads]:
        x = cache
        n_in, n_out = self.params["W"].shape
        g2 = grad_y.reshape(-1, n_out)
        grads = {"W": x.reshape(-1, n_in).T @ g2, "b": g2.sum(axis=0)}
        return grad_y @ self.params["W"].T, grads


class Tanh(Layer):
    def forward(self, x: Array) -> tuple[Array, Any]:
        y = np.tanh(x)
        return y, y

    def backward(self, grad_y: Array, cache: Any) -> tuple[Array, Grads]:
        return grad_y * (1.0 - cache * cache), {}


class ReLU(Layer):
    def forward(self, x: Array) -> tuple[Array, Any]:
        mask = x > 0
        return x * mask, mask

    def backward(self, grad_y: Array, cache: Any) -> tuple[Array, Grads]:
        return grad_y * cache, {}


class LayerNorm(Layer):
    """Normalise the last axis to zero mean and unit variance, then scale and shift."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.params = {"gamma": np.ones(dim), "beta": np.zeros(dim)}

    def forward(self, x: Array) -> tuple[Array, Any]:
        mu = x.mean(axis=-1, keepdims=True)
        xc = x - mu
        inv = 1.0 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + self.eps)
        xhat = xc * inv
        return xhat * self.params["gamma"] + self.params["beta"], (xhat, inv)

    def backward(self, grad_y: Array, cache: Any) -> tuple[Array, Grads]:
        xhat, inv = cache
        d = xhat.shape[-1]
        grads = {
            "gamma": (grad_y * xhat).reshape(-1, d).sum(axis=0),
            "beta": grad_y.reshape(-1, d).sum(axis=0),
        }
        gx = grad_y * self.params["gamma"]
        gx = inv * (gx - gx.mean(axis=-1, keepdims=True) - xhat * (gx * xhat).mean(axis=-1, keepdims=True))
        return gx, grads


class Embedding(Layer):
    """Integer tokens ``(..., )`` -> vectors ``(..., dim)``; the input has no gradient (returned as zeros)."""

    def __init__(self, vocab: int, dim: int, rng: np.random.Generator) -> None:
        super().__init__()
        self.params = {"E": rng.normal(0.0, 1.0, size=(vocab, dim))}

    def forward(self, x: Array) -> tuple[Array, Any]:
        idx = np.asarray(x, dtype=np.int64)
        return self.params["E"][idx], idx

    def backward(self, grad_y: Array, cache: Any) -> tuple[Array, Grads]:
        idx = cache
        gE = np.zeros_like(self.params["E"])
        np.add.at(gE, idx.reshape(-1), grad_y.reshape(-1, gE.shape[1]))
        return np.zeros(idx.shape), {"E": gE}


def sinusoidal_positions(length: int, dim: int) -> Array:
    """The fixed sinusoidal position code of Vaswani et al., shape ``(length, dim)``."""
    pos = np.arange(length)[:, None]
    i = np.arange(dim)[None, :]
    angle = pos / np.power(10000.0, (2 * (i // 2)) / dim)
    return np.where(i % 2 == 0, np.sin(angle), np.cos(angle))


class PositionalEncoding(Layer):
    """Adds a fixed sinusoidal code to ``(batch, tokens, dim)``; no parameters."""

    def __init__(self, max_len: int, dim: int) -> None:
        super().__init__()
        self.table = sinusoidal_positions(max_len, dim)

    def forward(self, x: Array) -> tuple[Array, Any]:
        return x + self.table[: x.shape[-2]], None

    def backward(self, grad_y: Array, cache: Any) -> tuple[Array, Grads]:
        return grad_y, {}


def _softmax(s: Array) -> Array:
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class MultiHeadSelfAttention(Layer):
    """Multi-head scaled dot-product self-attention over ``(batch, tokens, dim)`` (no mask)."""

    def __init__(self, dim: int, heads: int, rng: np.random.Generator) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        s = 1.0 / np.sqrt(dim)
        self.params = {
            name: rng.normal(0.0, s, size=(dim, dim)) for name in ("Wq", "Wk", "Wv", "Wo")
        } | {name: np.zeros(dim) for name in ("bq", "bk", "bv", "bo")}

    def _split(self, t: Array) -> Array:  # (B, T, D) -> (B, H, T, Dh)
        b, n, d = t.shape
        return t.reshape(b, n, self.heads, d // self.heads).transpose(0, 2, 1, 3)

    @staticmethod
    def _merge(t: Array) -> Array:  # (B, H, T, Dh) -> (B, T, D)
        b, h, n, dh = t.shape
        return t.transpose(0, 2, 1, 3).reshape(b, n, h * dh)

    def forward(self, x: Array) -> tuple[Array, Any]:
        p = self.params
        q = self._split(x @ p["Wq"] + p["bq"])
        k = self._split(x @ p["Wk"] + p["bk"])
        v = self._split(x @ p["Wv"] + p["bv"])
        scale = 1.0 / np.sqrt(q.shape[-1])
        att = _softmax(q @ k.transpose(0, 1, 3, 2) * scale)
        o = self._merge(att @ v)
        return o @ p["Wo"] + p["bo"], (x, q, k, v, att, o, scale)

    def backward(self, grad_y: Array, cache: Any) -> tuple[Array, Grads]:
        x, q, k, v, att, o, scale = cache
        p = self.params
        d = x.shape[-1]
        x2 = x.reshape(-1, d)
        g2 = grad_y.reshape(-1, d)
        grads = {"Wo": o.reshape(-1, d).T @ g2, "bo": g2.sum(axis=0)}
        go = self._split(grad_y @ p["Wo"].T)
        gatt = go @ v.transpose(0, 1, 3, 2)
        gv = att.transpose(0, 1, 3, 2) @ go
        gs = att * (gatt - (gatt * att).sum(axis=-1, keepdims=True)) * scale
        gq = gs @ k
        gk = gs.transpose(0, 1, 3, 2) @ q
        gx = np.zeros_like(x)
        for name, g in (("q", gq), ("k", gk), ("v", gv)):
            gm = self._merge(g)
            grads["W" + name] = x2.T @ gm.reshape(-1, d)
            grads["b" + name] = gm.reshape(-1, d).sum(axis=0)
            gx += gm @ p["W" + name].T
        return gx, grads


class MeanPool(Layer):
    """Average over the token axis: ``(batch, tokens, dim)`` -> ``(batch, dim)``."""

    def forward(self, x: Array) -> tuple[Array, Any]:
        return x.mean(axis=-2), x.shape[-2]

    def backward(self, grad_y: Array, cache: Any) -> tuple[Array, Grads]:
        n = cache
        return np.repeat(grad_y[..., None, :], n, axis=-2) / n, {}


class Residual(Layer):
    """``y = x + f(x)`` for an inner layer ``f`` (whose parameters it shares)."""

    def __init__(self, inner: Layer) -> None:
        super().__init__()
        self.inner = inner
        self.params = inner.params

    def forward(self, x: Array) -> tuple[Array, Any]:
        y, cache = self.inner.forward(x)
        return x + y, cache

    def backward(self, grad_y: Array, cache: Any) -> tuple[Array, Grads]:
        gx, grads = self.inner.backward(grad_y, cache)
        return grad_y + gx, grads


class Sequential(Layer):
    """Layers applied in order; parameters are named ``"<index>.<name>"``."""

    def __init__(self, *layers: Layer) -> None:
        super().__init__()
        self.layers = list(layers)
        self.params = {f"{i}.{n}": a for i, layer in enumerate(self.layers) for n, a in layer.params.items()}

    def forward(self, x: Array) -> tuple[Array, Any]:
        caches = []
        for layer in self.layers:
            x, c = layer.forward(x)
            caches.append(c)
        return x, caches

    def backward(self, grad_y: Array, cache: Any) -> tuple[Array, Grads]:
        grads: Grads = {}
        for i in range(len(self.layers) - 1, -1, -1):
            grad_y, g = self.layers[i].backward(grad_y, cache[i])
            grads.update({f"{i}.{n}": a for n, a in g.items()})
        return grad_y, grads


def softmax_cross_entropy(logits: Array, labels: Array) -> tuple[float, Array]:
    """Mean cross-entropy over the batch and its gradient with respect to ``logits``."""
    n = logits.shape[0]
    p = _softmax(logits)
    loss = -float(np.mean(np.log(p[np.arange(n), labels] + 1e-300)))
    g = p.copy()
    g[np.arange(n), labels] -= 1.0
    return loss, g / n


def mean_squared_error(pred: Array, target: Array) -> tuple[float, Array]:
    """Mean over the batch of the squared error summed over targets (half of it, so the gradient is the
    residual), and its gradient with respect to ``pred`` ``(batch, targets)``."""
    r = pred - target.reshape(pred.shape)
    n = pred.shape[0]
    return 0.5 * float(np.sum(r * r)) / n, r / n
