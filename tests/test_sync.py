"""The run directory is the record, the store a copy made complete by `python -m lab.sync`
(issue 13): real stores, real processes. kill -9 then sync; a sweep synced into an empty
second store; a store locked longer than the retry budget; read-only and corrupt stores; two
sweeps started in the same second."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_store_holds_record, new_store, store_view
from mlflow.tracking import MlflowClient

from lab import track
from lab.track import fastsql, read, record
from lab.track import sync as sync_mod

REPO = Path(__file__).resolve().parent.parent
# the 10x2 identity net: 200000 steps train in seconds; a chunk every 20 steps
SMALL_RUN = ["train.steps=3000", "tracking.log_every=20", "tracking.figures=false",
             "tracking.progress=false"]


def lab(tmp, store, *args, wait=True, env=None, timeout=300):
    cmd = [sys.executable, "-m", "lab", *args, f"hydra.run.dir={tmp}/run",
           f"hydra.sweep.dir={tmp}/sweep", "tracking.progress=false"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}", **(env or {})}
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def sync(store, *paths, extra=()):
    return subprocess.run([sys.executable, "-m", "lab.sync", *map(str, paths), "--uri",
                           f"sqlite:///{store}", *extra], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def wait_for_rows(run_dir, n_rows, proc, timeout=120, stored=True):
    """The record once it has ``n_rows`` rows (and, ``stored``, once the writer has created its
    run in the store)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        meta = record.read_run(run_dir)  # the run's id comes from its writer
        if meta and meta.get("columns") and (meta.get("run_id") or not stored):
            steps, _ = record.read_rows(run_dir, meta)
            if steps.size >= n_rows:
                return meta
        if proc.poll() is not None:
            pytest.fail(f"lab exited early: {proc.stderr.read()[-2000:]}")
        time.sleep(0.1)
    pytest.fail("no rows appeared in the run directory")


def kill_9_with_its_writer(proc):
    """kill -9 of a run's process and of its store writer (a crash of the machine, say):
    nothing of the lab is left to close the run."""
    writers = [int(p.name) for p in Path("/proc").glob("[0-9]*")
               if _ppid(p) == proc.pid and b"sweep_writer" in _cmdline(p)]
    for pid in [proc.pid, *writers]:
        os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert writers, "no writer process found"


