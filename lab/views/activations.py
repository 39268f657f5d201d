"""Activation and backpropagated-error distributions by layer (Glorot & Bengio's view).

- ``activation_histograms``: one row per layer, the distribution of A[l] and of log10|dZ[l]|
  at a few logged moments of training.
- ``activation_histograms_by_layer``: hidden layers overlaid per moment of training, and the
  share of saturated units and the spread of A[l] over training.

Built on ``matplotlib.figure.Figure`` directly (nothing registered with pyplot).
"""

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from ..history import layer_key
from .style import (
    DPI,
    NORMAL,
    SMALL,
    layers_shown,
    layout,
    legend_outside,
    log_axis,
    step_axis,
    title,
    top_margin,
)


def activation_histograms(history, title_text="", moments=4, most_layers=6):
    """One row per layer: the distribution of A[l] (left) and of log10|dZ[l]| (right) at a few
    logged moments of training, early (light) to late (dark); the legend sits right of the
    panels."""
    counts_a, counts_d = history["hist/act"], history["hist/delta"]
    depth = counts_a.shape[1]
    lo, hi = history["hist/delta_log10_range"]
    # hidden layers: a trained sigmoid/softmax output sits at 0 and 1 by design
    rows = layers_shown(max(depth - 1, 1), most_layers)
    picks = sorted(set(np.linspace(0, len(history["hist_step"]) - 1, moments).round()
                       .astype(int).tolist()))
    shades = colormaps["plasma"](np.linspace(0.75, 0.0, len(picks)))
    fig = Figure(figsize=(10, 1.45 * len(rows) + 1.3), dpi=DPI)
    axes = fig.subplots(len(rows), 2, squeeze=False, sharex="col", sharey="col")
    for r, l in enumerate(rows):
        a_lo, a_hi = history["hist/act_range"][l - 1]
        for ax, counts, (x0, x1) in ((axes[r, 0], counts_a, (a_lo, a_hi)),
                                     (axes[r, 1], counts_d, (lo, hi))):
            edges = np.linspace(x0, x1, counts.shape[2] + 1)
            for shade, p in zip(shades, picks):
                c = counts[p, l - 1]
                ax.stairs(c / max(c.sum(), 1), edges, color=shade,
                          label=f"step {history['hist_step'][p]}")
            ax.tick_params(labelsize=SMALL)
        axes[r, 0].set_ylabel(f"layer {l}\nshare", fontsize=SMALL)
    axes[0, 0].set_title("activations A[l]", fontsize=NORMAL)
    axes[0, 1].set_title("log10 |dZ[l]| (backpropagated error)", fontsize=NORMAL)
    axes[-1, 0].set_xlabel("activation value", fontsize=SMALL)
    axes[-1, 1].set_xlabel("log10 |backpropagated error|", fontsize=SMALL)
    legend_outside(axes[0, 1], title="moment", title_fontsize=SMALL)
    h = fig.get_figheight()
    lines = title(fig, title_text or "Activation and error distributions by layer")
    layout(fig, top=top_margin(fig, lines, 0.45), bottom=0.5 / h, left=0.09, right=0.86,
           hspace=0.45)
    return fig


def _ends_label(lo, hi, bins):
    """What the two end bins of [lo, hi] hold, e.g. "|a| ≥ 0.95" for tanh with 40 bins."""
    w = (hi - lo) / bins
    if np.isclose(lo, -hi):
        return f"|a| ≥ {hi - w:.3g}"
    return f"a < {lo + w:.3g} or a ≥ {hi - w:.3g}"


def _end_bin_share(counts):
    """Share of values in the two end bins (for tanh on [-1, 1] with 40 bins: |a| >= 0.95)."""
    total = counts.sum()
    return (counts[0] + counts[-1]) / total if total else np.nan


