"""The lecture's 10-layer, 2-wide identity net with W = a I: closed forms for output and
gradients, and the per-layer statistics the tracker logs."""

import numpy as np
import pytest

import lab
from lab.kernels.codes import L_DELTA, L_GRAD

L = 10


@pytest.mark.parametrize("a", [0.5, 1.5])
def test_output_and_gradients_closed_form(backend, a, rng):
    m = 6
    X, Y = rng.standard_normal((2, m)), rng.standard_normal((2, m))
    net = lab.Network([2] * (L + 1), "identity", init="identity", gain=a, backend=backend)
    assert all(np.array_equal(W, a * np.eye(2)) for W in net.weights)
    y_hat = net.forward(X)
    np.testing.assert_allclose(y_hat, a ** L * X, rtol=1e-14)
    loss, dW, db = net.gradients(X, Y)
    dZ_L = (2 / m) * (a ** L * X - Y)
    np.testing.assert_allclose(loss, np.sum((a ** L * X - Y) ** 2) / m, rtol=1e-13)
    for l in range(1, L + 1):
        # dZ[l] = a^(L-l) dZ[L] and A[l-1] = a^(l-1) X, so every dW[l] = a^(L-1) dZ[L] Xᵀ
        np.testing.assert_allclose(dW[l - 1], a ** (L - 1) * dZ_L @ X.T, rtol=1e-12)
        np.testing.assert_allclose(db[l - 1], a ** (L - l) * dZ_L.sum(axis=1, keepdims=True),
                                   rtol=1e-12)


@pytest.mark.parametrize("a", [0.5, 1.5])
def test_delta_norm_scales_as_gain_power(backend, a, rng):
    m = 6
    X, Y = rng.standard_normal((2, m)), rng.standard_normal((2, m))
    net = lab.Network([2] * (L + 1), "identity", init="identity", gain=a, backend=backend)
    result = lab.train(net, lab.Optimizer("sgd", lr=1e-9), X, Y, steps=1)
    stats = result.history
    dZ_L = (2 / m) * (a ** L * X - Y)
    for l in range(1, L + 1):
        key = f"{l:02d}"
        np.testing.assert_allclose(stats[f"delta_norm/layer_{key}"][0],
                                   a ** (L - l) * np.linalg.norm(dZ_L), rtol=1e-12)
        np.testing.assert_allclose(stats[f"grad_norm/layer_{key}"][0],
                                   a ** (L - 1) * np.linalg.norm(dZ_L @ X.T), rtol=1e-12)
    assert L_GRAD != L_DELTA


def test_exploding_identity_net_diverges_and_reports_step(backend):
    ds = lab.make_dataset("identity", 64, 16, seed=0)
    net = lab.Network([2] * (L + 1), "identity", init="identity", gain=1.5, backend=backend)
    result = lab.train(net, lab.Optimizer("sgd", lr=0.01), ds.X_train, ds.Y_train, steps=500,
                       divergence_threshold=1e6)
    assert result.status == "diverged"
    step = result.diverged_at_step
    assert 0 < step < 500
    losses = result.history["loss/train"]
    assert len(losses) == step + 1 and result.history["step"][-1] == step
    assert np.all(np.isfinite(losses[:-1])) and np.all(losses[:-1] <= 1e6)
    assert not (np.isfinite(losses[-1]) and losses[-1] <= 1e6)


def test_half_identity_net_stalls(backend):
    # 0.5 I: the signal and every gradient shrink by 0.5^9 -- SGD barely moves the loss
    ds = lab.make_dataset("identity", 64, 16, seed=0)
    net = lab.Network([2] * (L + 1), "identity", init="identity", gain=0.5, backend=backend)
    result = lab.train(net, lab.Optimizer("sgd", lr=0.01), ds.X_train, ds.Y_train, steps=200)
    losses = result.history["loss/train"]
    assert result.status == "completed"
    assert losses[-1] > 0.98 * losses[0]
