"""The data-parallel training chunk (a step's batch cut into parts that threads claim one at a
time) gives the numpy reference's numbers, and exactly the same numbers whatever the number of
threads, the order in which threads happen to claim the parts, or the chunking of a run."""

import threading

import numba
import numpy as np
import pytest

import lab
from lab.kernels import cpu
from lab.kernels.chunk import ChunkBuffers
from lab.kernels.threads import ChunkPlan

THREADS = (1, 2, 3, 8)  # 8 on a 2-core machine: more claimers than cores


def _chunk_run(net, loss, X, Y, schedule, optimizer=("adam", 1e-3), **speed):
    """One training chunk through the shared ChunkBuffers; (theta, outputs..., (done, div))."""
    buffers = ChunkBuffers(net, lab.Optimizer(optimizer[0], lr=optimizer[1]), X, Y,
                           net.loss_code(loss))
    out = buffers.run(*schedule, **speed)
    return (net.theta.copy(), out.scalars, out.layer_stats, out.hist_act, out.hist_delta,
            (out.done, int(out.diverged)))


def _schedule(m, steps, short_step=None):
    order = np.random.default_rng(3).permutation(m).astype(np.int64)
    counts = np.full(steps, m, np.int64)
    if short_step is not None:
        counts[short_step] = m - 4
    return order, np.zeros(steps, np.int64), counts


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("parts", [2, 5])
@pytest.mark.parametrize("activation,output,loss", [
    ("tanh", "identity", "mse"), ("sigmoid", "sigmoid", "bce"),
    ("relu", "softmax", "cross_entropy")])
def test_parts_agree_with_reference(activation, output, loss, parts, big):
    rng = np.random.default_rng(3)
    m = 41  # odd: ragged parts; one step below uses 37 columns
    X = rng.standard_normal((5, m))
    Y = (np.eye(3)[rng.integers(0, 3, m)].T if loss != "mse"
         else rng.standard_normal((3, m)))
    schedule = _schedule(m, 25, short_step=3)
    kw = dict(sizes=[5, 16, 16, 3], activation=activation, output_activation=output,
              init="xavier", seed=1)
    ref = _chunk_run(lab.Network(backend="numpy", **kw), loss, X, Y, schedule)
    fast = _chunk_run(lab.Network(**kw), loss, X, Y, schedule,
                      plan=ChunkPlan(parts, big, 1), threads=2)
    (theta_r, *out_r, done_r), (theta_c, *out_c, done_c) = ref, fast
    assert done_r == done_c == (25, 0)
    np.testing.assert_allclose(theta_c, theta_r, rtol=1e-12, atol=1e-12)
    for got, want in zip(out_c[:2], out_r[:2]):  # scalars, layer statistics
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    for got, want in zip(out_c[2:], out_r[2:]):  # histograms
        np.testing.assert_array_equal(got, want)


@numba.njit(nogil=True)
def _spin(seconds_x1e8):
    """Busy arithmetic without the GIL: another thread competing for the cores."""
    s = 0.0
    for i in range(seconds_x1e8):
        s += (i % 7) * 1e-9
    return s


@pytest.mark.parametrize("big", [False, True], ids=["team", "layer-parallel"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_bit_identical_across_threads_and_part_schedules(dtype, big):
    """8 parts per step, claimed by 1, 2, 3 or 8 threads (the team of one parallel region per
    chunk, and the big nets' layer-parallel chunk), with and without a busy thread in the same
    process disturbing who claims what: every output equal bit for bit."""
    rng = np.random.default_rng(4)
    X, Y = rng.standard_normal((8, 96)), rng.standard_normal((2, 96))
    schedule = _schedule(96, 12)
    plan = ChunkPlan(8, big, 1)

    def run(threads):
        net = lab.Network([8, 32, 32, 2], "sigmoid", init="xavier", seed=2, dtype=dtype)
        return _chunk_run(net, "mse", net.check_inputs(X), net.check_inputs(X, Y)[1], schedule,
                          plan=plan, threads=threads)

    first = run(1)
    runs = [run(t) for t in THREADS]
    noise = threading.Thread(target=_spin, args=(30_000_000,))
    noise.start()
    try:
        runs += [run(t) for t in THREADS]
    finally:
        noise.join()
    for other in runs:
        for a, b in zip(first, other):
            np.testing.assert_array_equal(a, b)
    # and the plan's part count is what the numbers depend on (not silently ignored)
    net = lab.Network([8, 32, 32, 2], "sigmoid", init="xavier", seed=2, dtype=dtype)
    two = _chunk_run(net, "mse", net.check_inputs(X), net.check_inputs(X, Y)[1], schedule,
                     plan=ChunkPlan(2, big, 1), threads=2)
    np.testing.assert_allclose(two[0], first[0], rtol=1e-4 if dtype == "float32" else 1e-12)


def test_training_takes_the_parallel_path_and_chunking_does_not_matter():
    ds = lab.make_dataset("teacher", 128, 0, seed=5)
    sizes = [4, 128, 128, 1]
    plan = cpu.chunk_plan(sizes, np.array([128]))
    assert plan.parts > numba.config.NUMBA_NUM_THREADS or plan.parts >= 4  # more parts than cores
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


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the numpy reference overflowing
@pytest.mark.parametrize("threads", [1, 2, 8])
def test_parts_stop_at_the_reference_divergence_step(threads):
    """The exploding identity net, in 4 parts per step: the same diverging step, parameters and
    statistics as the reference, whichever thread finishes the diverging step."""
    X = np.random.default_rng(0).standard_normal((4, 64))
    schedule = _schedule(64, 30)
    runs = []
    for backend, speed in (("numpy", {}),
                           ("cpu", dict(plan=ChunkPlan(4, False, 1), threads=threads))):
        net = lab.Network.from_params([1.5 * np.eye(4)] * 10, [np.zeros(4)] * 10, "identity",
                                      backend=backend)
        runs.append(_chunk_run(net, "mse", X, X, schedule, ("sgd", 0.01), **speed))
    (theta_r, *out_r, done_r), (theta_c, *out_c, done_c) = runs
    assert done_c == done_r and done_r[1] == 1 and 1 < done_r[0] < 30
    np.testing.assert_allclose(theta_c, theta_r, rtol=1e-10)
    k = done_r[0]
    np.testing.assert_allclose(out_c[0][:k], out_r[0][:k], rtol=1e-10)

