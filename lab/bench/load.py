"""Load tolerance: numba's ratio to JAX and PyTorch on the 64-wide nets with one core kept busy.

The bench starts a background process that spins on one core (a Python busy loop), measures the
same shapes again while it runs, and stops it. On a 2-core machine the numba chunk's parts then
share a core with it; threads claim the parts one at a time, so a descheduled thread holds back
one small part rather than half the step (``lab/kernels/threads.py``).
"""

import os
import subprocess
import sys
import time
from contextlib import contextmanager

from .shapes import LOAD_TOLERANCE, LOADED_SHAPES
from .timing import measure_shape

BUSY = "while True:\n    pass\n"


@contextmanager
def one_core_busy():
    """A child process spinning on one core for the duration of the block."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # let it reach the run queue
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ratios(per):
    numba_us = per["numba"]["us_per_step"]
    return {peer: per[peer]["us_per_step"] / numba_us for peer in ("torch", "jax") if peer in per}


def loaded_ratios(peers, dtypes, rounds, seconds_per_round, log, shapes=LOADED_SHAPES):
    """Records {name: "load_ratio", shape, dtype, idle/loaded µs and ratios, load averages}:
    each shape measured idle, then with one core busy, back to back."""
    results = []
    for shape in shapes:
        for dtype in dtypes:
            load_idle = os.getloadavg()[0]
            idle = measure_shape(shape, dtype, peers, rounds, seconds_per_round, log,
                                 with_numpy=False, tag="idle   ")
            with one_core_busy():
                loaded = measure_shape(shape, dtype, peers, rounds, seconds_per_round, log,
                                       with_numpy=False, tag="loaded ")
                load_busy = os.getloadavg()[0]
            r_idle, r_loaded = _ratios(idle), _ratios(loaded)
            rec = {"name": "load_ratio", "backend": "numba", "dtype": dtype, "depth": shape[0],
                   "width": shape[1], "batch": shape[2], "load_idle": load_idle,
                   "load_busy": load_busy, "tolerance": LOAD_TOLERANCE,
                   "us_idle": {b: r["us_per_step"] for b, r in idle.items()},
                   "us_loaded": {b: r["us_per_step"] for b, r in loaded.items()},
                   "cores_idle": {b: r["cores"] for b, r in idle.items()},
                   "cores_loaded": {b: r["cores"] for b, r in loaded.items()},
                   "ratio_idle": r_idle, "ratio_loaded": r_loaded}
            results.append(rec)
            for peer in r_idle:
                change = r_loaded[peer] / r_idle[peer] - 1
                log(f"  load: numba vs {peer} {dtype} {shape}: idle {r_idle[peer]:.2f}x, one "
                    f"core busy {r_loaded[peer]:.2f}x ({100 * change:+.0f}%; load "
                    f"{load_idle:.1f} -> {load_busy:.1f})")
    return results
