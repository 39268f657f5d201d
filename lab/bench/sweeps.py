"""``python -m lab.bench.sweeps`` (the second half of ``make bench``): what tracking costs a sweep and a run, end to end, through
``python -m lab`` (issue 13's targets), beside the numbers measured before the rebuild.

Measures, in one process on one machine (read ratios; the load average is printed):
- a 16-job basic sweep of the 10x2 identity net (2000 steps, SQLite, figures on), per job, with
  tracking on and off; also ``tracking.detail=full`` and figures off;
- one 2000-step run of a 10-layer, 64-wide net at batch 256: tracking overhead;
- the README's four-axis sweep (144 jobs) with tracking on (``--quick`` skips it);
- ``make demo`` (``python -m lab.demo``) on a warm numba cache, into a temporary store;
- where a tracking-off job's time goes (``--profile``: cProfile of a tracking-off sweep).
Everything runs in a temporary directory; nothing lands in the repository's store.
"""

import argparse
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
JOBS = 16
#: issue 13's measurements of the code before the rebuild (same machine, same commands)
BEFORE = {"sweep on": 2.94, "sweep off": 0.47, "single overhead": 4.0, "demo": 180.0}
FOUR_AXES = ["model.activation=identity,sigmoid,tanh,relu", "init=lecun,he,xavier",
             "train.batch_size=1,32,full", "optimizer=sgd,momentum,rmsprop,adam",
             "model.width=16", "data=teacher"]
BIG_NET = ["model=mlp", "model.depth=10", "model.width=64", "data=teacher",
           "train.batch_size=256", "train.steps=2000", "init=he"]


