"""Metric values straight into a SQLite store's tables, for the one write that dominates.

MLflow's SQL store spends ~100-500 µs per metric value building and flushing SQLAlchemy
objects; a run logs thousands. For a ``sqlite:///`` store whose ``metrics`` and
``latest_metrics`` tables have the columns this module knows (checked once per store), the
writer inserts rows with one ``executemany`` (~10 µs a value) and updates ``latest_metrics``
by MLflow's rule (the value of the greatest (step, timestamp, value)). Any other store, or
another schema, goes through ``MlflowClient.log_batch``.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

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


class SqliteMetrics:
    """``log(run_id, metrics)``: finite :class:`mlflow.entities.Metric` values in one
    transaction (one connection per writer thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._con: sqlite3.Connection | None = None

    def log(self, run_id: str, metrics) -> None:
        if self._con is None:
            self._con = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S,
                                        check_same_thread=False)
        rows = [(m.key, m.value, m.timestamp, run_id, m.step) for m in metrics]
        latest: dict[str, tuple] = {}
        for key, value, ts, _, step in rows:
            best = latest.get(key)
            if best is None or (step, ts, value) > (best[3], best[2], best[1]):
                latest[key] = (key, value, ts, step, run_id)
        con = self._con
        try:
            with con:  # one transaction: all of it or none
                con.executemany(_INSERT, rows)
                con.executemany(_LATEST, list(latest.values()))
        except sqlite3.Error:
            self.close()
            raise

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
