"""Failure made boring (issue 9), with real processes and real signals: bad input ends in one
line and no run; bad data in a failed run that says why; an unreachable tracking server is
reported within 15 s; SIGINT/SIGTERM mid-run flush every computed metric and mark the run
interrupted; a failing job does not stop its sweep; parallel sweeps into one SQLite store lose
nothing; passwords in tracking URIs never reach params, tags, artifacts or the console.

Only the fault is injected (a NaN in one job's data); everything else is `python -m lab` as a
user runs it, read back through MlflowClient."""

import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    assert_store_holds_record,
    compose_config,
    new_store,
    store_steps,
    unused_port,
)
from mlflow.tracking import MlflowClient

import lab.app
import lab.build
import lab.data
from lab import signals, track
from lab.app import JobContext, run_job
from lab.train import evaluated_steps, log_steps
from lab.views import describe

REPO = Path(__file__).resolve().parent.parent
INTERRUPTED_LINE = "gradlab: interrupted; metrics so far were flushed"
LAYER_STATS = ("grad_norm", "delta_norm", "act_mean", "act_std", "saturation", "weight_norm",
               "update_ratio")
# A run long enough to be interrupted (about 1000 s in all), logging a chunk every 20 steps
LONG_RUN = ["model=mlp", "init=he", "model.width=128", "data=teacher", "data.n_train=1024",
            "train.steps=200000", "tracking.log_every=20", "tracking.figures=false"]


# --------------------------------------------------------------------------- helpers


def lab_args(tmp, *args):
    return [sys.executable, "-m", "lab", *args, f"hydra.run.dir={tmp}/run",
            f"hydra.sweep.dir={tmp}/sweep", "tracking.progress=false"]


def lab_env(store):
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}"}


def run_lab(tmp, store, *args, timeout=300):
    t0 = time.monotonic()
    done = subprocess.run(lab_args(tmp, *args), cwd=REPO, env=lab_env(store),
                          capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - t0


def start_lab(tmp, store, *args):
    # own session: a signal to the group reaches the app and its workers, like Ctrl-C does
    return subprocess.Popen(lab_args(tmp, *args), cwd=REPO, env=lab_env(store),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)



def runs_of(client, experiment):
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000) if exp else []


def children_of(client, experiment):
    return [r for r in runs_of(client, experiment) if "mlflow.parentRunId" in r.data.tags]


