"""The seeds' worked networks (section 3 notes), checked against their hand-derived formulas."""

import numpy as np
import pytest

import lab


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_univariate_regression(backend, rng):
    # ŷ = w x + b, L = (1/m) Σ (ŷ - y)², dL/dw = (2/m)(ŷ - y) xᵀ, dL/db = (2/m) Σ (ŷ - y)
    m = 9
    x, y = rng.standard_normal((1, m)), rng.standard_normal((1, m))
    w, b = 0.7, -0.3
    net = lab.Network.from_params([np.array([[w]])], [np.array([[b]])], "identity",
                                  backend=backend)
    y_hat = w * x + b
    loss, dW, db = net.gradients(x, y, loss="mse")
    np.testing.assert_allclose(net.forward(x), y_hat, rtol=1e-15)
    np.testing.assert_allclose(loss, np.mean((y_hat - y) ** 2), rtol=1e-14)
    np.testing.assert_allclose(dW[0], (2 / m) * (y_hat - y) @ x.T, rtol=1e-13)
    np.testing.assert_allclose(db[0], [[(2 / m) * np.sum(y_hat - y)]], rtol=1e-13)


def test_multivariate_regression(backend, rng):
    # X is (n, m), w is (1, n): dL/dw = (2/m)(ŷ - y) Xᵀ
    n, m = 5, 12
    X, y = rng.standard_normal((n, m)), rng.standard_normal((1, m))
    w, b = rng.standard_normal((1, n)), np.array([[0.4]])
    net = lab.Network.from_params([w], [b], "identity", backend=backend)
    y_hat = w @ X + b
    loss, dW, db = net.gradients(X, y)
    np.testing.assert_allclose(loss, np.mean((y_hat - y) ** 2), rtol=1e-13)
    np.testing.assert_allclose(dW[0], (2 / m) * (y_hat - y) @ X.T, rtol=1e-12)
    np.testing.assert_allclose(db[0], (2 / m) * np.sum(y_hat - y, keepdims=True), rtol=1e-12)


def two_layer(rng, n_x=3, n_1=4, m=10):
    X, y = rng.standard_normal((n_x, m)), rng.standard_normal((1, m))
    W1, b1 = rng.standard_normal((n_1, n_x)), rng.standard_normal((n_1, 1))
    W2, b2 = rng.standard_normal((1, n_1)), rng.standard_normal((1, 1))
    return X, y, W1, b1, W2, b2


