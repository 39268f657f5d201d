"""Bad input raises one ValueError naming the value and the valid choices, never a numba error."""

import numpy as np
import pytest

import lab


@pytest.mark.parametrize("kwargs,match", [
    (dict(sizes=[2, 2], activation="swish"), "unknown activation 'swish'.*sigmoid"),
    (dict(sizes=[2, 2], activation="relu", output_activation="gelu"),
     "unknown output_activation 'gelu'.*softmax"),
    (dict(sizes=[2, 2], activation="relu", init="glorot"), "unknown init 'glorot'.*xavier"),
    (dict(sizes=[2, 3, 2], activation="relu", init="identity"), "identity.*square"),
    (dict(sizes=[2], activation="relu"), "depth 0"),
    (dict(sizes=[2, 0, 1], activation="relu"), "positive integers"),
    (dict(sizes=[2, 2], activation="relu", dtype="float16"), "dtype.*float64"),
    (dict(sizes=[2, 2], activation="relu", backend="tpu"), "backend 'tpu'.*cpu"),
])
def test_bad_network_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lab.Network(**kwargs)


def test_bad_loss_and_optimizer(backend):
    net = lab.Network([2, 3, 1], "relu", backend=backend)
    X, Y = np.ones((2, 4)), np.ones((1, 4))
    with pytest.raises(ValueError, match="unknown loss 'hinge'.*mse"):
        net.gradients(X, Y, loss="hinge")
    with pytest.raises(ValueError, match="'bce' needs output_activation 'sigmoid'"):
        net.gradients(X, Y, loss="bce")
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'.*adam"):
        lab.Optimizer("lbfgs")
    with pytest.raises(ValueError, match="lr must be a positive"):
        lab.Optimizer("sgd", lr=-1)


@pytest.mark.parametrize("X,Y,match", [
    (np.ones((3, 4)), np.ones((1, 4)), r"X has shape \(3, 4\); expected \(2, m\)"),
    (np.ones(4), np.ones((1, 4)), "X has shape"),
    (np.ones((2, 4)), np.ones((2, 4)), r"Y has shape \(2, 4\); expected \(1, m\)"),
    (np.ones((2, 4)), np.ones((1, 5)), "4 examples.*Y has 5"),
    (np.array([[1.0, np.nan], [0, 0]]), np.ones((1, 2)), "X contains non-finite"),
    (np.ones((2, 2)), np.array([[np.inf, 0]]), "Y contains non-finite"),
])
def test_bad_data(backend, X, Y, match):
    net = lab.Network([2, 3, 1], "relu", backend=backend)
    with pytest.raises(ValueError, match=match):
        net.gradients(X, Y)


@pytest.mark.parametrize("batch_size,match", [
    (0, "positive integer or 'full'"), (-3, "positive integer"), ("half", "positive integer"),
    (2.5, "positive integer"), (100, "exceeds the 10 training examples"),
])
def test_bad_batch_size(batch_size, match):
    net = lab.Network([2, 3, 1], "relu")
    with pytest.raises(ValueError, match=match):
        lab.train(net, lab.Optimizer(), np.ones((2, 10)), np.ones((1, 10)), steps=3,
                  batch_size=batch_size)


def test_bad_steps_and_log_every():
    net = lab.Network([2, 3, 1], "relu")
    X, Y = np.ones((2, 10)), np.ones((1, 10))
    with pytest.raises(ValueError, match="train.steps"):
        lab.train(net, lab.Optimizer(), X, Y, steps=0)
    with pytest.raises(ValueError, match="log_every"):
        lab.train(net, lab.Optimizer(), X, Y, steps=5, log_every=0)


def test_bad_data_set_name():
    with pytest.raises(ValueError, match="unknown data set 'mnist'.*digits"):
        lab.make_dataset("mnist")