def wait_for_metrics(proc, client, experiment, n_runs=1, rows=5, timeout=180):
    """Block until ``n_runs`` child (or single) runs have ``rows`` loss/train values."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"lab exited early ({proc.returncode}): {err[-2000:]}")
        runs = [r for r in runs_of(client, experiment) if r.data.tags.get("sweep") != "parent"]
        if len(runs) >= n_runs and all(
                len(client.get_metric_history(r.info.run_id, "loss/train")) >= rows
                for r in runs):
            return runs
        time.sleep(0.25)
    proc.kill()
    pytest.fail("no metrics appeared in time")



def stderr_lines(done):
    return [line for line in done.stderr.splitlines() if line.strip()]


def assert_every_computed_metric_was_flushed(client, run, history_path):
    """The store holds exactly the logged steps of the saved (partial) history, for every
    metric, with the same values."""
    h = np.load(history_path)
    logged = h["hist_step"].tolist()  # every chunk starts at a logged step
    assert len(logged) >= 3  # the tests signal once 3 to 5 chunks were logged
    names = {n for n in run.data.metrics if not describe.is_ui_metric(n)}
    assert {"loss/train", "loss/test", "grad_norm/total", "grad_norm/layer_01"} <= names
    total = int(run.data.params["train.steps"])
    every = run.data.params["tracking.log_every"]
    every = every if every == "auto" else int(every)
    for name in names:
        rows = client.get_metric_history(run.info.run_id, name)
        # the test set: evaluated at some logged steps (at most ~100), every one stored
        expected = (h["eval_step"].tolist() if name.endswith("/test")
                    else store_steps(name, logged, total, every))
        assert sorted(m.step for m in rows) == expected, name
    rows = sorted(client.get_metric_history(run.info.run_id, "loss/train"), key=lambda m: m.step)
    np.testing.assert_allclose([m.value for m in rows], h["loss/train"][logged])
    return len(logged)


# --------------------------------------------------------------------------- 1. bad input

BAD_INPUT = {  # name: (overrides, text the one stderr line must contain)
    "wrong-type": (["model.depth=abc"], "could not be converted to Integer"),
    "lr-zero": (["optimizer.lr=0"], "optimizer.lr=0.0 is not valid"),
    "batch-size-negative": (["train.batch_size=-4"], "train.batch_size=-4"),
    "depth-zero": (["model.depth=0"], "model.depth=0"),
    "identity-init-non-square": (["model=mlp", "init=identity"], "needs square weight matrices"),
    "log-every-zero": (["tracking.log_every=0"], "tracking.log_every=0"),
    "batch-larger-than-data": (["train.batch_size=300"], "larger than the 256 training"),
    "empty-training-set": (["data.n_train=0"], "data.n_train=0"),
    "nan-data-noise": (["data.noise=nan"], "data.noise=nan"),
    "more-digits-than-exist": (["data=digits", "data.n_train=1500"], "1797 digits images"),
    "sweep-with-one-bad-job": (["-m", "model.width=2,3", "init=identity"],
                               "sweep job #1 (model.width=3 init=identity)"),
}
UNREACHABLE_S = 15


@pytest.fixture(scope="module")
def silent_server():
    """Accepts TCP connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory, silent_server):
    """Every bad-input case as its own `python -m lab`, three at a time (the timed ones first)."""
    store = tmp_path_factory.mktemp("bad") / "mlruns.db"
    client = new_store(store)
    cases = {
        "unreachable-closed-port": [f"tracking.uri=http://127.0.0.1:{unused_port()}"],
        "unreachable-silent-server": [f"tracking.uri={silent_server}"],
        "password-in-uri": [f"tracking.uri=http://gradlab:secret@127.0.0.1:{unused_port()}"],
        **{name: args for name, (args, _) in BAD_INPUT.items()},
    }

    def one(item):
        name, args = item
        tmp = tmp_path_factory.mktemp(name)
        return name, run_lab(tmp, store, *args, f"tracking.experiment=bad_{name}", timeout=120)

    with ThreadPoolExecutor(3) as pool:
        results = dict(pool.map(one, cases.items()))
    return client, results


@pytest.mark.parametrize("name", list(BAD_INPUT))
def test_bad_input_exits_with_one_line_and_creates_no_run(bad_runs, name):
    client, results = bad_runs
    done, _ = results[name]
    assert done.returncode == 2, done.stderr[-2000:]
    lines = stderr_lines(done)
    assert len(lines) == 1, lines
    assert lines[0].startswith("gradlab: config error: ") and BAD_INPUT[name][1] in lines[0]
    assert client.get_experiment_by_name(f"bad_{name}") is None  # no experiment, no run


@pytest.mark.parametrize("name", ["unreachable-closed-port", "unreachable-silent-server"])
def test_unreachable_tracking_server_fails_in_one_line_within_15_s(bad_runs, name):
    _, results = bad_runs
    done, seconds = results[name]
    print(f"{name}: reported after {seconds:.1f} s (whole process)")
    assert done.returncode == 2
    lines = stderr_lines(done)
    assert len(lines) == 1 and "is unreachable" in lines[0] and "make server" in lines[0], lines
    assert seconds < UNREACHABLE_S


def test_password_in_tracking_uri_never_printed(bad_runs):
    _, results = bad_runs
    done, _ = results["password-in-uri"]
    assert done.returncode == 2
    lines = stderr_lines(done)
    assert len(lines) == 1 and "gradlab:***@127.0.0.1" in lines[0], lines
    assert "secret" not in done.stderr + done.stdout


# --------------------------------------------------------------------------- bad data




@pytest.mark.parametrize("where,value", [("X_train", np.nan), ("Y_test", np.inf)])
def test_bad_data_ends_as_failed_run_that_says_why(tmp_path, monkeypatch, where, value):
    original = lab.build.make_dataset

    def corrupted(*args, **kwargs):  # the fault: a non-finite value in the data set
        ds = original(*args, **kwargs)
        getattr(ds, where)[0, 0] = value
        lab.data.check_finite(ds)  # what make_dataset does with every data set
        return ds

    monkeypatch.setattr(lab.build, "make_dataset", corrupted)
    store = tmp_path / "mlruns.db"
    client = new_store(store)
    cfg = compose_config(f"tracking.uri=sqlite:///{store}", "tracking.experiment=bad_data",
                     "tracking.figures=false", "tracking.progress=false", "train.steps=20")
    with pytest.raises(ValueError, match="non-finite"):
        run_job(cfg, JobContext(output_dir=tmp_path / "out", experiment="bad_data"))
    (run,) = runs_of(client, "bad_data")
    assert run.info.status == "FAILED" and run.data.tags["status"] == "failed"
    assert where in run.data.tags["error"] and "non-finite" in run.data.tags["error"]
    assert "error.txt" in {a.path for a in client.list_artifacts(run.info.run_id)}


