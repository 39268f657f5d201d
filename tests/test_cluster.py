"""Past one machine (issue 9): a study on a local Ray instance through Hydra's Ray launcher,
one through the submitit launcher (SLURM's, on its local executor), and a parallel sweep into an MLflow tracking server whose backend store is a real PostgreSQL
server, started here on a temporary data directory. Both are `slow`; each skips with the
reason when its software is missing (`pip install -e '.[ray]'`; Debian's `postgresql`, which
.ci/run installs, and psycopg 3 from the dev/postgres extras)."""

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import store_steps, store_view, unused_port
from mlflow.tracking import MlflowClient

from lab import track
from lab.train import log_steps
from lab.views import describe

REPO = Path(__file__).resolve().parent.parent
LAYER_STATS = ("grad_norm", "delta_norm", "act_mean", "act_std", "saturation", "weight_norm",
               "update_ratio")
METRICS_PER_STEP = 3 + len(LAYER_STATS) * 10  # the 10-layer identity net, mse: no accuracy
pytestmark = pytest.mark.slow



def lab_sweep(tmp, env, *args, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "lab", "-m", *args, f"hydra.sweep.dir={tmp}/sweep",
         "tracking.progress=false", "tracking.figures=false"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def assert_sweep_lost_nothing(client, experiment, n_jobs, steps):
    """One parent, ``n_jobs`` finished children, every metric at every logged step."""
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == n_jobs
    logged = log_steps(steps, "auto")
    found = expected = 0
    for run in children:
        assert run.info.status == "FINISHED" and run.data.tags["status"] == "completed"
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        contract = [n for n in run.data.metrics if not describe.is_ui_metric(n)]
        assert len(contract) == METRICS_PER_STEP
        for name in contract:
            expected += len(store_steps(name, logged, steps))
            found += len(client.get_metric_history(run.info.run_id, name))
    assert found == expected
    return runs


def listening_addresses(port):
    """Local addresses with a TCP socket listening on ``port`` (from /proc, no traffic)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                if width == 8:
                    found.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
                else:
                    found.add(addr)
    return found


# --------------------------------------------------------------------------- Ray


def test_ray_launcher_runs_a_study_on_a_local_ray_instance(tmp_path):
    pytest.importorskip("ray", reason="ray is not installed: pip install -e '.[ray]'")
    pytest.importorskip("hydra_plugins.hydra_ray_launcher.ray_launcher",
                        reason="hydra-ray-launcher is not installed: pip install -e '.[ray]'")
    store = tmp_path / "mlruns.db"
    track.ensure_store(f"sqlite:///{store}")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}",
           "RAY_USAGE_STATS_ENABLED": "0"}
    done = lab_sweep(tmp_path, env, "hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2",
                     "+hydra.launcher.ray.init.include_dashboard=false", "train.steps=200",
                     "init=identity", "init.gain=0.8,0.9,1.1", "tracking.experiment=ray_study")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "_run_job pid=" in done.stdout + done.stderr  # the jobs ran in Ray workers
    assert_sweep_lost_nothing(MlflowClient(f"sqlite:///{store}"), "ray_study", 3, 200)


def test_submitit_launcher_runs_a_study_as_separate_jobs(tmp_path):
    """The SLURM route (hydra/launcher=submitit_slurm) with submitit's local executor: the
    same pickled jobs, run as separate processes that submitit starts and watches."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher.submitit_launcher",
                        reason="hydra-submitit-launcher is not installed: "
                               "pip install -e '.[slurm]'")
    store = tmp_path / "mlruns.db"
    track.ensure_store(f"sqlite:///{store}")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}"}
    done = lab_sweep(tmp_path, env, "hydra/launcher=submitit_local",
                     "hydra.launcher.cpus_per_task=1", "train.steps=200", "init=identity",
                     "init.gain=0.8,0.9,1.1", "tracking.experiment=submitit_study")
    assert done.returncode == 0, done.stderr[-3000:]
    assert list((tmp_path / "sweep" / ".submitit").glob("*/*_result.pkl"))  # submitit's jobs
    assert_sweep_lost_nothing(MlflowClient(f"sqlite:///{store}"), "submitit_study", 3, 200)


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bin():
    found = shutil.which("initdb", path=os.pathsep.join(
        [*sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True), os.environ["PATH"]]))
    return Path(found).parent if found else None


