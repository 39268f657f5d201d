"""End to end: `python -m lab` runs and sweeps into a temporary SQLite store, read back with
MlflowClient: parent/child structure, every contracted metric name and step, params, tags,
artifacts; the joblib launcher; bad overrides failing with one line and no run created."""

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_lab, store_steps
from mlflow.tracking import MlflowClient

from lab.history import LAYER_STAT_NAMES
from lab.train import log_steps

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("store") / "mlruns.db"


@pytest.fixture(scope="module")
def identity_runs(identity_sweep):
    """(client, every run, the sweep's process) of the session's identity sweep."""
    client = MlflowClient(identity_sweep.uri)
    exp = client.get_experiment_by_name("exploding_identity")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    return client, runs, identity_sweep.process


def test_sweep_has_one_parent_holding_every_job(identity_runs):
    client, runs, _ = identity_runs
    parents = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 5 and len(runs) == 6
    parent = parents[0]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["jobs_completed"] == "4" and parent.data.tags["jobs_diverged"] == "1"
    files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"summary.csv", "summary.json", "figures"} <= files
    csv = Path(client.download_artifacts(parent.info.run_id, "summary.csv")).read_text()
    assert csv.count("\n") == 6 and "init.gain=1.5" in csv and "diverged" in csv


def test_every_contracted_metric_at_every_logged_step(identity_runs):
    client, runs, _ = identity_runs
    run = next(r for r in runs if r.data.params.get("init.gain") == "0.9")
    expected = {"loss/train", "loss/test", "grad_norm/total"}
    expected |= {f"{s}/layer_{l:02d}" for s in LAYER_STAT_NAMES for l in range(1, 11)}
    assert expected <= set(run.data.metrics)
    steps = log_steps(200, "auto").tolist()
    assert steps[0] == 0 and steps[-1] == 199
    for key in ("loss/train", "grad_norm/layer_01", "delta_norm/layer_10", "update_ratio/layer_05",
                "loss/test"):
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == store_steps(key, steps, 200), key
    # tracking.detail=default: per-layer statistics other than grad/delta norms at ~20 points
    assert len(store_steps("update_ratio/layer_05", steps, 200)) == 21
    # the logged values are the full-resolution history's values at those steps
    local = Path(client.download_artifacts(run.info.run_id, "history.npz"))
    h = np.load(local)
    logged = {m.step: m.value for m in client.get_metric_history(run.info.run_id,
                                                                "grad_norm/layer_03")}
    np.testing.assert_allclose([logged[s] for s in steps], h["grad_norm/layer_03"][steps])
    assert len(h["step"]) == 200


def test_params_tags_and_artifacts(identity_runs):
    client, runs, _ = identity_runs
    run = next(r for r in runs if r.data.params.get("init.gain") == "0.5")
    p = run.data.params
    assert p["model.depth"] == "10" and p["model.width"] == "2"
    assert p["model.activation"] == "identity" and p["init.name"] == "identity"
    assert p["optimizer.name"] == "sgd" and p["train.batch_size"] == "full"
    tags = run.data.tags
    assert tags["status"] == "completed" and tags["backend"] == "cpu"
    assert tags["experiment"] == "exploding_identity"
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "history.npz", "summary.json"} <= top
    wanted = {"grad_norm_over_steps.png", "grad_norm_by_layer.png", "loss.png",
              "activation_histograms.png"}
    deadline = time.monotonic() + 120  # figures are drawn off the critical path, maybe later
    while True:
        figures = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "figures")}
        if wanted <= figures or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert wanted <= figures


def test_diverged_run_keeps_its_metrics_and_says_where(identity_runs):
    client, runs, _ = identity_runs
    run = next(r for r in runs if r.data.params.get("init.gain") == "1.5")
    assert run.info.status == "FINISHED"
    assert run.data.tags["status"] == "diverged"
    step = int(run.data.tags["diverged_at_step"])
    history = client.get_metric_history(run.info.run_id, "loss/train")
    assert [m.step for m in history][-1] == step
    assert all(np.isfinite(m.value) for m in history)


def test_joblib_launcher_loses_no_run_and_no_metric(store, tmp_path):
    done = run_lab(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                    "tracking.experiment=e2e_joblib", "train.steps=100", "init=identity",
                    "init.gain=0.8,0.9,1.1,1.2"], store, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{store}")
    exp = client.get_experiment_by_name("e2e_joblib")
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    parents = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    assert len(children) == 4 and len(parents) == 1
    n_steps = len(log_steps(100, "auto"))
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        for l in range(1, 11):
            rows = client.get_metric_history(run.info.run_id, f"grad_norm/layer_{l:02d}")
            assert len(rows) == n_steps


@pytest.mark.parametrize("override,message", [
    ("model.activaton=relu", "activaton"),
    ("optimizer.lr=abc", "optimizer.lr=abc"),
    ("optimizer.lr=-1", "optimizer.lr"),
    ("train.batch_size=0", "train.batch_size"),
    ("model.activation=swish", "swish"),
    ("init=glorot", "glorot"),
])
def test_bad_override_fails_with_one_line_and_creates_no_run(store, tmp_path, override, message):
    done = run_lab([override, "tracking.experiment=e2e_bad"], store, tmp_path)
    assert done.returncode == 2
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gradlab: config error") and message in lines[0]
    assert "Traceback" not in done.stderr
    client = MlflowClient(f"sqlite:///{store}")
    exp = client.get_experiment_by_name("e2e_bad")
    assert exp is None or not client.search_runs([exp.experiment_id])
