"""The run directory is the record: every step a run computes, written as it goes.

``run.json`` says what the run is (its id in the store, a uid that finds it in any store,
masked store URI, host, pid, start time, params, tags, parent) and, once it ended, how
(status, values the store lacks). ``rows.f64`` grows by one block per training chunk: float64
rows ``[step, metric columns...]`` (the columns are listed in ``run.json``), appended with one
``write`` so a ``kill -9`` loses at most the chunk being written. ``evals.jsonl`` holds the
test-set evaluations, one line per logged step. A sweep directory has ``sweep.json`` for its
parent run. No MLflow here: ``lab.track.sync`` turns a record into store contents.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

RUN_FILE = "run.json"
#: the run's id in the store, when another process (the sweep's writer) created it: run.json
#: has one writer, the process that trains the run
STORE_FILE = "store.json"
ROWS_FILE = "rows.f64"
EVALS_FILE = "evals.jsonl"
SWEEP_FILE = "sweep.json"
HOST = socket.gethostname()


def new_uid() -> str:
    return uuid.uuid4().hex


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Atomically (a reader sees the old or the new file, never half of one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_run(run_dir: Path) -> dict | None:
    """``run.json`` with the store's run id from ``store.json`` when run.json lacks it."""
    meta = read_json(Path(run_dir) / RUN_FILE)
    if meta is not None and not meta.get("run_id"):
        stored = read_json(Path(run_dir) / STORE_FILE) or {}
        if stored.get("run_id"):
            meta["run_id"] = stored["run_id"]
    return meta


def identity() -> dict:
    """Who is writing: host, pid and the time (seconds since the epoch)."""
    return {"host": HOST, "pid": os.getpid(), "started": time.time()}


class RunRecord:
    """The record of one run in ``run_dir``; ``start`` first, then ``append`` per chunk."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)
        self.meta: dict[str, Any] = {}
        self.columns: list[str] | None = None
        self._fd: int | None = None

    def start(self, **meta: Any) -> RunRecord:
        self.dir.mkdir(parents=True, exist_ok=True)
        for name in (ROWS_FILE, EVALS_FILE):  # a rerun into the same directory starts afresh
            (self.dir / name).unlink(missing_ok=True)
        self.meta = {"uid": new_uid(), **identity(), "status": "running", **meta}
        write_json(self.dir / RUN_FILE, self.meta)
        return self

    def update(self, **fields: Any) -> None:
        self.meta.update(fields)
        write_json(self.dir / RUN_FILE, self.meta)

    def append(self, steps: np.ndarray, metrics: Mapping[str, np.ndarray],
               evals: Mapping[str, float] | None = None) -> None:
        """One chunk: ``metrics[name][i]`` at ``steps[i]``; ``evals`` at ``steps[0]``."""
        if self.columns is None:
            self.columns = list(metrics)
            self.update(columns=["step", *self.columns])
            self._fd = os.open(self.dir / ROWS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                               0o644)
        block = np.empty((len(steps), 1 + len(self.columns)))
        block[:, 0] = steps
        for j, name in enumerate(self.columns, start=1):
            block[:, j] = metrics[name]
        os.write(self._fd, block.tobytes())
        if evals:
            line = json.dumps({"step": int(steps[0]), **{k: float(v) for k, v in evals.items()}})
            with open(self.dir / EVALS_FILE, "a") as f:
                f.write(line + "\n")

    def close(self, **fields: Any) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if fields:
            self.update(**fields)


def read_rows(run_dir: Path, meta: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(steps, {metric: values}) of every whole row in the record (a torn last row is left)."""
    columns = meta.get("columns") or []
    path = Path(run_dir) / ROWS_FILE
    if not columns or not path.exists():
        return np.zeros(0, dtype=np.int64), {}
    raw = np.fromfile(path, dtype=np.float64)
    n = raw.size // len(columns)
    table = raw[: n * len(columns)].reshape(n, len(columns))
    return table[:, 0].astype(np.int64), {c: table[:, j] for j, c in enumerate(columns) if j}


def whole_lines(path: Path) -> list[str]:
    """The lines of a file another process appends to, without a last line not yet ended."""
    try:
        text = Path(path).read_text()
    except OSError:
        return []
    return [line for line in text.split("\n")[:-1] if line.strip()]


def read_evals(run_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (steps, values)} of the test-set evaluations (a torn last line is left)."""
    path = Path(run_dir) / EVALS_FILE
    out: dict[str, tuple[list, list]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            step = row.pop("step")
            for k, v in row.items():
                out.setdefault(k, ([], []))
                out[k][0].append(step)
                out[k][1].append(v)
    return {k: (np.array(s, dtype=np.int64), np.array(v, dtype=float)) for k, (s, v) in
            out.items()}


def history_from_record(run_dir: Path, meta: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The per-step arrays of a run that never wrote its ``history.npz`` (killed): every
    metric at full resolution plus ``step``; evaluations with ``eval_step``."""
    steps, rows = read_rows(run_dir, meta)
    history = {"step": steps, **rows}
    evals = read_evals(run_dir)
    if evals:
        first = next(iter(evals.values()))
        history["eval_step"] = first[0]
        history.update({k: v for k, (_, v) in evals.items()})
    return history


def sweep_jobs(sweep_dir: Path) -> list[dict]:
    """Each job's ``summary.json`` (status from ``run.json``, run id from the store's file),
    in launch order: a sweep's table without asking the store."""
    jobs = []
    for run_dir in find_run_dirs([sweep_dir]):
        meta = read_run(run_dir) or {}
        job = read_json(run_dir / "summary.json") or {"label": meta.get("run_name"),
                                                         "final_loss": None}
        job["status"] = meta.get("status", job.get("status", "failed"))
        if meta.get("diverged_at_step") is not None:
            job["diverged_at_step"] = meta["diverged_at_step"]
        job["run_id"] = meta.get("run_id") or job.get("run_id")
        job.setdefault("label", meta.get("run_name"))
        jobs.append(job)
    return sorted(jobs, key=lambda j: (j.get("job") is None, j.get("job") or 0,
                                       j.get("label") or ""))


def pid_alive(pid: int, since: float | None = None) -> bool:
    """Is process ``pid`` of this host still the one that was running at ``since`` (seconds
    since the epoch)? A pid reused by a process started later does not count."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True
    if since is not None:
        started = _process_start(int(pid))
        if started is not None and started > since + 2:
            return False
    return True


def _process_start(pid: int) -> float | None:
    """Start time of a process (seconds since the epoch) from /proc, or None."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime"))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def find_run_dirs(paths) -> list[Path]:
    """Run directories (with ``run.json``) under ``paths``, sweeps' runs in job order."""
    found: list[Path] = []
    for p in paths:
        p = Path(p)
        if (p / RUN_FILE).exists():
            found.append(p)
        elif p.is_dir():
            found.extend(sorted((f.parent for f in p.rglob(RUN_FILE)),
                                key=lambda d: (str(d.parent), _num(d.name))))
    return list(dict.fromkeys(found))


def _num(name: str):
    return (0, int(name)) if name.isdigit() else (1, name)
