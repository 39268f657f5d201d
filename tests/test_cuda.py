"""The CUDA kernels (lab/kernels/cuda.py, cuda_device.py) give the CPU backend's numbers and the
numpy reference's, on numba-cuda's simulator.

The simulator is chosen when numba.cuda is first imported, and the main test process may already
have imported it, so a plain ``pytest`` run collects two tests here: one re-runs this file in a
fresh interpreter with ``NUMBA_ENABLE_CUDASIM=1`` (where the ``@simulated`` tests below are
collected and run one by one), and one checks the no-device error in a fresh interpreter without
it. The simulator runs every GPU thread as a Python thread: shapes stay tiny.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import networks

import lab

ON_SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
ROOT = Path(__file__).resolve().parents[1]
NO_DEVICE = "no CUDA device; use backend=cpu or set NUMBA_ENABLE_CUDASIM=1 for the simulator"
TOL = dict(rtol=1e-10, atol=1e-12)
ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu"]
DEEP = [3, 4, 4, 4, 4, 4, 2]  # depth 6, width 4

if ON_SIMULATOR:
    # simulated threads hand the GIL to each other at every syncthreads: switch often
    sys.setswitchinterval(1e-4)


def simulated(test):
    """Collected only in the simulator run."""
    return test if ON_SIMULATOR else None


def host_only(test):
    """Collected only in the plain run."""
    return None if ON_SIMULATOR else test


def _python(code, env):
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)




@host_only
def test_simulator_suite():
    """Everything marked @simulated, in a fresh interpreter on the CUDA simulator: one process
    (the simulator is single-threaded at heart, Python threads), so the suite's other worker
    keeps the other core."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONWARNINGS="ignore")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore",
         str(Path(__file__).relative_to(ROOT))],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=1200)
    assert run.returncode == 0, run.stdout[-20000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-20000:]


