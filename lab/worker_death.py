"""When a joblib (loky) worker of a sweep dies: the other workers finish their runs.

loky answers a dead worker by SIGKILLing every other worker at once, in the middle of their
runs (no ``history.npz``, the last values never stored). In the launching process of a joblib
sweep, :func:`keep_runs_when_a_worker_dies` makes it first stop the sweep from starting new
jobs and wait until the jobs already running have ended their runs (each worker marks itself
busy for the length of a job: :func:`busy`); a signal meanwhile makes them save and stop
(interrupted) instead of finishing. The dead worker's own run is closed as ``lost`` from its
record by the sweep's end (``lab.sync``'s repair). Then loky goes on as it would have.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from .track import record as rec

log = logging.getLogger("lab")
BUSY_DIR = ".gradlab_busy"  # in a sweep dir: one file per worker running a job, named by pid
POLL_S = 0.2
_sweeps: list[tuple[Path, Path]] = []  # (busy dir, stop file) of this process's joblib sweeps


@contextlib.contextmanager
def busy(sweep_dir: Path):
    """A worker runs a job of ``sweep_dir`` for the length of the block."""
    folder = Path(sweep_dir) / BUSY_DIR
    folder.mkdir(exist_ok=True)
    marker = folder / str(os.getpid())
    rec.write_json(marker, rec.identity())
    try:
        yield
    finally:
        marker.unlink(missing_ok=True)


def running_workers(folder: Path) -> list[int]:
    """Pids of the workers running a job now (markers of dead processes do not count)."""
    found = []
    for marker in folder.glob("[0-9]*") if folder.is_dir() else ():
        meta = rec.read_json(marker) or {}
        if rec.pid_alive(int(marker.name), meta.get("started")):
            found.append(int(marker.name))
    return found


def _finish_running_jobs() -> None:
    """Stop new jobs, then wait for the running ones to end their runs."""
    for _, stop_file in _sweeps:
        stop_file.touch()
    log.warning("a worker process of the sweep died; the jobs still running finish their runs, "
                "no new job starts (a signal stops them now, saving their runs)")
    while any(running_workers(folder) for folder, _ in _sweeps):
        time.sleep(POLL_S)


def keep_runs_when_a_worker_dies(sweep_dir: Path, stop_file: Path) -> None:
    """In the launching process of a joblib sweep (before its workers start)."""
    from joblib.externals.loky import process_executor

    _sweeps.append((Path(sweep_dir) / BUSY_DIR, Path(stop_file)))
    thread_class = process_executor._ExecutorManagerThread
    if getattr(thread_class.terminate_broken, "_gradlab", False):
        return
    original = thread_class.terminate_broken

    def terminate_broken(self, bpe):
        try:
            _finish_running_jobs()
        except Exception as exc:  # never keep loky from cleaning up
            log.warning("could not wait for the running jobs: %s", exc)
        return original(self, bpe)

    terminate_broken._gradlab = True
    thread_class.terminate_broken = terminate_broken
