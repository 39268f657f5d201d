"""MLflow's SQLite tables written directly: metric values (the one write that dominates)
and, for the store writer, whole runs without importing MLflow.

MLflow's SQL store spends ~100-500 µs per metric value building and flushing SQLAlchemy
objects; a run logs thousands. For a ``sqlite:///`` store whose ``metrics`` and
``latest_metrics`` tables have the columns this module knows (checked once per store), the
writer inserts rows with one ``executemany`` (~10 µs a value) and updates ``latest_metrics``
by MLflow's rule (the value of the greatest (step, timestamp, value)). Any other store, or
another schema, goes through ``MlflowClient.log_batch``.

:class:`SqliteRuns` does the rest of a run's life the same way (create with tags and params,
artifacts into a local artifact location, tags and status at the end), as MLflow's SQL store
writes them (``SqlAlchemyStore.create_run``, ``set_tag``, ``update_run_info``): importing
MLflow and opening its client costs a run's writer ~1.7 s of CPU that the training's two
threads would otherwise have. Whatever it does not know (a store without the schema, an
experiment that does not exist yet, a remote artifact location) raises :class:`NeedsMlflow`,
and the caller goes through MLflow's client.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import unquote, urlparse

from .uri import sqlite_path

METRIC_COLUMNS = {"key", "value", "timestamp", "run_uuid", "step", "is_nan"}
LATEST_COLUMNS = {"key", "value", "timestamp", "step", "is_nan", "run_uuid"}
#: how long one write waits for another process's lock before the writer's own retries (with
#: backoff, up to its budget) take over; MLflow's own sessions wait 20 s
BUSY_TIMEOUT_S = 5.0

_INSERT = ("INSERT OR IGNORE INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
           "VALUES (?, ?, ?, ?, ?, 0)")
_LATEST = (
    "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
    "VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT (key, run_uuid) DO UPDATE SET "
    "value = excluded.value, timestamp = excluded.timestamp, step = excluded.step, is_nan = 0 "
    "WHERE (excluded.step, excluded.timestamp, excluded.value) > "
    "(latest_metrics.step, latest_metrics.timestamp, latest_metrics.value)")

_compatible: dict[str, bool] = {}
_lock = threading.Lock()


def sqlite_fast_path(uri: str) -> Path | None:
    """The database file when metrics may be written directly, else None."""
    path = sqlite_path(uri)
    if path is None or not path.exists() or sqlite3.sqlite_version_info < (3, 24):
        return None
    with _lock:
        if uri not in _compatible:
            try:
                con = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)
                try:
                    cols = {t: {r[1] for r in con.execute(f"PRAGMA table_info({t})")}
                            for t in ("metrics", "latest_metrics")}
                finally:
                    con.close()
                _compatible[uri] = (cols["metrics"] == METRIC_COLUMNS
                                    and cols["latest_metrics"] == LATEST_COLUMNS)
            except sqlite3.Error:
                _compatible[uri] = False
    return path if _compatible[uri] else None


def insert_metrics(con: sqlite3.Connection, run_id: str, rows) -> None:
    """Metric rows ``(key, value, timestamp_ms, step)`` and their ``latest_metrics`` (inside
    the caller's transaction)."""
    rows = [(key, value, ts, run_id, step) for key, value, ts, step in rows]
    latest: dict[str, tuple] = {}
    for key, value, ts, _, step in rows:
        best = latest.get(key)
        if best is None or (step, ts, value) > (best[3], best[2], best[1]):
            latest[key] = (key, value, ts, step, run_id)
    con.executemany(_INSERT, rows)
    con.executemany(_LATEST, list(latest.values()))


class SqliteMetrics:
    """``log(run_id, metrics)``: finite :class:`mlflow.entities.Metric` values in one
    transaction (one connection per writer thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._con: sqlite3.Connection | None = None

    def log(self, run_id: str, metrics) -> None:
        self.log_rows(run_id, [(m.key, m.value, m.timestamp, m.step) for m in metrics])

    def log_rows(self, run_id: str, rows) -> None:
        """``rows``: finite ``(key, value, timestamp_ms, step)``, in one transaction."""
        self._connect()
        con = self._con
        try:
            with con:  # one transaction: all of it or none
                insert_metrics(con, run_id, rows)
        except sqlite3.Error:
            self.close()
            raise

    def steps(self, run_id: str) -> dict[str, set[int]]:
        """The steps at which the store holds each metric of a run (one query, where MLflow's
        client asks once per metric name and builds an object per value)."""
        self._connect()
        found: dict[str, set[int]] = {}
        for key, step in self._con.execute("SELECT key, step FROM metrics WHERE run_uuid = ?",
                                           (run_id,)):
            found.setdefault(key, set()).add(step)
        return found

    def _connect(self) -> None:
        if self._con is None:
            self._con = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S,
                                        check_same_thread=False)

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


# --------------------------------------------------------------------- whole runs

RUN_COLUMNS = {"run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id",
               "status", "start_time", "end_time", "source_version", "lifecycle_stage",
               "artifact_uri", "experiment_id", "deleted_time"}
KEY_VALUE_COLUMNS = {"key", "value", "run_uuid"}  # tags, params
EXPERIMENT_TAG_COLUMNS = {"key", "value", "experiment_id"}
EXPERIMENT_COLUMNS = {"experiment_id", "name", "artifact_location", "lifecycle_stage"}  # (read)
RUN_NAME_TAG, USER_TAG = "mlflow.runName", "mlflow.user"

_UPSERT_TAG = ("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?) "
               "ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value")
_UPSERT_EXPERIMENT_TAG = ("INSERT INTO experiment_tags (key, value, experiment_id) VALUES "
                          "(?, ?, ?) ON CONFLICT (key, experiment_id) DO UPDATE SET "
                          "value = excluded.value")


class NeedsMlflow(Exception):
    """What the direct path does not do (the caller goes through MLflow's client)."""


def local_dir(uri: str) -> Path | None:
    """The directory of a local artifact URI (``file:///abs`` or ``/abs``), else None."""
    if uri.startswith("/"):
        return Path(uri)
    parsed = urlparse(uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost") and not parsed.query:
        return Path(unquote(parsed.path))  # (url2pathname on POSIX)
    return None


class SqliteRuns:
    """A run's life in a SQLite store's tables, each step one transaction (:meth:`open`: None
    when the store's tables are not the ones this class knows)."""

    def __init__(self, path: Path, con: sqlite3.Connection, workspaces: bool) -> None:
        self.path, self.con = path, con
        self.workspaces = workspaces  # MLflow >= 3.x: experiments belong to a workspace

    @classmethod
    def open(cls, uri: str) -> SqliteRuns | None:
        path = sqlite_fast_path(uri)  # (also: the file exists, metrics' tables are known)
        if path is None:
            return None
        try:
            con = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)
        except sqlite3.Error:
            return None
        try:
            cols = {t: {r[1] for r in con.execute(f"PRAGMA table_info({t})")}
                    for t in ("runs", "tags", "params", "experiments", "experiment_tags")}
        except sqlite3.Error:
            con.close()
            return None
        if not (cols["runs"] == RUN_COLUMNS and cols["tags"] == KEY_VALUE_COLUMNS
                and cols["params"] == KEY_VALUE_COLUMNS
                and cols["experiment_tags"] == EXPERIMENT_TAG_COLUMNS
                and EXPERIMENT_COLUMNS <= cols["experiments"]):
            con.close()
            return None
        return cls(path, con, "workspace" in cols["experiments"])

    def close(self) -> None:
        self.con.close()

    # -- experiments
    def experiment(self, name: str, location: str | None = None) -> tuple[str, str]:
        """``(experiment_id, artifact_location)`` of an active experiment; a missing one is
        created with artifacts at ``location`` (as MLflow's ``create_experiment``), when given."""
        sql = ("SELECT experiment_id, artifact_location, lifecycle_stage FROM experiments "
               "WHERE name = ?" + (" AND workspace = 'default'" if self.workspaces else ""))
        rows = self.con.execute(sql, (name,)).fetchall()
        if not rows and location is not None:
            now = int(time.time() * 1000)
            try:
                with self.con:
                    self.con.execute(
                        "INSERT INTO experiments (name, artifact_location, lifecycle_stage, "
                        "creation_time, last_update_time) VALUES (?, ?, 'active', ?, ?)",
                        (name, location, now, now))
            except sqlite3.IntegrityError:  # another process created it first: read it
                pass
            rows = self.con.execute(sql, (name,)).fetchall()
        if len(rows) != 1 or rows[0][2] != "active":
            raise NeedsMlflow(f"experiment {name!r} is to be created (or restored)")
        return str(rows[0][0]), rows[0][1] or ""

    def experiment_tags(self, experiment_id: str) -> dict[str, str]:
        return dict(self.con.execute("SELECT key, value FROM experiment_tags WHERE "
                                     "experiment_id = ?", (int(experiment_id),)))

    def set_experiment_tags(self, experiment_id: str, tags: dict[str, str]) -> None:
        with self.con:
            self.con.executemany(_UPSERT_EXPERIMENT_TAG,
                                 [(k, v, int(experiment_id)) for k, v in tags.items()])

    # -- runs
    def run_tags(self, run_id: str) -> dict[str, str] | None:
        """The run's tags; None if the store has no such run."""
        if self.con.execute("SELECT 1 FROM runs WHERE run_uuid = ?", (run_id,)).fetchone() is None:
            return None
        return dict(self.con.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)))

    def run_by_tag(self, experiment_id: str, key: str, value: str) -> str | None:
        """An active run of the experiment with tag ``key`` = ``value``."""
        row = self.con.execute(
            "SELECT r.run_uuid FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid WHERE "
            "r.experiment_id = ? AND r.lifecycle_stage = 'active' AND t.key = ? AND t.value = ? "
            "LIMIT 1", (int(experiment_id), key, value)).fetchone()
        return row[0] if row else None

    def create(self, experiment_id: str, location: str, start_ms: int, run_name: str | None,
               tags: dict[str, str], params: dict[str, str]) -> str:
        """A RUNNING run with its tags (``mlflow.runName`` added) and params, as MLflow's
        ``create_run`` + ``log_batch`` leave it; its id."""
        if local_dir(location) is None:
            raise NeedsMlflow(f"artifact location {location!r} is not a local directory")
        name = run_name or tags.get(RUN_NAME_TAG)
        if not name:
            raise NeedsMlflow("a run without a name (MLflow picks one)")
        run_id = uuid.uuid4().hex
        tags = {**tags, RUN_NAME_TAG: tags.get(RUN_NAME_TAG, name)}
        with self.con:
            self.con.execute(
                "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, "
                "user_id, status, start_time, end_time, source_version, lifecycle_stage, "
                "artifact_uri, experiment_id, deleted_time) VALUES "
                "(?, ?, 'UNKNOWN', '', '', ?, 'RUNNING', ?, NULL, '', 'active', ?, ?, NULL)",
                (run_id, name, tags.get(USER_TAG, "unknown"), start_ms,
                 f"{location.rstrip('/')}/{run_id}/artifacts", int(experiment_id)))
            self.con.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
                                 [(k, v, run_id) for k, v in tags.items()])
            self.con.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)",
                                 [(k, v, run_id) for k, v in params.items()])
        return run_id

    def add_params(self, run_id: str, params: dict[str, str]) -> None:
        """Params the run does not have yet (a logged param never changes)."""
        with self.con:
            self.con.executemany("INSERT OR IGNORE INTO params (key, value, run_uuid) VALUES "
                                 "(?, ?, ?)", [(k, v, run_id) for k, v in params.items()])

    def log_rows(self, run_id: str, rows) -> None:
        with self.con:
            insert_metrics(self.con, run_id, rows)

    def upload(self, run_id: str, base: Path, files) -> int:
        """Copy ``files`` (paths under ``base``) into the run's artifact directory, at their
        path relative to ``base``; how many."""
        row = self.con.execute("SELECT artifact_uri FROM runs WHERE run_uuid = ?",
                               (run_id,)).fetchone()
        root = local_dir(row[0] or "") if row else None
        if root is None:
            raise NeedsMlflow(f"run {run_id}'s artifacts are not in a local directory")
        n = 0
        for f in files:
            if f.is_file():
                dest = root / f.relative_to(base)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, dest)  # (what MLflow's LocalArtifactRepository does)
                n += 1
        return n

    def end(self, run_id: str, tags: dict[str, str], drop: tuple[str, ...],
            status: str | None, end_ms: int | None) -> None:
        """Set ``tags``, delete the tags ``drop``, and (``status``: MLflow's) end the run."""
        with self.con:
            self.con.executemany(_UPSERT_TAG, [(k, v, run_id) for k, v in tags.items()])
            if drop:
                self.con.execute(f"DELETE FROM tags WHERE run_uuid = ? AND key IN "
                                 f"({', '.join('?' * len(drop))})", (run_id, *drop))
            if status is not None:
                self.con.execute("UPDATE runs SET status = ?, end_time = ? WHERE run_uuid = ?",
                                 (status, end_ms, run_id))

    def open_runs(self, host_tag: str, host: str) -> list[tuple[str, dict[str, str], int]]:
        """Active RUNNING runs tagged ``host_tag`` = ``host``: ``(run_id, tags, start_ms)``."""
        rows = self.con.execute(
            "SELECT r.run_uuid, r.start_time FROM runs r JOIN experiments e ON "
            "e.experiment_id = r.experiment_id JOIN tags t ON t.run_uuid = r.run_uuid WHERE "
            "r.status = 'RUNNING' AND r.lifecycle_stage = 'active' AND "
            "e.lifecycle_stage = 'active' AND t.key = ? AND t.value = ?",
            (host_tag, host)).fetchall()
        return [(run_id, self.run_tags(run_id) or {}, start or 0) for run_id, start in rows]