@host_only
def test_no_device_is_one_clear_line():
    """Without a GPU and without the simulator, backend=cuda fails fast with one line."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    probe = _python("import numba.cuda; print(numba.cuda.is_available())", env)
    if probe.stdout.strip() == "True":
        pytest.skip("a CUDA device is present")
    caught = _python(
        "import lab\n"
        "try:\n"
        "    lab.Network([2, 2], 'identity', backend='cuda')\n"
        "except ValueError as e:\n"
        "    assert e.__cause__ is None and e.__context__ is None\n"
        "    print(repr(str(e)))\n", env)
    assert caught.returncode == 0, caught.stderr
    assert caught.stdout.strip() == repr(NO_DEVICE)
    uncaught = _python("import lab; lab.Network([2, 2], 'identity', backend='cuda')", env)
    assert uncaught.returncode == 1
    assert uncaught.stderr.strip().splitlines()[-1] == f"ValueError: {NO_DEVICE}"
    assert "numba" not in uncaught.stderr  # no frame from inside numba


# --- on the simulator -------------------------------------------------------------------------------



def assert_histories_match(h_gpu, h_cpu):
    assert h_gpu.keys() == h_cpu.keys()
    for key in h_cpu:
        if key.startswith("hist/") and h_cpu[key].dtype.kind == "i":
            np.testing.assert_array_equal(h_gpu[key], h_cpu[key], err_msg=key)
        else:
            np.testing.assert_allclose(h_gpu[key], h_cpu[key], **TOL, err_msg=key)


@simulated
def test_simulator_is_active():
    from lab.kernels import cuda

    assert cuda.SIMULATOR and lab.Network([2, 2], "relu", backend="cuda").backend == "cuda"


@simulated
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_forward_and_gradients_match_cpu(activation, rng):
    cpu, gpu = networks(("cpu", "cuda"), sizes=DEEP, activation=activation, init="xavier", seed=3)
    X, Y = rng.standard_normal((3, 5)), rng.standard_normal((2, 5))
    np.testing.assert_allclose(gpu.forward(X), cpu.forward(X), **TOL)
    loss_cpu, grad_cpu = cpu.flat_gradients(X, Y)
    loss_gpu, grad_gpu = gpu.flat_gradients(X, Y)
    np.testing.assert_allclose(loss_gpu, loss_cpu, **TOL)
    np.testing.assert_allclose(grad_gpu, grad_cpu, **TOL)
    assert np.abs(grad_cpu).max() > 0


@simulated
@pytest.mark.parametrize("activation,output,loss", [
    ("sigmoid", "identity", "mse"), ("relu", "sigmoid", "bce")])
def test_gradients_and_training_match_the_reference(activation, output, loss, rng):
    """CUDA against the numpy reference directly (not only through the CPU kernels): outputs,
    gradients, and a few mini-batch Adam steps with every per-step statistic."""
    kw = dict(sizes=[3, 5, 4, 1], activation=activation, output_activation=output,
              init="xavier", seed=3)
    ref, gpu = lab.Network(backend="numpy", **kw), lab.Network(backend="cuda", **kw)
    X = rng.standard_normal((3, 9))
    Y = (X[:1] > 0).astype(float) if loss == "bce" else rng.standard_normal((1, 9))
    np.testing.assert_allclose(gpu.forward(X), ref.forward(X), **TOL)
    np.testing.assert_allclose(gpu.flat_gradients(X, Y, loss)[1],
                               ref.flat_gradients(X, Y, loss)[1], **TOL)
    runs = [lab.train(net, lab.Optimizer("adam", lr=0.01), X, Y, steps=5, batch_size=4,
                      loss=loss, seed=2, log_every=3) for net in (ref, gpu)]
    assert_histories_match(runs[1].history, runs[0].history)
    np.testing.assert_allclose(gpu.theta, ref.theta, **TOL)


@simulated
def test_several_tiles_per_matrix_match_cpu(rng):
    """Layers and batches wider than a tile, with ragged edges, in every matrix product."""
    cpu, gpu = networks(("cpu", "cuda"), sizes=[5, 9, 6, 3], activation="tanh", init="xavier", seed=4)
    X, Y = rng.standard_normal((5, 11)), rng.standard_normal((3, 11))
    np.testing.assert_allclose(gpu.forward(X), cpu.forward(X), **TOL)
    np.testing.assert_allclose(gpu.flat_gradients(X, Y)[1], cpu.flat_gradients(X, Y)[1], **TOL)
    np.testing.assert_allclose(gpu.evaluate(X, Y), cpu.evaluate(X, Y), **TOL)


def _classification(rng, n_x, n_y, m):
    X = rng.standard_normal((n_x, m))
    if n_y == 1:
        return X, (X[:1] * X[1:2] > 0).astype(float)
    return X, np.eye(n_y)[rng.integers(0, n_y, m)].T


@simulated
@pytest.mark.parametrize("activation,output,loss,n_y", [
    ("relu", "sigmoid", "bce", 1), ("tanh", "softmax", "cross_entropy", 3)])
def test_classifier_outputs_match_cpu(activation, output, loss, n_y, rng):
    """bce from sigmoid logits and cross-entropy over softmax: outputs, gradients, evaluation,
    and a few mini-batch steps with their accuracy statistics."""
    kw = dict(sizes=[2, 4, 4, n_y], activation=activation, output_activation=output,
              init="he", seed=2)
    cpu, gpu = networks(("cpu", "cuda"), **kw)
    X, Y = _classification(rng, 2, n_y, 10)
    X_test, Y_test = _classification(rng, 2, n_y, 6)
    np.testing.assert_allclose(gpu.forward(X), cpu.forward(X), **TOL)
    np.testing.assert_allclose(gpu.flat_gradients(X, Y, loss)[1],
                               cpu.flat_gradients(X, Y, loss)[1], **TOL)
    np.testing.assert_allclose(gpu.evaluate(X, Y, loss), cpu.evaluate(X, Y, loss), **TOL)
    runs = [lab.train(net, lab.Optimizer("adam", lr=0.01), X, Y, steps=6, batch_size=4,
                      loss=loss, seed=1, log_every=4, X_test=X_test, Y_test=Y_test)
            for net in (cpu, gpu)]
    assert_histories_match(runs[1].history, runs[0].history)
    assert np.isfinite(runs[0].history["accuracy/train"]).all()
    np.testing.assert_allclose(gpu.theta, cpu.theta, **TOL)


@simulated
@pytest.mark.parametrize("activation,optimizer,lr", [
    ("identity", "sgd", 0.01), ("sigmoid", "momentum", 0.01), ("tanh", "rmsprop", 0.001),
    ("relu", "adam", 0.001), ("leaky_relu", "adam", 0.01)])
def test_training_matches_cpu(activation, optimizer, lr):
    """12 mini-batch steps over three chunks (the last one short): parameters, optimizer state
    and every per-step statistic (losses, gradient and delta norms, activation stats,
    saturation, weight norms, update ratios), test evaluations and histograms."""
    ds = lab.make_dataset("teacher", 12, 6, seed=1)
    kw = dict(sizes=[4, 4, 4, 4, 4, 4, 1], activation=activation, init="xavier", seed=0)
    nets, opts, runs = networks(("cpu", "cuda"), **kw), [], []
    for net in nets:
        opts.append(lab.Optimizer(optimizer, lr=lr))
        runs.append(lab.train(net, opts[-1], ds.X_train, ds.Y_train, steps=12, batch_size=5,
                              seed=3, log_every=5, X_test=ds.X_test, Y_test=ds.Y_test))
    (cpu, gpu), (o_cpu, o_gpu) = nets, opts
    assert runs[1].status == runs[0].status == "completed"
    np.testing.assert_allclose(gpu.theta, cpu.theta, **TOL)
    np.testing.assert_allclose(o_gpu.velocity, o_cpu.velocity, **TOL)
    np.testing.assert_allclose(o_gpu.square, o_cpu.square, **TOL)
    assert o_gpu.t == o_cpu.t == 12
    assert_histories_match(runs[1].history, runs[0].history)
    assert runs[0].history["hist/act"].shape == (4, 6, 40)
    assert (runs[0].history["update_ratio/layer_01"] > 0).all()


@simulated
def test_diverging_identity_net_stops_at_the_cpu_step():
    """The lecture's exploding net: 10 layers of W = 1.5 I; divergence is decided on the device."""
    ds = lab.make_dataset("identity", 16, 4)
    runs, nets = [], []
    for backend in ("cpu", "cuda"):
        nets.append(lab.Network.from_params([1.5 * np.eye(2)] * 10, [np.zeros(2)] * 10,
                                            activation="identity", backend=backend))
        runs.append(lab.train(nets[-1], lab.Optimizer("sgd", lr=0.01), ds.X_train, ds.Y_train,
                              steps=10))
    assert runs[0].status == runs[1].status == "diverged"
    assert runs[1].diverged_at_step == runs[0].diverged_at_step
    np.testing.assert_allclose(nets[1].theta, nets[0].theta, rtol=1e-10, atol=0)
    assert_histories_match(runs[1].history, runs[0].history)


