"""Every study's claim, checked on a small, fast version of the study's own config (composed
with Hydra's compose API, built with ``lab.build.build``), plus a smoke test of ``lab.report``
against a temporary MLflow store holding a tiny sweep."""

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config

import lab
from lab.build import build
from lab.history import layer_series, series

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def study_config(name, *overrides):
    """The resolved config of study ``name`` (its defaults, not its sweep) with overrides."""
    return compose_config(f"+experiment={name}", "tracking=off", *overrides)


def run(cfg, steps=None):
    """Train the config's net on its data; returns (result, net, dataset)."""
    ds, net, opt = build(cfg)
    t = cfg["train"]
    result = lab.train(net, opt, ds.X_train, ds.Y_train, steps=steps or t["steps"],
                       batch_size=t["batch_size"], loss=t["loss"], seed=cfg["seed"],
                       divergence_threshold=t["divergence_threshold"], X_test=ds.X_test,
                       Y_test=ds.Y_test)
    return result, net, ds


def at_init(cfg):
    """Statistics of the config's net at initialization on its whole training set, as a
    one-row history (``Network.inspect``: nothing is trained)."""
    ds, net, _ = build(cfg)
    seen = net.inspect(ds.X_train, ds.Y_train, loss=cfg["train"]["loss"])
    return {name: np.array([value]) for name, value in seen.stats.items()}


def per_layer(history, stat, row=0):
    return layer_series(history, stat, row)


def factor_per_layer(values, x=None):
    """exp(slope) of log(values) against the layer (or depth) index."""
    x = np.arange(1, len(values) + 1) if x is None else np.asarray(x, dtype=float)
    return math.exp(np.polyfit(x, np.log(values), 1)[0])


# ----------------------------------------------------------------------------- exploding_identity


@pytest.mark.parametrize("gain", [0.5, 1.5])
def test_identity_net_output_and_gradients_scale_with_gain(gain):
    cfg = study_config("exploding_identity", f"init.gain={gain}")
    ds, net, _ = build(cfg)
    L = net.depth
    np.testing.assert_allclose(net.forward(ds.X_train), gain ** L * ds.X_train, rtol=1e-12)
    h = at_init(cfg)
    dz, dw = per_layer(h, "delta_norm"), per_layer(h, "grad_norm")
    slope = np.polyfit(np.arange(1, L + 1), np.log(dz), 1)[0]
    assert abs(slope - (-math.log(gain))) <= 0.1 * abs(math.log(gain))
    np.testing.assert_allclose(dw, dw[0], rtol=1e-10)  # every dW[l] has the same norm
    m = ds.X_train.shape[1]
    dZ_L = (2 / m) * (gain ** L * ds.X_train - ds.Y_train)
    np.testing.assert_allclose(dw[0], gain ** (L - 1) * np.linalg.norm(dZ_L @ ds.X_train.T),
                               rtol=1e-10)


def test_identity_net_sgd_diverges_at_1_5_and_stalls_at_0_5():
    big, _, _ = run(study_config("exploding_identity", "init.gain=1.5"), steps=50)
    assert big.status == "diverged" and big.diverged_at_step <= 5
    small, _, _ = run(study_config("exploding_identity", "init.gain=0.5"), steps=600)
    loss = small.history["loss/train"]
    assert small.status == "completed" and loss[-1] >= 0.95 * loss[0]  # still on the plateau
    good, _, _ = run(study_config("exploding_identity", "init.gain=0.9"), steps=600)
    assert good.history["loss/train"][-1] < 0.05 * good.history["loss/train"][0]


# ----------------------------------------------------------------------------- vanishing_sigmoid


@pytest.mark.parametrize("init, predicted", [("xavier", 0.25), ("uniform", 0.25 / math.sqrt(3))])
def test_sigmoid_first_layer_gradient_falls_geometrically_with_depth(init, predicted):
    depths = [2, 4, 6, 8]
    g1 = []
    for depth in depths:
        cfg = study_config("vanishing_sigmoid", f"init={init}", f"model.depth={depth}")
        ds, net, _ = build(cfg)
        _, dW, _ = net.gradients(ds.X_train, ds.Y_train, loss=cfg["train"]["loss"])
        g1.append(np.linalg.norm(dW[0]))
    assert np.all(np.diff(np.log(g1)) < 0)
    assert factor_per_layer(g1, depths) == pytest.approx(predicted, rel=0.25)


