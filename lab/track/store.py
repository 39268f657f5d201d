"""The store itself: a client for a URI, checks that it can be used before any run starts,
retries of transient errors, and experiments.

Faults are sorted into two kinds. Transient (a locked SQLite file, a server that does not
answer): retried with backoff. Permanent (a read-only or corrupt database, a refused
permission): recognised at once and reported in one line (:class:`TrackingUnreachable`).
MLflow's and SQLAlchemy's own log records stay off the console (:func:`quiet_store_logs`).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from filelock import FileLock, Timeout

from .uri import is_http, is_sqlite, mask_uri, one_line, sqlite_path

if TYPE_CHECKING:  # MLflow is imported on first use: a bad config fails without its ~1 s
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Total time a store call keeps retrying a transient error (the writer has its own budget).
RETRY_BUDGET_S = float(os.environ.get("GRADLAB_STORE_RETRY_S", "60"))
#: How long a run waits at its start for a SQLite store another process holds locked.
LOCK_WAIT_S = min(30.0, RETRY_BUDGET_S)  # (a shorter retry budget shortens it too)
#: Loggers whose records (and tracebacks) stay off the console unless asked for
#: (``hydra.verbose=[mlflow,sqlalchemy]``).
STORE_LOGGERS = ("mlflow", "alembic", "sqlalchemy", "urllib3")


class TrackingUnreachable(RuntimeError):
    """The tracking store cannot be used; the message is one line with the fix."""


_quiet = {"wanted": False, "done": False}


def quiet_store_logs(verbose: bool = False) -> None:
    """Keep MLflow's, Alembic's and SQLAlchemy's log records off the console; the lab reports
    store faults itself, in one line. ``verbose`` leaves them as they are. Applied again right
    after MLflow is imported (its import configures its own logger)."""
    _quiet["wanted"] = not verbose
    if verbose:
        return
    for name in STORE_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level != logging.DEBUG:
            logger.setLevel(logging.CRITICAL)


_clients: dict[str, MlflowClient] = {}
_clients_lock = threading.Lock()


def client(uri: str) -> MlflowClient:
    """One client per store and process (making one costs ~1 s on a SQLite store)."""
    with _clients_lock:
        found = _clients.get(uri)
        if found is None:
            found = _clients[uri] = _new_client(uri)
        return found


def _new_client(uri: str) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    if _quiet["wanted"] and not _quiet["done"]:
        _quiet["done"] = True
        quiet_store_logs()
    if mask_uri(uri) != uri:  # MLflow prints "View run at: <uri with the password>" otherwise
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    return MlflowClient(uri)


# --------------------------------------------------------------------------- fault kinds

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
#: texts of faults no retry will fix (SQLite's words)
PERMANENT_TEXT = ("readonly database", "read-only", "malformed", "not a database",
                  "disk i/o error", "unable to open database")
_TRANSIENT_TEXT = ("database is locked", "locked", "timeout", "timed out", "connection",
                   "database or disk is full")


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: locked sqlite, unavailable server, network trouble."""
    text = str(exc).lower()
    if any(t in text for t in PERMANENT_TEXT):
        return False
    if isinstance(exc, sqlite3.Error):  # the direct SQLite path (lab/track/fastsql.py)
        return any(t in text for t in _TRANSIENT_TEXT)
    mlflow_errors = sys.modules.get("mlflow.exceptions")  # (not imported: not MLflow's error)
    if mlflow_errors is not None and isinstance(exc, mlflow_errors.MlflowException):
        if exc.error_code in _PERMANENT_CODES:
            return False
        if exc.error_code in ("TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"):
            return True
        return exc.error_code == "INTERNAL_ERROR" or any(t in text for t in _TRANSIENT_TEXT)
    return isinstance(exc, (OSError, ConnectionError, TimeoutError))


