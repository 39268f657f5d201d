"""Names and layout of a run's per-step arrays, and the one reader of them.

A history is a dict of numpy arrays, saved as ``history.npz``:

- ``step``: the optimizer steps recorded (one row per step);
- the MLflow contract's names, one array per name with one value per ``step``:
  ``loss/train``, ``grad_norm/total``, ``accuracy/train`` (classifiers) and
  ``<stat>/layer_XX`` for every stat in ``LAYER_STAT_NAMES`` and layer 1..L;
- ``eval_step`` and the test-set evaluations at those steps (``loss/test``, ``accuracy/test``);
- ``hist_step``, ``hist/act`` and ``hist/delta`` (n_logged, L, bins) with their ranges;
- ``final_step`` (updates applied) and ``final/loss/train``, ``final/loss/test``,
  ``final/accuracy/...``: the network training left behind, evaluated on whole sets (every
  row above describes the parameters *before* its step's update).

Views, reports and tests read histories through the functions here, never by spelling names.
"""

import functools
from pathlib import Path

import numpy as np

from .kernels.codes import LAYER_STAT_NAMES, SCALAR_NAMES

__all__ = ["LAYER_STAT_NAMES", "SCALAR_NAMES", "layer_key", "layer_names", "depth_of",
           "layer_series", "series", "last_finite_row", "finite", "load"]


def layer_key(stat, layer, depth):
    """``grad_norm/layer_01``: layers 1-based, zero-padded to the width of L (at least 2)."""
    return f"{stat}/layer_{layer:0{max(2, len(str(depth)))}d}"


@functools.lru_cache(maxsize=64)
def layer_names(depth):
    """Every per-layer metric name, stat-major: grad_norm/layer_01 ... update_ratio/layer_L."""
    return tuple(layer_key(stat, l + 1, depth) for stat in LAYER_STAT_NAMES for l in range(depth))


def depth_of(history):
    """L, the number of weight layers the history describes."""
    return sum(1 for k in history if k.startswith("grad_norm/layer_"))


def series(history, stat, layer):
    """Every recorded value of ``stat`` at ``layer`` (1-based), as floats."""
    return np.asarray(history[layer_key(stat, layer, depth_of(history))], dtype=float)


def layer_series(history, stat, row):
    """Per-layer values of ``stat`` at history row ``row`` (layers 1..L), as floats."""
    depth = depth_of(history)
    return np.array([history[layer_key(stat, l, depth)][row] for l in range(1, depth + 1)],
                    dtype=float)


def finite(values, log=False):
    """Values as float with non-finite (and, for log axes, non-positive) entries set to NaN."""
    v = np.array(values, dtype=float)
    bad = ~np.isfinite(v) | ((v <= 0) if log else False)
    v[bad] = np.nan
    return v


def last_finite_row(history):
    """The last row whose gradient norms are all finite (the end of a diverged run)."""
    ok = np.flatnonzero(np.isfinite(finite(history["grad_norm/total"])))
    return int(ok[-1]) if len(ok) else 0


def load(path):
    """A ``history.npz`` as a dict of arrays (read fully, so the file can be closed)."""
    with np.load(Path(path)) as saved:
        return {name: np.array(saved[name]) for name in saved.files}