@simulated
def test_threshold_divergence_inside_a_chunk():
    """Loss above divergence_threshold mid-chunk: that step is recorded, nothing after it runs."""
    X = np.random.default_rng(0).standard_normal((2, 6))
    runs, nets = [], []
    for backend in ("cpu", "cuda"):
        nets.append(lab.Network.from_params([1.5 * np.eye(2)] * 6, [np.zeros(2)] * 6,
                                            activation="identity", backend=backend))
        runs.append(lab.train(nets[-1], lab.Optimizer("momentum", lr=0.05), X, X, steps=8,
                              divergence_threshold=150.0, log_every=8))
    assert runs[0].status == runs[1].status == "diverged"
    assert runs[1].diverged_at_step == runs[0].diverged_at_step > 0
    np.testing.assert_allclose(nets[1].theta, nets[0].theta, rtol=1e-10, atol=0)
    assert_histories_match(runs[1].history, runs[0].history)


@simulated
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop", "adam"])
def test_single_updates_match_cpu(optimizer, rng):
    X, Y = rng.standard_normal((3, 5)), rng.standard_normal((2, 5))
    nets = networks(("cpu", "cuda"), sizes=[3, 4, 2], activation="tanh", seed=1)
    opts = [lab.Optimizer(optimizer, lr=0.01) for _ in nets]
    for _ in range(2):
        for net, opt in zip(nets, opts):
            opt.step(net, net.flat_gradients(X, Y)[1])
    np.testing.assert_allclose(nets[1].theta, nets[0].theta, **TOL)
    np.testing.assert_allclose(opts[1].square, opts[0].square, **TOL)


@simulated
def test_float32_matches_at_single_precision(rng):
    cpu, gpu = networks(("cpu", "cuda"), sizes=[3, 5, 4, 1], activation="sigmoid", dtype="float32", seed=1)
    X, Y = rng.standard_normal((3, 7)), rng.standard_normal((1, 7))
    assert gpu.forward(X).dtype == np.float32
    np.testing.assert_allclose(gpu.forward(X), cpu.forward(X), rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(gpu.flat_gradients(X, Y)[1], cpu.flat_gradients(X, Y)[1],
                               rtol=2e-5, atol=1e-6)


@simulated
def test_device_copy_of_the_data_follows_in_place_edits(rng):
    """X stays cached on the device between chunks, but an edited X is copied again."""
    X, Y = rng.standard_normal((2, 4)), rng.standard_normal((1, 4))
    nets = networks(("cpu", "cuda"), sizes=[2, 3, 1], activation="tanh", seed=0)
    for step in range(2):
        for net in nets:
            lab.train(net, lab.Optimizer("sgd", lr=0.1), X, Y, steps=2, log_every=1)
        np.testing.assert_allclose(nets[1].theta, nets[0].theta, **TOL, err_msg=str(step))
        X[0, 0] += 1.0
