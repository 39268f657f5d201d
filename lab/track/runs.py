"""Runs and sweep parents in the store, each beside its record in a run (or sweep) directory.

Everything goes through an explicit ``MlflowClient`` and run id (never ``mlflow.start_run`` or
``MLFLOW_RUN_ID``), so a reused joblib worker never inherits a run. A run's end is written to
its directory first and to the store second: if the store cannot take it, the run is tagged
``status=incomplete`` there (or left for ``python -m lab.sync`` to close) and
:class:`StoreIncomplete` says so in one line.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from filelock import FileLock

from . import record as rec
from .fastsql import SqliteMetrics, sqlite_fast_path
from .params import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_TAGS_PER_BATCH,
    batches,
    flatten_params,
    tag_value,
)
from .store import RETRY_BUDGET_S, ensure_store, get_or_create_experiment, retry
from .store import client as make_client
from .uri import artifact_root_for, mask_uri, one_line
from .writer import MetricWriter

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

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
    "lost": "KILLED",
}
#: tags that find a run's record again (``lab.sync``, ``--repair``)
UID_TAG, DIR_TAG, HOST_TAG, PID_TAG = ("gradlab.uid", "gradlab.run_dir", "gradlab.host",
                                       "gradlab.pid")
SYNC_COMMAND = "python -m lab.sync"


def sync_command(path: Path | str) -> str:
    return f"{SYNC_COMMAND} {path}"


class StoreIncomplete(RuntimeError):
    """A run's values are not all in the store; its directory has them (one-line message)."""

    def __init__(self, run_dir: Path | None, missing: int, reason: str) -> None:
        self.run_dir, self.missing = run_dir, missing
        where = f"they are in {run_dir}; run `{sync_command(run_dir)}` (or `make sync`)" \
            if run_dir else "run `make sync` when the store is back"
        what = ("the run is not all in the store" if missing is None else
                f"{missing} metric values are not in the store" if missing > 0 else
                "the run's end is not in the store")
        super().__init__(f"{what} ({reason}); {where}")


class _RunHandle:
    """Artifacts and tags for one run through an explicit client (no global run)."""

    client: MlflowClient
    run_id: str

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(str(k), tag_value(v)) for k, v in tags.items()]
        for chunk in batches(items, MAX_PARAMS_TAGS_PER_BATCH):
            retry(lambda c=chunk: self.client.log_batch(self.run_id, tags=c), "set_tags")

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
        written at once (non-finite values skipped): a sweep parent's findings."""
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(s)) for block, steps in metrics
                 for k, values in block.items() for v, s in zip(values, steps) if np.isfinite(v)]
        for chunk in batches(items, MAX_METRICS_PER_BATCH):
            retry(lambda c=chunk: self.client.log_batch(self.run_id, metrics=c), "log_metrics")
        flat = [Param(k, v) for k, v in flatten_params(params or {}).items()]
        for chunk in batches(flat, MAX_PARAMS_TAGS_PER_BATCH):
            retry(lambda c=chunk: self.client.log_batch(self.run_id, params=c), "log_params")
        self.set_tags(tags or {})

    def set_experiment_tags(self, tags: Mapping[str, Any]) -> None:
        """Tags of the run's experiment (what kind it is, its description, a shared view)."""
        experiment_id = self.experiment_id
        for key, value in tags.items():
            retry(lambda k=key, v=value: self.client.set_experiment_tag(experiment_id, k, str(v)),
                  "set_experiment_tag")

    def _terminate(self, status: str, tags: Mapping[str, Any] | None = None) -> None:
        if status not in STATUS_TO_MLFLOW:
            raise ValueError(f"unknown run status {status!r}; valid: {', '.join(STATUS_TO_MLFLOW)}")
        _RunHandle.set_tags(self, {"status": status, **(tags or {})})
        retry(lambda: self.client.set_terminated(self.run_id, STATUS_TO_MLFLOW[status]),
              "set_terminated")


