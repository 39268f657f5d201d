"""Tests for lab.track against real MLflow sqlite stores in tmp dirs."""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE
from mlflow.tracking import MlflowClient

from lab import track
from lab.track import (
    MetricWriter,
    RunTracker,
    SweepParent,
    TrackingUnreachable,
    check_reachable,
    flatten_params,
    get_or_create_experiment,
    mask_uri,
    resolve_tracking_uri,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One sqlite store for the module (schema creation costs about a second)."""
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root}/mlruns.db"
    check_reachable(uri)
    return uri


def _new_run(uri: str, experiment: str = "writer") -> tuple[MlflowClient, str]:
    client = MlflowClient(uri)
    exp_id = get_or_create_experiment(client, experiment, track.artifact_root_for(uri))
    return client, client.create_run(exp_id).info.run_id


# --------------------------------------------------------------------------- URIs


def test_resolve_tracking_uri(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path.resolve()
    assert resolve_tracking_uri(None, tmp_path) == f"sqlite:///{root}/mlruns.db"
    assert resolve_tracking_uri("", tmp_path) == f"sqlite:///{root}/mlruns.db"
    assert resolve_tracking_uri("http://h:5000", tmp_path) == "http://h:5000"
    # relative sqlite -> absolute against the repo root, not the cwd
    assert resolve_tracking_uri("sqlite:///x.db", tmp_path) == f"sqlite:///{root}/x.db"
    assert resolve_tracking_uri("sqlite:///sub/x.db?timeout=5", tmp_path) == (
        f"sqlite:///{root}/sub/x.db?timeout=5"
    )
    assert resolve_tracking_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert resolve_tracking_uri(None, tmp_path) == f"sqlite:///{root}/env.db"
    assert resolve_tracking_uri("http://cfg:1", tmp_path) == "http://cfg:1"  # config wins


def test_artifact_roots(tmp_path):
    root = tmp_path.resolve()
    assert track.default_artifact_root(tmp_path) == (root / "mlartifacts").as_uri()
    assert (
        track.artifact_root_for(f"sqlite:///{root}/db/m.db")
        == (root / "db" / "mlartifacts").as_uri()
    )
    assert track.artifact_root_for("http://localhost:5000") is None


def test_mask_uri():
    assert (
        mask_uri("postgresql://bob:s3cret@db:5432/mlflow") == "postgresql://bob:***@db:5432/mlflow"
    )
    assert mask_uri("https://u:p%40ss@host/x") == "https://u:***@host/x"
    assert mask_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert mask_uri("http://host:5000/a@b") == "http://host:5000/a@b"
    assert mask_uri("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert mask_uri("mysql://u@h/db?password=pw&x=1") == "mysql://u@h/db?password=***&x=1"
    assert mask_uri("plain text") == "plain text"


def test_flatten_params():
    cfg = {
        "seed": 0,
        "model": {"depth": 50, "activation": "tanh", "sizes": [2, 3], "opt": {"lr": 0.1}},
        "train": {"batch_size": "full", "flag": True, "none": None},
        "tracking": {"uri": "postgresql://u:pw@h/db"},
        "empty": {},
        "long": "x" * 10_000,
    }
    flat = flatten_params(cfg)
    assert flat["seed"] == "0"
    assert flat["model.depth"] == "50"
    assert flat["model.opt.lr"] == "0.1"
    assert flat["model.sizes"] == "[2, 3]"
    assert flat["train.batch_size"] == "full"
    assert flat["train.flag"] == "True"
    assert flat["train.none"] == "None"
    assert flat["tracking.uri"] == "postgresql://u:***@h/db"
    assert flat["empty"] == "{}"
    assert len(flat["long"]) == track.MAX_PARAM_VAL_LENGTH == 6000
    assert all(isinstance(v, str) for v in flat.values())
    assert flatten_params({"a": 1}, prefix="p") == {"p.a": "1"}


# --------------------------------------------------------------------------- reachability


def test_check_reachable_closed_port_is_fast():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://user:pw@127.0.0.1:{port}"
    t0 = time.monotonic()
    with pytest.raises(TrackingUnreachable) as info:
        check_reachable(uri, timeout_s=3)
    assert time.monotonic() - t0 < 15
    msg = str(info.value)
    assert "\n" not in msg and "pw" not in msg and f"127.0.0.1:{port}" in msg
    assert "make server" in msg and "tracking.uri" in msg
    assert os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES") != "0"  # restored


def test_check_reachable_silent_server_times_out():
    with socket.socket() as s:  # accepts connections (backlog) but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        t0 = time.monotonic()
        with pytest.raises(TrackingUnreachable, match="no answer within 1 s"):
            check_reachable(f"http://127.0.0.1:{s.getsockname()[1]}", timeout_s=1)
        assert time.monotonic() - t0 < 5


def test_check_reachable_sqlite_missing_dir(tmp_path):
    with pytest.raises(TrackingUnreachable, match="does not exist"):
        check_reachable(f"sqlite:///{tmp_path}/nope/m.db")


# --------------------------------------------------------------------------- experiments


def test_get_or_create_experiment_race(store):
    client = MlflowClient(store)
    first = get_or_create_experiment(client, "race", None)
    assert get_or_create_experiment(client, "race", None) == first

    class LateClient:  # sees no experiment, then loses the create race
        def __init__(self):
            self.calls = 0

        def get_experiment_by_name(self, name):
            self.calls += 1
            return None if self.calls == 1 else client.get_experiment_by_name(name)

        def create_experiment(self, name, artifact_location=None):
            return client.create_experiment(name, artifact_location=artifact_location)

    assert get_or_create_experiment(LateClient(), "race", None) == first


# --------------------------------------------------------------------------- MetricWriter


class SpyClient:
    def __init__(self, inner):
        self.inner = inner
        self.batch_sizes: list[int] = []

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        self.batch_sizes.append(len(metrics))
        return self.inner.log_batch(run_id, metrics=metrics, params=params, tags=tags)


def test_metric_writer_writes_every_finite_value(store):
    client, run_id = _new_run(store)
    spy = SpyClient(client)
    writer = MetricWriter(spy, run_id)
    steps = np.arange(1500)
    buf = np.linspace(0.0, 1.0, 1500)
    bad = buf.copy()
    bad[[3, 10, 700]] = [np.nan, np.inf, -np.inf]
    writer.put({"loss/train": buf, "grad_norm/layer_01": bad}, steps)
    buf[:] = -1.0  # caller reuses its buffer: the writer must have copied
    writer.put({"loss/train": np.array([5.0])}, np.array([1500]))
    writer.close()
    writer.close()  # idempotent

    hist = client.get_metric_history(run_id, "loss/train")
    assert len(hist) == 1501
    assert sorted(m.step for m in hist) == list(range(1501))
    assert min(m.value for m in hist) >= 0.0
    grads = client.get_metric_history(run_id, "grad_norm/layer_01")
    assert len(grads) == 1497
    assert all(np.isfinite(m.value) for m in grads)
    assert {3, 10, 700}.isdisjoint(m.step for m in grads)
    assert writer.n_written == 1501 + 1497 and writer.n_skipped == 3
    assert max(spy.batch_sizes) <= 1000 and len(spy.batch_sizes) >= 3
    assert sum(spy.batch_sizes) == writer.n_written
    assert writer.seconds_in_store > 0
    with pytest.raises(RuntimeError):
        writer.put({"x": np.ones(1)}, np.zeros(1))


def test_metric_writer_rejects_misaligned(store):
    client, run_id = _new_run(store)
    writer = MetricWriter(client, run_id)
    with pytest.raises(ValueError, match="steps"):
        writer.put({"a": np.ones(3)}, np.arange(2))
    writer.close()


class FlakyClient:
    def __init__(self, failures: int):
        self.failures = failures
        self.logged = 0

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        if self.failures:
            self.failures -= 1
            raise MlflowException(
                "(sqlite3.OperationalError) database is locked", error_code=TEMPORARILY_UNAVAILABLE
            )
        self.logged += len(metrics)


def test_metric_writer_retries_locked_database():
    client = FlakyClient(failures=2)
    writer = MetricWriter(client, "run", retry_budget_s=10)
    writer.put({"a": np.arange(5.0)}, np.arange(5))
    writer.close()
    assert client.logged == 5 and writer.n_written == 5 and writer.n_calls == 3


def test_metric_writer_keeps_final_error():
    client = FlakyClient(failures=10**6)
    writer = MetricWriter(client, "run", retry_budget_s=0.3)
    writer.put({"a": np.arange(5.0)}, np.arange(5))
    writer.flush()
    writer.put({"a": np.arange(5.0)}, np.arange(5, 10))
    with pytest.raises(RuntimeError, match="10 values were not stored"):
        writer.close()
    assert writer.n_written == 0 and writer.n_failed == 10


# --------------------------------------------------------------------------- runs


def test_runs_parent_child_and_statuses(store, tmp_path, monkeypatch):
    monkeypatch.delenv(track.PARENT_ENV_VAR, raising=False)
    exp = "study"
    parent = SweepParent.open(store, exp, tmp_path / "sweep", run_name=exp)
    assert parent.created
    assert (tmp_path / "sweep" / track.PARENT_ID_FILE).read_text().strip() == parent.run_id
    again = SweepParent.open(store, exp, tmp_path / "sweep", run_name=exp)
    assert again.run_id == parent.run_id and not again.created

    params = {"model": {"depth": 3}, "many": {f"k{i:03d}": i for i in range(250)}}

    def child(name):
        return RunTracker(store, exp, name, params, {"backend": "cpu"}, parent.run_id)

    with child("ok") as run:
        run.log_metrics({"loss/train": np.array([1.0, 0.5])}, np.array([0, 1]))
        run.log_dict({"a": 1}, "config.yaml")
    with child("div") as run:
        run.set_tags({"diverged_at_step": 7})
        run.finish("diverged")
    with pytest.raises(ValueError, match="boom"):
        with child("bad") as run:
            run.log_metrics({"loss/train": np.array([2.0])}, np.array([0]))
            raise ValueError("boom\nsecond line")
    bad_id = run.run_id
    with pytest.raises(KeyboardInterrupt):
        with child("stop"):
            raise KeyboardInterrupt
    parent.close("completed")
    parent.close("failed")  # no effect

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    df = mlflow.search_runs(experiment_names=[exp])
    assert len(df) == 5
    by_name = df.set_index("tags.mlflow.runName")
    kids = by_name.drop(index=exp)
    assert (kids["tags.mlflow.parentRunId"] == parent.run_id).all()
    assert by_name.loc[exp, "status"] == "FINISHED"
    assert by_name.loc[exp, "tags.status"] == "completed"
    expected = {
        "ok": ("FINISHED", "completed"),
        "div": ("FINISHED", "diverged"),
        "bad": ("FAILED", "failed"),
        "stop": ("KILLED", "interrupted"),
    }
    for name, (status, tag) in expected.items():
        assert (kids.loc[name, "status"], kids.loc[name, "tags.status"]) == (status, tag)
    assert kids.loc["ok", "params.model.depth"] == "3"
    assert kids.loc["ok", "params.many.k249"] == "249"
    assert kids.loc["ok", "metrics.loss/train"] == 0.5
    assert kids.loc["div", "tags.diverged_at_step"] == "7"
    assert kids.loc["bad", "tags.error"] == "ValueError: boom"

    client = MlflowClient(store)
    error_txt = Path(
        mlflow.artifacts.download_artifacts(
            run_id=bad_id, artifact_path="error.txt", tracking_uri=store, dst_path=str(tmp_path)
        )
    ).read_text()
    assert "Traceback" in error_txt and "second line" in error_txt
    art_uri = client.get_run(bad_id).info.artifact_uri
    assert art_uri.startswith(track.artifact_root_for(store))


def test_finish_rejects_unknown_status(store):
    tracker = RunTracker(store, "misc", "x", {}, {}, None).start()
    with pytest.raises(ValueError, match="completed"):
        tracker.finish("done")
    tracker.finish("completed")
    assert MlflowClient(store).get_run(tracker.run_id).info.status == "FINISHED"


def test_sweep_parent_adopts_env_id(store, tmp_path, monkeypatch):
    existing = SweepParent.open(store, "envexp", tmp_path / "a", run_name="p")
    monkeypatch.setenv(track.PARENT_ENV_VAR, existing.run_id)
    adopted = SweepParent.open(store, "envexp", tmp_path / "b", run_name="p")
    assert adopted.run_id == existing.run_id and not adopted.created
    assert (tmp_path / "b" / track.PARENT_ID_FILE).read_text().strip() == existing.run_id


def _open_parent(args):
    uri, sweep_dir = args
    return SweepParent.open(uri, "mp", Path(sweep_dir), run_name="mp").run_id


def test_sweep_parent_shared_between_processes(store, tmp_path):
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        ids = pool.map(_open_parent, [(store, str(tmp_path / "sweep"))] * 2)
    assert ids[0] == ids[1]
    assert SweepParent.open(store, "mp", tmp_path / "sweep").run_id == ids[0]
    runs = MlflowClient(store).search_runs(
        [MlflowClient(store).get_experiment_by_name("mp").experiment_id]
    )
    assert len(runs) == 1


# --------------------------------------------------------------------------- record, detail


def test_run_record_keeps_whole_rows_and_drops_a_torn_one(tmp_path):
    from lab.track import record

    rec = track.RunRecord(tmp_path).start(experiment="x", total_steps=10, log_every=1)
    rec.append(np.arange(3), {"a": np.array([1.0, 2.0, np.nan]), "b": np.zeros(3)},
               {"loss/test": 0.5})
    rec.append(np.arange(3, 5), {"a": np.array([4.0, 5.0]), "b": np.ones(2)})
    with open(tmp_path / record.ROWS_FILE, "ab") as f:  # kill -9 in the middle of a write
        f.write(b"\0" * 12)
    meta = record.read_json(tmp_path / record.RUN_FILE)
    assert meta["columns"] == ["step", "a", "b"] and meta["pid"] == os.getpid()
    steps, rows = record.read_rows(tmp_path, meta)
    assert steps.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(rows["a"], [1.0, 2.0, np.nan, 4.0, 5.0])
    assert {k: v[1].tolist() for k, v in record.read_evals(tmp_path).items()} == {
        "loss/test": [0.5]}
    rec.close(status="completed")
    assert record.read_json(tmp_path / record.RUN_FILE)["status"] == "completed"


@pytest.mark.parametrize("detail,per_run", [("full", 73 * 101), ("default", 23 * 101 + 50 * 21),
                                            ("summary", 3 * 101 + 70 * 21)])
def test_store_series_levels_keep_every_name(detail, per_run):
    """The 10x2 net, 2000 steps, log_every auto (20): ~100 points, or ~20 for coarse stats."""
    names = ["loss/train", "loss/test", "grad_norm/total"] + [
        f"{s}/layer_{l:02d}" for s in ("grad_norm", "delta_norm", "act_mean", "act_std",
                                       "saturation", "weight_norm", "update_ratio")
        for l in range(1, 11)]
    steps = np.arange(2000)
    plan = track.StorePlan(2000, 20, detail)
    series = track.store_series(plan, steps, {n: steps * 1.0 for n in names})
    contract = {n: v for n, v in series.items() if not n.startswith("Log10/")}
    assert set(contract) == set(names)
    assert sum(len(s) for s, _ in contract.values()) == per_run
    assert all(s[0] == 0 and s[-1] == 1999 for s, _ in series.values())
    # for MLflow's linear charts, at every level: log10 of each layer's dW and dZ norm, of the
    # total gradient norm and of the training loss, at every logged step
    log10 = {n: v for n, v in series.items() if n.startswith("Log10/")}
    assert len(log10) == 10 + 10 + 2 and all(len(s) == 101 for s, _ in log10.values())
    kept, values = log10["Log10/dW layer 03"]
    np.testing.assert_allclose(values[1:], np.log10(kept[1:]))  # the values were the steps
    diverged = track.store_series(plan, steps[:57], {"act_mean/layer_01": steps[:57] * 1.0},
                                  diverged_at=56)
    assert diverged["act_mean/layer_01"][0][-1] == 56
    with pytest.raises(ValueError, match="full, default, summary"):
        track.StorePlan(10, 1, "everything")


def test_direct_sqlite_metrics_match_mlflow(store):
    """The direct path writes the rows log_batch would, latest value included."""
    from mlflow.entities import Metric

    from lab.track.fastsql import SqliteMetrics, sqlite_fast_path

    path = sqlite_fast_path(store)
    assert path is not None
    client, run_id = _new_run(store)
    sink = SqliteMetrics(path)
    sink.log(run_id, [Metric("m", 3.0, 5, 2), Metric("m", 1.0, 5, 0), Metric("n", 7.0, 5, 1)])
    sink.log(run_id, [Metric("m", 0.5, 6, 1)])
    sink.close()
    assert sorted((m.step, m.value) for m in client.get_metric_history(run_id, "m")) == [
        (0, 1.0), (1, 0.5), (2, 3.0)]
    assert client.get_run(run_id).data.metrics == {"m": 3.0, "n": 7.0}


def test_direct_sqlite_path_only_for_the_tables_it_knows(tmp_path):
    """The writer writes MLflow's SQLite tables itself only where it knows them: an unknown
    experiment or another schema (here, a column MLflow might add) goes through MLflow."""
    import sqlite3

    from conftest import new_store

    from lab.track import fastsql

    uri = f"sqlite:///{tmp_path / 'known.db'}"
    client = new_store(tmp_path / "known.db")
    runs = fastsql.SqliteRuns.open(uri)
    assert runs is not None
    with pytest.raises(fastsql.NeedsMlflow):
        runs.experiment("not-created-yet")  # (no artifact location given: not created)
    location = (tmp_path / "mlartifacts" / "study").as_uri()
    exp_id, where = runs.experiment("study", location)  # created as MLflow would
    assert runs.experiment("study", location) == (exp_id, where) and where == location
    exp = client.get_experiment_by_name("study")
    assert (exp.experiment_id, exp.artifact_location, exp.lifecycle_stage) == (
        exp_id, location, "active")
    client.delete_experiment(exp_id)
    with pytest.raises(fastsql.NeedsMlflow):  # MLflow's client restores it
        runs.experiment("study", location)
    runs.close()
    other = tmp_path / "other.db"
    new_store(other)
    con = sqlite3.connect(other)
    con.execute("ALTER TABLE runs ADD COLUMN lineage TEXT")
    con.commit()
    con.close()
    assert fastsql.SqliteRuns.open(f"sqlite:///{other}") is None
    assert fastsql.SqliteRuns.open(f"sqlite:///{tmp_path / 'missing.db'}") is None
