"""Gradients against central finite differences, every activation x loss, depth >= 5."""

import numpy as np
import pytest

import lab

LOSS_OUTPUT = [("mse", "identity"), ("mse", "tanh"), ("bce", "sigmoid"),
               ("cross_entropy", "softmax")]


def targets(loss, n_y, m, rng):
    if loss == "mse":
        return rng.standard_normal((n_y, m))
    if loss == "bce":
        return (rng.uniform(size=(n_y, m)) > 0.5).astype(float)
    return np.eye(n_y)[rng.integers(0, n_y, m)].T


@pytest.mark.parametrize("activation", ["identity", "sigmoid", "tanh", "relu", "leaky_relu"])
@pytest.mark.parametrize("loss,output", LOSS_OUTPUT)
def test_gradients_match_finite_differences(backend, activation, loss, output):
    rng = np.random.default_rng(7)
    sizes = [3, 5, 4, 5, 4, 3]  # depth 5
    net = lab.Network(sizes, activation, output_activation=output, init="xavier", gain=1.5,
                      seed=3, backend=backend)
    net.theta[net.b_off[0]:net.b_off[0] + 5] = 0.1 * rng.standard_normal(5)  # non-zero biases
    X, Y = rng.standard_normal((3, 8)), targets(loss, 3, 8, rng)
    _, grad = net.flat_gradients(X, Y, loss)
    numeric = np.empty_like(grad)
    h = 1e-6
    for p in range(net.theta.size):
        saved = net.theta[p]
        net.theta[p] = saved + h
        up = net.flat_gradients(X, Y, loss)[0]
        net.theta[p] = saved - h
        down = net.flat_gradients(X, Y, loss)[0]
        net.theta[p] = saved
        numeric[p] = (up - down) / (2 * h)
    rel = np.linalg.norm(grad - numeric) / (np.linalg.norm(grad) + np.linalg.norm(numeric))
    assert rel < 1e-6, rel
    assert np.linalg.norm(grad) > 1e-4  # the check is not vacuous