class Postgres:
    """A throwaway PostgreSQL server on 127.0.0.1 (as user postgres when run as root, since
    initdb refuses root). Password auth over TCP; the password is kept out of URIs."""

    def __init__(self, bin_dir, password):
        self.bin, self.password, self.port = bin_dir, password, unused_port()
        self.dir = Path(tempfile.mkdtemp(prefix="gradlab-pg-"))  # not under 0700 pytest dirs
        self.run_as = []
        if os.geteuid() == 0:
            import pwd
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root without a 'postgres' user for initdb")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self.data = self.dir / "data"

    def _run(self, *cmd, **kw):
        return subprocess.run([*self.run_as, *cmd], check=True, capture_output=True, text=True,
                              timeout=120, **kw)

    def start(self):
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password + "\n")
        if self.run_as:
            shutil.chown(pwfile, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "gradlab",
                  f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=trust",
                  "--no-sync")
        pwfile.unlink()
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"),
                  "-w", "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} "
                  "-c fsync=off", "start")
        subprocess.run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                        "-U", "gradlab", "mlflow"], check=True, capture_output=True,
                       env={**os.environ, "PGPASSWORD": self.password}, timeout=60)
        return self

    def stop(self):
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres():
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb) not found: apt-get install postgresql "
                    "(.ci/run does this where apt-get works)")
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install -e '.[postgres]'")
    server = Postgres(bin_dir, password="pg-" + os.urandom(6).hex())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory):
    """`mlflow server` on 127.0.0.1 with the PostgreSQL backend store and a proxied artifact
    store (the layout of README's cluster section); the database password comes from
    PGPASSWORD, not the command line."""
    port = unused_port()
    tmp_path = tmp_path_factory.mktemp("mlflow_server")
    artifacts = tmp_path / "artifacts"
    env = {**os.environ, "PGPASSWORD": postgres.password,
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server",
         "--backend-store-uri",
         f"postgresql+psycopg://gradlab@127.0.0.1:{postgres.port}/mlflow",
         "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "2"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("mlflow server did not start: "
                                + (tmp_path / "server.log").read_text()[-3000:])
                time.sleep(0.5)
        yield port, artifacts
    finally:
        _stop_group(proc)
        log.close()


def _stop_group(proc):
    """SIGTERM to the server's process group (its workers too), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


def test_parallel_sweep_into_tracking_server_on_postgresql_loses_nothing(
        postgres, mlflow_server, tmp_path):
    port, artifacts = mlflow_server
    # both servers listen on the loopback interface only
    assert listening_addresses(port) == {"127.0.0.1"}
    assert listening_addresses(postgres.port) == {"127.0.0.1"}
    # the tracking URI carries a (basic-auth) password: it must be masked everywhere
    uri = f"http://gradlab:hunter2secret@127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    steps, jobs = 300, 4
    done = lab_sweep(tmp_path, env, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                     f"train.steps={steps}", "init=identity",
                     "init.gain=" + ",".join(f"{0.8 + 0.1 * i:.1f}" for i in range(jobs)),
                     f"tracking.uri={uri}", "tracking.experiment=postgres_sweep")
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(f"http://127.0.0.1:{port}")
    runs = assert_sweep_lost_nothing(client, "postgres_sweep", jobs, steps)
    # the artifacts went through the server to its artifact store
    child = next(r for r in runs if "mlflow.parentRunId" in r.data.tags)
    assert {"config.yaml", "history.npz", "summary.json"} <= {
        a.path for a in client.list_artifacts(child.info.run_id)}
    assert list(artifacts.rglob("history.npz"))
    # no password anywhere: console, params, tags, artifacts, Hydra's files, the job logs
    assert "hunter2secret" not in done.stdout + done.stderr
    for run in runs:
        assert "hunter2secret" not in str(run.data.params) + str(run.data.tags)
    assert child.data.params["tracking.uri"] == f"http://gradlab:***@127.0.0.1:{port}"
    for path in [*artifacts.rglob("*"), *(tmp_path / "sweep").rglob("*")]:
        if path.is_file():
            assert b"hunter2secret" not in path.read_bytes(), path


def test_sync_of_a_sweep_into_a_postgresql_backed_server_copies_it_whole(
        identity_sweep, postgres, mlflow_server):
    """`lab.sync` copies a laptop's sweep (the session's identity sweep, SQLite) to a team's
    tracking server on PostgreSQL: the same runs, params, tags, parent/child structure, metric
    counts and artifacts; a second sync adds nothing."""
    port, _ = mlflow_server
    uri = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}

    def sync():
        return subprocess.run([sys.executable, "-m", "lab.sync", str(identity_sweep.directory),
                               "--uri", uri], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=600)

    done = sync()
    assert done.returncode == 0, done.stderr[-3000:]
    assert "6 runs created" in done.stdout, done.stdout
    # every metric name of every run; the counts of a few (each is a call to the server)
    some = ("loss/train", "grad_norm/layer_01", "act_mean/layer_10", "Log10/dW layer 05",
            "Depth/log10 dW init", "loss/test")
    here = store_view(MlflowClient(identity_sweep.uri), "exploding_identity", some)
    there = store_view(MlflowClient(uri), "exploding_identity", some)
    assert here == there
    again = sync()
    assert "0 runs created, 0 metric values and 0 artifacts added" in again.stdout, again.stdout
