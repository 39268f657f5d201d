"""Copy run directories into a store: ``python -m lab.sync PATH...`` (``make sync``).

Idempotent. For each run directory (``run.json``) and sweep directory (``sweep.json``) it finds
the run in the store (by its id, else by its ``gradlab.uid`` tag) or creates it with the same
name, params, tags and parent; adds the metric values the store lacks (the same selection
live logging makes, :mod:`lab.track.detail`) and the artifacts it lacks; and ends the run with
the status its directory records, or as ``lost`` (KILLED) when the process that ran it is gone.
A second sync finds nothing to do. ``repair`` closes this host's RUNNING runs whose process is
gone, syncing what their directories hold.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import read
from . import record as rec
from .detail import StorePlan, store_series
from .fastsql import SqliteMetrics, sqlite_fast_path
from .params import MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH, batches, tag_value
from .runs import DIR_TAG, HOST_TAG, PID_TAG, STATUS_TO_MLFLOW, UID_TAG, sync_command
from .store import RETRY_BUDGET_S, ensure_store, get_or_create_experiment, retry
from .store import client as make_client
from .uri import artifact_root_for, mask_uri, one_line

REPO_ROOT = Path(__file__).resolve().parents[2]  # experiments/ and conf/: the study questions

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

#: files of a run directory that are artifacts of its run (plus figures/*.png)
RUN_ARTIFACTS = ("config.yaml", "history.npz", "params.npz", "summary.json", "error.txt")
SWEEP_ARTIFACTS = ("summary.csv", "summary.json")
#: tags a completed sync removes
INCOMPLETE_TAGS = ("missing_values", "missing_artifacts", "sync_command", "status_after_sync",
                   "tracking_error")


@dataclass
class SyncReport:
    runs: int = 0  # run and sweep directories looked at
    created: int = 0  # runs created in the store
    values: int = 0  # metric values added
    artifacts: int = 0  # artifacts uploaded
    closed: int = 0  # runs ended (status set) by the sync
    tags: int = 0  # tags set
    lost: int = 0  # of those, closed as lost
    open: int = 0  # left RUNNING: their process is still alive
    failed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.values or self.artifacts or self.closed or self.tags)

    def line(self) -> str:
        if not self.runs:
            return "nothing to sync (no run directories)"
        head = (f"{self.runs} run directories: {self.created} runs created, {self.values} "
                f"metric values and {self.artifacts} artifacts added, {self.closed} runs closed"
                + (f" ({self.lost} as lost)" if self.lost else ""))
        if self.open:
            head += f", {self.open} still running"
        if not self.changed and not self.failed:
            head += "; the store already held everything"
        if self.failed:
            head += f"; {len(self.failed)} failed: {self.failed[0]}"
        return head


class Syncer:
    def __init__(self, uri: str) -> None:
        ensure_store(uri)
        self.uri = uri
        self.client: MlflowClient = make_client(uri)
        path = sqlite_fast_path(uri)  # metric values read and written straight in SQLite
        self.fast = SqliteMetrics(path) if path is not None else None
        self.report = SyncReport()
        self._parents: dict[Path, str] = {}  # sweep dir -> parent run id in this store
        self._tagged: set[str] = set()  # experiments whose UI tags are set
        self._experiments: dict[str, str] = {}  # name -> id

    # -- sweeps
    def sweep(self, sweep_dir: Path) -> str | None:
        """The parent run of ``sweep_dir`` in this store (created if missing)."""
        sweep_dir = Path(sweep_dir).resolve()
        if sweep_dir in self._parents:
            return self._parents[sweep_dir]
        meta = rec.read_json(sweep_dir / rec.SWEEP_FILE)
        if meta is None:
            return None
        self.report.runs += 1
        exp_id = self._experiment(meta["experiment"])
        run = self._find(exp_id, meta)
        if run is None:
            tags = {k: v for k, v in meta.get("tags", {}).items() if k != "mlflow.parentRunId"}
            run = self._create(exp_id, meta, tags)
        run_id = run.info.run_id
        self._parents[sweep_dir] = run_id
        findings = meta.get("findings")
        if findings:  # the parent's params and job-comparing metrics (its tags: below)
            self._add_params(run, findings.get("params", {}))
            self._add_blocks(run_id, [(block, steps) for block, steps in findings["metrics"]],
                             meta)
        have = read.artifact_paths(self.client, run_id)
        files = [sweep_dir / n for n in SWEEP_ARTIFACTS] + sorted(sweep_dir.glob("figures/*.png"))
        self._upload(run_id, sweep_dir, files, have)
        status = meta.get("status", "running")
        if status == "running" and not self._alive(meta):
            status = "lost"
        self._close(run, status, meta)
        return run_id

    # -- runs
    def run(self, run_dir: Path) -> None:
        run_dir = Path(run_dir).resolve()
        meta = rec.read_run(run_dir)
        if meta is None or not meta.get("experiment"):
            return  # a run that never reached the store's checks: nothing to copy
        self.report.runs += 1
        parent_id = None
        if meta.get("sweep_dir"):  # where it was recorded, else beside the run (moved dirs)
            sweep_dir = Path(meta["sweep_dir"])
            if not (sweep_dir / rec.SWEEP_FILE).exists():
                sweep_dir = run_dir.parent
            parent_id = self.sweep(sweep_dir)
        exp_id = self._experiment(meta["experiment"])
        run = self._find(exp_id, meta)
        fresh = run is None  # created now: the store has none of its values (nothing to ask)
        if run is None:
            tags = {k: v for k, v in meta.get("tags", {}).items() if k != "mlflow.parentRunId"}
            if parent_id:
                tags["mlflow.parentRunId"] = parent_id
            run = self._create(exp_id, meta, tags, params=meta.get("params", {}))
        run_id = run.info.run_id
        status = meta.get("status", "running")
        alive = status == "running" and self._alive(meta)
        if status == "running" and not alive:
            status = "lost"
        settled = (run.info.status != "RUNNING" and run.data.tags.get("status") == status
                   and "missing_values" not in run.data.tags)
        if not settled:  # compare every metric: the store may lack any value
            self._add_metrics(run_id, run_dir, meta, fresh)
            self._add_ui_metrics(run_id, run_dir, meta, fresh)
        if status == "lost" and not (run_dir / "history.npz").exists():
            steps, rows = rec.read_rows(run_dir, meta)
            if steps.size:
                np.savez(run_dir / "history.npz", **rec.history_from_record(run_dir, meta))
        have = read.artifact_paths(self.client, run_id)
        files = [run_dir / n for n in RUN_ARTIFACTS] + sorted(run_dir.glob("figures/*.png"))
        self._upload(run_id, run_dir, files, have)
        if alive:
            self.report.open += 1
            return
        self._close(run, status, meta)
        if meta.get("store_missing") or meta.get("status") != status:
            rec.write_json(run_dir / rec.RUN_FILE, {**meta, "status": status, "store_missing": 0})

    def _add_metrics(self, run_id: str, run_dir: Path, meta: dict, fresh: bool = False) -> None:
        steps, rows = rec.read_rows(run_dir, meta)
        evals = rec.read_evals(run_dir)
        if not steps.size and not evals:
            return
        plan = StorePlan(meta["total_steps"], meta["log_every"], meta.get("detail", "default"))
        series = store_series(plan, steps, rows, evals, diverged_at=meta.get("diverged_at_step"))
        ts = int(meta.get("started", time.time()) * 1000)
        stored = self._stored(run_id, fresh)
        missing = []
        for name, (s, v) in series.items():
            finite = np.isfinite(v)
            if not finite.any():
                continue
            have = stored(name)
            missing.extend((name, float(val), ts, int(st))
                           for st, val in zip(s[finite].tolist(), v[finite].tolist())
                           if st not in have)
        self._log(run_id, missing)

    def _add_ui_metrics(self, run_id: str, run_dir: Path, meta: dict,
                        fresh: bool = False) -> None:
        """The metrics a finished run logs for the UI (depth profile, summary numbers), from
        its ``history.npz`` and ``summary.json``."""
        from ..history import load
        from ..views.describe import end_of_run_metrics

        history, summary = run_dir / "history.npz", rec.read_json(run_dir / "summary.json")
        if history.exists() and summary is not None:
            self._add_blocks(run_id, end_of_run_metrics(load(history), summary), meta, fresh)

    def _add_blocks(self, run_id: str, blocks, meta: dict, fresh: bool = False) -> None:
        """Metric blocks ``[({name: values}, steps)]``: the values the store lacks (all of
        them for a run created by this sync: ``fresh``)."""
        ts = int(meta.get("started", time.time()) * 1000)
        self._log(run_id, block_rows(blocks, ts, self._stored(run_id, fresh)))

    def _stored(self, run_id: str, fresh: bool):
        """``name -> steps the store holds``: nothing for a run created by this sync
        (``fresh``), one query per run on a SQLite store, else one call per name."""
        if fresh:
            return lambda name: set()
        if self.fast is not None:
            found = retry(lambda: self.fast.steps(run_id), "read_metrics")
            return lambda name: found.get(name, set())
        return lambda name: read.metric_steps(self.client, run_id, name)

    def _log(self, run_id: str, rows: list, budget_s: float = RETRY_BUDGET_S) -> None:
        """Metric rows ``(name, value, timestamp_ms, step)`` into the store (a transient fault
        retried for ``budget_s``)."""
        if self.fast is not None and rows:
            retry(lambda: self.fast.log_rows(run_id, rows), "log_metrics", budget_s)
        elif rows:
            from mlflow.entities import Metric

            metrics = [Metric(*row) for row in rows]
            for chunk in batches(metrics, MAX_METRICS_PER_BATCH):
                retry(lambda c=chunk: self.client.log_batch(run_id, metrics=c), "log_batch",
                      budget_s)
        self.report.values += len(rows)

    def _add_params(self, run, params: dict) -> None:
        from mlflow.entities import Param

        missing = [Param(k, str(v)) for k, v in params.items() if k not in run.data.params]
        for chunk in batches(missing, MAX_PARAMS_TAGS_PER_BATCH):
            retry(lambda c=chunk: self.client.log_batch(run.info.run_id, params=c), "log_params")

    # -- helpers
    def _experiment(self, name: str) -> str:
        if name in self._experiments:
            return self._experiments[name]
        experiment_id = retry(lambda: get_or_create_experiment(self.client, name,
                                                               artifact_root_for(self.uri)),
                              "get_or_create_experiment")
        self._experiments[name] = experiment_id
        if name not in self._tagged:  # what the UI shows: a synced store opens the same way
            from ..views.describe import experiment_tags

            have = retry(lambda: self.client.get_experiment(experiment_id), "get_experiment").tags
            for key, value in experiment_tags(name, REPO_ROOT, experiment_id).items():
                if have.get(key) == value:  # a write (and a wait for the disk) saved
                    continue
                retry(lambda k=key, v=value: self.client.set_experiment_tag(experiment_id, k, v),
                      "set_experiment_tag")
            self._tagged.add(name)
        return experiment_id

    def _find(self, exp_id: str, meta: dict):
        from mlflow.exceptions import MlflowException

        if meta.get("run_id"):
            try:
                run = self.client.get_run(meta["run_id"])
                if run.data.tags.get(UID_TAG, meta.get("uid")) == meta.get("uid"):
                    return run
            except MlflowException:
                pass
        return read.run_by_uid(self.client, exp_id, meta["uid"]) if meta.get("uid") else None

    def _create(self, exp_id: str, meta: dict, tags: dict, params: dict | None = None):
        from mlflow.entities import Param

        tags = creation_tags(meta, tags)
        start = int(meta.get("started", time.time()) * 1000)
        run = retry(lambda: self.client.create_run(exp_id, start_time=start, tags=tags,
                                                   run_name=meta.get("run_name")), "create_run")
        items = [Param(k, str(v)) for k, v in (params or {}).items()]
        for chunk in batches(items, MAX_PARAMS_TAGS_PER_BATCH):
            retry(lambda c=chunk: self.client.log_batch(run.info.run_id, params=c), "log_params")
        self.report.created += 1
        return self.client.get_run(run.info.run_id)

    def _upload(self, run_id: str, base: Path, files, have: set[str]) -> None:
        for f in files:
            if not f.is_file():
                continue
            rel = f.relative_to(base).as_posix()
            if rel in have:
                continue
            folder = str(Path(rel).parent) if "/" in rel else None
            retry(lambda f=f, folder=folder: self.client.log_artifact(run_id, str(f), folder),
                  "log_artifact")
            self.report.artifacts += 1

    def _tags(self, run, meta: dict) -> None:
        """Set the recorded tags the store lacks or holds with another value."""
        from mlflow.entities import RunTag

        new = [RunTag(k, v) for k, v in recorded_tags(meta).items()
               if run.data.tags.get(k) != v]
        for chunk in batches(new, MAX_PARAMS_TAGS_PER_BATCH):
            retry(lambda c=chunk: self.client.log_batch(run.info.run_id, tags=c), "set_tags")
        self.report.tags += len(new)

    def _close(self, run, status: str, meta: dict) -> None:
        self._tags(run, meta)
        tags = run.data.tags
        if status not in STATUS_TO_MLFLOW:  # "running": a live sweep parent
            return
        if run.info.status != "RUNNING" and tags.get("status") == status and not any(
                t in tags for t in INCOMPLETE_TAGS):
            return
        run_id = run.info.run_id
        from mlflow.entities import RunTag

        retry(lambda: self.client.log_batch(
            run_id, tags=[RunTag(k, v) for k, v in end_tags(meta, status).items()]), "set_tags")
        for t in INCOMPLETE_TAGS:
            if t in tags:
                retry(lambda t=t: self.client.delete_tag(run_id, t), "delete_tag")
        if run.info.status == "RUNNING" or run.info.status != STATUS_TO_MLFLOW[status]:
            end = meta.get("ended")
            retry(lambda: self.client.set_terminated(
                run_id, STATUS_TO_MLFLOW[status], end_time=int(end * 1000) if end else None),
                "set_terminated")
        self.report.closed += 1
        self.report.lost += status == "lost"

    @staticmethod
    def _alive(meta: dict) -> bool:
        return meta.get("host") == rec.HOST and rec.pid_alive(meta.get("pid", -1),
                                                              meta.get("started"))


def block_rows(blocks, ts: int, stored=lambda name: ()) -> list[tuple]:
    """Metric rows ``(name, value, ts, step)`` of blocks ``[({name: values}, steps)]``: the
    finite values at steps not in ``stored(name)``."""
    rows = []
    for block, steps in blocks:
        for name, values in block.items():
            have = stored(name)
            rows.extend((name, float(v), ts, int(st)) for st, v in zip(steps, values)
                        if v is not None and np.isfinite(v) and int(st) not in have)
    return rows


# ------------------------------------------------------------------ what a run's tags are


def creation_tags(meta: dict, tags: dict) -> dict[str, str]:
    """The tags a run is created with: ``tags`` and what finds its record again."""
    tags = {str(k): tag_value(v) for k, v in tags.items()}
    tags.setdefault(UID_TAG, meta["uid"])
    tags.setdefault(HOST_TAG, meta.get("host", ""))
    tags.setdefault(PID_TAG, str(meta.get("pid", "")))
    return tags


def recorded_tags(meta: dict) -> dict[str, str]:
    """The record's tags the store gets (not the parent link, status or incompleteness,
    which the store's copy decides)."""
    skip = ("mlflow.parentRunId", "status", *INCOMPLETE_TAGS)
    return {k: tag_value(v) for k, v in meta.get("tags", {}).items() if k not in skip}


