"""Bad input raises one ValueError naming the value and the valid choices, never a numba error."""

import numpy as np
import pytest

import lab


@pytest.mark.parametrize("kwargs,match", [
    (dict(sizes=[2, 2], activation="swish"), "activation='swish' is not valid.*sigmoid"),
    (dict(sizes=[2, 2], activation="relu", output_activation="gelu"),
     "output_activation='gelu' is not valid.*softmax"),
    (dict(sizes=[2, 2], activation="relu", init="glorot"), "init='glorot' is not valid.*xavier"),
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
    with pytest.raises(ValueError, match="loss='hinge' is not valid.*mse"):
        net.gradients(X, Y, loss="hinge")
    with pytest.raises(ValueError, match="loss='bce' needs output_activation='sigmoid'"):
        net.gradients(X, Y, loss="bce")
    with pytest.raises(ValueError, match="optimizer.name='lbfgs' is not valid.*adam"):
        lab.Optimizer("lbfgs")
    with pytest.raises(ValueError, match="optimizer.lr=-1 is not valid"):
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
    (0, "batch_size=0 is not valid.*'full'"), (-3, "integer >= 1"), ("half", "integer >= 1"),
    (2.5, "integer >= 1"), (100, "larger than the 10 training examples"),
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
    with pytest.raises(ValueError, match="data.name='mnist' is not valid.*digits"):
        lab.make_dataset("mnist")


def test_a_setting_the_optimizer_does_not_use_is_refused_not_ignored():
    with pytest.raises(ValueError, match=r"optimizer\.beta=0\.5 does not apply to optimizer "
                                         r"'rmsprop' \(its decay rate is beta2\)"):
        lab.Optimizer("rmsprop", beta=0.5)
    with pytest.raises(ValueError, match=r"optimizer\.eps=.*'momentum'.*lr, beta$"):
        lab.Optimizer("momentum", eps=1e-3)
    assert lab.Optimizer("rmsprop", beta2=0.9).settings == {"lr": 0.001, "beta2": 0.9,
                                                             "eps": 1e-8}
    assert lab.Optimizer("adam").settings == {"lr": 0.001, "beta1": 0.9, "beta2": 0.999,
                                              "eps": 1e-8}


def test_a_data_option_of_another_data_set_is_refused():
    with pytest.raises(ValueError, match=r"data\.factor=0\.3 does not apply to data set "
                                         r"'moons'; its settings are: noise"):
        lab.make_dataset("moons", 10, 0, factor=0.3)
    with pytest.raises(ValueError, match=r"data\.n_features=0 is not valid"):
        lab.make_dataset("teacher", 10, 0, n_features=0)


def test_a_run_that_cannot_fit_in_memory_is_refused_before_it_starts():
    from lab.budget import check_fits, run_bytes

    net = lab.Network([2] * 200_001, "identity", init="identity", backend="numpy")
    X = np.ones((2, 4))
    with pytest.raises(ValueError, match=r"needs about \d+\.\d GB of memory \(history: .* "
                                         r"the limit is .*lower train\.steps"):
        lab.train(net, lab.Optimizer(), X, X, steps=2000)
    # the estimate is the arithmetic of what the run holds, not a guess
    parts = run_bytes([2, 3, 1], examples=10, steps=100, log_points=5)
    assert parts["history"] == 100 * (3 + 7 * 2) * 8
    assert parts["parameters"] == 4 * (3 * 3 + 1 * 4) * 8
    assert parts["activations"] == 3 * (3 + 1) * 10 * 8
    check_fits([2, 3, 1], 10, 100, 5, limit=sum(parts.values()))
    with pytest.raises(ValueError, match="limit is 1.0 kB"):
        check_fits([2, 3, 1], 10, 100, 5, limit=1000)
