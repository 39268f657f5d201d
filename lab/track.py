"""MLflow layer: tracking URI, runs, batched metric logging, sweep parent runs.

Plain dicts in, MLflow out. No Hydra here and no reliance on MLflow's global state
(``mlflow.start_run``, ``MLFLOW_RUN_ID``): everything goes through an explicit
``MlflowClient`` and run id, so a reused joblib worker never inherits a run.

Public API::

    resolve_tracking_uri(configured, repo_root) -> str
    default_artifact_root(repo_root) -> str            # file URI of <repo_root>/mlartifacts
    artifact_root_for(uri) -> str | None                # <db dir>/mlartifacts for sqlite, else None
    mask_uri(uri) -> str
    mask_config(cfg) -> dict                            # mask_uri on every string of a config
    mask_log_records() -> None                          # mask_uri on every log record
    check_reachable(uri, timeout_s=5) -> None           # raises TrackingUnreachable
    ensure_store(uri) -> None                           # sqlite schema under a file lock
    flatten_params(cfg, prefix="") -> dict[str, str]
    get_or_create_experiment(client, name, artifact_root) -> str
    MetricWriter(client, run_id)                        # .put / .flush / .close
    RunTracker(uri, experiment, run_name, params, tags, parent_run_id)
    SweepParent.open(uri, experiment, sweep_dir, run_name)
    install_interrupt_handlers() / interrupt_guard()    # SIGINT/SIGTERM -> KeyboardInterrupt
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import queue
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from filelock import FileLock, Timeout

if TYPE_CHECKING:  # MLflow is imported on first use: a bad config fails without its ~1 s
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

# MLflow's limits (mlflow.utils.validation; tests check they still agree)
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Environment variable that may carry the sweep's parent run id (never MLFLOW_RUN_ID).
PARENT_ENV_VAR = "GRADLAB_PARENT_RUN_ID"
#: File inside a Hydra sweep dir holding the parent run id.
PARENT_ID_FILE = ".mlflow_parent_run_id"
#: Run statuses of the contract -> MLflow run status.
STATUS_TO_MLFLOW = {
    "completed": "FINISHED",
    "diverged": "FINISHED",
    "failed": "FAILED",
    "interrupted": "KILLED",
}
#: Total time the writer (and other store calls) keep retrying a transient error.
RETRY_BUDGET_S = 60.0

_SQLITE_PREFIX = "sqlite:///"


class TrackingUnreachable(RuntimeError):
    """The tracking store cannot be used; the message is one line with the fix."""


# --------------------------------------------------------------------------- URIs


def _is_sqlite(uri: str) -> bool:
    return uri.startswith(_SQLITE_PREFIX)


def _is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def _sqlite_path(uri: str) -> Path | None:
    """Database file of a ``sqlite:///`` URI (None for in-memory ``sqlite://``)."""
    if not _is_sqlite(uri):
        return None
    rest = uri[len(_SQLITE_PREFIX) :].split("?", 1)[0]
    if not rest or rest == ":memory:":
        return None
    return Path(rest)


def resolve_tracking_uri(configured: str | None, repo_root: Path) -> str:
    """``configured``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<repo_root>/mlruns.db``.

    A relative ``sqlite:///x.db`` is made absolute against ``repo_root`` so every job,
    whatever its working directory, writes to the same store.
    """
    repo_root = Path(repo_root).expanduser().resolve()
    uri = (configured or "").strip() or os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not uri:
        return _SQLITE_PREFIX + str(repo_root / "mlruns.db")
    path = _sqlite_path(uri)
    if path is not None and not path.is_absolute():
        query = uri[len(_SQLITE_PREFIX) :].partition("?")[2]
        uri = _SQLITE_PREFIX + str((repo_root / path.expanduser()).resolve())
        if query:
            uri += "?" + query
    return uri


def default_artifact_root(repo_root: Path) -> str:
    """File URI of ``<repo_root>/mlartifacts`` (artifact root for sqlite stores)."""
    return (Path(repo_root).expanduser().resolve() / "mlartifacts").as_uri()


def artifact_root_for(uri: str) -> str | None:
    """Artifact root to give new experiments in store ``uri``.

    For a sqlite store: ``mlartifacts/`` next to the database file (the repo root for
    the default store), so artifacts never land in the current directory. For any other
    store: None (a tracking server decides where artifacts go).
    """
    path = _sqlite_path(uri)
    if path is None:
        return None
    return default_artifact_root(path.parent)


