"""Training chunks: batch schedule, logged steps, symmetry, histograms."""

import numpy as np
import pytest

import lab
import lab.kernels.chunk
from lab.train import BatchSchedule, log_steps


@pytest.mark.parametrize("m,batch", [(10, 1), (10, 3), (10, 10), (7, 4)])
def test_every_epoch_visits_each_example_once(m, batch):
    schedule = BatchSchedule(m, batch, seed=5)
    per_epoch = schedule.per_epoch
    order, starts, counts = schedule.chunk(0, 3 * per_epoch + 2)
    for e in range(3):
        seen = np.concatenate([order[s:s + c] for s, c in
                               zip(starts[e * per_epoch:(e + 1) * per_epoch],
                                   counts[e * per_epoch:(e + 1) * per_epoch])])
        assert sorted(seen) == list(range(m))
    # a later chunk sees the same batches as one long chunk (chunking never changes the data)
    o2, s2, c2 = schedule.chunk(per_epoch + 1, 2 * per_epoch + 2)
    for k, t in enumerate(range(per_epoch + 1, 2 * per_epoch + 2)):
        np.testing.assert_array_equal(o2[s2[k]:s2[k] + c2[k]],
                                      order[starts[t]:starts[t] + counts[t]])


def test_epochs_are_reshuffled_from_the_seed():
    a, b = BatchSchedule(50, 5, seed=1), BatchSchedule(50, 5, seed=2)
    assert not np.array_equal(a.epoch_order(0), a.epoch_order(1))
    assert not np.array_equal(a.epoch_order(0), b.epoch_order(0))
    np.testing.assert_array_equal(a.epoch_order(3), BatchSchedule(50, 5, seed=1).epoch_order(3))


def test_log_steps():
    np.testing.assert_array_equal(log_steps(10, 4), [0, 4, 8, 9])
    assert len(log_steps(2000, "auto")) in (100, 101)
    assert log_steps(1, "auto").tolist() == [0]


def test_chunking_does_not_change_the_result():
    ds = lab.make_dataset("teacher", 40, 0, seed=2)
    thetas = []
    for log_every in (1, 7, 1000):
        net = lab.Network([4, 6, 6, 1], "tanh", seed=1)
        lab.train(net, lab.Optimizer("adam", lr=0.01), ds.X_train, ds.Y_train, steps=50,
                  batch_size=8, log_every=log_every)
        thetas.append(net.theta)
    np.testing.assert_array_equal(thetas[0], thetas[1])
    np.testing.assert_array_equal(thetas[0], thetas[2])


def test_compiled_calls_are_short_and_their_split_changes_nothing(monkeypatch):
    """Between two logged steps the trainer gives Python control back about every
    CALL_SECONDS (a signal is handled within about a second); one step per call gives the
    same history, bit for bit, as one call per logged interval."""
    from lab.train import CallPacer

    ds = lab.make_dataset("teacher", 40, 0, seed=2)
    histories, calls = [], []
    original = lab.kernels.chunk.ChunkBuffers.run

    def counting(counted):
        def run(self, order, starts, counts, **kw):
            counted.append(len(starts))
            return original(self, order, starts, counts, **kw)
        return run

    for seconds in (CallPacer.CALL_SECONDS, 0.0):
        monkeypatch.setattr(CallPacer, "CALL_SECONDS", seconds)
        net = lab.Network([4, 6, 6, 1], "tanh", seed=1)
        counted = []
        monkeypatch.setattr(lab.kernels.chunk.ChunkBuffers, "run", counting(counted))
        result = lab.train(net, lab.Optimizer("adam", lr=0.01), ds.X_train, ds.Y_train,
                           steps=60, batch_size=8, log_every=20)
        histories.append(result.history)
        calls.append(counted)
    # CALL_SECONDS = 0: after the first call (which times a step), one step per call
    assert calls[1][0] == CallPacer.FIRST_CALL_STEPS and set(calls[1][1:]) == {1}
    assert sum(calls[0]) == sum(calls[1]) == 60
    assert len(calls[0]) < len(calls[1])
    for name, values in histories[0].items():
        np.testing.assert_array_equal(values, histories[1][name], err_msg=name)


def test_zeros_init_keeps_hidden_units_identical_and_lecun_breaks_symmetry(backend):
    ds = lab.make_dataset("teacher", 64, 0, seed=0)
    rows = {}
    for init in ("zeros", "lecun"):
        net = lab.Network([4, 6, 6, 1], "sigmoid", init=init, backend=backend)
        lab.train(net, lab.Optimizer("sgd", lr=0.5), ds.X_train, ds.Y_train, steps=300)
        rows[init] = net.weights
    for W in rows["zeros"][:2]:
        assert np.abs(W).max() > 1e-3  # trained, not stuck at zero ...
        np.testing.assert_allclose(W, np.broadcast_to(W[0], W.shape), rtol=1e-12)  # ... yet
    W1 = rows["lecun"][0]
    assert np.min(np.ptp(W1, axis=0)) > 1e-2  # units differ


def test_histograms_count_every_activation():
    ds = lab.make_dataset("circles", 50, 10, seed=0)
    net = lab.Network([2, 8, 8, 1], "tanh", output_activation="sigmoid", init="xavier")
    result = lab.train(net, lab.Optimizer("sgd", lr=0.1), ds.X_train, ds.Y_train, steps=20,
                       batch_size=10, loss="bce", log_every=5,
                       X_test=ds.X_test, Y_test=ds.Y_test)
    h = result.history
    counts = h["hist/act"].sum(axis=2)  # (logged, L)
    np.testing.assert_array_equal(counts, np.array([8 * 10, 8 * 10, 1 * 10])[None, :]
                                  .repeat(len(h["hist_step"]), 0))
    np.testing.assert_array_equal(h["hist/delta"].sum(axis=2), counts)
    assert "accuracy/train" in h and "accuracy/test" in h


def test_saturation_of_a_saturated_sigmoid_net():
    X = np.full((2, 5), 10.0)
    net = lab.Network.from_params([np.full((3, 2), 5.0), np.ones((1, 3))],
                                  [np.zeros((3, 1)), np.zeros((1, 1))], "sigmoid")
    result = lab.train(net, lab.Optimizer("sgd", lr=1e-6), X, np.zeros((1, 5)), steps=1)
    assert result.history["saturation/layer_01"][0] == 1.0
    assert result.history["saturation/layer_02"][0] == 0.0  # identity output never saturates