def test_sigmoid_top_hidden_layer_is_driven_to_zero():
    """Glorot & Bengio (2010): with the standard init the top hidden sigmoid layer of a deep
    net goes to 0 early in training; N(0, 1) weights keep it near the middle."""
    tops = {}
    for init in ("uniform", "normal"):
        cfg = study_config("vanishing_sigmoid", f"init={init}", "model.depth=6")
        h = run(cfg, steps=400)[0].history
        tops[init] = series(h, "act_mean", 5)
    assert tops["uniform"][0] > 0.4 and tops["uniform"][-1] < 0.15
    assert tops["normal"][-1] > 0.2


# ----------------------------------------------------------------------------- init_comparison


def test_zeros_keeps_units_identical_random_init_breaks_symmetry():
    ds = lab.make_dataset("circles", 128, 0, seed=0)
    for init in ("zeros", "xavier"):
        net = lab.Network([2, 8, 8, 1], "sigmoid", output_activation="sigmoid", init=init)
        lab.train(net, lab.Optimizer("sgd", lr=0.5), ds.X_train, ds.Y_train, steps=200,
                  loss="bce")
        hidden = net.weights[:-1] + [net.weights[-1].T]  # rows of W[1], W[2]; columns of W[3]
        identical = [np.allclose(W, W[:1], rtol=0, atol=1e-12) for W in hidden]
        if init == "zeros":
            assert all(identical) and np.abs(net.weights[-1]).max() > 0  # moved, but together
        else:
            assert not any(identical)


def test_deep_relu_he_keeps_scale_xavier_shrinks_by_sqrt2():
    stats = {}
    for init in ("he", "xavier"):
        h = at_init(study_config("init_comparison", f"init={init}"))
        act, dz = per_layer(h, "act_std")[:-1], per_layer(h, "delta_norm")[:-1]
        stats[init] = (factor_per_layer(act), 1 / factor_per_layer(dz),
                       np.median(per_layer(h, "grad_norm")))
    he_act, he_dz, he_grad = stats["he"]
    xa_act, xa_dz, xa_grad = stats["xavier"]
    assert he_act == pytest.approx(1.0, abs=0.1) and he_dz == pytest.approx(1.0, abs=0.1)
    assert xa_act == pytest.approx(1 / math.sqrt(2), rel=0.1)
    assert xa_dz == pytest.approx(1 / math.sqrt(2), rel=0.1)
    assert xa_grad < 1e-3 * he_grad  # orders of magnitude smaller weight gradients


def test_deep_relu_he_trains_xavier_stalls_zeros_never_moves():
    loss = {}
    for init in ("he", "xavier", "zeros"):
        result = run(study_config("init_comparison", f"init={init}"), steps=300)[0]
        loss[init] = result.history["loss/train"]
        if init == "zeros":
            assert all(np.all(per_layer(result.history, "grad_norm", row) == 0)
                       for row in range(len(loss[init])))
    assert loss["he"][-1] < 0.3
    assert loss["xavier"][-1] > 0.68 and loss["zeros"][-1] > 0.68


# ----------------------------------------------------------------------------- optimizer_comparison


def test_adaptive_optimizers_reach_target_sgd_does_not():
    target = 0.1
    first = {}
    for name in ("sgd", "momentum", "rmsprop", "adam"):
        loss = run(study_config("optimizer_comparison", f"optimizer={name}"))[0].history[
            "loss/train"]
        hits = np.flatnonzero(loss < target)
        first[name] = int(hits[0]) if len(hits) else math.inf
    assert first["rmsprop"] < first["sgd"] and first["adam"] < first["sgd"]
    assert first["rmsprop"] < math.inf and first["adam"] < math.inf
    assert first["momentum"] == math.inf


