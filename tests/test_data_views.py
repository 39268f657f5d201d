"""Uniform init, the in-kernel activation histograms, and the data-facing figures."""

import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

import lab
from lab.init import init_weights
from lab.train import BatchSchedule
from lab.views.activations import activation_histograms_by_layer
from lab.views.dataset import data_figures, decision_boundary, misclassified_digits

PNG = b"\x89PNG\r\n\x1a\n"


def png_bytes(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# --- uniform init --------------------------------------------------------------------------------

@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_uniform_init_bounds_and_spread(gain):
    sizes = [300, 400, 200]
    weights, biases = init_weights(sizes, "uniform", gain, seed=5)
    for W, b, n_in in zip(weights, biases, sizes[:-1]):
        bound = gain * np.sqrt(1.0 / n_in)
        assert np.abs(W).max() <= bound
        assert np.abs(W).max() > 0.99 * bound  # the whole interval is used
        np.testing.assert_allclose(W.std(), bound / np.sqrt(3), rtol=0.02)  # U(-a, a): a/√3
        assert abs(W.mean()) < 0.02 * bound
        np.testing.assert_array_equal(b, 0.0)
    # gain only scales: the same draws, multiplied
    unit, _ = init_weights(sizes, "uniform", 1.0, seed=5)
    for W, U in zip(weights, unit):
        np.testing.assert_allclose(W, gain * U, rtol=1e-12, atol=1e-16)


# --- histograms computed inside the compiled chunk -----------------------------------------------

@pytest.mark.parametrize("batch_size,log_every", [("full", 2), (16, 1), (16, 3)])
def test_histogram_counts_cover_every_unit_of_the_logged_batch(backend, batch_size, log_every):
    ds = lab.make_dataset("moons", 50, 0, seed=1)
    sizes = [2, 7, 5, 1]
    net = lab.Network(sizes, "tanh", "sigmoid", init="xavier", seed=2, backend=backend)
    steps = 9
    result = lab.train(net, lab.Optimizer("sgd", lr=0.1), ds.X_train, ds.Y_train, steps=steps,
                       batch_size=batch_size, loss="bce", seed=3, log_every=log_every)
    h = result.history
    m = 50 if batch_size == "full" else batch_size
    _, _, counts = BatchSchedule(50, m, seed=3).chunk(0, steps)  # examples used at each step
    assert h["hist/act"].shape == (len(h["hist_step"]), 3, 40)
    assert counts.min() < m or batch_size == "full"  # a short last batch is among them
    for row, step in enumerate(h["hist_step"]):
        for l, n_l in enumerate(sizes[1:]):
            assert h["hist/act"][row, l].sum() == n_l * counts[step]
            assert h["hist/delta"][row, l].sum() == n_l * counts[step]


def test_first_layer_histogram_matches_numpy(backend):
    ds = lab.make_dataset("digits", 200, 0, seed=0, normalize_inputs=True)
    net = lab.Network([64, 30, 20, 10], "tanh", "softmax", init="normal", seed=1,
                      backend=backend)
    W1, b1 = net.weights[0].copy(), net.biases[0].copy()
    h = lab.train(net, lab.Optimizer("sgd", lr=0.01), ds.X_train, ds.Y_train, steps=1,
                  loss="cross_entropy").history
    A1 = np.tanh(W1 @ ds.X_train + b1)
    want, _ = np.histogram(A1, bins=40, range=(-1.0, 1.0))
    np.testing.assert_array_equal(h["hist/act"][0, 0], want)
    np.testing.assert_array_equal(h["hist/act_range"][0], [-1.0, 1.0])
    # N(0, 1) weights on 64 standardized inputs saturate tanh: most units at |a| >= 0.95
    ends = (want[0] + want[-1]) / want.sum()
    assert ends > 0.6, ends


# --- figures -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def moons_run():
    ds = lab.make_dataset("moons", 200, 100, seed=0, normalize_inputs=True)
    net = lab.Network([2, 12, 12, 1], "tanh", "sigmoid", init="xavier", seed=0)
    theta0 = net.theta.copy()
    lab.train(net, lab.Optimizer("adam", lr=0.02), ds.X_train, ds.Y_train, steps=400,
              loss="bce")
    return ds, net, theta0


@pytest.fixture(scope="module")
def digits_run():
    ds = lab.make_dataset("digits", 600, 300, seed=0, normalize_inputs=True)
    net = lab.Network([64, 32, 32, 10], "tanh", "softmax", init="xavier", seed=0)
    theta0 = net.theta.copy()
    result = lab.train(net, lab.Optimizer("adam", lr=0.01), ds.X_train, ds.Y_train, steps=150,
                       batch_size=64, loss="cross_entropy", log_every=30)
    return ds, net, theta0, result.history


def _accuracy_text(net, theta, X, Y):
    probe = lab.Network.from_params(*net.split(theta.copy()), net.activation,
                                    net.output_activation)
    return f"{100 * probe.evaluate(X, Y, 'bce')[1]:.1f} %"


def test_decision_boundary_at_init_and_end(moons_run):
    ds, net, theta0 = moons_run
    before = len(plt.get_fignums())
    fig = decision_boundary(theta0, net, ds, title="moons")
    assert isinstance(fig, Figure) and len(fig.axes) == 3  # two panels and a colour bar
    init_ax, end_ax = fig.axes[:2]
    for ax, theta, when in ((init_ax, theta0, "initialization"), (end_ax, net.theta, "after")):
        title = ax.get_title()
        assert when in title
        assert f"train {_accuracy_text(net, theta, ds.X_train, ds.Y_train)}" in title
        assert f"test {_accuracy_text(net, theta, ds.X_test, ds.Y_test)}" in title
        assert "normalized" in ax.get_xlabel()
    assert float(end_ax.get_title().split("train ")[1].split(" %")[0]) > 95
    assert png_bytes(fig).startswith(PNG)
    assert len(plt.get_fignums()) == before  # nothing registered with pyplot


def test_decision_boundary_copes_with_flat_and_nonfinite_outputs(moons_run):
    ds, net, theta0 = moons_run
    fig = decision_boundary(np.zeros_like(theta0), net, ds)  # sigmoid(0) = 0.5 everywhere
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("no 0.5 boundary" in t for t in texts)
    bad = net.theta.copy()
    bad[0] = np.nan
    diverged = lab.Network.from_params(*net.split(bad), "tanh", "sigmoid")
    fig = decision_boundary(theta0, diverged, ds)
    assert any("not finite" in t.get_text() for t in fig.axes[1].texts)
    assert png_bytes(fig).startswith(PNG)
    with pytest.raises(ValueError, match="flat parameter vector"):
        decision_boundary(theta0[:-1], net, ds)


def test_misclassified_digits_grid(digits_run):
    ds, net, _, _ = digits_run
    pred = np.argmax(net.forward(ds.X_test), axis=0)
    true = np.argmax(ds.Y_test, axis=0)
    n_wrong = int((pred != true).sum())
    assert 0 < n_wrong < 40  # the grid holds every mistake and fills up with correct ones
    fig = misclassified_digits(net, ds, most=40)
    assert len(fig.axes) == 40
    colors = [ax.title.get_color() for ax in fig.axes]
    assert colors[:n_wrong] == ["#d62728"] * n_wrong
    assert colors[n_wrong:] == ["#2ca02c"] * (40 - n_wrong)
    for ax in fig.axes[:n_wrong]:
        p, t = (int(s.split()[-1]) for s in ax.get_title().split(" / "))
        assert p != t
    # shown in pixel units: normalization undone
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (8, 8) and image.min() >= -1e-9 and image.max() <= 1 + 1e-9
    assert f"{100 * np.mean(pred == true):.1f} %" in fig._suptitle.get_text()
    assert png_bytes(fig).startswith(PNG)
    few = misclassified_digits(net, ds, most=5)  # fewer slots than mistakes: all red
    assert len(few.axes) == 5 and {ax.title.get_color() for ax in few.axes} == {"#d62728"}


def test_data_figures_pick_what_applies(moons_run, digits_run):
    ds, net, theta0 = moons_run
    assert set(data_figures(net, theta0, ds)) == {"decision_boundary.png"}
    ds_d, net_d, theta_d, _ = digits_run
    figs = data_figures(net_d, theta_d, ds_d, title="digits")
    assert set(figs) == {"misclassified_digits.png"}
    teacher = lab.make_dataset("teacher", 30, 10)
    reg = lab.Network([4, 5, 1], "tanh")
    assert data_figures(reg, reg.theta.copy(), teacher) == {}
    two_d_regression = lab.make_dataset("identity", 30, 10)  # n_x = 2 but not a classifier
    ident = lab.Network([2, 2], "identity")
    assert data_figures(ident, ident.theta.copy(), two_d_regression) == {}


def test_activation_histograms_by_layer(digits_run):
    *_, history = digits_run
    before = len(plt.get_fignums())
    fig = activation_histograms_by_layer(history, "digits", moments=3)
    assert len(fig.axes) == 3 + 2  # one panel per moment, saturation and std over training
    first, last = fig.axes[0], fig.axes[2]
    assert len(first.patches) == 2  # hidden layers only: the softmax output is left out
    legend = last.get_legend()  # one legend, right of the last panel: outside the data
    assert "|a| ≥ 0.95" in legend.get_title().get_text()
    assert [t.get_text().count("→") for t in legend.get_texts()] == [2, 2]  # 3 moments
    fig.canvas.draw()
    box = legend.get_window_extent()
    assert all(box.x0 >= ax.get_window_extent().x1 for ax in fig.axes[:3])
    with_output = activation_histograms_by_layer(history, moments=2, include_output=True)
    assert len(with_output.axes) == 2 + 2 and len(with_output.axes[0].patches) == 3
    loaded = dict(np.load(io.BytesIO(_npz(history))))  # as read back from history.npz
    assert png_bytes(activation_histograms_by_layer(loaded)).startswith(PNG)
    assert len(plt.get_fignums()) == before


def _npz(history):
    buf = io.BytesIO()
    np.savez_compressed(buf, **history)
    return buf.getvalue()