# --------------------------------------------------------------------------- 2. interruptions


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_run_flushes_every_metric_and_marks_run_interrupted(tmp_path, sig):
    store = tmp_path / "mlruns.db"
    client = new_store(store)
    proc = start_lab(tmp_path, store, *LONG_RUN, "tracking.experiment=interrupt")
    (run,) = wait_for_metrics(proc, client, "interrupt")
    t0 = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    seconds = time.monotonic() - t0
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(INTERRUPTED_LINE)
    run = client.get_run(run.info.run_id)
    assert run.info.status == "KILLED" and run.data.tags["status"] == "interrupted"
    assert "history.npz" in {a.path for a in client.list_artifacts(run.info.run_id)}
    n = assert_every_computed_metric_was_flushed(client, run, tmp_path / "run" / "history.npz")
    print(f"{sig.name}: {n} logged steps flushed; exit {seconds:.2f} s after the signal")


def test_interrupted_sweep_closes_parent_and_starts_no_later_job(tmp_path):
    store = tmp_path / "mlruns.db"
    client = new_store(store)
    proc = start_lab(tmp_path, store, "-m", *LONG_RUN, "seed=0,1,2",
                     "tracking.experiment=interrupt_sweep")
    (run,) = wait_for_metrics(proc, client, "interrupt_sweep")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    runs = runs_of(client, "interrupt_sweep")
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    assert parent.info.status == "KILLED" and parent.data.tags["status"] == "interrupted"
    (child,) = [r for r in runs if "mlflow.parentRunId" in r.data.tags]  # no later job ran
    assert child.info.run_id == run.info.run_id and child.info.status == "KILLED"
    assert not (tmp_path / "sweep" / "1").exists()
    assert_every_computed_metric_was_flushed(client, child, tmp_path / "sweep" / "0" / "history.npz")


