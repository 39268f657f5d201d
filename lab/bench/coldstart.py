"""Fresh processes: how long the first ``lab.train`` takes with an empty vs a populated numba
cache (cold vs warm start), and which compiled entry point the cold start spends its time on.

Wall seconds and CPU seconds (``time.process_time`` in the process, and user + system of the
whole child): compiling is single-threaded CPU work, so CPU seconds say what it costs with
less noise from other processes than wall time does.

``python -m lab.bench.coldstart [--runs N]`` measures cold and warm starts N times (a fresh
empty cache each cold run) and prints each run with the load average.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

START_SCRIPT = """
import json, time
t0, c0 = time.perf_counter(), time.process_time()
import numpy as np
import lab
t1, c1 = time.perf_counter(), time.process_time()
net = lab.Network([2] * 11, "sigmoid", init="xavier")
X = np.random.default_rng(0).standard_normal((2, 64))
net.evaluate(X, X)  # what lab.train compiles first: the test-set evaluation
t2, c2 = time.perf_counter(), time.process_time()
lab.train(net, lab.Optimizer("adam", lr=1e-3), X, X, steps=100, X_test=X, Y_test=X)
t3, c3 = time.perf_counter(), time.process_time()
print(json.dumps({"import_s": t1 - t0, "first_train_s": t3 - t1, "evaluate_s": t2 - t1,
                  "train_chunk_s": t3 - t2, "import_cpu_s": c1 - c0,
                  "evaluate_cpu_s": c2 - c1, "train_chunk_cpu_s": c3 - c2}))
"""


def process_start(cache_dir=None):
    """One fresh process running START_SCRIPT (NUMBA_CACHE_DIR=cache_dir if given): its wall
    time, CPU time (user + system) and the script's own timings."""
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", START_SCRIPT], env=env, capture_output=True,
                          text=True, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"process_s": wall, "process_cpu_s": cpu,
            **json.loads(proc.stdout.strip().splitlines()[-1])}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab.bench.coldstart",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="cold/warm pairs (default: 3)")
    args = parser.parse_args(argv)
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="gradlab-coldstart-") as cache:
            for variant in ("cold", "warm"):
                load = os.getloadavg()[0]
                r = process_start(cache)
                print(f"run {run + 1} {variant}: {r['process_cpu_s']:.1f} s CPU, "
                      f"{r['process_s']:.1f} s wall (evaluate {r['evaluate_cpu_s']:.2f} s CPU, "
                      f"training chunk {r['train_chunk_cpu_s']:.2f} s CPU); load average "
                      f"{load:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
