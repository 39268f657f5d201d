"""The speed machinery gives the reference's answers: the vectorizable exp/sigmoid/tanh against
numpy over their whole range, and the data-parallel training chunk (batch cut into parts, run on
threads) against the numpy reference, independent of chunking and of the thread count."""

import numba
import numpy as np
import pytest

import lab
from lab.kernels import cpu, fastmath, reference
from lab.kernels.codes import HIST_BINS
from lab.train import activation_ranges

ULP = 4  # allowed error of the compiled functions, in units in the last place of numpy's result


def _points(dtype):
    """Dense grids over the interesting range, random points, and the special values."""
    rng = np.random.default_rng(0)
    big = 800.0 if dtype == np.float64 else 120.0
    x = np.concatenate([
        np.linspace(-big, big, 200_001), rng.uniform(-40, 40, 100_000),
        rng.standard_normal(50_000) * 1e-3, rng.standard_normal(1000) * 1e-30,
        np.geomspace(1e-300 if dtype == np.float64 else 1e-37, 1e3, 5000),
        -np.geomspace(1e-300 if dtype == np.float64 else 1e-37, 1e3, 5000),
        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e308, -1e308],
        [709.78, 709.79, -708.39, -745.13, -745.14, 88.72, 88.73, -87.33, -103.97, -104.0],
    ])
    with np.errstate(over="ignore"):
        return x.astype(dtype)


def _ulp_error(got, want):
    """Errors in ulps of want; subnormal results are measured in ulps of the smallest normal
    (their absolute spacing), and infinities and NaN must match exactly."""
    info = np.finfo(want.dtype)
    same_special = (got == want) | (np.isnan(got) & np.isnan(want))
    finite = np.isfinite(want)
    assert np.all(same_special | finite), "infinities/NaN differ"
    assert np.all(np.isfinite(got[finite])), "finite result came out non-finite"
    w, g = want[finite].astype(np.float64), got[finite].astype(np.float64)
    spacing = np.spacing(np.maximum(np.abs(want[finite]), info.tiny)).astype(np.float64)
    return np.abs(g - w) / spacing


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["exp", "tanh", "sigmoid"])
def test_vectorizable_functions_match_numpy(name, dtype):
    x = _points(dtype)
    compiled = getattr(fastmath, f"{name}_array")
    with np.errstate(over="ignore", invalid="ignore"):
        want = getattr(fastmath, name)(x).astype(dtype)  # numpy (sigmoid: the reference form)
    got = compiled(x)
    assert got.dtype == dtype
    assert _ulp_error(got, want).max() <= ULP
    # the reference's own sigmoid is the formula the kernels must reproduce
    if name == "sigmoid":
        ref = reference.activate(1, x.reshape(1, -1)).ravel()
        assert _ulp_error(got, ref).max() <= ULP


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_special_values_and_symmetry(dtype):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype)
    assert np.array_equal(fastmath.exp_array(x), np.array([1, 1, np.inf, 0, np.nan], dtype),
                          equal_nan=True)
    t = fastmath.tanh_array(x)
    assert np.array_equal(t, np.array([0, -0.0, 1, -1, np.nan], dtype), equal_nan=True)
    assert np.signbit(t[1])  # tanh(-0) = -0
    assert np.array_equal(fastmath.sigmoid_array(x), np.array([0.5, 0.5, 1, 0, np.nan], dtype),
                          equal_nan=True)
    z = np.linspace(-30, 30, 6001).astype(dtype)
    np.testing.assert_array_equal(fastmath.tanh_array(-z), -fastmath.tanh_array(z))


def _chunk_run(net, loss, X, Y, order, starts, counts, parts=None, big=False, threads=None):
    """One training chunk: the reference (parts None) or cpu._chunk with the given split."""
    opt = lab.Optimizer("adam", lr=1e-3)
    vel, sq = opt.state_for(net.theta)
    K, L = len(starts), net.depth
    out = (np.zeros((K, 3)), np.zeros((K, 7, L)), np.zeros((L, HIST_BINS), np.int64),
           np.zeros((L, HIST_BINS), np.int64))
    args = (net.theta, vel, sq, *net.layout, net.loss_code(loss), opt.code, opt.hyper(), 0, X,
            Y, order, starts, counts, *out, activation_ranges(net))
    if parts is None:
        done = reference.train_chunk(*args)
    else:
        before = numba.get_num_threads()
        numba.set_num_threads(threads or before)
        try:
            done = cpu._chunk(*args, parts, big)
        finally:
            numba.set_num_threads(before)
    return (net.theta.copy(), *out, tuple(int(d) for d in done))


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("activation,output,loss", [
    ("tanh", "identity", "mse"), ("sigmoid", "sigmoid", "bce"),
    ("relu", "softmax", "cross_entropy")])