class RunTracker(_RunHandle):
    """One job's MLflow run, and its record in ``run_dir`` when given.

    ``start()`` creates the run (child of ``parent_run_id`` if given) and logs the
    params; ``log_metrics`` / ``log_series`` go through a :class:`MetricWriter`;
    ``finish(status)`` flushes and terminates. As a context manager: ``completed`` on a clean
    exit unless ``finish`` was already called, ``failed`` on an exception (tag ``error`` and
    artifact ``error.txt``), ``interrupted`` on KeyboardInterrupt; the exception propagates.
    If values could not be stored, the run is tagged ``status=incomplete`` (``missing_values``,
    ``sync_command``) and ``finish`` raises :class:`StoreIncomplete` after ending it.
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
        record: rec.RunRecord | None = None,
    ) -> None:
        self.uri = uri
        self.experiment = experiment
        self.run_name = run_name
        self.params = dict(params or {})
        self.tags = dict(tags or {})
        self.parent_run_id = parent_run_id or None
        self.artifact_root = artifact_root if artifact_root is not None else artifact_root_for(uri)
        self._client = None  # made on first use: on the thread that starts the run
        self.record = record
        self.run_id: str | None = None  # type: ignore[assignment]
        self.experiment_id: str | None = None
        self.writer: MetricWriter | None = None
        self.status: str | None = None
        self.error: BaseException | None = None
        self.trouble: str | None = None  # why a tag or artifact could not be stored
        self._lost_values = 0  # values never queued: the run could not be created
        self.deferred = 0  # tags/artifacts left to `lab.sync`

    @property
    def client(self) -> MlflowClient:
        """The store's client, made when first needed (importing MLflow takes a second or two:
        ``start_in_background`` pays for it on its thread, not the training's)."""
        if self._client is None:
            self._client = make_client(self.uri)
        return self._client

    # -- lifecycle
    def start(self) -> RunTracker:
        if self.run_id is not None:
            return self
        ensure_store(self.uri)
        self.experiment_id = retry(
            lambda: get_or_create_experiment(self.client, self.experiment, self.artifact_root),
            "get_or_create_experiment",
        )
        tags = {str(k): tag_value(v) for k, v in self.tags.items()}
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        if self.record is not None:
            tags.update({UID_TAG: self.record.meta["uid"], DIR_TAG: str(self.record.dir),
                         HOST_TAG: rec.HOST, PID_TAG: str(os.getpid())})
        run = retry(
            lambda: self.client.create_run(self.experiment_id, tags=tags, run_name=self.run_name),
            "create_run",
        )
        self.run_id = run.info.run_id
        if self.record is not None:
            self.record.update(run_id=self.run_id, experiment=self.experiment,
                               run_name=self.run_name, uri=mask_uri(self.uri),
                               params=flatten_params(self.params), tags=tags)
        atexit.register(self._atexit)
        try:  # the run exists: from here on a failure (or Ctrl-C) must not leave it RUNNING
            from mlflow.entities import Param

            params = flatten_params(self.params)
            items = [Param(k, v) for k, v in params.items()]
            for chunk in batches(items, MAX_PARAMS_TAGS_PER_BATCH):
                retry(lambda c=chunk: self.client.log_batch(self.run_id, params=c), "log_params")
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        path = sqlite_fast_path(self.uri)
        self.writer = MetricWriter(self.client, self.run_id,
                                   fast=SqliteMetrics(path) if path is not None else None)
        return self

    # -- started in the background: the store's latency (and MLflow's import) off the run's path
    def start_in_background(self, before=None) -> RunTracker:
        """``start()`` on a thread (after ``before()``, e.g. closing lost runs) while the
        caller trains; metric series wait in memory until the run exists. Every other call
        waits for the start; if it failed, the run is left to ``lab.sync`` (the record has
        everything) and ``finish`` raises :class:`StoreIncomplete`."""
        self._early: list | None = []
        self._early_lock = threading.Lock()
        self._started = threading.Event()

        def go() -> None:
            try:
                if before is not None:
                    before()
                self.start()
            except BaseException as e:  # reported when the run ends
                self.trouble = one_line(e, 200)
            finally:
                with self._early_lock:
                    early, self._early = self._early, None
                    if self.writer is not None:
                        for series, ts in early:
                            self.writer.put_series(series, ts)
                    else:
                        self._lost_values += sum(len(v) for ser, _ in early
                                                 for _, v in ser.values())
                self._started.set()

        threading.Thread(target=go, name="start-run", daemon=True).start()
        return self

    def wait_started(self) -> None:
        if getattr(self, "_started", None) is not None:
            self._started.wait()

    # -- tolerant writes: with a record, a store fault is left to `lab.sync`, never fatal
    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self.record is not None:
            self.record.meta.setdefault("tags", {}).update(
                {str(k): tag_value(v) for k, v in tags.items()})
        self._tolerant(lambda: super(RunTracker, self).set_tags(tags))

    def log_artifact(self, local_path: str | os.PathLike, artifact_path: str | None = None):
        self._tolerant(lambda: super(RunTracker, self).log_artifact(local_path, artifact_path))

    def _tolerant(self, fn) -> None:
        self.wait_started()
        if self.record is None:
            fn()
            return
        if self.run_id is None or self.trouble is not None or (self.writer is not None and self.writer.store_down):
            self.deferred += 1  # the store is down: do not wait for it again
            return
        try:
            retry(fn, "store write", budget_s=min(RETRY_BUDGET_S, 10.0))
        except Exception as e:
            self.trouble = one_line(e, 200)
            self.deferred += 1

    def log_metrics(
        self,
        metrics: Mapping[str, np.ndarray],
        steps: np.ndarray,
        timestamp_ms: int | np.ndarray | None = None,
    ) -> None:
        """Queue aligned metric arrays (see :meth:`MetricWriter.put`); returns at once."""
        self._require_started()
        self.writer.put(metrics, steps, timestamp_ms)

    def log_series(self, series: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Queue ``{name: (steps, values)}`` (see :func:`lab.track.detail.store_series`)."""
        lock = getattr(self, "_early_lock", None)
        if lock is not None:
            with lock:
                if self._early is not None:  # the run is being created
                    self._early.append((series, int(time.time() * 1000)))
                    return
            if self.writer is None:  # it could not be: `lab.sync` will create it
                self._lost_values += sum(len(v) for _, v in series.values())
                return
        self._require_started()
        self.writer.put_series(series)

    def finish(self, status: str = "completed") -> None:
        """Flush metrics, set tag ``status`` and end the run. Later calls do nothing.

        Raises :class:`StoreIncomplete` (after ending the run as well as the store allows)
        when values are missing from the store.
        """
        self.wait_started()
        if self.run_id is None and self.record is not None and self.status is None:
            self.status = status  # the store never got the run: the record is all there is
            self.record.close(status=status, ended=time.time(), store_missing=-1)
            raise StoreIncomplete(self.record.dir, self._lost_values, self.trouble or "no run")
        if self._claim(status):
            self._complete(status)

    def _claim(self, status: str) -> bool:
        if status not in STATUS_TO_MLFLOW:
            raise ValueError(f"unknown run status {status!r}; valid: {', '.join(STATUS_TO_MLFLOW)}")
        if self.run_id is None or self.status is not None:
            return False
        self.status = status
        atexit.unregister(self._atexit)
        return True

    def _complete(self, status: str) -> None:
        missing, reason = 0, ""
        if self.writer is not None:
            try:
                self.writer.close()
            except RuntimeError as e:
                missing, reason = self.writer.n_failed, one_line(self.writer.error or e, 200)
        if self.deferred and not missing:
            missing, reason = -1, self.trouble or "store down"
        where = self.record.dir if self.record is not None else None
        if self.record is not None:  # the directory first: it is the record
            self.record.close(status=status, ended=time.time(), store_missing=missing)
        try:
            if missing:
                self._terminate_incomplete(status, missing, reason, where)
            else:
                self._terminate(status)
        except Exception as e:  # the store is gone: the record says how the run ended
            if self.record is None:
                raise
            if not missing:
                missing, reason = -1, one_line(e, 200)
                self.record.update(store_missing=missing)
        if missing:
            raise StoreIncomplete(where, missing, reason)

    def _terminate_incomplete(self, status, missing, reason, where) -> None:
        if self.writer is not None and self.writer._permanent:
            raise RuntimeError(reason)  # no use trying: `lab.sync` ends the run
        tags = {"status": "incomplete", "status_after_sync": status,
                "missing_values": max(missing, 0), "missing_artifacts": self.deferred,
                "sync_command": sync_command(where) if where else "make sync",
                "tracking_error": reason}
        _RunHandle.set_tags(self, tags)
        retry(lambda: self.client.set_terminated(self.run_id, STATUS_TO_MLFLOW[status]),
              "set_terminated")

    # -- context manager
    def __enter__(self) -> RunTracker:
        return self if getattr(self, "_started", None) is not None else self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.wait_started()
        if self.run_id is None and self.record is not None and self.status is None:
            status = "completed" if exc is None else (
                "failed" if isinstance(exc, Exception) else "interrupted")
            try:
                self.finish(status)
            except StoreIncomplete as e:
                if exc is None:
                    raise
                self.error = e
            return False
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
            self.error = e
            log.debug("could not record run %s as %s: %s", self.run_id, status, one_line(e))
        return False

    # -- internals
    def _record_error(self, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {one_line(exc)}"
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if self.record is not None:
            (self.record.dir / "error.txt").write_text(text)
            self.record.meta.setdefault("tags", {})["error"] = message
        self.set_tags({"error": message})
        try:
            self.log_text(text, "error.txt")
        except Exception as e:  # the tag is already there
            log.debug("could not log error.txt for run %s: %s", self.run_id, one_line(e))

    def _atexit(self) -> None:
        try:
            self.finish("interrupted")
        except Exception:  # interpreter is exiting
            pass

    def _require_started(self) -> None:
        if self.run_id is None or self.writer is None:
            raise RuntimeError("RunTracker.start() has not been called")


def findings_json(found: Mapping[str, Any]) -> dict:
    """A sweep parent's findings (``record``'s keyword arguments) as JSON: flat params, tags,
    metric blocks ``[[{name: values}, steps]]``."""
    blocks = [[{k: np.asarray(v, dtype=float).tolist() for k, v in block.items()},
               np.asarray(steps).tolist()] for block, steps in found.get("metrics", ())]
    return {"params": flatten_params(found.get("params") or {}),
            "tags": {str(k): tag_value(v) for k, v in (found.get("tags") or {}).items()},
            "metrics": blocks}


def record_sweep(uri: str, experiment: str, sweep_dir: Path, run_name: str | None,
                 tags: Mapping[str, Any] | None) -> dict:
    """A sweep's ``sweep.json`` (the parent run's record: uid, host, pid, tags), written."""
    sweep_dir = Path(sweep_dir)
    me = rec.identity()
    run_tags = {str(k): tag_value(v) for k, v in (tags or {}).items()}
    run_tags.setdefault("sweep_dir", str(sweep_dir.resolve()))
    run_tags.setdefault("gradlab.role", "sweep_parent")
    uid = rec.new_uid()
    run_tags.update({UID_TAG: uid, DIR_TAG: str(sweep_dir.resolve()), HOST_TAG: me["host"],
                     PID_TAG: str(me["pid"])})
    meta = {"uid": uid, **me, "uri": mask_uri(uri), "experiment": experiment,
            "run_name": run_name, "tags": run_tags, "status": "running"}
    rec.write_json(sweep_dir / rec.SWEEP_FILE, meta)
    return meta


class SweepParent(_RunHandle):
    """Parent run of a Hydra multirun, shared by every process of the sweep.

    :meth:`open` is safe to call from the launching process and from each (joblib)
    worker: under ``<sweep_dir>/.mlflow_parent_run_id.lock`` the first caller creates the
    run (or adopts ``$GRADLAB_PARENT_RUN_ID``) and writes its id to
    ``<sweep_dir>/.mlflow_parent_run_id`` (and its record to ``sweep.json``); later callers
    read it.
    """

    def __init__(self, client: MlflowClient, run_id: str, experiment_id: str, created: bool,
                 sweep_dir: Path | None = None):
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.created = created
        self.sweep_dir = sweep_dir
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
        client = make_client(uri)
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
                    return cls(client, run_id, run.info.experiment_id, created=False,
                               sweep_dir=sweep_dir)
                log.warning("parent run %s not found in %s; creating one", run_id, mask_uri(uri))
            experiment_id = retry(
                lambda: get_or_create_experiment(client, experiment, artifact_root),
                "get_or_create_experiment",
            )
            meta = record_sweep(uri, experiment, sweep_dir, run_name, tags)
            run = retry(
                lambda: client.create_run(experiment_id, tags=meta["tags"], run_name=run_name),
                "create_run",
            )
            rec.write_json(sweep_dir / rec.SWEEP_FILE, {**meta, "run_id": run.info.run_id})
            cls._write_id(id_file, run.info.run_id)
            return cls(client, run.info.run_id, experiment_id, created=True, sweep_dir=sweep_dir)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """In ``sweep.json`` (the record) and in the store."""
        self._record(tags={**self._recorded().get("tags", {}),
                           **{str(k): tag_value(v) for k, v in tags.items()}})
        super().set_tags(tags)

    def save_record(self, found: Mapping[str, Any]) -> None:
        """What :meth:`record` wrote (params, metric blocks; tags are recorded by set_tags),
        kept in ``sweep.json`` so that ``lab.sync`` can write it into another store."""
        found = findings_json(found)
        self._record(findings={"params": found["params"], "metrics": found["metrics"]})

    def _recorded(self) -> dict:
        if self.sweep_dir is None:
            return {}
        return rec.read_json(self.sweep_dir / rec.SWEEP_FILE) or {}

    def _record(self, **fields: Any) -> None:
        meta = self._recorded()
        if meta:
            rec.write_json(self.sweep_dir / rec.SWEEP_FILE, {**meta, **fields})

    def close(self, status: str = "completed") -> None:
        """Tag ``status`` and terminate the parent run. Later calls do nothing."""
        if self.status is not None:
            return
        self.status = status
        self._record(status=status, ended=time.time())
        _RunHandle.set_tags(self, {"status": status})
        retry(lambda: self.client.set_terminated(self.run_id, STATUS_TO_MLFLOW[status]),
              "set_terminated")

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


def log_artifacts(uri: str, run_id: str, local_dir: Path | str, artifact_path: str | None = None):
    """Upload a directory's files to a run (e.g. its figures, from another process)."""
    retry(lambda: make_client(uri).log_artifacts(run_id, str(local_dir), artifact_path),
          "log_artifacts")
