"""Measurements the write-ups quote: thresholds, per-layer factors, predicted variances."""

from __future__ import annotations

import math

import numpy as np

# optimizer_comparison: steps until the training loss first falls below this
TARGET_LOSS = 0.1
# slope of the sigmoid at z = 0: the best case factor per layer of ||dZ||
SIGMOID_SLOPE_AT_0 = 0.25


def first_below(values, threshold):
    """First index where ``values`` < threshold, or None."""
    idx = np.flatnonzero(np.asarray(values, dtype=float) < threshold)
    return int(idx[0]) if len(idx) else None


def fit_ratio(values, layers=None):
    """exp(slope) of log(values) against the layer index: the factor per layer."""
    v = np.asarray(values, dtype=float)
    x = np.arange(1, len(v) + 1) if layers is None else np.asarray(layers, dtype=float)
    ok = np.isfinite(v) & (v > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.exp(np.polyfit(x[ok], np.log(v[ok]), 1)[0]))


def relu_scale_factor(init, width, gain):
    """Predicted factor per square ReLU layer of the activation (and, backwards, ||dZ||) scale:
    sqrt(n Var(W) / 2)."""
    var = weight_variance(init, width, gain)
    return math.sqrt(width * var / 2) if var is not None else float("nan")


def weight_variance(init, n, gain=1.0):
    """Var(W) of a square n x n layer under scheme ``init`` (DESIGN.md's table)."""
    return {"zeros": 0.0, "normal": gain ** 2, "lecun": gain ** 2 / n, "he": 2 * gain ** 2 / n,
            "xavier": gain ** 2 * 2 / (2 * n), "uniform": gain ** 2 / (3 * n)}.get(init)