# the password runs to the last "@" before the host (an unencoded "@" in it is still masked)
# (Hydra's logs escape ":" in override values as "\:")
_USERINFO_RE = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]*\\?://[^:/@\s\\]*\\?:)[^/\s]*@")
_SECRET_QUERY_RE = re.compile(
    r"(?P<pre>[?&;](?:password|passwd|pwd|token|secret|access_token|api_key)=)[^&;\s]*",
    re.IGNORECASE,
)


def mask_uri(uri: str) -> str:
    """Replace the password in ``scheme://user:pass@host/...`` (and ``?password=``) by ***."""
    if not isinstance(uri, str) or "://" not in uri:
        return uri
    uri = _USERINFO_RE.sub(r"\g<pre>***@", uri)
    return _SECRET_QUERY_RE.sub(r"\g<pre>***", uri)


def mask_log_records() -> None:
    """Mask URI passwords in every log record of this process (Hydra's, MLflow's, ours).

    A log record factory outlives the handlers Hydra reconfigures for each job. Idempotent.
    """
    base = logging.getLogRecordFactory()
    if getattr(base, "_gradlab_masks_uris", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        try:
            text = record.getMessage()
        except Exception:  # a broken format string is logging's to report
            return record
        if "://" in text and "@" in text:
            masked = mask_uri(text)
            if masked != text:
                record.msg, record.args = masked, None
        return record

    factory._gradlab_masks_uris = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def mask_config(cfg: Any) -> Any:
    """A copy of a nested dict/list config with every string passed through :func:`mask_uri`
    (what is written to ``config.yaml`` artifacts)."""
    if isinstance(cfg, Mapping):
        return {k: mask_config(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [mask_config(v) for v in cfg]
    return mask_uri(cfg) if isinstance(cfg, str) else cfg


# --------------------------------------------------------------------------- store checks

_prepared_stores: set[str] = set()
_prepared_lock = threading.Lock()


def _unreachable_fix(uri: str) -> str:
    return (
        "start it with `make server` or set tracking.uri=... "
        "(or MLFLOW_TRACKING_URI; unset both for the local sqlite store)"
    )


def ensure_store(uri: str, lock_timeout_s: float = 120.0) -> None:
    """Make ``uri`` ready for use in this process.

    For sqlite: check the database directory, then create the schema (first use in this
    process) while holding ``<db>.lock``, because MLflow's first-time schema creation races
    between parallel jobs. Other stores: nothing to do. Cheap after the first call.
    """
    path = _sqlite_path(uri)
    if path is None:
        return
    with _prepared_lock:
        if uri in _prepared_stores:
            return
        parent = path.parent
        if not parent.is_dir():
            raise TrackingUnreachable(
                f"MLflow store {mask_uri(uri)}: directory {parent} does not exist; "
                f"create it or set tracking.uri=..."
            )
        if not os.access(parent, os.W_OK):
            raise TrackingUnreachable(
                f"MLflow store {mask_uri(uri)}: directory {parent} is not writable; "
                f"set tracking.uri=... to a writable location"
            )
        try:
            with FileLock(str(path) + ".lock", timeout=lock_timeout_s):
                _client(uri).search_experiments(max_results=1)
        except Timeout as e:
            raise TrackingUnreachable(
                f"MLflow store {mask_uri(uri)}: timed out waiting for {e.lock_file}; "
                f"remove it if no other job is running"
            ) from e
        except Exception as e:
            raise TrackingUnreachable(
                f"MLflow store {mask_uri(uri)} cannot be opened ({_one_line(e)}); "
                f"set tracking.uri=... or delete a corrupt database"
            ) from e
        _prepared_stores.add(uri)


def check_reachable(uri: str, timeout_s: float = 5) -> None:
    """Fail fast (within about ``timeout_s`` + 2 s) if the tracking store is unusable.

    http(s): one request with MLflow's HTTP retries off and a short timeout (both restored
    afterwards). sqlite: directory check and schema creation under a file lock.
    Raises :class:`TrackingUnreachable` with a one-line message naming the masked URI.
    """
    if _is_sqlite(uri):
        ensure_store(uri)
        return
    if _db_address(uri) is not None:
        _check_db_port(uri, timeout_s)
        return
    if not _is_http(uri):
        return  # databricks, file stores, plugins: let MLflow report its own errors

    overrides = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, math.ceil(timeout_s))),
    }
    saved = {k: os.environ.get(k) for k in overrides}
    outcome: dict[str, BaseException] = {}

    def probe() -> None:
        try:
            _client(uri).search_experiments(max_results=1)
        except BaseException as e:  # reported to the caller below
            outcome["error"] = e

    os.environ.update(overrides)
    try:
        # A thread bounds the wait even where the socket timeout does not apply (DNS).
        worker = threading.Thread(target=probe, name="mlflow-reachability", daemon=True)
        worker.start()
        worker.join(timeout_s + 2.0)
        timed_out = worker.is_alive()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if timed_out:
        reason = f"no answer within {timeout_s:g} s"
    elif "error" in outcome:
        text = str(outcome["error"])
        if "Connection refused" in text or "ConnectionRefused" in text:
            reason = "connection refused"
        elif "Name or service not known" in text or "nodename nor servname" in text:
            reason = "unknown host"
        elif "timed out" in text.lower():
            reason = f"no answer within {timeout_s:g} s"
        else:
            reason = _one_line(outcome["error"], limit=160)
    else:
        return
    raise TrackingUnreachable(
        f"MLflow tracking server {mask_uri(uri)} is unreachable ({reason}); {_unreachable_fix(uri)}"
    )


