"""Looking inside a network without training it (``Network.inspect``), and the final
evaluation ``lab.train`` records (its per-step rows describe the parameters before each update)."""

import numpy as np
import pytest

import lab


@pytest.mark.parametrize("gain", [0.5, 1.5])
def test_inspect_gives_the_identity_nets_closed_forms(gain, backend):
    L = 10
    X = np.random.default_rng(0).standard_normal((2, 16))
    Y = X + 0.1
    net = lab.Network([2] * (L + 1), "identity", init="identity", gain=gain, backend=backend)
    before = net.theta.copy()
    seen = net.inspect(X, Y)
    m = X.shape[1]
    dZ_L = (2 / m) * (gain ** L * X - Y)
    np.testing.assert_allclose(seen.A[-1], gain ** L * X, rtol=1e-12)
    np.testing.assert_allclose(seen.dZ[-1], dZ_L, rtol=1e-12)
    for l in range(1, L + 1):  # ||dZ[l]|| = gain^(L-l) ||dZ[L]||, every ||dW[l]|| equal
        np.testing.assert_allclose(seen.stats[f"delta_norm/layer_{l:02d}"],
                                   gain ** (L - l) * np.linalg.norm(dZ_L), rtol=1e-10)
        np.testing.assert_allclose(seen.stats[f"grad_norm/layer_{l:02d}"],
                                   gain ** (L - 1) * np.linalg.norm(dZ_L @ X.T), rtol=1e-10)
    assert seen.loss == pytest.approx(np.sum((gain ** L * X - Y) ** 2) / m, rel=1e-12)
    np.testing.assert_array_equal(net.theta, before)  # looking does not train


def test_inspect_matches_the_first_row_of_training(backend):
    """The statistics of the compiled training step equal what inspect computes, layer by
    layer, for a sigmoid net (so saturation and activation moments are compared too)."""
    ds = lab.make_dataset("circles", 64, 0, seed=1)
    net = lab.Network([2, 8, 8, 8, 1], "sigmoid", "sigmoid", init="normal", backend=backend)
    seen = net.inspect(ds.X_train, ds.Y_train, loss="bce")
    result = lab.train(net, lab.Optimizer("sgd", lr=0.1), ds.X_train, ds.Y_train, steps=1,
                       loss="bce")
    for name, value in seen.stats.items():
        if not name.startswith("update_ratio"):
            assert result.history[name][0] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert result.history["loss/train"][0] == pytest.approx(seen.loss, rel=1e-12)


def test_history_records_the_trained_network_and_caps_test_evaluations():
    ds = lab.make_dataset("teacher", 64, 32, seed=0)
    net = lab.Network([4, 8, 1], "tanh", init="xavier")
    result = lab.train(net, lab.Optimizer("sgd", lr=0.05), ds.X_train, ds.Y_train, steps=500,
                       log_every=1, X_test=ds.X_test, Y_test=ds.Y_test)
    h = result.history
    assert int(h["final_step"]) == 500
    # the last row is the parameters before the 500th update; final/ is the network after it
    assert float(h["final/loss/train"]) == pytest.approx(net.evaluate(ds.X_train,
                                                                      ds.Y_train)[0], rel=1e-12)
    assert float(h["final/loss/test"]) == pytest.approx(net.evaluate(ds.X_test,
                                                                     ds.Y_test)[0], rel=1e-12)
    assert float(h["final/loss/train"]) < h["loss/train"][-1]
    assert result.final_loss == float(h["final/loss/train"])
    # 500 logged steps, but the test set is evaluated about 100 times, first and last included
    assert 90 <= len(h["eval_step"]) <= 110
    assert h["eval_step"][0] == 0 and h["eval_step"][-1] == 499
    assert len(h["loss/test"]) == len(h["eval_step"])
    assert len(h["hist_step"]) == 500


def test_the_test_set_is_evaluated_at_every_auto_logged_step_and_at_most_about_100():
    from lab.train import evaluated_steps, log_steps

    auto = log_steps(2000, "auto")
    np.testing.assert_array_equal(evaluated_steps(auto), auto)  # auto logging: all evaluated
    every = log_steps(2000, 1)
    picked = evaluated_steps(every)
    assert 95 <= len(picked) <= 102 and picked[0] == 0 and picked[-1] == 1999
    assert set(picked) <= set(every)
