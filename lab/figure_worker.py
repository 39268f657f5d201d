"""Per-run figures rendered off the run's path.

Drawing a run's figures costs more CPU than training a small net, so it happens in detached
processes that only get CPU nobody else wants (Linux's ``SCHED_IDLE``, set before the process
even starts: its imports never compete with a training): one per single run, started when the
run's writer is done, and one per basic-launcher sweep (:func:`queue`), which draws each run
once its writer has created it and, at the end, the sweep's comparison figure. joblib, Ray and
submitit workers draw their own (:func:`submit`).
"""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("lab")


def figures_of_run(out_dir, cfg, title):
    """{file name: Figure} for a finished job: the history views, and the data views (decision
    boundary, misclassified digits) from the network rebuilt with its saved parameters."""
    import numpy as np

    from .build import build, make_data
    from .history import load
    from .views.dataset import data_figures, has_data_figures
    from .views.training import run_figures

    out_dir = Path(out_dir)
    figures = run_figures(load(out_dir / "history.npz"), title)
    params = out_dir / "params.npz"
    data = make_data(cfg) if params.exists() else None
    if data is not None and has_data_figures(data):  # (the job validated this config)
        ds, net, _ = build(cfg, data, checked=True)
        with np.load(params) as saved:
            net.theta[:] = saved["theta_final"]
            figures.update(data_figures(net, saved["theta_init"], ds, title))
    return figures


def render(out_dir, cfg, title):
    """A run's figures, saved in ``<run dir>/figures/`` (``lab.sync`` uploads them from
    there); returns their names."""
    import matplotlib.pyplot as plt

    folder = Path(out_dir) / "figures"
    folder.mkdir(exist_ok=True)
    names = []
    for name, fig in figures_of_run(out_dir, cfg, title).items():
        fig.savefig(folder / name)
        plt.close(fig)
        names.append(name)
    return names


def render_and_log(uri, run_id, out_dir, cfg, title):
    """Worker side: a run's figures, saved in ``<run dir>/figures/`` and logged under
    ``figures/``; returns their names."""
    from . import track

    names = render(out_dir, cfg, title)
    track.log_artifacts(uri, run_id, Path(out_dir) / "figures", "figures")
    return names


URI_ENV = "GRADLAB_FIGURE_URI"  # the store for a detached worker (kept off its command line)
QUEUE_FILE = ".figures.jsonl"  # a sweep's figure queue: one [run dir, title] line per run
SWEEP_LOG = "figures.log"
#: how long the sweep's figure process waits for the writer to create a run it must draw for
RUN_ID_WAIT_S = 300.0
_sweep_workers = set()  # sweeps whose figure process this process started


def queue(uri, sweep_dir, out_dir, title):
    """A run of a sweep whose writer process stores it (:mod:`lab.track.sweep_writer`): its
    figures are drawn by one detached process per sweep, which outlives the sweep and logs
    them once the writer has created the run (``<sweep dir>/figures.log`` says how it went)."""
    sweep_dir = Path(sweep_dir)
    with open(sweep_dir / QUEUE_FILE, "a") as f:  # one write per line: never a torn line
        f.write(json.dumps([str(out_dir), title]) + "\n")
    if sweep_dir.resolve() not in _sweep_workers:
        _sweep_workers.add(sweep_dir.resolve())
        spawn_idle(["--sweep", str(sweep_dir)], uri, sweep_dir / SWEEP_LOG)