_DB_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mssql": 1433}


def _db_address(uri: str) -> tuple[str, int] | None:
    """(host, port) of a database URI (``postgresql://user:pw@host:5432/db``), else None."""
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    if scheme not in _DB_PORTS:
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(uri)
        return parts.hostname or "localhost", parts.port or _DB_PORTS[scheme]
    except ValueError:
        return None


def _check_db_port(uri: str, timeout_s: float) -> None:
    """A database store MLflow talks to directly: is its port open? (MLflow's own engine
    retries a refused connection for minutes.)"""
    import socket

    host, port = _db_address(uri)  # type: ignore[misc]
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        reason = "connection refused" if isinstance(e, ConnectionRefusedError) else (
            f"no answer within {timeout_s:g} s" if isinstance(e, TimeoutError)
            else _one_line(str(e) or type(e).__name__, limit=160))
        raise TrackingUnreachable(
            f"MLflow database store {mask_uri(uri)} is unreachable ({reason}); "
            f"start the database or set tracking.uri=..."
        ) from None


# --------------------------------------------------------------------------- params


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 3] + "..."


def _param_value(value: Any) -> str:
    if isinstance(value, str):
        text = mask_uri(value)
    elif isinstance(value, (list, tuple)):
        text = mask_uri(json.dumps(list(value), default=str))
    elif isinstance(value, np.ndarray):
        text = json.dumps(value.tolist(), default=str)
    elif isinstance(value, np.generic):
        text = str(value.item())
    else:
        text = str(value)
    return _truncate(text, MAX_PARAM_VAL_LENGTH)