# ----------------------------------------------------------------------------- batch_size


def test_loss_noise_grows_as_batch_shrinks():
    noise = []
    for batch in ("full", 16, 1):
        loss = run(study_config("batch_size", f"train.batch_size={batch}"),
                   steps=600)[0].history["loss/train"]
        noise.append(np.std(np.diff(loss[60:])))
    assert noise[0] < noise[1] < noise[2]
    assert noise[2] > 10 * noise[0]


# ----------------------------------------------------------------------------- input_normalization


def test_normalized_inputs_train_to_a_much_lower_loss():
    final = {}
    for normalize in (False, True):
        result = run(study_config("input_normalization", f"data.normalize={normalize}"),
                     steps=600)[0]
        final[normalize] = result.history["loss/train"][-1]
    assert final[True] < 0.1 * final[False]


# ----------------------------------------------------------------------------- depth_scaling


def test_relu_xavier_error_ratio_vanishes_with_depth_he_does_not():
    ratio = {}
    for init in ("xavier", "he"):
        for depth in (5, 20, 50):
            h = at_init(study_config("depth_scaling", "model.activation=relu", f"init={init}",
                                     f"model.depth={depth}"))
            dz = per_layer(h, "delta_norm")
            ratio[init, depth] = dz[0] / dz[-1]
    assert ratio["xavier", 5] > ratio["xavier", 20] > ratio["xavier", 50]
    assert ratio["xavier", 50] < 1e-6
    assert ratio["he", 50] > 1e3 * ratio["xavier", 50]


# ----------------------------------------------------------------------------- initialization_notes


def test_initialization_notes_zero_small_appropriate_large():
    def final(init, gain):
        result = run(study_config("initialization_notes", f"init={init}", f"init.gain={gain}"),
                     steps=1500)[0]
        return result, result.history["loss/train"]

    for init, gain in (("zeros", 1.0), ("he", 0.01)):
        _, loss = final(init, gain)
        assert loss[-1] == pytest.approx(math.log(2), abs=0.01)  # constant prediction
    result, loss = final("he", 1.0)
    assert loss[-1] < 0.1
    result, _ = final("normal", 10.0)
    assert result.status == "diverged"


def test_digits_xavier_beats_zeros():
    accuracy = {}
    for init in ("zeros", "xavier"):
        result = run(study_config("initialization_notes_digits", f"init={init}"), steps=400)[0]
        accuracy[init] = result.history["accuracy/test"][-1]
    assert accuracy["zeros"] < 0.2 and accuracy["xavier"] > 0.8


# ----------------------------------------------------------------------------- report smoke test


def test_report_reads_a_sweep_back_from_mlflow(identity_sweep, tmp_path):
    uri = identity_sweep.uri
    exp_dir = tmp_path / "experiments"
    exp_dir.mkdir()
    for md in (ROOT / "experiments").glob("*.md"):
        shutil.copy(md, exp_dir / md.name)
    from lab import report
    results = report.report(uri, exp_dir)

    assert isinstance(results["exploding_identity"], report.Output)
    assert results["vanishing_sigmoid"] is None  # not in this store
    for name in ("exploding_identity.png", "headline.png"):
        path = exp_dir / "figures" / name
        assert path.exists() and 10_000 < path.stat().st_size < 300_000
    text = (exp_dir / "exploding_identity.md").read_text()
    table = text.split("<!-- report:table -->")[1].split("<!-- /report:table -->")[0]
    assert "| 0.5 |" in table and "| 1.5 |" in table and "diverged at step" in table
    assert "parent run" in text.split("<!-- report:run -->")[1]
    assert "Not run yet" in (exp_dir / "vanishing_sigmoid.md").read_text()
    index = (exp_dir / "README.md").read_text()
    assert "figures/exploding_identity.png" in index and "make sweep EXP=depth_scaling" in index
    assert (exp_dir / "exploding_identity.md").read_text() == text  # idempotent blocks
    report.report(uri, exp_dir, ["exploding_identity"])
    assert (exp_dir / "exploding_identity.md").read_text().count("<!-- report:table -->") == 1
