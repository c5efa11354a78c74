"""Each estimator's gradient against the exact gradient (cosine similarity of the averaged estimate).

Two devices: a smooth toy reservoir ``tanh(u W + b)`` with a known vjp, and the noise-free simulated ring
(``pgt.sim.ring``, exact vjp). Averaging many independent estimates approximates the expected value, which
must point along the exact gradient; a single estimate must still be positively aligned.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pgt.estimators import Backprop, Estimator, NodePGT, ParameterPGT, SurrogatePGT, measure_noise
from pgt.layers import softmax_cross_entropy
from pgt.models import HybridModel, ReservoirMLP, ReservoirTransformer
from pgt.optim import adam, apply_updates, chain, clip_by_global_norm, cosine_decay, sgd
from pgt.physical import PhysicalLayer


class ToyReservoir:
    """``y = tanh(u W + b)`` on drives in [0, 10] mA, optional Gaussian read noise; exact vjp."""

    def __init__(self, k: int = 6, m: int = 10, seed: int = 0, noise: float = 0.0) -> None:
        rng = np.random.default_rng(seed)
        self.n_inputs, self.n_outputs = k, m
        self.W = rng.normal(size=(k, m)) / np.sqrt(k) * 0.4
        self.b = rng.normal(size=m) * 0.5 - 0.4 * self.W.sum(axis=0) * 5.0
        self.drive_low = np.zeros(k)
        self.drive_high = np.full(k, 10.0)
        self.queries = 0
        self.calls = 0
        self.device_seconds = 0.0
        self.noise = noise
        self.rng = np.random.default_rng(seed + 1)
        self.snapshot_ok = True

    @property
    def info(self) -> dict[str, Any]:
        return {"kind": "toy", "n_inputs": self.n_inputs, "n_outputs": self.n_outputs}

    @property
    def exact_vjp(self) -> bool:
        return self.noise == 0.0

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.queries += x.shape[0]
        self.calls += 1
        self.device_seconds += 1e-3 * x.shape[0]
        y = np.tanh(x @ self.W + self.b)
        return y + self.noise * self.rng.standard_normal(y.shape) if self.noise else y

    def vjp(self, x: np.ndarray, grad_y: np.ndarray) -> np.ndarray:
        return np.asarray((grad_y * (1.0 - np.tanh(x @ self.W + self.b) ** 2)) @ self.W.T)


def flat(g: dict[str, np.ndarray], prefix: str = "") -> np.ndarray:
    return np.concatenate([g[k].ravel() for k in sorted(g) if k.startswith(prefix)])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def setup_mlp(res: Any, seed: int = 0, n: int = 64) -> tuple[HybridModel, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    ph = PhysicalLayer(res, slots=1)
    model = ReservoirMLP(12, 4, ph, rng)
    ph.fit_normalisation(rng, n_probe=256)
    x = rng.normal(size=(n, 12))
    labels = rng.integers(0, 4, size=n)
    return model, (x, labels)


def averaged(est: Estimator, model: HybridModel, batch: Any, n: int, prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
    first = None
    total = None
    for _ in range(n):
        _, g, _ = est.estimate(model, batch)
        f = flat(g, prefix)
        first = f if first is None else first
        total = f if total is None else total + f
    assert first is not None and total is not None
    return first, total / n


def exact(model: HybridModel, batch: Any) -> dict[str, np.ndarray]:
    return Backprop().estimate(model, batch)[1]


def test_backprop_matches_finite_differences_of_the_loss() -> None:
    model, batch = setup_mlp(ToyReservoir())
    g = exact(model, batch)
    ph = model.physical

    def loss() -> float:
        a, pc = model.pre(batch[0])
        logits, _ = model.post(ph.normalise(ph.query(ph.drive(a)[0])), pc)
        return softmax_cross_entropy(logits, batch[1])[0]

    p = model.params["front.0.W"]
    for idx in [(0, 0), (3, 2), (11, 5)]:
        old = p[idx]
        p[idx] = old + 1e-6
        lp = loss()
        p[idx] = old - 1e-6
        lm = loss()
        p[idx] = old
        assert g["front.0.W"][idx] == pytest.approx((lp - lm) / 2e-6, rel=1e-4, abs=1e-8)


@pytest.mark.parametrize("two_sided", [True, False])
def test_node_pgt_is_unbiased_on_toy(two_sided: bool) -> None:
    res = ToyReservoir()
    model, batch = setup_mlp(res)
    g = exact(model, batch)
    est = NodePGT(1, sigma=1e-3, two_sided=two_sided)
    calls, q0 = res.calls, res.queries
    loss, ge, q = est.estimate(model, batch)
    assert res.calls == calls + 1, "baseline and perturbed rows must go in one block"
    assert q == res.queries - q0 == 2 * len(batch[1]) * model.rows_per_sample
    # Digital layers after the device: exact, whatever the perturbation.
    np.testing.assert_allclose(flat(ge, "back"), flat(g, "back"), rtol=1e-3, atol=1e-6)
    one, avg = averaged(est, model, batch, 300, "front")
    assert cosine(one, flat(g, "front")) > 0.2
    assert cosine(avg, flat(g, "front")) > 0.95
    assert np.linalg.norm(avg) / np.linalg.norm(flat(g, "front")) == pytest.approx(1.0, abs=0.15)


def test_surrogate_gradient_on_toy() -> None:
    res = ToyReservoir()
    model, batch = setup_mlp(res)
    est = SurrogatePGT(2, refit_every=5)
    rng = np.random.default_rng(9)
    u = rng.uniform(0, 10, size=(1500, res.n_inputs))
    est.observe(u, res.forward(u))
    q0 = res.queries
    _, ge, q = est.estimate(model, batch)
    assert q == res.queries - q0 == len(batch[1]) * model.rows_per_sample
    assert est.fit_error is not None and est.fit_error < 0.1
    assert cosine(flat(ge), flat(exact(model, batch))) > 0.95
    assert cosine(flat(ge, "front"), flat(exact(model, batch), "front")) > 0.9


def test_parameter_pgt_expected_value_on_toy() -> None:
    res = ToyReservoir()
    model, batch = setup_mlp(res)
    g = flat(exact(model, batch))
    est = ParameterPGT(3, directions=4, sigma=1e-4)
    calls, q0 = res.calls, res.queries
    _, _, q = est.estimate(model, batch)
    assert res.calls == calls + 1 and q == res.queries - q0 == 8 * len(batch[1]) * model.rows_per_sample
    before = {k: v.copy() for k, v in model.params.items()}
    one, avg = averaged(est, model, batch, 400)
    for k, v in model.params.items():  # parameters restored exactly
        np.testing.assert_array_equal(v, before[k])
    # d ~ 310 coordinates (3 slots of the 6-drive toy), 1600 directions: cos ~ 1/sqrt(1 + d/N) ~ 0.9
    assert cosine(avg, g) > 0.85
    assert cosine(one, g) > 0.0


def test_parameter_pgt_subset_and_one_sided() -> None:
    model, batch = setup_mlp(ToyReservoir())
    est = ParameterPGT(4, directions=1, two_sided=False, sigma=1e-4, dist="gaussian", params=("back",))
    _, ge, q = est.estimate(model, batch)
    assert q == 2 * len(batch[1]) * model.rows_per_sample
    assert np.all(flat(ge, "front") == 0.0) and np.any(flat(ge, "back") != 0.0)
    _, avg = averaged(est, model, batch, 600, "back")
    assert cosine(avg, flat(exact(model, batch), "back")) > 0.85


# -- the noise-free ring ----------------------------------------------------------------------------
from pgt.sim.reservoirs import reference_ring  # noqa: E402


def test_estimators_on_the_noise_free_ring() -> None:
    res = reference_ring(seed=1, board="wide")
    model, batch = setup_mlp(res, n=128)
    g = exact(model, batch)
    gf = flat(g, "front")
    # Node perturbation: small sigma, expected value along the exact gradient.
    one, avg = averaged(NodePGT(4, sigma=1e-3), model, batch, 100, "front")
    assert cosine(one, gf) > 0.1
    assert cosine(avg, gf) > 0.85
    # The surrogate: its full gradient (exact after the device) is well aligned with the exact one.
    est = SurrogatePGT(5)
    rng = np.random.default_rng(3)
    u = rng.uniform(0, 100, size=(4000, 16))
    est.observe(u, res.forward(u))
    _, gs, _ = est.estimate(model, batch)
    assert cosine(flat(gs), flat(g)) > 0.5
    # In front of the device it sees a smoothed ring (mode hops are steep), so only broadly aligned.
    assert cosine(flat(gs, "front"), flat(g, "front")) > 0.3
    # Parameter perturbation, restricted to the layer in front of the ring (d = 272).
    small = (batch[0][:32], batch[1][:32])
    gf = flat(exact(model, small), "front")
    pe = ParameterPGT(6, directions=16, sigma=1e-4, params=("front",))
    _, avg = averaged(pe, model, small, 60, "front")
    assert cosine(avg, gf) > 0.8


def test_transformer_node_pgt_per_token() -> None:
    res = ToyReservoir()
    rng = np.random.default_rng(0)
    ph = PhysicalLayer(res)
    model = ReservoirTransformer(5, 3, ph, rng, token_dim=4, d_model=8, heads=2)
    ph.fit_normalisation(rng, 128)
    batch = (rng.normal(size=(16, 5, 4)), rng.integers(0, 3, size=16))
    q0 = res.queries
    _, _, q = NodePGT(1, sigma=1e-3).estimate(model, batch)
    assert q == res.queries - q0 == 2 * 16 * 5 * ph.slots
    _, avg = averaged(NodePGT(1, sigma=1e-3), model, batch, 300, "attn")
    assert cosine(avg, flat(exact(model, batch), "attn")) > 0.9


def test_calibration_measures_noise_and_picks_sigma() -> None:
    for noise in (0.0, 0.02):
        res = ToyReservoir(noise=noise)
        model, batch = setup_mlp(res)
        cal = measure_noise(model, batch[0], np.random.default_rng(0))
        assert cal.queries == 24 * 11
        expected = noise * np.sqrt(np.mean(model.physical.sd**-2.0))  # RMS over outputs, normalised
        assert cal.noise == pytest.approx(expected, rel=0.15, abs=1e-12)
        est = NodePGT(0)
        est.fit_to_device(model, batch)
        lo, hi = est.sigma_range
        assert est.sigma is not None and lo <= est.sigma <= hi
        if noise == 0.0:
            assert est.sigma == lo
        else:
            assert est.sigma > lo


def test_optimizers_minimise_a_quadratic() -> None:
    for opt in (sgd(0.1), sgd(0.05, momentum=0.9), adam(0.1), adam(cosine_decay(0.1, 200), clip=1.0),
                chain(clip_by_global_norm(0.5), sgd(0.1, nesterov=True, momentum=0.5))):
        params = {"x": np.array([3.0, -2.0])}
        state = opt.init(params)
        for _ in range(200):
            updates, state = opt.update({"x": 2 * params["x"]}, state, params)
            apply_updates(params, updates)
        assert np.linalg.norm(params["x"]) < 0.1


@pytest.mark.parametrize("params", [None, ("front",)])
def test_parameter_pgt_gives_the_layers_after_the_device_their_exact_gradient(params: Any) -> None:
    model, batch = setup_mlp(ToyReservoir())
    g = exact(model, batch)
    est = ParameterPGT(5, sigma=1e-4, params=params)
    _, ge, q = est.estimate(model, batch)
    assert q == 2 * est.directions * len(batch[1]) * model.physical.slots
    np.testing.assert_allclose(flat(ge, "back"), flat(g, "back"), rtol=1e-3, atol=1e-6)
    assert np.any(flat(ge, "front") != 0.0)
    _, avg = averaged(est, model, batch, 200, "front")  # 800 directions
    assert cosine(avg, flat(g, "front")) > 0.8


def test_parameter_pgt_all_parameter_variant_estimates_everything_from_differences() -> None:
    model, batch = setup_mlp(ToyReservoir())
    g = exact(model, batch)
    est = ParameterPGT(6, sigma=1e-4, params="all")
    _, ge, _ = est.estimate(model, batch)
    # A few directions per step: the layers after the device are estimated, not exact.
    assert cosine(flat(ge, "back"), flat(g, "back")) < 0.9
    assert est.config()["params"] == "all"


@pytest.mark.parametrize("name, options, words", [
    ("node", {"sigma": -1.0}, r"bad option sigma=-1.0 for the node estimator \(want number>0\)"),
    ("node", {"sigma": float("nan")}, "bad option sigma=nan"),
    ("node", {"sigma": "abc"}, "bad option sigma='abc'"),
    ("node", {"directions": 0}, r"directions=0 .* \(want int>=1\)"),
    ("node", {"directions": 1.5}, "bad option directions=1.5"),
    ("node", {"dist": "foo"}, r"want rademacher\|gaussian"),
    ("node", {"order": "random"}, r"want auto\|blocks\|interleaved"),
    ("node", {"sigma_range": (0.2, 0.1)}, "bad option sigma_range=.0.2, 0.1."),
    ("node", {"sigma_range": 0.1}, "bad option sigma_range=0.1"),
    ("node", {"zero_tolerance": 2.0}, "zero_tolerance"),
    ("node", {"two_sided": "yes"}, "two_sided"),
    ("param", {"params": 3}, "bad option params=3"),
    ("param", {"repeats": 2}, r"repeats=2 .* \(want int>=3\)"),
    ("param", {"snr": float("inf")}, "bad option snr=inf"),
    ("param", {"bogus": 1}, "unknown option 'bogus' for the param estimator; valid -E keys for param"),
    ("surrogate", {"features": 0}, "bad option features=0"),
])
def test_bad_estimator_options_are_refused_before_any_query(name: str, options: dict[str, Any], words: str) -> None:
    from pgt.errors import UserError
    from pgt.estimators import make_estimator

    with pytest.raises(UserError, match=words):
        make_estimator(name, 0, **options)


def test_param_refuses_unknown_parameter_groups_before_any_query() -> None:
    from pgt.errors import UserError
    from pgt.trainer import TrainConfig, Trainer

    res = ToyReservoir()
    with pytest.raises(UserError, match="matches no parameter of the model .its groups: back, front"):
        Trainer(res, TrainConfig(estimator="param", estimator_options={"params": "nope"}))
    assert res.queries == 0


@pytest.mark.parametrize("name, options", [
    ("node", {"sigma_range": [0.1, 0.1]}),  # a fixed size: refused by the CLI's check before, accepted here
    ("node", {"sigma_range": [0.2, 0.1]}),
    ("param", {"params": "front,back"}),
    ("param", {"params": ["front"]}),
    ("param", {"params": []}),
    ("node", {"directions": np.int64(2)}),
    ("surrogate", {"ridge": 0}),
])
def test_one_validator_serves_the_cli_the_config_and_the_constructors(name: str, options: dict[str, Any]) -> None:
    """The CLI/config check, make_estimator and the constructor accept or refuse an option alike."""
    from pgt.errors import UserError
    from pgt.estimators import ESTIMATORS, check_options, make_estimator

    verdicts = []
    for attempt in (lambda: check_options(name, options), lambda: make_estimator(name, 0, **options),
                    lambda: ESTIMATORS[name](0, **options)):
        try:
            attempt()
            verdicts.append(True)
        except UserError:
            verdicts.append(False)
    assert len(set(verdicts)) == 1, verdicts


def test_converted_options_reach_the_estimator() -> None:
    from pgt.estimators import check_options, make_estimator

    assert check_options("node", {"sigma_range": [0.1, 0.1]}) == {"sigma_range": (0.1, 0.1)}
    assert check_options("param", {"params": "front,back"}) == {"params": ["front", "back"]}
    est = make_estimator("param", 0, params="front,back")
    assert isinstance(est, ParameterPGT) and est.subset == ("front", "back")