def end_tags(meta: dict, status: str) -> dict[str, str]:
    """The tags that say how a run ended."""
    new = {"status": status}
    if meta.get("diverged_at_step") is not None:
        new["diverged_at_step"] = meta["diverged_at_step"]
    if meta.get("tags", {}).get("error"):
        new["error"] = meta["tags"]["error"]
    return {k: tag_value(v) for k, v in new.items()}


def gone(tags: dict, start_ms: int) -> bool:
    """Is an open run of this host left by a process that is gone (and not being stored by
    its sweep's writer)?"""
    meta = {"host": tags.get(HOST_TAG), "pid": int(tags.get(PID_TAG, "-1") or -1),
            "started": start_ms / 1000}
    where = Path(tags.get(DIR_TAG, ""))
    return not (Syncer._alive(meta) or being_written(tags.get("sweep_dir") or where.parent
                                                     if where.name else None))


def being_written(sweep_dir: Path | str | None) -> bool:
    """Is the sweep's own writer process (:mod:`lab.track.sweep_writer`) still storing it? A
    sync or repair leaves such a sweep and its runs to it."""
    if not sweep_dir:
        return False
    writer = (rec.read_json(Path(sweep_dir) / rec.SWEEP_FILE) or {}).get("writer") or {}
    return (writer.get("host") == rec.HOST
            and rec.pid_alive(writer.get("pid", -1), writer.get("started")))