@pytest.mark.slow
@pytest.mark.parametrize("sig,to_group", [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["ctrl-c-to-the-group", "sigterm-to-the-launcher"])
def test_interrupted_joblib_sweep_saves_every_running_job(tmp_path, sig, to_group):
    """The launching process asks its workers to save their runs; later jobs never start."""
    store = tmp_path / "mlruns.db"
    client = new_store(store)
    proc = start_lab(tmp_path, store, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                     *LONG_RUN, "seed=0,1,2,3", "tracking.experiment=interrupt_joblib")
    running = wait_for_metrics(proc, client, "interrupt_joblib", n_runs=2, rows=3)
    if to_group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    runs = runs_of(client, "interrupt_joblib")
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    assert parent.info.status == "KILLED" and parent.data.tags["status"] == "interrupted"
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert {r.info.run_id for r in children} == {r.info.run_id for r in running}
    for child in children:
        assert child.info.status == "KILLED" and child.data.tags["status"] == "interrupted"
        job = child.data.params["seed"]
        assert_every_computed_metric_was_flushed(client, child,
                                                 tmp_path / "sweep" / job / "history.npz")


def loky_workers(pid):
    """Pids of the joblib (loky) worker processes of process ``pid`` (not its resource
    tracker)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int(proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and b"popen_loky" in proc.joinpath("cmdline").read_bytes():
                found.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


# a job of a few seconds: long enough to kill a worker in the middle of it
WORKER_RUN = ["model=mlp", "init=he", "model.width=64", "data=teacher", "train.steps=6000",
              "tracking.log_every=20", "tracking.figures=false"]


@pytest.mark.slow
def test_killed_joblib_worker_ends_the_sweep_in_one_line(tmp_path):
    """kill -9 of one worker: the other worker finishes its run (completed, every value, its
    history.npz), no later job starts, the dead worker's run is closed as lost with what its
    directory recorded; one line and exit 1, not joblib's TerminatedWorkerError traceback."""
    store = tmp_path / "mlruns.db"
    client = new_store(store)
    proc = start_lab(tmp_path, store, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                     *WORKER_RUN, "seed=0,1,2", "tracking.experiment=worker_killed")
    wait_for_metrics(proc, client, "worker_killed", n_runs=2, rows=3)
    victim = loky_workers(proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("gradlab")]
    assert len(lines) == 1 and "worker process of the sweep died" in lines[0], err[-2000:]
    children = children_of(client, "worker_killed")
    assert len(children) == 2  # the third job never started
    by_pid = {int(r.data.tags["gradlab.pid"]): r for r in children}
    dead = by_pid.pop(victim)
    (alive,) = by_pid.values()
    assert (dead.info.status, dead.data.tags["status"]) == ("KILLED", "lost")
    assert (alive.info.status, alive.data.tags["status"]) == ("FINISHED", "completed")
    for run in children:
        run_dir = Path(run.data.tags["gradlab.run_dir"])
        assert (run_dir / "history.npz").exists()  # the lost one's rebuilt from its record
        assert_store_holds_record(client, run.info.run_id, run_dir)
    parent = client.get_run(alive.data.tags["mlflow.parentRunId"])
    assert parent.info.status != "RUNNING"


FAULTY_DATA = """
import runpy, sys
import numpy as np
import lab.build, lab.data
_original = lab.build.make_dataset

def make_dataset(*args, seed=0, **kwargs):  # the injected fault: seed 1's data has a NaN
    ds = _original(*args, seed=seed, **kwargs)
    if seed == 1:
        ds.X_train[0, 0] = np.nan
        lab.data.check_finite(ds)
    return ds

lab.build.make_dataset = make_dataset
runpy.run_module("lab", run_name="__main__", alter_sys=True)
"""


def test_failing_job_is_recorded_failed_and_its_sweep_goes_on(tmp_path):
    store = tmp_path / "mlruns.db"
    client = new_store(store)
    script = tmp_path / "faulty_data.py"
    script.write_text(FAULTY_DATA)
    args = lab_args(tmp_path, "-m", "seed=0,1,2", "train.steps=50", "tracking.figures=false",
                    "tracking.experiment=failing_job")
    done = subprocess.run([sys.executable, str(script), *args[3:]], cwd=REPO,
                          env=lab_env(store), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]  # a failed run, not a crash
    assert "Traceback" not in done.stderr
    runs = runs_of(client, "failing_job")
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    assert parent.info.status == "FINISHED" and parent.data.tags["jobs_failed"] == "1"
    assert parent.data.tags["jobs_completed"] == "2"
    by_seed = {r.data.params["seed"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert sorted(by_seed) == ["0", "1", "2"]  # the job after the failure ran
    failed = by_seed["1"]
    assert failed.info.status == "FAILED" and failed.data.tags["status"] == "failed"
    assert "non-finite" in failed.data.tags["error"]
    error_txt = client.download_artifacts(failed.info.run_id, "error.txt", str(tmp_path))
    assert "ValueError" in Path(error_txt).read_text()
    for seed in ("0", "2"):
        assert by_seed[seed].info.status == "FINISHED"
        assert by_seed[seed].data.tags["status"] == "completed"


# --------------------------------------------------------------------------- 3. concurrency

METRICS_PER_STEP = 3 + len(LAYER_STATS) * 10  # loss/train, loss/test, grad_norm/total + layers


@pytest.mark.slow
def test_two_parallel_sweeps_into_one_sqlite_store_lose_nothing(tmp_path):
    """Two sweeps started at once, joblib with 2 processes each, one SQLite store: every run
    and every metric value (logged steps x metric names) is there."""
    store = tmp_path / "mlruns.db"  # new: both sweeps also race to create its schema
    steps, log_every, jobs = 1000, 10, 4  # 2 x 4 jobs on 2 x 2 processes, all writing at once
    sweeps = []
    for name in ("a", "b"):
        tmp = tmp_path / name
        args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"train.steps={steps}",
                f"tracking.log_every={log_every}", "tracking.figures=false", "init=identity",
                "init.gain=" + ",".join(f"{0.8 + 0.05 * i:.2f}" for i in range(jobs)),
                "tracking.experiment=stress"]
        sweeps.append(subprocess.Popen(lab_args(tmp, *args), cwd=REPO, env=lab_env(store),
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True))
    retries = 0
    for proc in sweeps:
        out, err = proc.communicate(timeout=1200)
        assert proc.returncode == 0, err[-3000:]
        retries += (out + err).count("retrying in")  # "database is locked", retried by lab.track
    client = MlflowClient(f"sqlite:///{store}")
    runs = runs_of(client, "stress")
    parents = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 2 and len(children) == 2 * jobs
    logged = log_steps(steps, log_every)
    expected = found = 0
    with sqlite3.connect(store) as con:  # every run's values in one query (the client: one call
        stored = dict(((run, key), n) for run, key, n in con.execute(  # per metric and run)
            "SELECT run_uuid, key, count(*) FROM metrics GROUP BY run_uuid, key"))
    for run in children:
        assert run.info.status == "FINISHED" and run.data.tags["status"] == "completed"
        contract = [n for n in run.data.metrics if not describe.is_ui_metric(n)]
        assert len(contract) == METRICS_PER_STEP
        for name in contract:
            # the test set is evaluated at most ~100 times a run, every value stored
            expected += (len(evaluated_steps(logged)) if name.endswith("/test")
                         else len(store_steps(name, logged, steps, log_every)))
            found += stored.get((run.info.run_id, name), 0)
    print(f"metric rows expected {expected}, found {found}; store calls retried: {retries}")
    assert found == expected


# --------------------------------------------------------------------------- 5. security


def test_passwords_in_uris_are_masked_in_params_tags_and_logs(tmp_path, caplog):
    secret_uri = "http://gradlab:secret@127.0.0.1:5001"
    params = track.flatten_params({"tracking": {"uri": secret_uri}, "x": [secret_uri]})
    assert params["tracking.uri"] == "http://gradlab:***@127.0.0.1:5001"
    assert "secret" not in str(params)
    assert track.mask_uri("postgresql://u:p@ss@h:5432/db") == "postgresql://u:***@h:5432/db"
    hydra_log = r"#0 : tracking.uri=http\://gradlab\:secret@127.0.0.1\:5001"  # Hydra escapes ":"
    assert track.mask_uri(hydra_log) == r"#0 : tracking.uri=http\://gradlab\:***@127.0.0.1\:5001"
    # tags and the error line of a failed run
    store = f"sqlite:///{tmp_path}/mlruns.db"
    client = new_store(tmp_path / "mlruns.db")
    with pytest.raises(RuntimeError), track.RunTracker(store, "masking", tags={"note": secret_uri}):
        raise RuntimeError(f"could not reach {secret_uri}")
    (run,) = runs_of(client, "masking")
    assert "secret" not in str(run.data.tags) and "gradlab:***@" in run.data.tags["note"]
    # every log record, whoever logs it
    track.mask_log_records()
    with caplog.at_level(logging.INFO):
        logging.getLogger("some.library").info("connecting to %s", secret_uri)
    assert "secret" not in caplog.text and "gradlab:***@127.0.0.1" in caplog.text


def test_config_artifact_masks_the_tracking_password(tmp_path):
    cfg = compose_config("tracking.enabled=false", "tracking.progress=false",
                     "train.steps=5", "tracking.uri=http://gradlab:secret@127.0.0.1:5001")
    run_job(cfg, JobContext(output_dir=tmp_path / "out"))
    text = (tmp_path / "out" / "config.yaml").read_text()
    assert "gradlab:***@127.0.0.1" in text and "secret" not in text


def test_mlflow_limits_copied_into_track_still_hold():
    from mlflow.utils import validation

    for name in ("MAX_METRICS_PER_BATCH", "MAX_PARAMS_TAGS_PER_BATCH", "MAX_PARAM_VAL_LENGTH",
                 "MAX_TAG_VAL_LENGTH"):
        assert getattr(track, name) == getattr(validation, name, getattr(track, name)), name


def test_signal_inside_interrupt_guard_waits_for_the_block():
    """What keeps history.npz and the store in step: a chunk is recorded whole or not at all."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        signals.install_interrupt_handlers()
        done = []
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"), signals.interrupt_guard():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler has run by now, and deferred the interrupt
            done.append("rest of the block")
        assert done == ["rest of the block"]
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