def spawn_idle(args, uri, log_path):
    """``python -m lab.figure_worker ARGS`` in a session of its own that outlives this process,
    output to ``log_path``, the store's URI in its environment (not on its command line). On
    Linux it starts at ``SCHED_IDLE`` (``posix_spawn`` sets it before the interpreter starts);
    elsewhere it lowers itself first thing (:func:`lowest_priority`)."""
    argv = [sys.executable, "-m", "lab.figure_worker", *args]
    env = {**os.environ, URI_ENV: uri}
    if hasattr(os, "posix_spawn") and hasattr(os, "SCHED_IDLE"):
        try:
            os.posix_spawn(sys.executable, argv, env, setsid=True,
                           scheduler=(os.SCHED_IDLE, os.sched_param(0)), file_actions=[
                               (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                               (os.POSIX_SPAWN_OPEN, 1, str(log_path),
                                os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
                               (os.POSIX_SPAWN_DUP2, 1, 2)])
            return
        except OSError:  # (a kernel that refuses the policy): as below
            pass
    with open(log_path, "w") as out:
        subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                         stderr=subprocess.STDOUT, start_new_session=True)


def follow_sweep(uri, sweep_dir, poll_s=0.3):
    """The sweep's figure process: draws each queued run's figures (at the lowest priority:
    training and the store writer come first), then, once the sweep is over and its writer done, the
    sweep's comparison figure for the parent run."""
    import time

    import yaml

    from .track import record as rec
    from .track import sweep_writer

    lowest_priority()
    sweep_dir = Path(sweep_dir)
    owner = rec.read_json(sweep_dir / rec.SWEEP_FILE) or {}
    done = 0
    while True:
        lines = rec.whole_lines(sweep_dir / QUEUE_FILE)
        for run_dir, title in (json.loads(line) for line in lines[done:]):
            try:
                run_id = _wait_for_run_id(Path(run_dir), sweep_dir)
                config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
                if run_id is None:  # the writer could not create it: `lab.sync` uploads them
                    names = render(run_dir, config, title)
                else:
                    names = render_and_log(uri, run_id, run_dir, config, title)
                print(f"{run_dir}: {', '.join(names)}", flush=True)
            except Exception as exc:  # the next run's figures still get drawn
                print(f"{run_dir}: figures not logged: {exc}", flush=True)
        done = len(lines)
        if (sweep_dir / sweep_writer.END_FILE).exists() and len(
                rec.whole_lines(sweep_dir / QUEUE_FILE)) == done:
            break
        if not rec.pid_alive(owner.get("pid", -1), owner.get("started")):
            if len(rec.whole_lines(sweep_dir / QUEUE_FILE)) == done:
                return  # the sweep died: its writer closes what it can; no comparison
        time.sleep(poll_s)
    deadline = time.monotonic() + RUN_ID_WAIT_S
    while not (sweep_dir / sweep_writer.RESULT_FILE).exists() and time.monotonic() < deadline:
        time.sleep(poll_s)
    try:
        print(f"{sweep_dir}: {sweep_comparison_figure(uri, sweep_dir)}", flush=True)
    except Exception as exc:
        print(f"{sweep_dir}: sweep comparison not logged: {exc}", flush=True)


def lowest_priority():
    """Figures are views of stored data: draw them only when no training or store writing
    wants the CPU (Linux's SCHED_IDLE; elsewhere the lowest nice level)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)


def sweep_comparison_figure(uri, sweep_dir):
    """The sweep's comparison figure, from its summary.json, saved and logged to its parent."""
    import matplotlib.pyplot as plt

    from . import track
    from .views.sweep import sweep_comparison

    sweep_dir = Path(sweep_dir)
    jobs = json.loads((sweep_dir / "summary.json").read_text())
    if not any(j.get("final_loss") is not None for j in jobs):  # every job was stopped
        return "no finished job: no comparison"
    name = (track.record.read_json(sweep_dir / track.record.SWEEP_FILE) or {}).get(
        "experiment", sweep_dir.name)
    fig = sweep_comparison(jobs, f"{name}: gradient norm by layer and final loss")
    folder = sweep_dir / "figures"
    folder.mkdir(exist_ok=True)
    fig.savefig(folder / "sweep_comparison.png")
    plt.close(fig)
    parent = (sweep_dir / track.PARENT_ID_FILE).read_text().strip()
    track.log_artifacts(uri, parent, folder, "figures")
    return "sweep_comparison.png"


def _wait_for_run_id(run_dir, sweep_dir):
    """The run's id once the sweep's writer has created it; None if the writer finished (or
    the wait ran out) without it."""
    import time

    from .track import record as rec
    from .track import sweep_writer

    deadline = time.monotonic() + RUN_ID_WAIT_S
    while time.monotonic() < deadline:
        run_id = (rec.read_run(run_dir) or {}).get("run_id")
        if run_id or (Path(sweep_dir) / sweep_writer.RESULT_FILE).exists():
            return run_id
        time.sleep(0.2)
    return None


def submit(uri, run_id, out_dir, cfg, title, background=False):
    """One run's figures: rendered and logged in place, or with ``"detached"`` by a process
    of their own that outlives this one (a single run: its process exits without waiting;
    ``<run dir>/figures.log`` says how it went)."""
    if background == "detached":
        detach(uri, [(str(out_dir), run_id, title)], Path(out_dir) / "figures.log")
        return None
    return render_and_log(uri, run_id, str(out_dir), cfg, title)


def detach(uri, jobs, log_path):
    """Render ``[(run dir, run id, title), ...]`` in a process of their own that outlives this
    one; the store's URI goes through the environment, not the command line."""
    spawn_idle([json.dumps(jobs)], uri, log_path)


if __name__ == "__main__" and sys.argv[1:2] == ["--sweep"]:  # a sweep's figure process
    from .track import quiet_store_logs

    quiet_store_logs()
    follow_sweep(os.environ[URI_ENV], sys.argv[2])
elif __name__ == "__main__":  # detached: python -m lab.figure_worker '[[RUN_DIR, RUN_ID, TITLE]]'
    import yaml

    lowest_priority()

    for run_dir, run_id, title in json.loads(sys.argv[1]):
        try:
            config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
            if run_id is None:  # its writer process is creating the run
                run_id = _wait_for_run_id(Path(run_dir), Path(run_dir))
            if run_id is None:
                names = render(run_dir, config, title)
            else:
                names = render_and_log(os.environ[URI_ENV], run_id, run_dir, config, title)
            print(f"{run_dir}: {', '.join(names)}", flush=True)
        except Exception as exc:  # the next run's figures still get drawn
            print(f"{run_dir}: figures not logged: {exc}", flush=True)