def _ppid(proc_dir):
    try:
        return int(proc_dir.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _cmdline(proc_dir):
    try:
        return proc_dir.joinpath("cmdline").read_bytes()
    except OSError:
        return b""


def test_kill_9_then_sync_closes_the_run_as_lost_and_loses_nothing(tmp_path):
    store = tmp_path / "mlruns.db"
    client = new_store(store)
    proc = lab(tmp_path, store, *SMALL_RUN, "train.steps=200000", "tracking.experiment=kill9",
               wait=False)
    run_dir = tmp_path / "run"
    meta = wait_for_rows(run_dir, 200, proc)
    kill_9_with_its_writer(proc)
    run_id = meta["run_id"]
    assert client.get_run(run_id).info.status == "RUNNING"  # what kill -9 leaves behind
    # what the next run's writer sees, without MLflow, before it repairs the store as below
    runs = fastsql.SqliteRuns.open(f"sqlite:///{store}")
    found = {rid: (tags, start) for rid, tags, start in runs.open_runs("gradlab.host",
                                                                      record.HOST)}
    runs.close()
    assert run_id in found and sync_mod.gone(*found[run_id])
    done = sync(store, extra=["--repair"])  # finds it by this host's RUNNING runs
    assert done.returncode == 0, done.stderr
    assert "1 runs closed (1 as lost)" in done.stdout, done.stdout
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["status"] == "lost"
    n = assert_store_holds_record(client, run_id, run_dir)
    assert n > 100
    assert {"config.yaml", "history.npz"} <= {a.path for a in client.list_artifacts(run_id)}
    again = sync(store, run_dir)
    assert "0 metric values and 0 artifacts added, 0 runs closed" in again.stdout, again.stdout
    assert "already held everything" in again.stdout


def wait_for_end(client, run_id, timeout=120):
    deadline = time.monotonic() + timeout
    while client.get_run(run_id).info.status == "RUNNING":
        assert time.monotonic() < deadline, f"run {run_id} still RUNNING after {timeout} s"
        time.sleep(0.2)
    return client.get_run(run_id)


@pytest.mark.slow
def test_kill_9_of_a_sweep_launcher_its_writer_closes_everything_as_lost(tmp_path):
    """The sweep's writer process outlives its launcher: it stores what the record holds and
    closes the child and the parent as lost; a repair afterwards finds nothing to do."""
    store = tmp_path / "mlruns.db"
    client = new_store(store)  # (with MLflow's schema: the writer takes the direct SQLite path)
    proc = lab(tmp_path, store, "-m", *SMALL_RUN, "train.steps=200000", "seed=0,1",
               "tracking.experiment=repair", wait=False)
    run_dir = tmp_path / "sweep" / "0"
    meta = wait_for_rows(run_dir, 100, proc)
    proc.send_signal(signal.SIGKILL)  # the launcher, and with it the job it was running
    proc.wait(timeout=30)
    child = wait_for_end(client, meta["run_id"])
    parent = wait_for_end(client, child.data.tags["mlflow.parentRunId"])
    assert (child.info.status, child.data.tags["status"]) == ("KILLED", "lost")
    assert (parent.info.status, parent.data.tags["status"]) == ("KILLED", "lost")
    assert (run_dir / "history.npz").exists()  # rebuilt from the record
    assert_store_holds_record(client, meta["run_id"], run_dir)
    assert not (tmp_path / "sweep" / "1").exists()  # no later job ran
    deadline = time.monotonic() + 30  # the writer exits once it has closed the parent
    while sync_mod.being_written(tmp_path / "sweep"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    done = sync(store, extra=["--repair"])
    assert done.returncode == 0, done.stderr
    again = sync(store, tmp_path / "sweep")
    assert "0 metric values and 0 artifacts added, 0 runs closed" in again.stdout, again.stdout


def test_sync_of_a_sweep_into_an_empty_store_copies_it_whole(identity_sweep, tmp_path):
    """The session's identity sweep (a parent, five children, one diverged) copied from its
    run directories into a second, empty store: the same runs, names, params, tags,
    parent/child structure, metric counts and artifacts."""
    a = MlflowClient(identity_sweep.uri)
    second = tmp_path / "second.db"
    done = sync(second, identity_sweep.directory)
    assert done.returncode == 0, done.stderr
    assert "6 runs created" in done.stdout, done.stdout
    b = MlflowClient(f"sqlite:///{second}")

    va, vb = store_view(a, "exploding_identity"), store_view(b, "exploding_identity")
    assert len(va) == 6 and va.keys() == vb.keys()
    for uid in va:
        assert va[uid] == vb[uid], uid
    assert any(t[3].get("status") == "diverged" for t in va.values())
    assert sum(bool(t[4]) for t in vb.values()) == 5  # five children of one parent
    again = sync(second, identity_sweep.directory)
    assert "0 runs created, 0 metric values and 0 artifacts added" in again.stdout


def test_read_only_and_corrupt_stores_fail_in_one_line_within_seconds(tmp_path):
    ro = tmp_path / "ro.db"
    new_store(ro)
    ro.chmod(0o444)
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database" * 1000)
    for store, word in ((ro, "read-only"), (bad, "corrupt")):
        t0 = time.monotonic()
        done = lab(tmp_path, store, "train.steps=50")
        seconds = time.monotonic() - t0
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        assert done.returncode == 2, done.stderr
        assert len(lines) == 1 and word in lines[0] and "Traceback" not in done.stderr, lines
        assert seconds < 30, seconds


def run_to_the_end_with_the_store_locked(proc, store):
    """Hold the SQLite store's write lock (another connection) until ``proc`` has exited; it
    must exit 3 without a traceback. Returns its ``gradlab`` lines on stderr."""
    con = sqlite3.connect(str(store), timeout=30)
    con.execute("BEGIN IMMEDIATE")
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        con.rollback()
        con.close()
    assert "Traceback" not in err
    assert proc.returncode == 3, err[-2000:]
    return [ln for ln in err.splitlines() if ln.startswith("gradlab")]


@pytest.mark.slow
def test_store_locked_longer_than_the_retry_budget_then_sync(tmp_path):
    """Another connection holds the write lock until the run's process has exited (the writer
    waits 5 s per call and retries for 1 s here): the run trains on, exits 3 with one line,
    and sync completes it once the lock is gone. (A fixed lock time made the test depend on
    the machine's load: a slow run outlived the lock and stored everything.) The writer takes
    the direct SQLite path (joblib workers' MLflow clients meeting locks: tests/test_reliability.py)."""
    store = tmp_path / "mlruns.db"
    client = new_store(store)
    proc = lab(tmp_path, store, "train.steps=100000", "tracking.log_every=500",
               "tracking.figures=false", "tracking.experiment=locked",
               wait=False, env={"GRADLAB_STORE_RETRY_S": "1"})
    run_dir = tmp_path / "run"
    meta = wait_for_rows(run_dir, 1, proc, stored=False)  # training: lock the store now
    lines = run_to_the_end_with_the_store_locked(proc, store)
    assert len(lines) == 1 and "lab.sync" in lines[0] and str(run_dir) in lines[0], lines
    exp = client.get_experiment_by_name("locked")
    found = read.run_by_uid(client, exp.experiment_id, meta["uid"]) if exp else None
    # the writer may have created the run before the lock, never ended it
    assert found is None or found.data.tags["status"] in ("incomplete", "running")
    done = sync(store, run_dir)
    assert done.returncode == 0, done.stderr
    exp = client.get_experiment_by_name("locked")
    run = read.run_by_uid(client, exp.experiment_id, meta["uid"])
    meta["run_id"] = run.info.run_id
    assert run.info.status == "FINISHED" and run.data.tags["status"] == "completed"
    assert "missing_values" not in run.data.tags
    assert_store_holds_record(client, meta["run_id"], run_dir)


@pytest.mark.slow
def test_two_sweeps_started_in_the_same_second_never_share_a_directory(tmp_path):
    store = tmp_path / "mlruns.db"
    new_store(store)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}"}
    cmd = [sys.executable, "-m", "lab", "-m", "train.steps=50", "seed=0,1",
           "tracking.figures=false", "tracking.progress=false", "tracking.experiment=twins",
           f"hydra.sweep.dir={tmp_path}/multirun/${{now:%H-%M-%S}}-${{gradlab_pid:}}"]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    sweeps = sorted((tmp_path / "multirun").iterdir())
    assert len(sweeps) == 2
    parents = {(d / track.PARENT_ID_FILE).read_text().strip() for d in sweeps}
    assert len(parents) == 2
    for d in sweeps:
        metas = [json.loads((d / str(j) / "run.json").read_text()) for j in (0, 1)]
        assert len({m["pid"] for m in metas}) == 1  # each job dir written by one sweep only


def test_the_direct_sqlite_path_stores_a_sweep_as_mlflows_client_does(tmp_path):
    """The writer writes MLflow's SQLite tables itself (no MLflow import): a study stored that
    way is exactly the study stored through MLflow's client (``tracking.sqlite_direct=false``):
    runs, names, statuses, params, tags, parent, metric counts, artifacts; MLflow reads every
    value back, and a sync finds nothing to add."""
    views = {}
    for way, direct in (("client", "false"), ("direct", "true")):
        store = tmp_path / f"{way}.db"
        # two of the study's five gains: a run that trains and one that diverges at step 1
        done = lab(tmp_path / way, store, "-m", "+experiment=exploding_identity",
                   "init.gain=0.5,1.5", "train.steps=200", "tracking.figures=false",
                   f"tracking.sqlite_direct={direct}")
        assert done.returncode == 0, done.stderr[-2000:]
        log = (tmp_path / way / "sweep" / "store-writer.log").read_text()
        assert ("writing MLflow's SQLite tables directly" in log) == (way == "direct"), log
        client = MlflowClient(f"sqlite:///{store}")
        by_name = {}
        for name, status, params, tags, parent, counts, files in store_view(
                client, "exploding_identity").values():
            for where in ("gradlab.uid", "gradlab.pid", "gradlab.run_dir", "sweep_dir"):
                tags.pop(where, None)
            for key in ("tracking.uri", "tracking.sqlite_direct"):
                params.pop(key, None)
            by_name[name] = (status, params, tags, bool(parent), counts, files)
        views[way] = by_name
        ours = client.search_runs([client.get_experiment_by_name("exploding_identity")
                                   .experiment_id], "tags.mlflow.parentRunId != ''")
        assert len(ours) == 2
        for run in ours if way == "direct" else ():  # (the same counts by name: below)
            assert_store_holds_record(client, run.info.run_id,
                                      Path(run.data.tags["gradlab.run_dir"]))
    assert len(views["direct"]) == 3 and views["direct"].keys() == views["client"].keys()
    for name, a in views["direct"].items():
        for what, x, y in zip(("status", "params", "tags", "parent", "values", "files"), a,
                              views["client"][name]):
            assert x == y, (name, what)
    again = sync(tmp_path / "direct.db", tmp_path / "direct" / "sweep")
    assert "0 runs created, 0 metric values and 0 artifacts added, 0 runs closed" in again.stdout
