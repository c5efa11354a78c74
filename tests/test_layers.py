"""Every layer's backward pass against central finite differences, and the two hybrid models end to end."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from pgt.layers import (
    Dense,
    Embedding,
    Layer,
    LayerNorm,
    MeanPool,
    MultiHeadSelfAttention,
    PositionalEncoding,
    ReLU,
    Residual,
    Sequential,
    Tanh,
    softmax_cross_entropy,
)
from pgt.models import ReservoirMLP, ReservoirTransformer
from pgt.physical import PhysicalLayer
from pgt.reservoir import from_callable


def numeric_grad(f: Callable[[], float], a: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    g = np.zeros_like(a)
    it = np.nditer(a, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = a[i]
        a[i] = old + eps
        fp = f()
        a[i] = old - eps
        fm = f()
        a[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def check_layer(layer: Layer, x: np.ndarray, rng: np.random.Generator, check_x: bool = True) -> None:
    y, _ = layer.forward(x)
    w = rng.normal(size=y.shape)  # random projection: loss = <w, y>

    def loss() -> float:
        return float(np.sum(w * layer.forward(x)[0]))

    _, cache = layer.forward(x)
    gx, grads = layer.backward(w, cache)
    if check_x:
        np.testing.assert_allclose(gx, numeric_grad(loss, x), rtol=1e-5, atol=1e-7)
    assert set(grads) == set(layer.params)
    for name, p in layer.params.items():
        np.testing.assert_allclose(grads[name], numeric_grad(loss, p), rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.parametrize(
    "make",
    [
        lambda r: Dense(5, 4, r),
        lambda r: Tanh(),
        lambda r: LayerNorm(5),
        lambda r: PositionalEncoding(6, 5),
        lambda r: Sequential(Dense(5, 3, r), Tanh(), Dense(3, 5, r)),
        lambda r: Residual(Sequential(LayerNorm(5), Dense(5, 5, r))),
    ],
    ids=["dense", "tanh", "layernorm", "posenc", "sequential", "residual"],
)
def test_layer_gradients(make: Callable[[np.random.Generator], Layer]) -> None:
    rng = np.random.default_rng(0)
    layer = make(rng)
    for p in layer.params.values():  # non-trivial gamma/beta/biases
        p += rng.normal(scale=0.3, size=p.shape)
    check_layer(layer, rng.normal(size=(3, 4, 5)), rng)


def test_relu_gradient_away_from_kink() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 6))
    x[np.abs(x) < 0.1] = 0.5
    check_layer(ReLU(), x, rng)


def test_attention_gradients() -> None:
    rng = np.random.default_rng(2)
    layer = MultiHeadSelfAttention(8, 2, rng)
    for p in layer.params.values():
        p += rng.normal(scale=0.2, size=p.shape)
    check_layer(layer, rng.normal(size=(2, 5, 8)), rng)


def test_attention_rejects_bad_heads() -> None:
    with pytest.raises(ValueError):
        MultiHeadSelfAttention(6, 4, np.random.default_rng(0))


def test_embedding_and_meanpool_gradients() -> None:
    rng = np.random.default_rng(3)
    check_layer(Embedding(7, 4, rng), rng.integers(0, 7, size=(3, 5)), rng, check_x=False)
    check_layer(MeanPool(), rng.normal(size=(3, 5, 4)), rng)


def test_cross_entropy_gradient() -> None:
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(6, 5))
    labels = rng.integers(0, 5, size=6)
    _, g = softmax_cross_entropy(logits, labels)
    num = numeric_grad(lambda: softmax_cross_entropy(logits, labels)[0], logits)
    np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-8)


def _toy_physical(rng: np.random.Generator, k: int = 4, m: int = 6) -> tuple[PhysicalLayer, np.ndarray]:
    w = rng.normal(size=(k, m)) / np.sqrt(k)
    res = from_callable(lambda u: np.tanh(u @ w), k, m, drive_low=-2.0, drive_high=2.0)
    ph = PhysicalLayer(res)
    ph.mu = rng.normal(size=m) * 0.1
    ph.sd = rng.uniform(0.5, 2.0, size=m)
    return ph, w


def _model_loss_and_grads(model, ph, w, x, labels):  # type: ignore[no-untyped-def,unused-ignore]
    a, pc = model.pre(x)
    u, mask = ph.drive(a)
    z = ph.normalise(ph.query(u))
    logits, qc = model.post(z, pc)
    loss, gl = softmax_cross_entropy(logits, labels)
    gz, grads, skip = model.post_backward(gl, qc)
    gy = ph.normalise_backward(gz)
    gu = (gy * (1.0 - np.tanh(u @ w) ** 2)) @ w.T  # exact vjp of tanh(u W)
    grads |= model.pre_backward(ph.drive_backward(gu, mask), skip, pc)
    return loss, grads


@pytest.mark.parametrize("kind", ["mlp", "transformer-vec", "transformer-tok"])
def test_hybrid_models_backprop_matches_finite_differences(kind: str) -> None:
    rng = np.random.default_rng(5)
    ph, w = _toy_physical(rng)
    x: np.ndarray
    model: ReservoirMLP | ReservoirTransformer
    if kind == "mlp":
        model = ReservoirMLP(7, 3, ph, rng, hidden=(5,))
        x = rng.normal(size=(4, 7))
    elif kind == "transformer-vec":
        model = ReservoirTransformer(5, 3, ph, rng, token_dim=3, d_model=8, heads=2)
        x = rng.normal(size=(4, 5, 3))
    else:
        model = ReservoirTransformer(5, 3, ph, rng, vocab=6, d_model=8, heads=2)
        x = rng.integers(0, 6, size=(4, 5))
    labels = rng.integers(0, 3, size=4)
    _, grads = _model_loss_and_grads(model, ph, w, x, labels)
    assert set(grads) == set(model.params)
    for name, p in model.params.items():
        num = numeric_grad(lambda: _model_loss_and_grads(model, ph, w, x, labels)[0], p)
        np.testing.assert_allclose(grads[name], num, rtol=1e-4, atol=1e-7, err_msg=name)


def test_physical_layer_maps_into_safe_range_and_clips() -> None:
    rng = np.random.default_rng(6)
    res = from_callable(lambda u: u[:, :2] ** 2, 3, 2, drive_low=0.0, drive_high=10.0)
    ph = PhysicalLayer(res, margin=0.9)
    u, mask = ph.drive(np.array([[-1.0, 0.0, 1.0], [-5.0, 0.5, 5.0]]))
    np.testing.assert_allclose(u[0], [0.5, 5.0, 9.5])
    np.testing.assert_allclose(u[1], [0.0, 7.25, 10.0])
    assert mask.tolist() == [[True, True, True], [False, True, False]]
    queries, _, _ = ph.fit_normalisation(rng, n_probe=64)
    assert queries == ph.probe_queries(64) == 64 + 16 and res.queries == queries
    assert np.all(ph.noise_span == 0.0)  # a noise-free callable: repeats read the same
    z = ph.normalise(res.forward(ph.drive(rng.uniform(-1, 1, size=(64, 3)))[0]))
    assert np.all(np.abs(z.mean(axis=0)) < 0.5)