def test_data_parallel_chunk_agrees_with_reference(activation, output, loss, big):
    rng = np.random.default_rng(3)
    m = 41  # odd: parts of 21 and 20 columns; one step below uses 37
    X = rng.standard_normal((5, m))
    Y = (np.eye(3)[rng.integers(0, 3, m)].T if loss != "mse"
         else rng.standard_normal((3, m)))
    order = rng.permutation(m).astype(np.int64)
    starts, counts = np.zeros(25, np.int64), np.full(25, m, np.int64)
    counts[3] = 37
    runs = [_chunk_run(lab.Network([5, 16, 16, 3], activation, output, init="xavier", seed=1,
                                   backend=b), loss, X, Y, order, starts, counts, parts, big)
            for b, parts in (("numpy", None), ("cpu", 2))]
    (theta_r, *out_r, done_r), (theta_c, *out_c, done_c) = runs
    assert done_r == done_c == (25, 0)
    np.testing.assert_allclose(theta_c, theta_r, rtol=1e-12, atol=1e-12)
    for got, want in zip(out_c[:2], out_r[:2]):  # scalars, layer statistics
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    for got, want in zip(out_c[2:], out_r[2:]):  # histograms
        np.testing.assert_array_equal(got, want)


def test_threads_never_change_the_numbers():
    rng = np.random.default_rng(4)
    X, Y = rng.standard_normal((8, 96)), rng.standard_normal((2, 96))
    order = np.arange(96, dtype=np.int64)
    starts, counts = np.zeros(10, np.int64), np.full(10, 96, np.int64)
    runs = [_chunk_run(lab.Network([8, 32, 32, 2], "sigmoid", init="xavier", seed=2), "mse", X,
                       Y, order, starts, counts, parts=2, big=True, threads=t)
            for t in (1, numba.config.NUMBA_NUM_THREADS)]
    for a, b in zip(runs[0][:-1], runs[1][:-1]):
        np.testing.assert_array_equal(a, b)


def test_training_takes_the_parallel_path_and_chunking_does_not_matter():
    ds = lab.make_dataset("teacher", 128, 0, seed=5)
    sizes = [4, 128, 128, 1]
    assert cpu.chunk_plan(sizes, np.array([128]))[0] == 2  # this net runs in two parts
    thetas = []
    for log_every in (1, 7, 1000):
        net = lab.Network(sizes, "tanh", init="xavier", seed=1)
        lab.train(net, lab.Optimizer("adam", lr=1e-3), ds.X_train, ds.Y_train, steps=20,
                  log_every=log_every)
        thetas.append(net.theta)
    np.testing.assert_array_equal(thetas[0], thetas[1])
    np.testing.assert_array_equal(thetas[0], thetas[2])
    ref = lab.Network(sizes, "tanh", init="xavier", seed=1, backend="numpy")
    lab.train(ref, lab.Optimizer("adam", lr=1e-3), ds.X_train, ds.Y_train, steps=20)
    np.testing.assert_allclose(thetas[0], ref.theta, rtol=1e-12, atol=1e-12)


def test_float32_flushes_subnormals_only_inside_the_kernels():
    """A deep float32 sigmoid net sends errors below float32's normal range (they flush to 0,
    fast); the result still matches the numpy reference at float32 precision, and the thread's
    floating-point mode is back as it was afterwards."""
    before = cpu.fp_mode()
    ds = lab.make_dataset("teacher", 96, 0, seed=6)
    nets = [lab.Network([4] + [16] * 60 + [1], "sigmoid", init="xavier", seed=3, dtype="float32",
                        backend=b) for b in ("numpy", "cpu")]
    dW = nets[0].gradients(ds.X_train, ds.Y_train)[1][0]
    assert 0 < np.abs(dW).max() < np.finfo(np.float32).tiny  # numpy: subnormal first-layer grads
    for net in nets:
        lab.train(net, lab.Optimizer("adam", lr=1e-3), ds.X_train, ds.Y_train, steps=5)
    np.testing.assert_allclose(nets[1].theta, nets[0].theta, rtol=1e-4, atol=1e-6)
    assert cpu.fp_mode() == before
