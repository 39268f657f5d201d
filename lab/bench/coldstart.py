"""Fresh processes: how long the first ``lab.train`` takes with an empty vs a populated numba
cache (cold vs warm start), and which compiled entry point the cold start spends its time on."""

import json
import os
import subprocess
import sys
import time

START_SCRIPT = """
import json, time
t0 = time.perf_counter()
import numpy as np
import lab
t1 = time.perf_counter()
net = lab.Network([2] * 11, "sigmoid", init="xavier")
X = np.random.default_rng(0).standard_normal((2, 64))
net.evaluate(X, X)  # what lab.train compiles first: the test-set evaluation
t2 = time.perf_counter()
lab.train(net, lab.Optimizer("adam", lr=1e-3), X, X, steps=100, X_test=X, Y_test=X)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_train_s": t3 - t1, "evaluate_s": t2 - t1,
                  "train_chunk_s": t3 - t2}))
"""


def process_start(cache_dir=None):
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", START_SCRIPT], env=env, capture_output=True,
                          text=True, check=True)
    wall = time.perf_counter() - t0
    return {"process_s": wall, **json.loads(proc.stdout.strip().splitlines()[-1])}
