"""Per-run figures rendered in a background process.

Drawing a run's figures costs about as much CPU as training a small net and writing its
metrics, and matplotlib holds the GIL, so a thread would not overlap with the next job. One
spawned worker process renders figures from ``history.npz`` and logs them to the (already
finished) MLflow run while the launcher moves on; ``wait()`` blocks until every queued figure
is logged (the app calls it before the process exits and before a sweep's summary).
"""

import json
import logging
import multiprocessing
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

log = logging.getLogger("lab")
_executor = None
_pending = []


def figures_of_run(out_dir, cfg, title):
    """{file name: Figure} for a finished job: the history views, and the data views (decision
    boundary, misclassified digits) from the network rebuilt with its saved parameters."""
    import numpy as np

    from .build import build, make_data
    from .history import load
    from .views.dataset import data_figures
    from .views.training import run_figures

    out_dir = Path(out_dir)
    figures = run_figures(load(out_dir / "history.npz"), title)
    params = out_dir / "params.npz"
    if params.exists():  # the job validated this config before it trained
        ds, net, _ = build(cfg, make_data(cfg), checked=True)
        with np.load(params) as saved:
            net.theta[:] = saved["theta_final"]
            figures.update(data_figures(net, saved["theta_init"], ds, title))
    return figures


def render_and_log(uri, run_id, out_dir, cfg, title):
    """Worker side: a run's figures, saved in ``<run dir>/figures/`` (so ``lab.sync`` has them
    too) and logged under ``figures/``; returns their names."""
    import matplotlib.pyplot as plt

    from . import track

    folder = Path(out_dir) / "figures"
    folder.mkdir(exist_ok=True)
    names = []
    for name, fig in figures_of_run(out_dir, cfg, title).items():
        fig.savefig(folder / name)
        plt.close(fig)
        names.append(name)
    track.log_artifacts(uri, run_id, folder, "figures")
    return names


URI_ENV = "GRADLAB_FIGURE_URI"  # the store for a detached worker (kept off its command line)


def submit(uri, run_id, out_dir, cfg, title, background=True):
    """Queue one run's figures; rendered in place when ``background`` is False; with
    ``"detached"`` by a process of their own that outlives this one (a single run: its
    process exits without waiting; ``<run dir>/figures.log`` says how it went)."""
    global _executor
    args = (uri, run_id, str(out_dir), cfg, title)
    if background == "detached":
        detach(uri, [(str(out_dir), run_id, title)], Path(out_dir) / "figures.log")
        return None
    if not background:
        return render_and_log(*args)
    if _executor is None:
        _executor = ProcessPoolExecutor(max_workers=1,
                                        mp_context=multiprocessing.get_context("spawn"))
    _pending.append((run_id, _executor.submit(render_and_log, *args), (uri, str(out_dir), title)))
    return None


def wait(detach_rest=False):
    """Block until every queued run's figures are logged; a failure is a warning, not fatal.

    ``detach_rest``: wait only for the figures being drawn now and leave the rest of the queue
    to a detached process (``<first run dir>/figures.log``), so the sweep's process exits
    without waiting for views of data that is already stored."""
    if detach_rest:
        rest = [(uri, (out_dir, run_id, title)) for run_id, future, (uri, out_dir, title)
                in _pending if future.cancel()]
        for uri in dict.fromkeys(u for u, _ in rest):
            jobs = [job for u, job in rest if u == uri]
            detach(uri, jobs, Path(jobs[0][0]) / "figures.log")
    while _pending:
        run_id, future, _ = _pending.pop(0)
        if future.cancelled():
            continue
        try:
            future.result()
        except Exception as exc:  # figures are a view of logged data; never fail a run on them
            log.warning("figures of run %s were not logged: %s", run_id, exc)


def detach(uri, jobs, log_path):
    """Render ``[(run dir, run id, title), ...]`` in a process of their own that outlives this
    one; the store's URI goes through the environment, not the command line."""
    with open(log_path, "w") as out:
        subprocess.Popen([sys.executable, "-m", "lab.figure_worker", json.dumps(jobs)],
                         env={**os.environ, URI_ENV: uri}, stdin=subprocess.DEVNULL,
                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def in_main_process():
    return multiprocessing.parent_process() is None


if __name__ == "__main__":  # detached: python -m lab.figure_worker '[[RUN_DIR, RUN_ID, TITLE]]'
    import yaml

    for run_dir, run_id, title in json.loads(sys.argv[1]):
        try:
            config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
            names = render_and_log(os.environ[URI_ENV], run_id, run_dir, config, title)
            print(f"{run_dir}: {', '.join(names)}", flush=True)
        except Exception as exc:  # the next run's figures still get drawn
            print(f"{run_dir}: figures not logged: {exc}", flush=True)