def flatten_params(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dict -> ``{"model.depth": "50", ...}`` ready for MLflow params.

    Lists become JSON strings, values are cut to MLflow's param length limit
    (``MAX_PARAM_VAL_LENGTH``, 6000 in MLflow >= 2) and passwords in URIs are masked.
    Empty dicts are kept as ``"{}"`` so the key stays visible.
    """
    out: dict[str, str] = {}
    for key, value in cfg.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            if value:
                out.update(flatten_params(value, name))
            else:
                out[name] = "{}"
        else:
            out[name] = _param_value(value)
    return out


# --------------------------------------------------------------------------- retries


_PERMANENT_CODES = {
    "INVALID_PARAMETER_VALUE",
    "RESOURCE_DOES_NOT_EXIST",
    "RESOURCE_ALREADY_EXISTS",
    "INVALID_STATE",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "ENDPOINT_NOT_FOUND",
    "NOT_IMPLEMENTED",
}
_TRANSIENT_TEXT = ("database is locked", "locked", "timeout", "timed out", "connection")


def _client(uri: str) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    if mask_uri(uri) != uri:  # MLflow prints "View run at: <uri with the password>" otherwise
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    return MlflowClient(uri)


def _is_transient(exc: BaseException) -> bool:
    """Worth retrying: locked sqlite, unavailable server, network trouble."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        if exc.error_code in _PERMANENT_CODES:
            return False
        if exc.error_code in ("TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"):
            return True
        text = str(exc).lower()
        return exc.error_code == "INTERNAL_ERROR" or any(t in text for t in _TRANSIENT_TEXT)
    return isinstance(exc, (OSError, ConnectionError, TimeoutError))


def _retry(
    fn: Callable[[], T],
    what: str,
    budget_s: float = RETRY_BUDGET_S,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn``; on a transient error retry with exponential backoff for ``budget_s``."""
    deadline = time.monotonic() + budget_s
    delay = 0.25
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as e:
            remaining = deadline - time.monotonic()
            if not _is_transient(e) or remaining <= 0:
                raise
            pause = min(delay, remaining, 15.0)
            log.warning(
                "MLflow %s failed (attempt %d: %s); retrying in %.1f s",
                what,
                attempt,
                _one_line(e, limit=200),
                pause,
            )
            sleep(pause)
            delay *= 2


def _one_line(exc: BaseException | str, limit: int = 500) -> str:
    text = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return _truncate(mask_uri(lines[0]) if lines else "", limit)


# --------------------------------------------------------------------------- experiments


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "experiment"


def get_or_create_experiment(
    client: MlflowClient, name: str, artifact_root: str | None = None
) -> str:
    """Experiment id for ``name``, creating it (race-safe) if missing.

    New experiments get ``<artifact_root>/<name>`` as artifact location when
    ``artifact_root`` is given (sqlite stores); with None the store decides.
    A deleted experiment of that name is restored.
    """
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is None:
        location = f"{artifact_root.rstrip('/')}/{_slug(name)}" if artifact_root else None
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException as e:
            already = e.error_code == "RESOURCE_ALREADY_EXISTS" or "already exist" in str(e)
            if not already:
                raise
        exp = client.get_experiment_by_name(name)  # another process won the race
        if exp is None:  # pragma: no cover - would be a store bug
            raise MlflowException(f"experiment {name!r} exists but cannot be read")
    if exp.lifecycle_stage == "deleted":
        log.warning("MLflow experiment %r was deleted; restoring it", name)
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


# --------------------------------------------------------------------------- metrics


class MetricWriter:
    """Background thread that writes metric blocks with ``log_batch``.

    ``put`` copies the arrays and returns at once. The thread turns them into
    :class:`mlflow.entities.Metric` objects, skips non-finite values, merges what is
    queued into calls of at most 1000 metrics, and retries transient store errors
    (e.g. sqlite "database is locked") with backoff for up to ``retry_budget_s``.
    If the store still fails, the error is kept, the unsent values are counted in
    ``n_failed`` and :meth:`close` re-raises it. Attributes for benchmarks:
    ``n_written`` (values stored), ``n_skipped`` (non-finite values),
    ``seconds_in_store`` (time inside ``log_batch``), ``n_calls``.
    """

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        batch_size: int = MAX_METRICS_PER_BATCH,
        retry_budget_s: float = RETRY_BUDGET_S,
    ) -> None:
        if not 1 <= batch_size <= MAX_METRICS_PER_BATCH:
            raise ValueError(f"batch_size must be in 1..{MAX_METRICS_PER_BATCH}, got {batch_size}")
        self.client = client
        self.run_id = run_id
        self.batch_size = batch_size
        self.retry_budget_s = retry_budget_s
        self.n_written = 0
        self.n_skipped = 0
        self.n_failed = 0
        self.n_calls = 0
        self.seconds_in_store = 0.0
        self.error: BaseException | None = None
        self._store_down = False
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._loop, name=f"mlflow-writer-{run_id[:8]}", daemon=True
        )
        self._thread.start()

    # -- caller side
    def put(
        self,
        metrics: Mapping[str, np.ndarray],
        steps: np.ndarray,
        timestamp_ms: int | np.ndarray | None = None,
    ) -> None:
        """Queue one block: ``metrics[name][i]`` is the value at ``steps[i]``.

        ``timestamp_ms`` is one int for the block (default: now) or an array aligned
        with ``steps``. The arrays are copied, so callers may reuse their buffers.
        """
        if self._closed:
            raise RuntimeError("MetricWriter is closed")
        steps_arr = np.array(steps, dtype=np.int64, copy=True).reshape(-1)
        n = steps_arr.shape[0]
        if timestamp_ms is None:
            ts: int | np.ndarray = int(time.time() * 1000)
        elif np.ndim(timestamp_ms) == 0:
            ts = int(timestamp_ms)
        else:
            ts = np.array(timestamp_ms, dtype=np.int64, copy=True).reshape(-1)
            if ts.shape[0] != n:
                raise ValueError(f"timestamp_ms has {ts.shape[0]} entries, steps has {n}")
        block: dict[str, np.ndarray] = {}
        for key, values in metrics.items():
            arr = np.array(values, dtype=np.float64, copy=True).reshape(-1)
            if arr.shape[0] != n:
                raise ValueError(f"metric {key!r} has {arr.shape[0]} values, steps has {n}")
            block[str(key)] = arr
        if n and block:
            self._queue.put((block, steps_arr, ts))

    def flush(self) -> None:
        """Block until everything queued so far has been written (or has failed)."""
        self._queue.join()

    def close(self) -> None:
        """Flush, stop the thread; re-raise a final store error. Idempotent."""
        with self._close_lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
                self._thread.join()
        if self.error is not None:
            raise RuntimeError(
                f"MLflow metric logging for run {self.run_id} failed; "
                f"{self.n_failed} values were not stored: {_one_line(self.error)}"
            ) from self.error

    # -- writer thread
    def _loop(self) -> None:
        pending: list[Metric] = []
        stop = False
        while not stop:
            taken = 0
            try:
                item = self._queue.get()
                taken = 1
                if item is None:
                    stop = True
                else:
                    pending.extend(self._to_metrics(*item))
                # merge whatever else is already queued into full-size calls
                while not stop and len(pending) < self.batch_size:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    taken += 1
                    if item is None:
                        stop = True
                    else:
                        pending.extend(self._to_metrics(*item))
                while len(pending) >= self.batch_size or (pending and (stop or self._idle())):
                    chunk, pending = pending[: self.batch_size], pending[self.batch_size :]
                    self._send(chunk)
            except Exception as e:  # a bug here must not leave flush()/close() hanging
                log.exception("MLflow metric writer for run %s crashed", self.run_id)
                if self.error is None:
                    self.error = e
                self.n_failed += len(pending)
                pending = []
            finally:
                for _ in range(taken):
                    self._queue.task_done()

    def _idle(self) -> bool:
        return self._queue.empty()

    def _to_metrics(self, block: dict[str, np.ndarray], steps: np.ndarray, ts) -> list[Metric]:
        from mlflow.entities import Metric

        out: list[Metric] = []
        per_step_ts = isinstance(ts, np.ndarray)
        step_list = steps.tolist()
        ts_list = ts.tolist() if per_step_ts else None
        for key, values in block.items():
            finite = np.isfinite(values)
            n_bad = int(values.size - np.count_nonzero(finite))
            self.n_skipped += n_bad
            idx = np.flatnonzero(finite).tolist() if n_bad else range(values.size)
            vals = values.tolist()
            if per_step_ts:
                out.extend(Metric(key, vals[i], ts_list[i], step_list[i]) for i in idx)
            else:
                out.extend(Metric(key, vals[i], ts, step_list[i]) for i in idx)
        return out

    def _send(self, chunk: list[Metric]) -> None:
        if self._store_down:  # retries already exhausted once: count, do not wait again
            self.n_failed += len(chunk)
            return

        def call() -> None:
            t0 = time.perf_counter()
            try:
                self.client.log_batch(self.run_id, metrics=chunk)
            finally:
                self.seconds_in_store += time.perf_counter() - t0
                self.n_calls += 1

        try:
            _retry(call, "log_batch", budget_s=self.retry_budget_s)
        except Exception as e:
            log.error("MLflow metric logging failed for run %s: %s", self.run_id, _one_line(e))
            if self.error is None:
                self.error = e
            self._store_down = _is_transient(e)
            self.n_failed += len(chunk)
        else:
            self.n_written += len(chunk)


# --------------------------------------------------------------------------- interrupts

#: seconds after a first signal in which another one is the same stop arriving twice (Ctrl-C
#: reaches every process of the terminal's group, and a sweep also forwards it to its workers)
SAME_STOP_S = 2.0
_interrupt: dict[str, Any] = {"signals": 0, "guard": 0, "pending": None, "first_at": 0.0,
                              "mode": "raise", "stop_file": None}


def _on_signal(signum: int, frame: Any) -> None:
    state = _interrupt
    name = signal.Signals(signum).name
    now = time.monotonic()
    if state["signals"] and now - state["first_at"] < SAME_STOP_S:
        return
    state["signals"] += 1
    if state["signals"] == 1:
        state["first_at"] = now
        if state["stop_file"] is not None:  # no new job of the sweep starts
            _touch(state["stop_file"])
    if state["mode"] == "idle":  # a launcher's worker between jobs
        return
    if state["mode"] == "sweep":  # the launching process of a parallel sweep
        if state["signals"] == 1:
            n = _signal_workers(signal.SIGTERM)
            print(f"gradlab: stopping the sweep: {n} running jobs save their runs and no new "
                  "job starts; signal again to stop at once", file=sys.stderr, flush=True)
            return
        raise KeyboardInterrupt(f"signal {name}")
    if state["signals"] == 1:
        if state["guard"]:  # inside interrupt_guard(): raised when it ends
            state["pending"] = name
            return
        raise KeyboardInterrupt(f"signal {name}")
    if state["signals"] == 2:  # e.g. a second Ctrl-C while the run's metrics are flushed
        print("gradlab: still saving the interrupted run; signal once more to quit without "
              "waiting", file=sys.stderr, flush=True)
        return
    os._exit(130)


def _touch(path: Path) -> None:
    try:
        Path(path).touch()
    except OSError:
        pass


def _signal_workers(signum: int) -> int:
    """Send ``signum`` to this process's joblib (loky) workers; returns how many."""
    me, n = str(os.getpid()), 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            ppid = proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1]
            if ppid == me and b"popen_loky" in proc.joinpath("cmdline").read_bytes():
                os.kill(int(proc.name), signum)
                n += 1
        except (OSError, IndexError, ValueError):  # gone meanwhile, or no /proc
            continue
    return n


def install_interrupt_handlers(mode: str = "raise", stop_file: Path | None = None) -> None:
    """Route SIGINT and SIGTERM through one handler; reset its state.

    ``mode="raise"`` (a job runs in this process): KeyboardInterrupt in the main thread, so
    the run ends like on Ctrl-C, metrics flushed and run marked ``interrupted``; inside
    :func:`interrupt_guard` it waits for the block to end; a second signal is ignored (the
    flush goes on), a third exits at once. ``mode="sweep"`` (the launching process of a
    parallel sweep): the workers are told (SIGTERM) and the sweep ends once they have saved
    their runs; a second signal raises KeyboardInterrupt at once. ``mode="idle"``: ignored.
    ``stop_file`` is created on the first signal: a sweep starts no job once it exists.
    A signal repeated within ``SAME_STOP_S`` counts once. No-op off the main thread.
    """
    if mode not in ("raise", "sweep", "idle"):
        raise ValueError(f"unknown interrupt mode {mode!r}")
    _interrupt.update(signals=0, guard=0, pending=None, first_at=0.0, mode=mode,
                      stop_file=stop_file)
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, _on_signal)
        except ValueError:  # not the main thread (some launchers): keep the default
            return


