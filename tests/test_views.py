"""What the UI shows (lab/views/describe.py) and the figures' readability rules."""

import json

import matplotlib.pyplot as plt
import numpy as np
import pytest

import lab
from lab.views import describe
from lab.views.style import JOB_STYLES, log_axis
from lab.views.sweep import job_summary, sweep_comparison
from lab.views.training import loss_curves, run_figures

REPO = describe.Path(__file__).resolve().parent.parent


def _cfg(data="digits", optimizer="sgd"):
    return {"seed": 0, "backend": "cpu", "dtype": "float64",
            "model": {"depth": 10, "width": 2, "activation": "identity",
                      "output_activation": "identity"},
            "init": {"name": "identity", "gain": 1.5},
            "optimizer": {"name": optimizer, "lr": 0.01, "beta": 0.9, "beta1": 0.9,
                          "beta2": 0.999, "eps": 1e-8},
            "data": {"name": data, "n_train": 256, "n_test": 256, "normalize": False,
                     "noise": 0.1, "n_features": 2, "scale_spread": 0.0, "teacher_depth": 3,
                     "teacher_width": 16, "factor": 0.5, "turns": 1.5},
            "train": {"steps": 2000, "batch_size": "full", "loss": "mse",
                      "divergence_threshold": 1e6},
            "tracking": {"enabled": True, "uri": None, "experiment": None, "log_every": "auto",
                         "figures": True, "progress": True}}


@pytest.mark.parametrize("data,keys", [
    ("digits", {"name", "n_train", "n_test", "normalize"}),
    ("identity", {"name", "n_train", "n_test", "normalize", "noise", "n_features"}),
    ("teacher", {"name", "n_train", "n_test", "normalize", "noise", "n_features",
                 "teacher_depth", "teacher_width"}),
    ("circles", {"name", "n_train", "n_test", "normalize", "noise", "factor"}),
])
def test_only_the_data_sets_own_keys_apply(data, keys):
    assert set(describe.applicable_config(_cfg(data))["data"]) == keys


@pytest.mark.parametrize("name,keys", [("sgd", {"lr"}), ("momentum", {"lr", "beta"}),
                                       ("rmsprop", {"lr", "beta2", "eps"}),
                                       ("adam", {"lr", "beta1", "beta2", "eps"})])
def test_only_the_optimizers_own_hyperparameters_apply(name, keys):
    cfg = _cfg(optimizer=name)
    assert set(describe.applicable_config(cfg)["optimizer"]) == {"name"} | keys
    assert cfg["optimizer"]["beta1"] == 0.9  # the input is not changed


def test_run_description_names_the_configuration():
    text = describe.run_description(_cfg("identity"), "init.gain=1.5", "exploding_identity")
    for words in ("init.gain=1.5", "exploding_identity", "10-layer identity net",
                  "identity init with gain 1.5", "sgd (lr 0.01)", "full batches", "y = x",
                  "2000 steps", "Model metrics", "**Depth**"):
        assert words in text, words


def test_log10_series_keep_norms_across_orders_of_magnitude_readable():
    m = {"grad_norm/layer_01": np.array([1e-15, 1e30, np.inf]),
         "delta_norm/layer_10": np.array([0.0, 1.0, 10.0]),
         "loss/train": np.array([2.0, 1e32, np.nan]), "act_std/layer_01": np.array([1, 2, 3.])}
    out = describe.with_log10(m)
    np.testing.assert_allclose(out["Log10/dW layer 01"][:2], [-15, 30])
    assert np.isnan(out["Log10/dW layer 01"][2])  # not stored: the writer skips NaN
    assert np.isnan(out["Log10/dZ layer 10"][0]) and out["Log10/dZ layer 10"][2] == 1
    assert "Log10/loss train" in out and not any("act_std" in k for k in out if "Log10" in k)
    # sections sort before the contract's lower-case ones on MLflow's chart pages
    assert sorted([describe.PROFILE, describe.LOG10, "accuracy", "act_mean"])[:2] == \
        [describe.PROFILE, describe.LOG10]


@pytest.fixture(scope="module")
def exploding_runs():
    """Two linear nets of the exploding_identity study: gain 0.5 trains, 1.5 diverges."""
    ds = lab.make_dataset("identity", 64, 32, seed=0, noise=0.1)
    jobs, histories = [], []
    for num, gain in enumerate((0.5, 1.5)):
        net = lab.Network([2] * 11, "identity", init="identity", gain=gain, seed=0)
        result = lab.train(net, lab.Optimizer("sgd", lr=0.01), ds.X_train, ds.Y_train,
                           steps=30, X_test=ds.X_test, Y_test=ds.Y_test)
        histories.append(result.history)
        jobs.append(job_summary(result.history, label=f"init.gain={gain}", job=num,
                                status=result.status, diverged_at_step=result.diverged_at_step,
                                seconds=result.seconds))
    return jobs, histories


def test_end_of_run_metrics_profile_and_summary(exploding_runs):
    jobs, histories = exploding_runs
    (profile, layers), (scalars, step) = describe.end_of_run_metrics(histories[0], jobs[0])
    assert layers.tolist() == list(range(1, 11))
    dz = profile["Depth/log10 dZ init"]
    np.testing.assert_allclose(np.diff(dz), np.log10(2.0), rtol=1e-6)  # ‖dZ[l]‖ ∝ gain^(L-l)
    assert scalars["final loss"][0] == pytest.approx(jobs[0]["final_loss"])
    assert step.tolist() == [int(histories[0]["step"][-1])]
    assert all(k in scalars for k in ("dW1 init", "dWL end"))


