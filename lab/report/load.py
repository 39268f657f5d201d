"""Reading a study back from the MLflow store: its latest sweep and every child's history."""

from __future__ import annotations

import datetime
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from .. import history
from ..history import finite
from ..network import Network
from ..track import read

log = logging.getLogger("lab.report")


@dataclass
class Job:
    """One child run: its parameters, tags, summary and full-resolution history."""
    run_id: str
    label: str
    status: str
    params: dict
    tags: dict
    summary: dict
    history: dict
    config: dict | None = None
    weights: list | None = None  # final W[l] (from params.npz) when the run logged them
    theta_final: np.ndarray | None = None  # the flat final parameters (params.npz)

    def param(self, key, cast=str):
        value = self.params.get(key)
        if value is None:
            return None
        if cast is bool:
            return value.lower() == "true"
        try:
            return cast(value)
        except ValueError:
            return value

    @property
    def depth(self):
        return history.depth_of(self.history)

    def layers(self, stat, row=0):
        """Per-layer values of ``stat`` at history row ``row`` (layers 1..L)."""
        return history.layer_series(self.history, stat, row)

    def series(self, stat, layer):
        return history.series(self.history, stat, layer)

    @property
    def steps(self):
        return np.asarray(self.history["step"])

    @property
    def loss(self):
        return np.asarray(self.history["loss/train"], dtype=float)

    @property
    def final_test_accuracy(self):
        acc = finite(self.history.get("accuracy/test", []))
        acc = acc[np.isfinite(acc)]
        return float(acc[-1]) if len(acc) else float("nan")


@dataclass
class Study:
    name: str
    parent_id: str
    started: datetime.datetime
    jobs: list[Job]
    runs_total: int
    failed: list[str] = field(default_factory=list)

    def counts(self):
        out = {}
        for job in self.jobs:
            out[job.status] = out.get(job.status, 0) + 1
        if self.failed:
            out["failed (no history)"] = len(self.failed)
        return out


def _final_params(path):
    """(flat theta, [W[l]]) at the end of the run from ``params.npz``, or (None, None)."""
    if path is None:
        return None, None
    with np.load(path) as saved:
        if "theta_final" not in saved.files or "sizes" not in saved.files:
            return None, None
        theta, sizes = np.array(saved["theta_final"]), [int(s) for s in saved["sizes"]]
    layout = Network(sizes, "identity", init="zeros", backend="numpy")
    if layout.theta.size != theta.size:
        return None, None
    return theta, [np.array(W) for W in layout.split(theta)[0]]


def load_study(client, name, *, weights=False):
    """The latest sweep of study ``name`` with every child's history, or None (``client``:
    ``lab.track.read.open_store(uri)``)."""
    exp_id = read.experiment_id(client, name)
    if exp_id is None:
        return None
    parent = read.latest_parent(client, exp_id)
    if parent is None:
        return None
    runs = read.child_runs(client, exp_id, parent.info.run_id)
    jobs, failed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, run in enumerate(runs):
            dest = Path(tmp) / str(i)
            dest.mkdir()
            rid = run.info.run_id

            def artifact(path, rid=rid, dest=dest):
                return read.download_artifact(client, rid, path, dest)

            hist_path = artifact("history.npz")
            label = run.data.tags.get("mlflow.runName", run.info.run_name) or rid
            if hist_path is None:
                failed.append(label)
                continue
            summary_path = artifact("summary.json")
            summary = json.loads(summary_path.read_text()) if summary_path else {}
            config_path = artifact("config.yaml")
            config = yaml.safe_load(config_path.read_text()) if config_path else None
            job = Job(rid, label, run.data.tags.get("status", summary.get("status", "?")),
                      dict(run.data.params), dict(run.data.tags), summary,
                      history.load(hist_path), config)
            if weights:
                job.theta_final, job.weights = _final_params(artifact("params.npz"))
            jobs.append(job)
    started = datetime.datetime.fromtimestamp(parent.info.start_time / 1000,
                                             datetime.timezone.utc)
    return Study(name, parent.info.run_id, started, jobs, len(runs), failed)
