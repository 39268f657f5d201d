"""Fixtures and helpers shared by the test files."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent

# CPU kernels and the numpy reference must agree everywhere; CUDA has its own (simulator) tests.
CPU_BACKENDS = ["numpy", "cpu"]


@pytest.fixture(params=CPU_BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# Seconds each heavy file took with numba's cache empty (`make test`, 3 workers on 2 cores,
# --durations=0: the time under the suite's own contention). pytest-xdist hands files to
# workers in collection order (the Makefile turns off its reordering by test count): longest
# first, so no long file starts last and leaves the other cores idle. Files not listed are
# short and run after these.
FILE_SECONDS = {
    "test_cluster.py": 184, "test_reliability.py": 165, "test_sync.py": 163, "test_cuda.py": 153,
    "test_parallel_chunk.py": 42, "test_ui_browser.py": 41, "test_config.py": 29,
    "test_bench.py": 25, "test_studies.py": 18, "test_app.py": 17, "test_track.py": 11,
    "test_backends_agree.py": 6,
}


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: -FILE_SECONDS.get(item.path.name, 0))  # stable: same file order


def pytest_configure(config):
    # keep Hydra/MLflow from writing into the repo during tests that forget tmp paths
    os.environ.setdefault("MLFLOW_TRACKING_URI", "sqlite:///" + os.path.join(
        os.environ.get("PYTEST_TMPDIR", "/tmp"), "gradlab-pytest-mlruns.db"))


def unused_port():
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_empty_store = []  # this test process's store with MLflow's schema and nothing else


def new_store(path):
    """A client of a new SQLite store at ``path`` with its schema created (so a reader never
    races the app's creation of it). The schema is MLflow's own, made once per test process
    and copied (MLflow's migrations cost ~2 s of CPU a store); the app's own creation of a
    store is tested where a test runs it on a path that does not exist yet."""
    from mlflow.tracking import MlflowClient

    from lab import track

    if not _empty_store:
        empty = Path(tempfile.mkdtemp(prefix="gradlab-empty-store-")) / "mlruns.db"
        track.ensure_store(f"sqlite:///{empty}")
        _empty_store.append(empty)
    shutil.copyfile(_empty_store[0], path)
    uri = f"sqlite:///{path}"
    track.ensure_store(uri)  # (finds the schema: checks the file, creates nothing)
    return MlflowClient(uri)


def compose_config(*overrides):
    """The resolved config (a plain dict) that ``python -m lab OVERRIDES`` would run."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from lab.schema import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


def networks(backends, **kwargs):
    """The same network (same seed, same parameters) on each of ``backends``."""
    import lab

    return [lab.Network(backend=b, **kwargs) for b in backends]


def run_lab(args, store, tmp, timeout=300, env=None):
    """``python -m lab ARGS`` in a subprocess writing to the SQLite file ``store`` with its
    run and sweep directories under ``tmp``; the CompletedProcess (stdout, stderr captured)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "lab", *args, f"hydra.run.dir={tmp}/run",
         f"hydra.sweep.dir={tmp}/sweep", "tracking.progress=false"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@dataclass
class Sweep:
    """A finished sweep in its own SQLite store."""

    store: Path  # the SQLite file
    uri: str
    directory: Path  # the sweep directory (job directories 0, 1, ...)
    process: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def identity_sweep(tmp_path_factory, worker_id):
    """One small study for the whole test run: the lecture's 10x2 identity net at gains
    0.5, 0.9, 1.0, 1.1, 1.5 (1.5 diverges), 200 steps, figures on, into a fresh store.
    Tests read it; none may write to it. Under pytest-xdist the first worker that needs it
    makes it, the others wait for it and read the same one (a sweep with its figures is ~20 s
    of CPU)."""
    import json

    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent  # the run's temporary directory, above every worker's own
    tmp, marker = root / "identity_sweep", root / "identity_sweep.json"
    store = tmp / "mlruns.db"
    with FileLock(str(root / "identity_sweep.lock")):
        if marker.exists():
            done = subprocess.CompletedProcess(**json.loads(marker.read_text()))
            return Sweep(store, f"sqlite:///{store}", tmp / "sweep", done)
        shutil.rmtree(tmp, ignore_errors=True)  # (what a failed attempt left)
        tmp.mkdir()
        done = run_lab(["-m", "+experiment=exploding_identity", "train.steps=200"], store, tmp)
        assert done.returncode == 0, done.stderr[-3000:]
        sweep = Sweep(store, f"sqlite:///{store}", tmp / "sweep", done)
        _wait_for_figures(sweep)
        marker.write_text(json.dumps({"args": done.args, "returncode": done.returncode,
                                      "stdout": done.stdout, "stderr": done.stderr}))
        return sweep


FIGURES_PER_RUN = 5  # lab.views.training's run figures (loss, gradients, activations)


def _wait_for_figures(sweep, timeout=180):
    """Figures are drawn off the critical path, the last ones after the sweep's process has
    exited: wait until every child run holds its figures and the parent its comparison (drawn
    last), so readers see a finished sweep."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(sweep.uri)
    exp = client.get_experiment_by_name("exploding_identity")
    deadline = time.monotonic() + timeout
    while True:
        runs = client.search_runs([exp.experiment_id])
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        drawn = [len(client.list_artifacts(r.info.run_id, "figures")) for r in children]
        compared = [len(client.list_artifacts(r.info.run_id, "figures")) for r in runs
                    if r.data.tags.get("sweep") == "parent"]
        if drawn and min(drawn) >= FIGURES_PER_RUN and compared and min(compared) >= 1:
            return
        assert time.monotonic() < deadline, f"figures per child after {timeout} s: {drawn}"
        time.sleep(0.5)


def store_steps(name, logged_steps, total_steps, log_every="auto", detail="default"):
    """Steps at which the store holds metric ``name`` of a run whose chunks started at
    ``logged_steps`` (what :mod:`lab.track.detail` selects at ``tracking.detail``)."""
    from lab.app import log_every_steps
    from lab.track.detail import StorePlan

    plan = StorePlan(total_steps, log_every_steps(total_steps, log_every), detail)
    steps = np.asarray(logged_steps)
    fine, coarse = plan.masks(steps)
    return steps[fine if plan.is_fine(name) else coarse].tolist()


def store_view(client, experiment, metrics=None):
    """What a store holds of an experiment, by run uid (ids differ between stores): name,
    status, params, tags (without MLflow's own but the run name), parent's uid, the number of
    values of each metric (of ``metrics`` only, if given: one call per metric and run), artifact
    paths. Two stores holding the same runs give equal views."""
    import sqlite3

    from lab.track import read

    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    uid_of = {r.info.run_id: r.data.tags["gradlab.uid"] for r in runs}
    counted = {}  # a SQLite store's counts in one query (MLflow's client: one call per metric)
    if client.tracking_uri.startswith("sqlite:///"):
        con = sqlite3.connect(client.tracking_uri[len("sqlite:///"):])
        for run_id, key, n in con.execute("SELECT run_uuid, key, count(*) FROM metrics "
                                          "GROUP BY run_uuid, key"):
            counted[(run_id, key)] = n
        con.close()
    out = {}
    for r in runs:
        parent = r.data.tags.get("mlflow.parentRunId")
        tags = {k: v for k, v in r.data.tags.items() if k != "mlflow.parentRunId"
                and not k.startswith("mlflow.") or k == "mlflow.runName"}
        counts = {k: counted.get((r.info.run_id, k))
                  or len(client.get_metric_history(r.info.run_id, k)) for k in r.data.metrics
                  if metrics is None or k in metrics}
        counts["names"] = sorted(r.data.metrics)
        out[uid_of[r.info.run_id]] = (r.info.run_name, r.info.status, r.data.params, tags,
                                      uid_of[parent] if parent else None, counts,
                                      read.artifact_paths(client, r.info.run_id))
    return out


def assert_store_holds_record(client, run_id, run_dir):
    """Every value the record says the store should hold is there, nothing else."""
    from lab import track
    from lab.track import record

    meta = record.read_json(run_dir / record.RUN_FILE)
    steps, rows = record.read_rows(run_dir, meta)
    plan = track.StorePlan(meta["total_steps"], meta["log_every"], meta["detail"])
    series = track.store_series(plan, steps, rows, record.read_evals(run_dir),
                                meta.get("diverged_at_step"))
    total = 0
    for name, (s, v) in series.items():
        want = sorted(int(x) for x, y in zip(s, v) if np.isfinite(y))
        got = sorted(m.step for m in client.get_metric_history(run_id, name))
        assert got == want, name
        total += len(want)
    return total