def sync(uri: str, paths) -> SyncReport:
    """Push every run and sweep directory under ``paths`` into the store at ``uri``."""
    syncer = Syncer(uri)
    dirs = rec.find_run_dirs(paths)
    sweeps = [p for p in map(Path, paths) if (p / rec.SWEEP_FILE).exists()]
    sweeps += [f.parent for p in map(Path, paths) if p.is_dir() for f in p.rglob(rec.SWEEP_FILE)]
    busy = {s for s in sweeps if being_written(s)}
    dirs = [d for d in dirs if not any(s in d.parents for s in busy)]
    sweeps = [s for s in sweeps if s not in busy]
    syncer.report.open += len(busy)
    for d in dirs:
        try:
            syncer.run(d)
        except Exception as e:  # one bad directory does not stop the others
            syncer.report.failed.append(f"{d}: {one_line(e, 200)}")
    for s in dict.fromkeys(sweeps):
        try:
            syncer.sweep(s)
        except Exception as e:
            syncer.report.failed.append(f"{s}: {one_line(e, 200)}")
    return syncer.report


def repair(uri: str) -> SyncReport:
    """Close this host's RUNNING runs and sweep parents whose process is gone: sync what their
    directories hold (ending them as recorded, or as ``lost``), or, without a directory, tag
    them ``status=lost`` and end them KILLED."""
    syncer = Syncer(uri)
    for run in read.open_runs_of_host(syncer.client, rec.HOST):
        tags = run.data.tags
        if not gone(tags, run.info.start_time):
            continue
        where = Path(tags.get(DIR_TAG, ""))
        try:
            if tags.get("gradlab.role") == "sweep_parent" and (where / rec.SWEEP_FILE).exists():
                syncer.sweep(where)
            elif (where / rec.RUN_FILE).exists():
                syncer.run(where)
            else:
                syncer._close(run, "lost", {})
        except Exception as e:
            syncer.report.failed.append(f"{run.info.run_id}: {one_line(e, 200)}")
    return syncer.report


def repair_quietly(uri: str, open_runs=None) -> None:
    """:func:`repair` at the start of a run or sweep: one line if it closed anything; a
    failure here never stops the run. ``open_runs``: this host's RUNNING runs as
    ``(tags, start_ms)`` pairs, when the caller could read them without MLflow: MLflow's
    client is used only if one of them is gone."""
    if open_runs is not None and not any(gone(tags, start) for tags, start in open_runs):
        return
    try:
        report = repair(uri)
    except Exception as e:
        log.debug("repair of %s failed: %s", mask_uri(uri), one_line(e))
        return
    if report.closed:
        log.warning("closed %d runs left RUNNING by processes that are gone (%d as lost); "
                    "`%s --repair` does this on demand", report.closed, report.lost,
                    sync_command("").strip())