def test_sweep_record_for_the_parent(exploding_runs):
    jobs, _ = exploding_runs
    assert [j["status"] for j in jobs] == ["completed", "diverged"]
    cfg = _cfg("identity")
    record = describe.sweep_record("exploding_identity", jobs, cfg, REPO)
    assert "init.gain" not in record["params"] and "init.name" in record["params"]
    assert "optimizer.beta1" not in record["params"]  # sgd's params only
    assert not any(k.startswith("tracking.") for k in record["params"])
    text = record["tags"][describe.DESCRIPTION_TAG]
    assert "| 1 | init.gain=0.5 | completed |" in text
    assert f"diverged at step {jobs[1]['diverged_at_step']}" in text and "**Question.**" in text
    (per_job, steps), (overall, _) = record["metrics"]
    assert steps.tolist() == [1, 2] and per_job["by job/diverged"].tolist() == [0, 1]
    assert overall["jobs_diverged"][0] == 1 and overall["decades_dW1_init"][0] > 5


def test_experiment_tags_open_the_runs_view():
    tags = describe.experiment_tags("exploding_identity", REPO)
    assert tags[describe.KIND_TAG] == "custom_model_development"
    view = json.loads(tags[describe.VIEW_TAG])
    assert "tags.`status`" in view["selectedColumns"]
    assert view["orderByKey"] != "attributes.start_time"  # sorted otherwise: a flat list
    assert "**Question" not in tags[describe.DESCRIPTION_TAG] and "Model metrics" in \
        tags[describe.DESCRIPTION_TAG]
    assert describe.runs_view_url("http://h:5000/", "3") == ("http://h:5000/#/experiments/3/runs"
                                                             "?viewStateShareKey=gradlab&"
                                                             "workflowType=machine_learning")
    linked = describe.experiment_tags("default", None, "7")[describe.DESCRIPTION_TAG]
    assert "(/#/experiments/7/runs?viewStateShareKey=gradlab&workflowType=machine_learning)" in \
        linked


# --- figures -------------------------------------------------------------------------------------

def _visible_ticks(ax, axis="y"):
    ax.figure.canvas.draw()
    labels = ax.get_yticklabels() if axis == "y" else ax.get_xticklabels()
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    return [t.get_text() for t in labels if t.get_text()
            and min(lo, hi) <= (t.get_position()[1 if axis == "y" else 0]) <= max(lo, hi)]


def test_log_axis_labels_a_range_under_one_decade():
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [2.2, 2.5, 2.7])
    log_axis(ax)
    assert len(_visible_ticks(ax)) >= 2
    plt.close(fig)


def test_step_ticks_are_integers_for_a_run_that_diverged_at_step_1(exploding_runs):
    _, histories = exploding_runs
    figs = run_figures(histories[1], "diverged")
    for name, fig in figs.items():
        fig.canvas.draw()
        for ax in fig.axes:
            if ax.get_xlabel() == "optimizer step":
                ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
                assert all(float(t).is_integer() for t in ticks), (name, ticks)
        assert fig.get_figwidth() <= 10  # read at ~900 px
        plt.close(fig)


def test_loss_title_fits_and_has_y_ticks(exploding_runs):
    _, histories = exploding_runs
    fig = loss_curves(histories[0], "a very long title " * 8)
    fig.canvas.draw()
    box = fig._suptitle.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width
    assert len(_visible_ticks(fig.axes[0])) >= 2
    plt.close(fig)


def test_sweep_comparison_styles_legend_and_overlaps(exploding_runs):
    jobs, _ = exploding_runs
    many = [dict(jobs[0], label=f"model.depth={d}, train.steps=30") for d in range(20)]
    fig = sweep_comparison(many, "twenty jobs")
    fig.canvas.draw()
    looks = {(l.get_color(), l.get_marker()) for l in fig.axes[0].get_lines()}
    assert len(looks) == 20 == len({(s["color"], s["marker"]) for s in JOB_STYLES})
    legend = fig.legends[0]
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts[0] == "1. model.depth=0" and "train.steps" not in " ".join(texts)
    box = legend.get_window_extent()
    assert all(box.y1 <= ax.get_window_extent().y0 for ax in fig.axes)  # below the data
    assert "on top of each other" in " ".join(t.get_text() for t in fig.axes[1].texts)
    plt.close(fig)


def test_where_to_look_lists_each_studys_view_and_the_clicks():
    text = describe.where_to_look({"exploding_identity": "2", "vanishing_sigmoid": "1"})
    assert ("exploding_identity  http://127.0.0.1:5000/#/experiments/2/runs?viewStateShareKey="
            "gradlab&workflowType=machine_learning") in text
    assert "/#/experiments/1/runs?" in text
    for click in ('"Model metrics"', '"Depth"', '"Log10"', '"Model training"', "Overview"):
        assert click in text


def test_ui_metrics_are_told_apart_from_the_contracts(exploding_runs):
    jobs, histories = exploding_runs
    logged = set(describe.with_log10({"grad_norm/layer_01": np.ones(2), "loss/train": np.ones(2)}))
    for block, _ in describe.end_of_run_metrics(histories[0], jobs[0]):
        logged |= set(block)
    assert {n for n in logged if not describe.is_ui_metric(n)} == {"grad_norm/layer_01",
                                                                   "loss/train"}