def load():
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def figure_processes(tmp):
    """Pids of the detached figure processes drawing for runs under ``tmp``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "lab.figure_worker" in cmd and str(tmp) in cmd:
            found.append(int(proc.name))
    return found


def settle(tmp, since):
    """Wait for the figures of what ran under ``tmp`` (drawn after the command returned, off
    its critical path); returns seconds from ``since`` until the last one was logged, so the
    next measurement does not share the machine with them."""
    while figure_processes(tmp):
        time.sleep(0.1)
    return time.perf_counter() - since


def lab(tmp, tag, *args, env=None, figures_wait=None):
    """Wall seconds of ``python -m lab ARGS`` with its outputs and store under ``tmp``; the
    figures drawn afterwards are waited for (their end, from the start, in ``figures_wait``)."""
    cmd = [sys.executable, "-m", "lab", *args, f"hydra.run.dir={tmp}/{tag}/run",
           f"hydra.sweep.dir={tmp}/{tag}/sweep", "tracking.progress=false"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/bench.db",
           "PYTHONWARNINGS": "ignore", **(env or {})}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"python -m lab {' '.join(args)}: exit {done.returncode}: "
                           f"{done.stderr.strip()[-600:]}")
    until = settle(Path(tmp) / tag, t0)
    if figures_wait is not None:
        figures_wait.append(until)
    return wall


def training_seconds(folder):
    """Seconds the jobs under ``folder`` trained (their summary.json; a sweep's is a list)."""
    found = (json.loads(p.read_text()) for p in Path(folder).rglob("summary.json"))
    return sum(j.get("seconds", 0.0) for j in found if isinstance(j, dict))


SWEEP_ROUNDS = 3  # rounds of the four sweep cases, each round in another order


def sweeps(tmp, log, rounds=SWEEP_ROUNDS):
    """The 16-job sweep in each case, ``rounds`` times in rotated orders; medians per job."""
    seeds = f"seed=range(0,{JOBS})"
    cases = {"tracking off": ["tracking=off"],
             "tracking on": [],
             "tracking on, figures off": ["tracking.figures=false"],
             "tracking on, detail=full": ["tracking.detail=full"]}
    names = list(cases)
    walls = {name: [] for name in names}
    drawn = {name: [] for name in names}
    trained = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            tag = f"sweep_{r}_" + "".join(c if c.isalnum() else "_" for c in name)
            figures = []
            walls[name].append(lab(tmp, tag, "-m", seeds, *cases[name], figures_wait=figures))
            drawn[name] += figures
            trained[name].append(training_seconds(Path(tmp) / tag) / JOBS)
    out = {}
    for name in names:
        wall = float(np.median(walls[name]))
        out[name] = wall / JOBS
        last = (f"; last figure logged {np.median(drawn[name]):.0f} s after the start"
                if cases[name] in ([], ["tracking.detail=full"]) else "")
        log(f"16-job sweep, {name:26s} {wall:6.1f} s  {wall / JOBS:5.2f} s/job  (median of "
            f"{rounds}, {min(walls[name]) / JOBS:.2f}-{max(walls[name]) / JOBS:.2f}; training "
            f"{np.median(trained[name]):.2f} s/job{last})")
    log(f"  -> tracking on / off: {out['tracking on'] / out['tracking off']:.2f}x "
        f"(target <= 2x; on <= 0.6 s/job, off <= 0.3 s/job); before: "
        f"{BEFORE['sweep on']:.2f} s/job on, {BEFORE['sweep off']:.2f} s/job off")
    return out


SINGLE_ROUNDS = 3  # rounds of (off, on, on+figures), each round in another order


def single_run(tmp, log):
    """Tracking's share of one run's wall time: the three modes measured in turn, each round
    in a rotated order (whichever goes first pays for a colder page cache), after one round
    that is not counted; medians."""
    modes = {"off": ["tracking=off"], "on": ["tracking.figures=false"], "on+figures": []}
    names = list(modes)
    walls = {name: [] for name in names}
    for r in range(SINGLE_ROUNDS + 1):
        for name in names[r % 3:] + names[:r % 3]:
            wall = lab(tmp, f"big_{name.replace('+', '_')}_{r}", *BIG_NET, *modes[name])
            if r:
                walls[name].append(wall)
    median = {name: float(np.median(w)) for name, w in walls.items()}
    for name in ("on", "on+figures"):
        over = median[name] - median["off"]
        log(f"single run 10x64, batch 256, 2000 steps, tracking {name:10s}: {median[name]:5.2f} s "
            f"vs {median['off']:.2f} s off (medians of {SINGLE_ROUNDS}): overhead {over:+.2f} s "
            f"= {over / median[name]:.0%} of the run (target <= 15%)")
    return median


def four_axes(tmp, log):
    figures = []
    wall = lab(tmp, "four_axes", "-m", *FOUR_AXES, figures_wait=figures)
    log(f"four-axis sweep, 144 jobs, tracking on: {wall:6.1f} s ({wall / 144:.2f} s/job; goal "
        f"<= 120 s); last figure logged {figures[0]:.0f} s after the start")
    return wall


def demo(tmp, log):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/demo.db",
           "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "lab.demo"], cwd=REPO, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    settle("multirun/", t0)  # the demo sweeps into the repository's multirun/
    if done.returncode != 0:
        raise RuntimeError(f"lab.demo: exit {done.returncode}: {done.stderr[-600:]}")
    log(f"make demo (warm numba cache): {wall:6.1f} s (target <= 60 s; before "
        f"~{BEFORE['demo']:.0f} s)")
    return wall


def profile_off(tmp, log, top=45):
    """cProfile of a tracking-off 16-job sweep (``python -m cProfile -m lab``): where the
    seconds per job go, by cumulative time of the lab's and Hydra's functions."""
    out = Path(tmp) / "sweep.prof"
    cmd = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "lab", "-m",
           f"seed=range(0,{JOBS})", "tracking=off", f"hydra.sweep.dir={tmp}/prof/sweep"]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    stream = io.StringIO()
    stats = pstats.Stats(str(out), stream=stream).sort_stats("cumulative")
    stats.print_stats(r"(lab/|hydra/core/utils|hydra/_internal/(utils|core_plugins|hydra)|"
                      r"config_loader_impl|logging/config|numba/core/dispatcher|_bootstrap)", top)
    log(f"profile of a tracking-off 16-job sweep: {wall:.1f} s process, "
        f"{wall / JOBS:.2f} s/job; cumulative seconds by function (all jobs):")
    keep = False
    for line in stream.getvalue().splitlines():
        if line.strip().startswith("ncalls"):
            keep = True
        if keep and line.strip():
            log("  " + line.strip()[:160])


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m lab.bench.sweeps")
    ap.add_argument("--quick", action="store_true", help="skip the 144-job sweep and the demo")
    ap.add_argument("--profile", action="store_true", help="only the tracking-off profile")
    args = ap.parse_args(argv)
    lines = []

    def log(text):
        print(text, flush=True)
        lines.append(text)

    log(f"gradlab sweep throughput ({os.cpu_count()} cores, {load()})")
    with tempfile.TemporaryDirectory(prefix="gradlab-bench-") as tmp:
        if args.profile:
            profile_off(tmp, log)
            return
        lab(tmp, "warmup", "train.steps=10")  # numba cache and the store's schema
        sweeps(tmp, log, rounds=1 if args.quick else SWEEP_ROUNDS)
        single_run(tmp, log)
        if not args.quick:
            four_axes(tmp, log)
            demo(tmp, log)
    log(f"done ({load()})")


if __name__ == "__main__":
    main()