def activation_histograms_by_layer(history, title_text="", moments=3, include_output=False,
                                   most_layers=8):
    """Top row: one panel per moment of training (first logged step, middle, last), the
    distribution of A[l] of every hidden layer overlaid (one colour per layer, shared y axis);
    the legend, right of the panels, gives each layer's share of units in the two end bins of
    the fixed range at each moment (for tanh with 40 bins |a| >= 0.95: saturated). Bottom row:
    over all steps, per layer, the share of saturated units (``saturation/layer_XX``: g'(z) <
    10 % of its maximum) and the standard deviation of A[l]. The output layer is left out by
    default: a trained softmax or sigmoid output piles up at 0 and 1 by design, which is not
    saturation of the hidden signal."""
    counts = np.asarray(history["hist/act"], dtype=float)  # (n_logged, L, bins)
    depth = counts.shape[1]
    ranges = np.asarray(history["hist/act_range"])
    hist_steps = np.asarray(history["hist_step"])
    steps = np.asarray(history["step"])
    last = depth if include_output or depth == 1 else depth - 1
    layers = list(range(1, last + 1))
    if len(layers) > most_layers:
        layers = sorted(set(np.linspace(1, last, most_layers).round().astype(int).tolist()))
    picks = sorted(set(np.linspace(0, len(hist_steps) - 1, max(1, moments)).round()
                       .astype(int).tolist()))
    colors = colormaps["viridis"](np.linspace(0.0, 0.9, len(layers)))

    fig = Figure(figsize=(10, 7.2), dpi=DPI)
    gs = fig.add_gridspec(2, len(picks) * 2, height_ratios=[1.2, 1.0])
    top = [fig.add_subplot(gs[0, 2 * i:2 * i + 2]) for i in range(len(picks))]
    for ax in top[1:]:
        ax.sharey(top[0])
        ax.tick_params(labelleft=False)
    half = len(picks)
    sat_ax = fig.add_subplot(gs[1, :half])
    std_ax = fig.add_subplot(gs[1, half:], sharex=sat_ax)

    shares = {l: [] for l in layers}
    for ax, p in zip(top, picks):
        for color, l in zip(colors, layers):
            c = counts[p, l - 1]
            lo, hi = ranges[l - 1]
            ax.stairs(c / max(c.sum(), 1.0), np.linspace(lo, hi, len(c) + 1), color=color,
                      lw=1.3)
            shares[l].append(f"{100 * _end_bin_share(c):.0f}")
        ax.set_title(f"step {hist_steps[p]}", fontsize=NORMAL)
        ax.set_xlabel("activation value A[l]", fontsize=SMALL)
        ax.tick_params(labelsize=SMALL)
        ax.grid(True, alpha=0.25)
    top[0].set_ylabel("share of units per bin", fontsize=SMALL)
    lo, hi = ranges[layers[0] - 1]
    handles = [top[0].plot([], [], color=color, lw=1.3)[0] for color in colors]
    labels = [f"layer {l}: {' → '.join(shares[l])} %" for l in layers]
    legend_outside(top[-1], handles=handles, labels=labels, fontsize=SMALL,
                   title=f"share with\n{_ends_label(lo, hi, counts.shape[2])}\nat each step",
                   title_fontsize=SMALL)

    rows = np.arange(0, len(steps), max(1, len(steps) // 600))
    for color, l in zip(colors, layers):
        for ax, stat in ((sat_ax, "saturation"), (std_ax, "act_std")):
            key = layer_key(stat, l, depth)
            if key in history:
                v = np.asarray(history[key], dtype=float)[rows]
                v[~np.isfinite(v)] = np.nan
                ax.plot(steps[rows], v, color=color, lw=1.2, label=f"layer {l}")
    sat_ax.set_ylabel("share of saturated units\n(g'(z) < 10 % of its max)", fontsize=SMALL)
    sat_ax.set_ylim(-0.03, 1.03)
    std_ax.set_ylabel("std of A[l]", fontsize=SMALL)
    stds = [v for line in std_ax.get_lines() for v in line.get_ydata() if np.isfinite(v) and v > 0]
    if stds and max(stds) > 1e3 * max(min(stds), 1e-300):  # exploding: only a log axis reads
        log_axis(std_ax)
    else:
        std_ax.set_ylim(bottom=0)  # from zero, so runs compare at a glance
    for ax in (sat_ax, std_ax):
        step_axis(ax)
        ax.tick_params(labelsize=SMALL)
        ax.grid(True, alpha=0.3)
    legend_outside(std_ax, ncol=1)
    out = "" if last == depth else f" (hidden layers 1–{last}; output layer {depth} not shown)"
    lines = title(fig, (title_text or "Activation distributions by layer") + out)
    layout(fig, top=top_margin(fig, lines, 0.35), bottom=0.08, left=0.09, right=0.76,
           wspace=0.9, hspace=0.35)
    return fig


__all__ = ["activation_histograms", "activation_histograms_by_layer"]
