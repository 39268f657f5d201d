"""What a run will hold in memory, estimated before it starts, and the check against the
memory the machine has free.

A config such as ``model.depth=1000000`` is refused with one line instead of growing until the
machine swaps: the per-step history alone holds ``steps x (3 + 7 L)`` float64 values.
"""

import os

import numpy as np

from .kernels.codes import HIST_BINS, LAYER_STAT_NAMES, SCALAR_NAMES

# A run may plan to use at most this share of the memory free when it starts (the rest is for
# the interpreter, MLflow, figures and the other jobs of a sweep).
MEMORY_SHARE = 0.8
HISTORY_ITEM = np.dtype(np.float64).itemsize
OPTIMIZER_COPIES = 4  # theta, its gradient, the velocity v and the squared average s
ACTIVATION_COPIES = 3  # Z[l], A[l] and dZ[l] per layer and example


def run_bytes(sizes, examples, steps, log_points, dtype="float64"):
    """{part: bytes} for a run of ``steps`` updates of a net with layer ``sizes`` whose largest
    forward pass sees ``examples`` columns (training or test set)."""
    sizes = [int(n) for n in sizes]
    depth = len(sizes) - 1
    item = np.dtype(dtype).itemsize
    n_params = sum(n_out * (n_in + 1) for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    per_step = len(SCALAR_NAMES) + len(LAYER_STAT_NAMES) * depth
    return {
        "parameters": OPTIMIZER_COPIES * n_params * item,
        "activations": ACTIVATION_COPIES * sum(sizes[1:]) * int(examples) * item,
        "history": int(steps) * per_step * HISTORY_ITEM,
        "histograms": 2 * int(log_points) * depth * HIST_BINS * HISTORY_ITEM,
    }


def available_bytes():
    """Memory free for new allocations (MemAvailable on Linux, else physical memory)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _size(n_bytes):
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} B"


def check_fits(sizes, examples, steps, log_points, dtype="float64", limit=None):
    """ValueError with the estimate, its largest part and the limit when the run cannot fit."""
    parts = run_bytes(sizes, examples, steps, log_points, dtype)
    need = sum(parts.values())
    limit = MEMORY_SHARE * available_bytes() if limit is None else limit
    if need > limit:
        largest = max(parts, key=parts.get)
        raise ValueError(f"this run needs about {_size(need)} of memory ({largest}: "
                         f"{_size(parts[largest])}) but the limit is {_size(limit)} "
                         f"({MEMORY_SHARE:.0%} of the free memory); lower train.steps, "
                         "model.depth or model.width")