def test_two_layer_linear(backend, rng):
    # Z1 = W1 X + b1, ŷ = W2 Z1 + b2: dW2 = (2/m)(ŷ-y) Z1ᵀ, dW1 = W2ᵀ (2/m)(ŷ-y) Xᵀ
    X, y, W1, b1, W2, b2 = two_layer(rng)
    m = X.shape[1]
    net = lab.Network.from_params([W1, W2], [b1, b2], "identity", backend=backend)
    Z1 = W1 @ X + b1
    y_hat = W2 @ Z1 + b2
    dZ2 = (2 / m) * (y_hat - y)
    dZ1 = W2.T @ dZ2
    loss, dW, db = net.gradients(X, y)
    np.testing.assert_allclose(loss, np.mean((y_hat - y) ** 2), rtol=1e-13)
    np.testing.assert_allclose(dW[1], dZ2 @ Z1.T, rtol=1e-12)
    np.testing.assert_allclose(db[1], dZ2.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(dW[0], dZ1 @ X.T, rtol=1e-12)
    np.testing.assert_allclose(db[0], dZ1.sum(axis=1, keepdims=True), rtol=1e-12)


def test_two_layer_sigmoid(backend, rng):
    # A1 = σ(W1 X + b1), ŷ = W2 A1 + b2: dZ1 = W2ᵀ dZ2 ⊙ A1 (1 - A1)
    X, y, W1, b1, W2, b2 = two_layer(rng)
    m = X.shape[1]
    net = lab.Network.from_params([W1, W2], [b1, b2], "sigmoid", backend=backend)
    A1 = sigmoid(W1 @ X + b1)
    y_hat = W2 @ A1 + b2
    dZ2 = (2 / m) * (y_hat - y)
    dZ1 = (W2.T @ dZ2) * A1 * (1 - A1)
    loss, dW, db = net.gradients(X, y)
    np.testing.assert_allclose(net.forward(X), y_hat, rtol=1e-13)
    np.testing.assert_allclose(loss, np.mean((y_hat - y) ** 2), rtol=1e-13)
    np.testing.assert_allclose(dW[1], dZ2 @ A1.T, rtol=1e-12)
    np.testing.assert_allclose(dW[0], dZ1 @ X.T, rtol=1e-12)
    np.testing.assert_allclose(db[0], dZ1.sum(axis=1, keepdims=True), rtol=1e-12)


@pytest.mark.parametrize("hidden", ["tanh", "relu", "sigmoid"])
def test_one_hidden_layer_classifier_bce(backend, rng, hidden):
    # sigmoid output + BCE: dZ2 = A2 - Y (the 1/m folded in), dW2 = dZ2 A1ᵀ / m,
    # dZ1 = W2ᵀ dZ2 ⊙ g'(Z1)
    X, _, W1, b1, W2, b2 = two_layer(rng, m=16)
    m = X.shape[1]
    Y = (rng.uniform(size=(1, m)) > 0.5).astype(float)
    net = lab.Network.from_params([W1, W2], [b1, b2], hidden, output_activation="sigmoid",
                                  backend=backend)
    g = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0), "sigmoid": sigmoid}[hidden]
    slope = {"tanh": lambda z: 1 - np.tanh(z) ** 2, "relu": lambda z: (z > 0) * 1.0,
             "sigmoid": lambda z: sigmoid(z) * (1 - sigmoid(z))}[hidden]
    Z1 = W1 @ X + b1
    A1 = g(Z1)
    A2 = sigmoid(W2 @ A1 + b2)
    dZ2 = A2 - Y
    dZ1 = (W2.T @ dZ2) * slope(Z1)
    loss, dW, db = net.gradients(X, Y, loss="bce")
    bce = -np.mean(Y * np.log(A2) + (1 - Y) * np.log(1 - A2))
    np.testing.assert_allclose(loss, bce, rtol=1e-12)
    np.testing.assert_allclose(dW[1], dZ2 @ A1.T / m, rtol=1e-12)
    np.testing.assert_allclose(db[1], dZ2.sum(axis=1, keepdims=True) / m, rtol=1e-12)
    np.testing.assert_allclose(dW[0], dZ1 @ X.T / m, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(db[0], dZ1.sum(axis=1, keepdims=True) / m, rtol=1e-12,
                               atol=1e-15)


def test_softmax_cross_entropy_one_layer(backend, rng):
    # one-layer softmax regression: L = -(1/m) Σ y log softmax(z), dZ = (A - Y)/m
    n_x, k, m = 4, 3, 11
    X = rng.standard_normal((n_x, m))
    Y = np.eye(k)[rng.integers(0, k, m)].T
    W, b = rng.standard_normal((k, n_x)), rng.standard_normal((k, 1))
    net = lab.Network.from_params([W], [b], "identity", output_activation="softmax",
                                  backend=backend)
    Z = W @ X + b
    A = np.exp(Z) / np.exp(Z).sum(axis=0)
    loss, dW, db = net.gradients(X, Y, loss="cross_entropy")
    np.testing.assert_allclose(net.forward(X), A, rtol=1e-13)
    np.testing.assert_allclose(loss, -np.mean(np.sum(Y * np.log(A), axis=0)), rtol=1e-12)
    np.testing.assert_allclose(dW[0], (A - Y) @ X.T / m, rtol=1e-12)
    np.testing.assert_allclose(db[0], (A - Y).sum(axis=1, keepdims=True) / m, rtol=1e-12,
                               atol=1e-16)