def set_interrupt_mode(mode: str) -> None:
    """Change the mode (see :func:`install_interrupt_handlers`) keeping the signals seen."""
    if mode not in ("raise", "sweep", "idle"):
        raise ValueError(f"unknown interrupt mode {mode!r}")
    _interrupt["mode"] = mode


@contextlib.contextmanager
def interrupt_guard():
    """A block an interrupt must not split (e.g. keep a chunk's rows and the saved history in
    step); with :func:`install_interrupt_handlers` a signal inside it is raised at its end."""
    state = _interrupt
    state["guard"] += 1
    try:
        yield
    finally:
        state["guard"] -= 1
        if not state["guard"] and state["pending"]:
            name, state["pending"] = state["pending"], None
            raise KeyboardInterrupt(f"signal {name}")


# --------------------------------------------------------------------------- runs


def _chunks(items: list[T], size: int) -> Iterable[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _tag_value(value: Any) -> str:
    return _truncate(mask_uri(str(value)), MAX_TAG_VAL_LENGTH)


class _RunHandle:
    """Artifacts and tags for one run through an explicit client (no global run)."""

    client: MlflowClient
    run_id: str

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(str(k), _tag_value(v)) for k, v in tags.items()]
        for chunk in _chunks(items, MAX_PARAMS_TAGS_PER_BATCH):
            _retry(lambda c=chunk: self.client.log_batch(self.run_id, tags=c), "set_tags")

    def log_artifact(self, local_path: str | os.PathLike, artifact_path: str | None = None):
        """Upload a file (or a directory's contents) to the run's artifacts."""
        local_path = os.fspath(local_path)
        if os.path.isdir(local_path):
            self.client.log_artifacts(self.run_id, local_path, artifact_path)
        else:
            self.client.log_artifact(self.run_id, local_path, artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_dict(self, dictionary: Any, artifact_file: str) -> None:
        """JSON, or YAML when ``artifact_file`` ends in .yaml/.yml."""
        self.client.log_dict(self.run_id, dictionary, artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self.client.log_figure(self.run_id, figure, artifact_file)

    def record(self, params=None, tags=None, metrics=()) -> None:
        """Params (nested or flat), tags, and metric blocks ``[(name -> values, steps)]``
        written at once (non-finite values skipped); for a run that is not training."""
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(s)) for block, steps in metrics
                 for k, values in block.items() for v, s in zip(values, steps) if np.isfinite(v)]
        for chunk in _chunks(items, MAX_METRICS_PER_BATCH):
            _retry(lambda c=chunk: self.client.log_batch(self.run_id, metrics=c), "log_metrics")
        flat = [Param(k, v) for k, v in flatten_params(params or {}).items()]
        for chunk in _chunks(flat, MAX_PARAMS_TAGS_PER_BATCH):
            _retry(lambda c=chunk: self.client.log_batch(self.run_id, params=c), "log_params")
        self.set_tags(tags or {})

    def set_experiment_tags(self, tags: Mapping[str, Any]) -> None:
        """Tags of the run's experiment (what kind it is, its description, saved views)."""
        for key, value in tags.items():
            _retry(lambda k=key, v=value: self.client.set_experiment_tag(
                self.experiment_id, k, str(v)), "set_experiment_tag")

    def _terminate(self, status: str) -> None:
        if status not in STATUS_TO_MLFLOW:
            raise ValueError(f"unknown run status {status!r}; valid: {', '.join(STATUS_TO_MLFLOW)}")
        self.set_tags({"status": status})
        _retry(
            lambda: self.client.set_terminated(self.run_id, STATUS_TO_MLFLOW[status]),
            "set_terminated",
        )


