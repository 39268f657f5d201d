"""What the store receives of each chunk: the one function every metric series passes
through (live logging and ``lab.sync`` alike), so the store's resolution is decided here.

``tracking.detail`` levels (points per run at the default ``log_every: auto``):

- ``full``: every metric at every logged step (~100 points each).
- ``default``: ``loss/*``, ``accuracy/*``, ``grad_norm/*`` and ``delta_norm/*`` at every logged
  step (~100); the other per-layer statistics (``act_mean``, ``act_std``, ``saturation``,
  ``weight_norm``, ``update_ratio``) at every fifth (~20).
- ``summary``: ``loss/*``, ``accuracy/*`` and ``grad_norm/total`` at every logged step; every
  per-layer statistic at ~20 points.

Each level also stores ``Log10/...`` (log10 of every per-layer ``grad_norm`` and ``delta_norm``,
of ``grad_norm/total`` and of the training loss) beside the series it is taken of, so MLflow's
linear charts stay readable across decades. The last step, and the step where a run diverged,
are always logged. The run directory holds
every step whatever the level.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..views.describe import LOG10, with_log10

LEVELS = ("full", "default", "summary")
#: logged points of the coarse tier (the fine tier has every logged step)
COARSE_POINTS = 20
_ALWAYS_FINE = ("loss/", "accuracy/", "grad_norm/total")
_FINE_BY_LEVEL = {"full": ("",),
                  "default": (*_ALWAYS_FINE, "grad_norm/", "delta_norm/", f"{LOG10}/"),
                  "summary": (*_ALWAYS_FINE, f"{LOG10}/")}


def check_detail(detail: str) -> None:
    """ValueError naming ``tracking.detail`` unless it is one of ``LEVELS``."""
    if detail not in LEVELS:
        raise ValueError(f"tracking.detail={detail!r} is not valid; choose one of: "
                         f"{', '.join(LEVELS)}")


class StorePlan:
    """Which steps of which metric the store holds for a run of ``total_steps`` logged every
    ``log_every`` steps (an int) at ``detail``."""

    def __init__(self, total_steps: int, log_every: int, detail: str = "default") -> None:
        check_detail(detail)
        self.total, self.every, self.detail = int(total_steps), int(log_every), detail
        n_logged = math.ceil(self.total / self.every)
        self.coarse_every = self.every * max(1, math.ceil(n_logged / COARSE_POINTS))
        self._fine = _FINE_BY_LEVEL[detail]
        self._tier: dict[str, bool] = {}

    def is_fine(self, name: str) -> bool:
        tier = self._tier.get(name)
        if tier is None:
            tier = self._tier[name] = name.startswith(self._fine)
        return tier

    def masks(self, steps: np.ndarray, diverged_at: int | None = None):
        """(fine, coarse) boolean masks over ``steps``."""
        last = (steps == self.total - 1)
        if diverged_at is not None:
            last |= steps == diverged_at
        return (steps % self.every == 0) | last, (steps % self.coarse_every == 0) | last


def store_series(plan: StorePlan, steps: np.ndarray, metrics: Mapping[str, np.ndarray],
                 evals: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                 diverged_at: int | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{name: (steps, values)}`` the store holds of these rows (``metrics[name][i]`` at
    ``steps[i]``) and evaluations (``{name: (steps, values)}``, all kept)."""
    steps = np.asarray(steps)
    metrics = with_log10(metrics)  # readable across decades in MLflow's own (linear) charts
    fine, coarse = plan.masks(steps, diverged_at)
    fine_steps, coarse_steps = steps[fine], steps[coarse]
    out = {}
    for name, values in metrics.items():
        if plan.is_fine(name):
            out[name] = (fine_steps, np.asarray(values)[fine])
        else:
            out[name] = (coarse_steps, np.asarray(values)[coarse])
    for name, (s, v) in (evals or {}).items():
        out[name] = (np.asarray(s), np.asarray(v, dtype=float))
    return out


def count(series: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> int:
    """Finite values in a series dict (what the store keeps of it)."""
    return sum(int(np.count_nonzero(np.isfinite(v))) for _, v in series.values())
