"""Where the store writer (:mod:`lab.track.sweep_writer`) puts runs: the same seven steps
either straight into a SQLite store's tables (:class:`DirectSink`, no MLflow import) or
through MLflow's client (:class:`ClientSink`: any store, and what the direct path does not
do: creating the store, restoring a deleted experiment, remote artifacts).

Both write what ``lab.sync`` writes (the tags of :func:`lab.track.sync.creation_tags`,
:func:`recorded_tags`, :func:`end_tags`), so a run looks the same in the store whichever way
it went, and a later sync finds nothing to add.
"""

from __future__ import annotations

import time
from pathlib import Path

from .fastsql import NeedsMlflow, SqliteRuns
from .runs import STATUS_TO_MLFLOW, UID_TAG
from .store import experiment_slug
from .sync import (
    INCOMPLETE_TAGS,
    REPO_ROOT,
    Syncer,
    creation_tags,
    end_tags,
    recorded_tags,
    repair_quietly,
)
from .uri import artifact_root_for

__all__ = ["ClientSink", "DirectSink", "NeedsMlflow", "open_sink"]

#: how long a write of metric rows retries a transient fault before the writer leaves it to
#: its next look (the record keeps the rows meanwhile)
WRITER_RETRY_S = 5.0


def _start_ms(meta: dict) -> int:
    return int(meta.get("started", time.time()) * 1000)


class DirectSink:
    """A SQLite store's tables, written as MLflow's SQL store writes them."""

    how = "writing MLflow's SQLite tables directly"

    def __init__(self, runs: SqliteRuns, uri: str) -> None:
        self.runs = runs
        root = artifact_root_for(uri)  # a new experiment's artifacts, as lab.sync sets them
        self.root = root.rstrip("/") if root else None
        self._experiments: dict[str, tuple[str, str]] = {}  # name -> (id, artifact location)

    def repair(self, uri: str) -> None:
        from . import record as rec
        from .runs import HOST_TAG

        open_runs = [(tags, start) for _, tags, start in self.runs.open_runs(HOST_TAG, rec.HOST)]
        repair_quietly(uri, open_runs)

    def experiment(self, name: str) -> str:
        if name not in self._experiments:
            from ..views.describe import experiment_tags

            exp_id, location = self.runs.experiment(
                name, f"{self.root}/{experiment_slug(name)}" if self.root else None)
            have = self.runs.experiment_tags(exp_id)
            want = experiment_tags(name, REPO_ROOT, exp_id)
            changed = {k: v for k, v in want.items() if have.get(k) != v}
            if changed:  # what the UI shows (a write, and a wait for the disk, when needed)
                self.runs.set_experiment_tags(exp_id, changed)
            self._experiments[name] = (exp_id, location)
        return self._experiments[name][0]

    def find(self, exp_id: str, meta: dict) -> str | None:
        if meta.get("run_id"):
            tags = self.runs.run_tags(meta["run_id"])
            if tags is not None and tags.get(UID_TAG, meta.get("uid")) == meta.get("uid"):
                return meta["run_id"]
        return self.runs.run_by_tag(exp_id, UID_TAG, meta["uid"]) if meta.get("uid") else None

    def create(self, exp_id: str, meta: dict, tags: dict, params: dict | None) -> str:
        location = next(loc for i, loc in self._experiments.values() if i == exp_id)
        return self.runs.create(exp_id, location, _start_ms(meta), meta.get("run_name"),
                                creation_tags(meta, tags),
                                {str(k): str(v) for k, v in (params or {}).items()})

    def log(self, run_id: str, rows) -> None:
        from .store import retry

        retry(lambda: self.runs.log_rows(run_id, rows), "log_metrics", WRITER_RETRY_S)

    def add_params(self, run_id: str, params: dict) -> None:
        self.runs.add_params(run_id, {str(k): str(v) for k, v in params.items()})

    def upload(self, run_id: str, base: Path, files) -> None:
        self.runs.upload(run_id, base, files)

    def close(self, run_id: str, status: str, meta: dict) -> None:
        tags = recorded_tags(meta)
        if status not in STATUS_TO_MLFLOW:  # "running": a live sweep parent
            self.runs.end(run_id, tags, (), None, None)
            return
        end = meta.get("ended")
        self.runs.end(run_id, {**tags, **end_tags(meta, status)}, INCOMPLETE_TAGS,
                      STATUS_TO_MLFLOW[status], int((end or time.time()) * 1000))

    def shut(self) -> None:
        self.runs.close()


class ClientSink:
    """MLflow's client, through :class:`lab.track.sync.Syncer` (metric values still go
    straight into a SQLite store's tables when it has the known schema)."""

    how = "through MLflow's client"

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.syncer = Syncer(uri)
        self.client = self.syncer.client

    def repair(self, uri: str) -> None:
        repair_quietly(uri)

    def experiment(self, name: str) -> str:
        return self.syncer._experiment(name)

    def find(self, exp_id: str, meta: dict) -> str | None:
        run = self.syncer._find(exp_id, meta)
        return run.info.run_id if run is not None else None

    def create(self, exp_id: str, meta: dict, tags: dict, params: dict | None) -> str:
        return self.syncer._create(exp_id, meta, tags, params=params).info.run_id

    def log(self, run_id: str, rows) -> None:
        self.syncer._log(run_id, rows, WRITER_RETRY_S)

    def add_params(self, run_id: str, params: dict) -> None:
        self.syncer._add_params(self.client.get_run(run_id), params)

    def upload(self, run_id: str, base: Path, files) -> None:
        self.syncer._upload(run_id, base, list(files), have=set())

    def close(self, run_id: str, status: str, meta: dict) -> None:
        self.syncer._close(self.client.get_run(run_id), status, meta)

    def shut(self) -> None:
        if self.syncer.fast is not None:
            self.syncer.fast.close()


def open_sink(uri: str, direct: bool = True) -> DirectSink | ClientSink:
    """The direct path where the store allows it (and ``direct``), else MLflow's client."""
    runs = SqliteRuns.open(uri) if direct else None
    return DirectSink(runs, uri) if runs is not None else ClientSink(uri)
