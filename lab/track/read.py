"""Every query of the store: sweeps and their runs, summaries, artifacts, open runs.

Views, the report, the demo and the sweep callback read the store through these functions
(one parent-run filter, one definition of "latest sweep")."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .store import client as make_client

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

MAX_RUNS = 5000
PARENT_FILTER = "tags.sweep = 'parent'"


def open_store(uri: str) -> MlflowClient:
    """A client for ``uri`` (what callers pass to the functions below)."""
    return make_client(uri)


def children_filter(parent_run_id: str) -> str:
    return f"tags.mlflow.parentRunId = '{parent_run_id}'"


def child_runs(client: MlflowClient, experiment_id: str, parent_run_id: str,
               running_only: bool = False, max_results: int = MAX_RUNS) -> list[Run]:
    """The runs of a sweep (children of ``parent_run_id``)."""
    where = children_filter(parent_run_id)
    if running_only:
        where += " and attributes.status = 'RUNNING'"
    return client.search_runs([experiment_id], filter_string=where, max_results=max_results)


def experiment_id(client: MlflowClient, name: str) -> str | None:
    exp = client.get_experiment_by_name(name)
    return None if exp is None else exp.experiment_id


def latest_parent(client: MlflowClient, experiment_id: str) -> Run | None:
    """The newest finished sweep parent with children (else the newest with children)."""
    parents = client.search_runs([experiment_id], filter_string=PARENT_FILTER,
                                 order_by=["attributes.start_time DESC"], max_results=50)
    fallback = None
    for parent in parents:
        if not child_runs(client, experiment_id, parent.info.run_id, max_results=1):
            continue
        if parent.info.status == "FINISHED":
            return parent
        fallback = fallback or parent
    return fallback


def download_artifact(client: MlflowClient, run_id: str, path: str, dest: Path) -> Path | None:
    """Local copy of one artifact of a run, or None if it has none of that name."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        return Path(client.download_artifacts(run_id, path, str(dest)))
    except Exception:  # missing (a failed or stopped run), or unreadable
        return None


def child_summaries(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list[dict]:
    """Each child run's summary.json (from its artifacts), in launch order."""
    jobs = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in child_runs(client, experiment_id, parent_run_id):
            path = download_artifact(client, run.info.run_id, "summary.json", Path(tmp))
            job = json.loads(path.read_text()) if path else {
                "label": run.info.run_name, "final_loss": None}
            job["status"] = run.data.tags.get("status", job.get("status", "failed"))
            job["run_id"] = run.info.run_id
            job.setdefault("label", run.info.run_name)
            jobs.append(job)
    # in launch order (the sweep's job numbers); runs without a summary go last, by label
    return sorted(jobs, key=lambda j: (j.get("job") is None, j.get("job") or 0,
                                       j.get("label") or ""))


def latest_sweep(client: MlflowClient, experiment: str) -> tuple[Run, list[dict]] | None:
    """(parent run, child summaries) of the latest sweep of an experiment, or None."""
    exp_id = experiment_id(client, experiment)
    if exp_id is None:
        return None
    parent = latest_parent(client, exp_id)
    if parent is None:
        return None
    return parent, child_summaries(client, exp_id, parent.info.run_id)


def all_experiment_ids(client: MlflowClient) -> list[str]:
    return [e.experiment_id for e in client.search_experiments(max_results=1000)]


def open_runs_of_host(client: MlflowClient, host: str) -> list[Run]:
    """RUNNING runs (and sweep parents) started on ``host`` by the lab."""
    ids = all_experiment_ids(client)
    if not ids:
        return []
    return client.search_runs(ids, filter_string=f"attributes.status = 'RUNNING' and "
                               f"tags.`gradlab.host` = '{host}'", max_results=MAX_RUNS)


def run_by_uid(client: MlflowClient, experiment_id: str, uid: str) -> Run | None:
    runs = client.search_runs([experiment_id], filter_string=f"tags.`gradlab.uid` = '{uid}'",
                              max_results=2)
    return runs[0] if runs else None


def metric_steps(client: MlflowClient, run_id: str, name: str) -> set[int]:
    """Steps at which the store holds metric ``name`` of a run."""
    return {m.step for m in client.get_metric_history(run_id, name)}


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    """Every artifact file of a run (recursively)."""
    out = set()
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            out |= artifact_paths(client, run_id, info.path)
        else:
            out.add(info.path)
    return out
