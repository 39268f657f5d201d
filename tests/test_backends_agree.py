"""The numba CPU kernels reproduce the numpy reference: forward, gradients, and whole training
runs (parameters and every per-step statistic) for each optimizer and batch regime."""

import numpy as np
import pytest
from conftest import networks

import lab
from lab.kernels.codes import HIST_BINS

# RMSprop/Adam take ~lr-sized steps whatever the gradient's size, so a chaotic regime would
# amplify round-off; these rates keep the runs in the regime the kernels are compared in.
LR = {"sgd": 0.05, "momentum": 0.05, "rmsprop": 0.001, "adam": 0.001}




@pytest.mark.parametrize("activation,output,loss", [
    ("tanh", "identity", "mse"), ("relu", "sigmoid", "bce"), ("sigmoid", "softmax",
                                                              "cross_entropy")])
def test_forward_and_gradients_agree(activation, output, loss, rng):
    ref, fast = networks(("numpy", "cpu"), sizes=[4, 16, 16, 16, 3], activation=activation, output_activation=output,
                     init="he", seed=5)
    X = rng.standard_normal((4, 33))
    Y = np.eye(3)[rng.integers(0, 3, 33)].T
    np.testing.assert_allclose(fast.forward(X), ref.forward(X), rtol=1e-12, atol=1e-14)
    l_ref, g_ref = ref.flat_gradients(X, Y, loss)
    l_fast, g_fast = fast.flat_gradients(X, Y, loss)
    np.testing.assert_allclose(l_fast, l_ref, rtol=1e-12)
    np.testing.assert_allclose(g_fast, g_ref, rtol=1e-10, atol=1e-14)


def test_large_layers_take_the_blas_path_and_agree(rng):
    ref, fast = networks(("numpy", "cpu"), sizes=[64, 128, 128, 1], activation="relu", seed=2)
    X, Y = rng.standard_normal((64, 200)), rng.standard_normal((1, 200))
    np.testing.assert_allclose(fast.flat_gradients(X, Y)[1], ref.flat_gradients(X, Y)[1],
                               rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop", "adam"])
@pytest.mark.parametrize("batch_size", [1, 7, "full"])
def test_training_runs_agree(optimizer, batch_size):
    ds = lab.make_dataset("teacher", 60, 20, seed=1)
    ref, fast = networks(("numpy", "cpu"), sizes=[4, 8, 8, 8, 8, 1], activation="tanh", init="xavier", seed=0)
    results = [lab.train(net, lab.Optimizer(optimizer, lr=LR[optimizer]), ds.X_train,
                         ds.Y_train, steps=100, batch_size=batch_size, seed=3, log_every=10,
                         X_test=ds.X_test, Y_test=ds.Y_test) for net in (ref, fast)]
    np.testing.assert_allclose(fast.theta, ref.theta, rtol=1e-12, atol=1e-12)
    h_ref, h_fast = results[0].history, results[1].history
    assert h_ref.keys() == h_fast.keys()
    for key in h_ref:
        np.testing.assert_allclose(h_fast[key], h_ref[key], rtol=1e-12, atol=1e-12, err_msg=key)
    assert h_ref["hist/act"].shape == (11, 5, HIST_BINS)
    assert h_ref["loss/train"][-1] < h_ref["loss/train"][0]


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_float32_agrees_at_single_precision(activation, rng):
    ref, fast = networks(("numpy", "cpu"), sizes=[3, 8, 8, 1], activation=activation, dtype="float32", seed=1)
    X, Y = rng.standard_normal((3, 20)), rng.standard_normal((1, 20))
    assert fast.theta.dtype == np.float32
    assert fast.forward(X).dtype == np.float32
    np.testing.assert_allclose(fast.flat_gradients(X, Y)[1], ref.flat_gradients(X, Y)[1],
                               rtol=2e-5, atol=1e-6)


def test_forward_and_evaluate_on_a_large_set_match_the_reference(rng):
    # large enough that the kernels' scratch buffers are their own memory mappings: a view
    # outliving its buffer would read unmapped memory here (a regression test)
    ref, fast = networks(("numpy", "cpu"), sizes=[2, 16, 16, 1], activation="tanh", output_activation="sigmoid",
                     init="xavier", seed=4)
    X = rng.standard_normal((2, 20000))
    Y = (rng.uniform(size=(1, 20000)) > 0.5).astype(float)
    np.testing.assert_allclose(fast.forward(X), ref.forward(X), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fast.evaluate(X, Y, "bce"), ref.evaluate(X, Y, "bce"),
                               rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_log10_histogram_table_is_the_formula(dtype):
    """The CPU chunk bins log10|dZ| from a table over the binary exponent: for every value (the
    table's own edges and their neighbours, random magnitudes, 0, subnormals, inf, NaN) it
    gives the bin that the defining formula (cpu._delta_bin, a log10 per value) gives."""
    from numba import njit

    from lab.kernels import cpu

    @njit
    def by_formula(values, nb):
        counts = np.zeros(nb, np.int64)
        for v in values:
            counts[cpu._delta_bin(abs(v), nb)] += 1
        return counts

    base, edge = cpu._delta_bin_table(np.zeros(1, dtype), HIST_BINS)
    edges = edge[np.isfinite(edge)]
    assert len(edges) == HIST_BINS - 1  # every bin boundary inside some octave
    near = np.concatenate([edges, np.nextafter(edges, dtype(0)), np.nextafter(edges, dtype(np.inf))])
    rng = np.random.default_rng(0)
    tiny = np.finfo(dtype).tiny
    values = np.concatenate([
        near, -near, (10.0 ** rng.uniform(-16, 4, 100_000)).astype(dtype),
        np.array([0.0, -0.0, np.nan, np.inf, -np.inf, tiny, tiny / 4, np.finfo(dtype).max])
    ]).astype(dtype)
    counts = np.zeros(HIST_BINS, np.int64)
    cpu._log10_abs_histogram(values, counts, base, edge)
    np.testing.assert_array_equal(counts, by_formula(values, HIST_BINS))
