"""Tracking and sweep overhead, measured through the Hydra app ``python -m lab``: MLflow's cost per
run (tracking on vs off) and sweep throughput (basic launcher and joblib)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SWEEP_JOBS = 16


def app_available():
    package = Path(__file__).resolve().parent.parent  # lab/
    return (package.joinpath("__main__.py").exists()
            and package.parent.joinpath("conf").is_dir())


def run_app(args, tmp, tag):
    """Wall seconds of ``python -m lab ARGS`` (run in tmp so nothing lands in the repo)."""
    cmd = [sys.executable, "-m", "lab", *args, f"hydra.run.dir={tmp}/{tag}/run",
           f"hydra.sweep.dir={tmp}/{tag}/sweep"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"python -m lab {' '.join(args)} failed ({proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")
    return wall


def train_seconds(run_dir):
    """Seconds the jobs under run_dir spent training (their summary.json's ``seconds``)."""
    return sum(json.loads(path.read_text()).get("seconds", 0.0)
               for path in Path(run_dir).rglob("summary.json"))


def app_measurements(tmp, rounds, log):
    """MLflow cost per run (tracking on vs off) and sweep throughput, through ``python -m lab``
    (default config: the lecture's 10x2 net, 2000 full-batch steps)."""
    uri = f"tracking.uri=sqlite:///{tmp}/bench.db"
    results = []
    run_app([uri, "tracking.progress=false"], tmp, "warmup")  # creates the store's schema
    variants = {"off": ["tracking=off"],
                "on": [uri, "tracking.progress=false", "tracking.figures=false"],
                "on+figures": [uri, "tracking.progress=false"]}
    walls = {name: [] for name in variants}
    trains = {name: [] for name in variants}
    for r in range(rounds):
        for name, args in variants.items():
            tag = f"run_{name.replace('+', '_')}_{r}"
            walls[name].append(run_app(args, tmp, tag))
            trains[name].append(train_seconds(Path(tmp) / tag / "run"))
    off = float(np.median(walls["off"]))
    for name in variants:
        wall = float(np.median(walls[name]))
        train = float(np.median(trains[name]))
        results.append({"name": "app_run", "backend": "numba", "variant": f"tracking {name}",
                        "dtype": "float64", "depth": 10, "width": 2, "batch": 256,
                        "steps": 2000, "seconds": wall, "train_seconds": train,
                        "overhead_seconds": wall - off})
        log(f"  python -m lab, tracking {name:10s}: {wall:6.2f} s process "
            f"({wall - off:+.2f} s vs off), {train:5.2f} s training")
    sweeps = {"basic": [uri, "tracking.progress=false"],
              "basic, figures off": [uri, "tracking.progress=false", "tracking.figures=false"],
              "basic, tracking off": ["tracking=off"],
              "joblib(2)": [uri, "tracking.progress=false", "hydra/launcher=joblib",
                            "hydra.launcher.n_jobs=2"]}
    seconds = {}
    for name, args in sweeps.items():
        tag = "sweep_" + "".join(ch if ch.isalnum() else "_" for ch in name)
        wall = run_app(["-m", f"seed=range(0,{SWEEP_JOBS})", *args], tmp, tag)
        seconds[name] = wall
        results.append({"name": "sweep", "backend": "numba", "variant": name,
                        "dtype": "float64", "depth": 10, "width": 2, "batch": 256,
                        "jobs": SWEEP_JOBS, "seconds": wall,
                        "seconds_per_job": wall / SWEEP_JOBS,
                        "train_seconds": train_seconds(Path(tmp) / tag / "sweep")})
        log(f"  sweep of {SWEEP_JOBS} jobs, {name:20s}: {wall:6.2f} s, "
            f"{wall / SWEEP_JOBS:5.2f} s/job")
    for r in results:
        if r["name"] == "sweep" and r["variant"] in ("basic", "basic, figures off"):
            r["tracking_share"] = max(0.0, 1.0 - seconds["basic, tracking off"] / r["seconds"])
    return results


# --- machine ------------------------------------------------------------------------------------
