"""Hydra callback: one MLflow parent run per multirun, a summary when the sweep ends.

The parent is created before the first job (so jobs in joblib/Ray workers find its id in the
sweep directory) and closed in ``on_multirun_end``; if the sweep dies first (a failed batch,
Ctrl-C), an ``atexit`` hook still closes it, as ``interrupted``.
"""

import atexit
import json
import logging
import math
import os
import tempfile
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from . import figure_worker, track
from .app import REPO_ROOT
from .plots import sweep_comparison
from .summary import table_csv, table_text

log = logging.getLogger("lab")
TOTAL_FILE = ".gradlab_jobs_total"
DONE_DIR = ".gradlab_jobs_done"


def experiment_name(cfg, choices=None):
    return cfg.tracking.experiment or (choices or {}).get("experiment") or "default"


def count_jobs(config):
    """Number of jobs the basic sweeper will launch: product of the sweep lengths."""
    overrides = list(config.hydra.overrides.task)
    params = config.hydra.sweeper.get("params") or {}
    overrides += [f"{k}={v}" for k, v in params.items()]
    total = 1
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override():
            total *= len(list(override.sweep_string_iterator()))
    return total


def mark_job_done(sweep_dir: Path, job_num: int):
    """Record a finished job; returns (done, total) for the sweep's progress line."""
    done_dir = sweep_dir / DONE_DIR
    done_dir.mkdir(parents=True, exist_ok=True)
    (done_dir / str(job_num)).touch()
    total_file = sweep_dir / TOTAL_FILE
    total = int(total_file.read_text()) if total_file.exists() else None
    return len(list(done_dir.iterdir())), total


def child_summaries(client, experiment_id, parent_run_id):
    """Each child run's summary.json (from its artifacts), ordered by label."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    runs = client.search_runs([experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
                              max_results=5000)
    jobs = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            try:
                path = client.download_artifacts(run.info.run_id, "summary.json", tmp)
                job = json.loads(Path(path).read_text())
            except Exception:  # a failed or interrupted job has no summary
                job = {"label": run.info.run_name, "final_loss": None}
            job["status"] = run.data.tags.get("status", job.get("status", "failed"))
            job["run_id"] = run.info.run_id
            job.setdefault("label", run.info.run_name)
            jobs.append(job)
    return sorted(jobs, key=lambda j: j.get("label") or "")


def latest_sweep(client, experiment):
    """(parent run, child summaries) of the latest finished sweep of an experiment, or None."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    parents = client.search_runs([exp.experiment_id], filter_string="tags.sweep = 'parent'",
                                 order_by=["attributes.start_time DESC"], max_results=1)
    if not parents:
        return None
    parent = parents[0]
    return parent, child_summaries(client, exp.experiment_id, parent.info.run_id)


class SweepCallback(Callback):
    def __init__(self):
        self.parent = None

    def on_multirun_start(self, config, **kwargs):
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        total = count_jobs(config)
        (sweep_dir / TOTAL_FILE).write_text(str(total))
        if not config.tracking.enabled:
            return
        uri = track.resolve_tracking_uri(config.tracking.uri, REPO_ROOT)
        track.check_reachable(uri)
        name = experiment_name(config, config.hydra.runtime.choices)
        self.parent = track.SweepParent.open(uri, name, sweep_dir, run_name=name,
                                             tags={"experiment": name, "jobs_total": total,
                                                   "sweep": "parent"})
        atexit.register(self._close_if_open, "interrupted")
        log.info("sweep %s: %d jobs, parent run %s in %s", name, total, self.parent.run_id,
                 track.mask_uri(uri))

    def on_multirun_end(self, config, **kwargs):
        figure_worker.wait()
        if self.parent is None:
            return
        try:
            jobs = child_summaries(self.parent.client, self.parent.experiment_id,
                                  self.parent.run_id)
            name = experiment_name(config, config.hydra.runtime.choices)
            self.parent.log_text(table_csv(jobs), "summary.csv")
            self.parent.log_text(json.dumps(jobs, indent=1), "summary.json")
            fig = sweep_comparison(jobs, f"{name}: gradient norm by layer and final loss")
            self.parent.log_figure(fig, "figures/sweep_comparison.png")
            counts = {s: sum(j["status"] == s for j in jobs)
                      for s in ("completed", "diverged", "failed", "interrupted")}
            self.parent.set_tags({f"jobs_{k}": v for k, v in counts.items()})
            print(f"\n{name}: {len(jobs)} runs (parent run {self.parent.run_id})\n"
                  + table_text(jobs), flush=True)
        finally:
            self._close_if_open("completed")

    def _close_if_open(self, status):
        if self.parent is not None:
            parent, self.parent = self.parent, None
            parent.close(status)


def sweep_line(name, done, total):
    if total is None or not math.isfinite(total):
        return f"[{name}] {done} jobs done"
    return f"[{name}] {done}/{total} jobs done"


def resolved(cfg):
    return OmegaConf.to_container(cfg, resolve=True)
