"""A run that only writes its record: the job side of a sweep whose store work is done by the
sweep's writer process (:mod:`lab.track.sweep_writer`).

In a basic-launcher sweep every job trains in the launching process; MLflow's client there
would hold the GIL for about as long as the training itself. So the job writes its directory
(``run.json``, ``rows.f64``, ``evals.jsonl``, artifacts' files) and nothing else, and one
writer process per sweep copies each directory into the store as it grows, on the other core.
The interface is :class:`lab.track.runs.RunTracker`'s, as far as a job uses it.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Mapping
from typing import Any

from . import record as rec
from .params import tag_value
from .runs import DIR_TAG, HOST_TAG, PID_TAG, STATUS_TO_MLFLOW, UID_TAG
from .uri import one_line


class RecordedRun:
    """``RunTracker`` without a store: tags, statuses and errors go to the run's record."""

    run_id = None  # the writer creates the run; ``store.json`` in the run directory has its id
    stores_chunks = False  # the writer reads the rows from the record

    def __init__(self, uri: str, record: rec.RunRecord, params: Mapping[str, Any],
                 tags: Mapping[str, Any]) -> None:
        self.uri, self.record = uri, record
        self.status: str | None = None
        self.error: BaseException | None = None
        tags = {**tags, UID_TAG: record.meta["uid"], DIR_TAG: str(record.dir),
                HOST_TAG: rec.HOST, PID_TAG: str(os.getpid())}  # as RunTracker tags a run
        record.update(params=dict(params), tags={str(k): tag_value(v) for k, v in tags.items()})

    # what a job calls on a tracker
    def start_in_background(self, before=None) -> RecordedRun:
        return self

    def log_series(self, series) -> None:  # the record holds every row already
        pass

    def log_artifact(self, local_path, artifact_path=None) -> None:  # the writer uploads
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.record.meta.setdefault("tags", {}).update(
            {str(k): tag_value(v) for k, v in tags.items()})

    def finish(self, status: str = "completed") -> None:
        """The record's last word: the writer ends the run in the store when it reads it."""
        if status not in STATUS_TO_MLFLOW:
            raise ValueError(f"unknown run status {status!r}; valid: {', '.join(STATUS_TO_MLFLOW)}")
        if self.status is None:
            self.status = status
            self.record.close(status=status, ended=time.time())

    def __enter__(self) -> RecordedRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.status is not None:
            return False
        if exc is None:
            self.finish("completed")
        elif isinstance(exc, Exception):
            message = f"{type(exc).__name__}: {one_line(exc)}"
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            (self.record.dir / "error.txt").write_text(text)
            self.set_tags({"error": message})
            self.finish("failed")
        else:
            self.finish("interrupted")
        return False