_finishing: list[threading.Thread] = []


def wait_for_runs() -> None:
    """Block until every run ended with ``finish_in_background`` is flushed and ended."""
    while _finishing:
        _finishing.pop(0).join()


class RunTracker(_RunHandle):
    """One job's MLflow run.

    ``start()`` creates the run (child of ``parent_run_id`` if given) and logs the
    params; ``log_metrics`` goes through a :class:`MetricWriter`; ``finish(status)``
    flushes and terminates. As a context manager: ``completed`` on a clean exit unless
    ``finish`` was already called, ``failed`` on an exception (tag ``error`` and artifact
    ``error.txt``), ``interrupted`` on KeyboardInterrupt; the exception propagates.
    """

    def __init__(
        self,
        uri: str,
        experiment: str,
        run_name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        artifact_root: str | None = None,
    ) -> None:
        self.uri = uri
        self.experiment = experiment
        self.run_name = run_name
        self.params = dict(params or {})
        self.tags = dict(tags or {})
        self.parent_run_id = parent_run_id or None
        self.artifact_root = artifact_root if artifact_root is not None else artifact_root_for(uri)
        self.client = _client(uri)
        self.run_id: str | None = None  # type: ignore[assignment]
        self.experiment_id: str | None = None
        self.writer: MetricWriter | None = None
        self.status: str | None = None

    # -- lifecycle
    def start(self) -> RunTracker:
        if self.run_id is not None:
            return self
        ensure_store(self.uri)
        self.experiment_id = _retry(
            lambda: get_or_create_experiment(self.client, self.experiment, self.artifact_root),
            "get_or_create_experiment",
        )
        tags = {str(k): _tag_value(v) for k, v in self.tags.items()}
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        run = _retry(
            lambda: self.client.create_run(self.experiment_id, tags=tags, run_name=self.run_name),
            "create_run",
        )
        self.run_id = run.info.run_id
        atexit.register(self._atexit)
        try:  # the run exists: from here on a failure (or Ctrl-C) must not leave it RUNNING
            from mlflow.entities import Param

            params = flatten_params(self.params)
            items = [Param(k, v) for k, v in params.items()]
            for chunk in _chunks(items, MAX_PARAMS_TAGS_PER_BATCH):
                _retry(lambda c=chunk: self.client.log_batch(self.run_id, params=c),
                       "log_params")
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self.writer = MetricWriter(self.client, self.run_id)
        return self

    @property
    def artifact_uri(self) -> str:
        self._require_started()
        return self.client.get_run(self.run_id).info.artifact_uri

    def log_metrics(
        self,
        metrics: Mapping[str, np.ndarray],
        steps: np.ndarray,
        timestamp_ms: int | np.ndarray | None = None,
    ) -> None:
        """Queue aligned metric arrays (see :meth:`MetricWriter.put`); returns at once."""
        self._require_started()
        self.writer.put(metrics, steps, timestamp_ms)

    def finish(self, status: str = "completed") -> None:
        """Flush metrics, set tag ``status`` and end the run. Later calls do nothing.

        A metric-writer failure is re-raised after the run has been terminated.
        """
        if self._claim(status):
            self._complete(status)

    def finish_in_background(self, status: str = "completed") -> None:
        """``finish`` on a thread: the metric writer drains (and the run ends) while the
        caller starts the next job. ``wait_for_runs()`` joins every such thread."""
        if not self._claim(status):
            return
        thread = threading.Thread(target=self._complete_quietly, args=(status,),
                                  name=f"finish-{self.run_id[:8]}")
        _finishing.append(thread)
        thread.start()

    def _claim(self, status: str) -> bool:
        if status not in STATUS_TO_MLFLOW:
            raise ValueError(f"unknown run status {status!r}; valid: {', '.join(STATUS_TO_MLFLOW)}")
        if self.run_id is None or self.status is not None:
            return False
        self.status = status
        atexit.unregister(self._atexit)
        return True

    def _complete_quietly(self, status: str) -> None:
        try:
            self._complete(status)
        except Exception as e:  # already tagged tracking_error; the sweep goes on
            log.error("run %s: %s", self.run_id, _one_line(e))

    def _complete(self, status: str) -> None:
        writer_error: BaseException | None = None
        if self.writer is not None:
            try:
                self.writer.close()
            except RuntimeError as e:
                writer_error = e
                try:
                    self.set_tags({"tracking_error": _one_line(e)})
                except Exception:  # store is down; the raise below tells
                    pass
        self._terminate(status)
        if writer_error is not None:
            raise writer_error

    # -- context manager
    def __enter__(self) -> RunTracker:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.run_id is None or self.status is not None:
            return False
        if exc is None:
            self.finish("completed")
            return False
        status = "failed" if isinstance(exc, Exception) else "interrupted"
        try:
            if status == "failed":
                self._record_error(exc)
            self.finish(status)
        except Exception as e:  # never mask the job's own exception
            log.error("could not record run %s as %s: %s", self.run_id, status, _one_line(e))
        return False

    def record_failure(self, exc: BaseException) -> None:
        """Tag ``error`` + ``error.txt`` traceback and finish as ``failed``."""
        self._record_error(exc)
        self.finish("failed")

    # -- internals
    def _record_error(self, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {_one_line(exc)}"
        self.set_tags({"error": message})
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            self.log_text(text, "error.txt")
        except Exception as e:  # the tag is already there
            log.warning("could not log error.txt for run %s: %s", self.run_id, _one_line(e))

    def _atexit(self) -> None:
        try:
            self.finish("interrupted")
        except Exception:  # interpreter is exiting
            pass

    def _require_started(self) -> None:
        if self.run_id is None or self.writer is None:
            raise RuntimeError("RunTracker.start() has not been called")


class SweepParent(_RunHandle):
    """Parent run of a Hydra multirun, shared by every process of the sweep.

    :meth:`open` is safe to call from the launching process and from each (joblib)
    worker: under ``<sweep_dir>/.mlflow_parent_run_id.lock`` the first caller creates the
    run (or adopts ``$GRADLAB_PARENT_RUN_ID``) and writes its id to
    ``<sweep_dir>/.mlflow_parent_run_id``; later callers read it.
    """

    def __init__(self, client: MlflowClient, run_id: str, experiment_id: str, created: bool):
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.created = created
        self.status: str | None = None

    @classmethod
    def open(
        cls,
        uri: str,
        experiment: str,
        sweep_dir: Path,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        artifact_root: str | None = None,
        lock_timeout_s: float = 120.0,
    ) -> SweepParent:
        ensure_store(uri)
        client = _client(uri)
        sweep_dir = Path(sweep_dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        id_file = sweep_dir / PARENT_ID_FILE
        if artifact_root is None:
            artifact_root = artifact_root_for(uri)
        with FileLock(str(id_file) + ".lock", timeout=lock_timeout_s):
            run_id = cls._read_id(id_file) or os.environ.get(PARENT_ENV_VAR, "").strip()
            if run_id:
                run = cls._existing_run(client, run_id)
                if run is not None:
                    if not id_file.exists():
                        cls._write_id(id_file, run_id)
                    return cls(client, run_id, run.info.experiment_id, created=False)
                log.warning("parent run %s not found in %s; creating one", run_id, mask_uri(uri))
            experiment_id = _retry(
                lambda: get_or_create_experiment(client, experiment, artifact_root),
                "get_or_create_experiment",
            )
            run_tags = {str(k): _tag_value(v) for k, v in (tags or {}).items()}
            run_tags.setdefault("sweep_dir", str(sweep_dir.resolve()))
            run_tags.setdefault("gradlab.role", "sweep_parent")
            run = _retry(
                lambda: client.create_run(experiment_id, tags=run_tags, run_name=run_name),
                "create_run",
            )
            cls._write_id(id_file, run.info.run_id)
            return cls(client, run.info.run_id, experiment_id, created=True)

    def close(self, status: str = "completed") -> None:
        """Tag ``status`` and terminate the parent run. Later calls do nothing."""
        if self.status is not None:
            return
        self._terminate(status)
        self.status = status

    @staticmethod
    def _read_id(id_file: Path) -> str:
        try:
            return id_file.read_text().strip()
        except FileNotFoundError:
            return ""

    @staticmethod
    def _write_id(id_file: Path, run_id: str) -> None:
        tmp = id_file.with_name(f"{id_file.name}.{os.getpid()}.tmp")
        tmp.write_text(run_id + "\n")
        os.replace(tmp, id_file)

    @staticmethod
    def _existing_run(client: MlflowClient, run_id: str):
        from mlflow.exceptions import MlflowException

        try:
            return client.get_run(run_id)
        except MlflowException as e:
            if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise
