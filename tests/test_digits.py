"""The digits data set, softmax + cross-entropy at depth, and initialization on digits."""

import numpy as np
import pytest

import lab

# --- the loader ----------------------------------------------------------------------------------

def test_digits_shapes_classes_and_one_hot():
    ds = lab.make_dataset("digits", 600, 400, seed=3)
    assert ds.X_train.shape == (64, 600) and ds.X_test.shape == (64, 400)
    assert ds.Y_train.shape == (10, 600) and ds.Y_test.shape == (10, 400)
    assert ds.task == "multiclass" and ds.default_loss == "cross_entropy"
    for Y in (ds.Y_train, ds.Y_test):
        assert set(np.unique(Y)) == {0.0, 1.0}
        np.testing.assert_array_equal(Y.sum(axis=0), 1.0)  # one 1 per example (column)
    assert set(np.argmax(ds.Y_train, axis=0)) == set(range(10))
    # pixels scaled to [0, 1] (sklearn's are 0..16) and images come in whole
    assert ds.X_train.min() == 0.0 and ds.X_train.max() == 1.0
    assert ds.mu is None and ds.sigma is None


def test_digits_split_is_seeded_and_disjoint():
    a = lab.make_dataset("digits", 1000, 797, seed=0)
    b = lab.make_dataset("digits", 1000, 797, seed=0)
    c = lab.make_dataset("digits", 1000, 797, seed=1)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.Y_test, b.Y_test)
    assert not np.array_equal(a.X_train, c.X_train)
    # the whole set split in two: every image once (as a multiset of rows)
    whole = np.concatenate([a.X_train, a.X_test], axis=1)
    assert whole.shape[1] == 1797
    other = np.concatenate([c.X_train, c.X_test], axis=1)
    np.testing.assert_array_equal(np.sort(whole.sum(axis=0)), np.sort(other.sum(axis=0)))


def test_digits_normalization_uses_the_training_statistics():
    raw = lab.make_dataset("digits", 800, 500, seed=2)
    ds = lab.make_dataset("digits", 800, 500, seed=2, normalize_inputs=True)
    np.testing.assert_allclose(ds.mu, raw.X_train.mean(axis=1, keepdims=True))
    np.testing.assert_allclose(ds.X_train.mean(axis=1), 0.0, atol=1e-12)
    varying = raw.X_train.std(axis=1) > 0
    np.testing.assert_allclose(ds.X_train[varying].std(axis=1), 1.0, rtol=1e-12)
    # the test set reuses the training mu, sigma: not re-centred on itself
    np.testing.assert_allclose(ds.X_test, (raw.X_test - ds.mu) / ds.sigma, rtol=1e-12)
    assert np.abs(ds.X_test.mean(axis=1)).max() > 1e-3
    # constant pixels (always blank in the training images) stay finite
    assert (ds.sigma[~varying] == 1.0).all() and np.isfinite(ds.X_test).all()


def test_digits_too_many_examples_is_a_clear_error():
    with pytest.raises(ValueError, match="1797"):
        lab.make_dataset("digits", 1500, 400)


# --- softmax + cross-entropy at depth 3 ----------------------------------------------------------

def _depth3(rng, backend, logit_scale=1.0):
    sizes = [4, 6, 5, 3]
    net = lab.Network(sizes, "tanh", output_activation="softmax", init="xavier", seed=4,
                      backend=backend)
    W3, b3 = net.split(net.theta)[0][2], net.split(net.theta)[1][2]
    W3 *= logit_scale
    b3[:] = rng.standard_normal(b3.shape)
    net.theta[net.b_off[0]:net.b_off[0] + sizes[1]] = 0.2 * rng.standard_normal(sizes[1])
    X = rng.standard_normal((4, 9))
    Y = np.eye(3)[rng.integers(0, 3, 9)].T
    return net, X, Y


@pytest.mark.parametrize("logit_scale", [1.0, 40.0])  # 40: saturated softmax, logits ~ 1e2
def test_softmax_cross_entropy_depth3_finite_differences(backend, rng, logit_scale):
    net, X, Y = _depth3(rng, backend, logit_scale)
    loss, grad = net.flat_gradients(X, Y, "cross_entropy")
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    numeric = np.empty_like(grad)
    h = 1e-6
    for p in range(net.theta.size):
        saved = net.theta[p]
        net.theta[p] = saved + h
        up = net.flat_gradients(X, Y, "cross_entropy")[0]
        net.theta[p] = saved - h
        down = net.flat_gradients(X, Y, "cross_entropy")[0]
        net.theta[p] = saved
        numeric[p] = (up - down) / (2 * h)
    rel = np.linalg.norm(grad - numeric) / (np.linalg.norm(grad) + np.linalg.norm(numeric))
    assert rel < 1e-6, rel
    assert np.linalg.norm(grad) > 1e-3


def _softmax(Z):
    E = np.exp(Z - Z.max(axis=0))
    return E / E.sum(axis=0)


def test_softmax_cross_entropy_depth3_closed_form(backend, rng):
    # dZ[3] = (A[3] - Y)/m, then the chain rule through two tanh layers, written out by hand
    net, X, Y = _depth3(rng, backend)
    m = X.shape[1]
    (W1, W2, W3), (b1, b2, b3) = net.weights, net.biases
    A1 = np.tanh(W1 @ X + b1)
    A2 = np.tanh(W2 @ A1 + b2)
    Z3 = W3 @ A2 + b3
    A3 = _softmax(Z3)
    dZ3 = (A3 - Y) / m
    dZ2 = (W3.T @ dZ3) * (1 - A2 ** 2)
    dZ1 = (W2.T @ dZ2) * (1 - A1 ** 2)
    loss, dW, db = net.gradients(X, Y, loss="cross_entropy")
    np.testing.assert_allclose(net.forward(X), A3, rtol=1e-12)
    lse = Z3.max(axis=0) + np.log(np.exp(Z3 - Z3.max(axis=0)).sum(axis=0))
    np.testing.assert_allclose(loss, np.mean(lse - (Y * Z3).sum(axis=0)), rtol=1e-12)
    for got, want in zip(dW, (dZ1 @ X.T, dZ2 @ A1.T, dZ3 @ A2.T)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-15)
    for got, want in zip(db, (dZ1, dZ2, dZ3)):
        np.testing.assert_allclose(got, want.sum(axis=1, keepdims=True), rtol=1e-10,
                                   atol=1e-15)
    np.testing.assert_allclose(db[2].sum(), 0.0, atol=1e-15)  # softmax: sum over classes of dZ


def test_cross_entropy_is_stable_and_shift_invariant(backend, rng):
    # adding a constant to every logit (the output bias) changes neither loss nor gradients
    net, X, Y = _depth3(rng, backend, logit_scale=300.0)  # logits ~ 1e3: exp would overflow
    loss, dW, _ = net.gradients(X, Y, "cross_entropy")
    assert np.isfinite(loss) and loss > 0
    net.biases[2][:] += 500.0
    loss2, dW2, _ = net.gradients(X, Y, "cross_entropy")
    np.testing.assert_allclose(loss2, loss, rtol=1e-9)
    for a, b in zip(dW, dW2):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-15)
    _, acc = net.evaluate(X, Y, "cross_entropy")
    assert acc == np.mean(np.argmax(net.forward(X), axis=0) == np.argmax(Y, axis=0))


# --- initialization on digits (initialization_notes, part b, small) ------------------------------

def test_digits_tanh_net_trains_with_xavier_and_not_with_zeros():
    ds = lab.make_dataset("digits", 1000, 797, seed=0, normalize_inputs=True)
    accuracy = {}
    for init in ("zeros", "xavier"):
        net = lab.Network([64, 32, 32, 32, 32, 10], "tanh", "softmax", init=init, seed=0)
        result = lab.train(net, lab.Optimizer("sgd", lr=0.1), ds.X_train, ds.Y_train,
                           steps=400, batch_size=64, loss="cross_entropy", log_every=100,
                           X_test=ds.X_test, Y_test=ds.Y_test)
        assert result.status == "completed"
        accuracy[init] = result.history["accuracy/test"][-1]
        np.testing.assert_allclose(accuracy[init], net.evaluate(ds.X_test, ds.Y_test,
                                                                "cross_entropy")[1], atol=0.02)
        if init == "zeros":  # symmetry: hidden weights never move, only the output bias learns
            for W in net.weights:
                np.testing.assert_array_equal(W, 0.0)
    assert accuracy["xavier"] >= 0.85, accuracy
    assert accuracy["zeros"] <= 0.3, accuracy