def retry(
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
            if not is_transient(e) or remaining <= 0:
                raise
            pause = min(delay, remaining, 15.0)
            log.debug("MLflow %s failed (attempt %d: %s); retrying in %.1f s", what, attempt,
                      one_line(e, limit=200), pause)
            sleep(pause)
            delay *= 2


# --------------------------------------------------------------------------- checks

_prepared_stores: set[str] = set()
_prepared_lock = threading.Lock()


def _unreachable_fix(uri: str) -> str:
    return (
        "start it with `make server` or set tracking.uri=... "
        "(or MLFLOW_TRACKING_URI; unset both for the local sqlite store)"
    )


def _sqlite_fault(uri: str, path, lock_wait_s: float) -> str | None:
    """Why the SQLite file at ``path`` cannot take writes, in a few words, or None.

    Read-only (file mode or mount), corrupt, or locked by another process for longer than
    ``lock_wait_s`` (waited for, never broken). A missing file is fine: MLflow creates it.
    """
    if not path.exists():
        return None
    if not os.access(path, os.W_OK) or not (path.stat().st_mode & 0o200):
        return f"the database file {path} is read-only"
    deadline = time.monotonic() + lock_wait_s
    while True:
        try:
            con = sqlite3.connect(str(path), timeout=min(5.0, max(0.1, lock_wait_s)))
            try:
                con.execute("SELECT count(*) FROM sqlite_master").fetchall()
                con.execute("BEGIN IMMEDIATE")  # a write lock: free, or held by someone else
                con.rollback()
            finally:
                con.close()
            return None
        except sqlite3.DatabaseError as e:
            text = str(e).lower()
            if "locked" in text or "busy" in text:
                if time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                return (f"the database is locked by another process (waited {lock_wait_s:g} s); "
                        "try again when that process has finished")
            if "readonly" in text or "read-only" in text:
                return f"the database file {path} is read-only"
            if "malformed" in text or "not a database" in text:
                return f"the database file {path} is corrupt ({e})"
            return str(e)


def _has_schema(path) -> bool:
    """Does the SQLite file hold an MLflow schema (its alembic version and runs table)?"""
    if not path.exists():
        return False
    try:
        con = sqlite3.connect(str(path), timeout=5)
        try:
            names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = "
                                               "'table'")}
            return {"alembic_version", "runs", "metrics", "experiments"} <= names and bool(
                con.execute("SELECT version_num FROM alembic_version").fetchall())
        finally:
            con.close()
    except sqlite3.Error:
        return False


def ensure_store(uri: str, lock_timeout_s: float = 120.0, lock_wait_s: float = LOCK_WAIT_S) -> None:
    """Make ``uri`` ready for use in this process.

    For sqlite: check the database directory and file (writable, not corrupt, not locked for
    longer than ``lock_wait_s``), then create the schema (first use in this process) while
    holding ``<db>.lock``, because MLflow's first-time schema creation races between parallel
    jobs. Other stores: nothing to do. Cheap after the first call.
    """
    path = sqlite_path(uri)
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
        fault = _sqlite_fault(uri, path, lock_wait_s)
        if fault is not None:
            raise TrackingUnreachable(f"MLflow store {mask_uri(uri)} cannot be used: {fault}")
        if _has_schema(path):  # MLflow (a second to import) is not needed to know that
            _prepared_stores.add(uri)
            return
        try:
            with FileLock(str(path) + ".lock", timeout=lock_timeout_s):
                client(uri).search_experiments(max_results=1)
        except Timeout as e:
            raise TrackingUnreachable(
                f"MLflow store {mask_uri(uri)}: timed out after {lock_timeout_s:g} s waiting for "
                f"{e.lock_file}, held by another job creating the store; try again"
            ) from e
        except Exception as e:
            raise TrackingUnreachable(
                f"MLflow store {mask_uri(uri)} cannot be opened ({one_line(e, 200)}); "
                f"set tracking.uri=... to another store"
            ) from None
        _prepared_stores.add(uri)


def check_reachable(uri: str, timeout_s: float = 5) -> None:
    """Fail fast (within about ``timeout_s`` + 2 s) if the tracking store is unusable.
    (MLflow's import counts in that time unless the caller made its client first: a run's start
    promises one line within seconds; ``lab.sync``, which uses the client right after, makes
    it first, so that on a busy machine the import alone cannot call a running server
    unreachable.)

    http(s): one request with MLflow's HTTP retries off and a short timeout (both restored
    afterwards). sqlite: directory and file checks and schema creation under a file lock.
    Raises :class:`TrackingUnreachable` with a one-line message naming the masked URI.
    """
    if is_sqlite(uri):
        ensure_store(uri)
        return
    if _db_address(uri) is not None:
        _check_db_port(uri, timeout_s)
        return
    if not is_http(uri):
        return  # databricks, file stores, plugins: let MLflow report its own errors

    overrides = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, math.ceil(timeout_s))),
    }
    saved = {k: os.environ.get(k) for k in overrides}
    outcome: dict[str, BaseException] = {}

    def probe() -> None:
        try:
            client(uri).search_experiments(max_results=1)
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
            reason = one_line(outcome["error"], limit=160)
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
    host, port = _db_address(uri)  # type: ignore[misc]
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        reason = "connection refused" if isinstance(e, ConnectionRefusedError) else (
            f"no answer within {timeout_s:g} s" if isinstance(e, TimeoutError)
            else one_line(str(e) or type(e).__name__, limit=160))
        raise TrackingUnreachable(
            f"MLflow database store {mask_uri(uri)} is unreachable ({reason}); "
            f"start the database or set tracking.uri=..."
        ) from None


# --------------------------------------------------------------------------- experiments


def experiment_slug(name: str) -> str:
    """The folder of an experiment's artifacts under a SQLite store's artifact root."""
    import re

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
        location = (f"{artifact_root.rstrip('/')}/{experiment_slug(name)}" if artifact_root
                    else None)
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
