"""Figures from a run's history (the arrays of ``history.npz``): gradient norms and loss.

Every function returns a matplotlib Figure and never plots a non-finite value: NaN/inf (a
diverged step) and, on log axes, non-positive values are masked out.
"""

import matplotlib.pyplot as plt
import numpy as np

from ..history import depth_of, last_finite_row, layer_key, layer_series
from .style import (
    DPI,
    SMALL,
    finite,
    has_points,
    layer_axis,
    layer_colors,
    layers_shown,
    layout,
    legend_outside,
    log_axis,
    step_axis,
    thin,
    title,
    top_margin,
)


def _coincide(series, rtol=0.02):
    """True when every series equals the first within ``rtol`` wherever both are finite."""
    ref = series[0]
    with np.errstate(all="ignore"):
        return all(np.nanmax(np.abs(v / ref - 1), initial=0.0) < rtol for v in series[1:])


def grad_norm_over_steps(history, title_text=""):
    depth = depth_of(history)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=DPI, sharex=True)
    colors = layer_colors(depth)
    rows = thin(len(history["step"]))
    for ax, stat, label in ((axes[0], "grad_norm", "‖dW[l]‖ (Frobenius)"),
                            (axes[1], "delta_norm", "‖dZ[l]‖ (backpropagated error)")):
        shown = [finite(history[layer_key(stat, l, depth)][rows], log=True)
                 for l in layers_shown(depth)]
        for l, v in zip(layers_shown(depth), shown):
            if has_points(v):
                ax.plot(history["step"][rows], v, color=colors[l - 1], lw=1.2,
                        label=f"layer {l}")
        if depth > 1 and _coincide(shown):
            ax.text(0.02, 0.02, "all layers lie on one line (equal norms)",
                    transform=ax.transAxes, fontsize=SMALL,
                    bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
        log_axis(ax)
        step_axis(ax)
        ax.set_ylabel(label, fontsize=SMALL)
        ax.tick_params(labelsize=SMALL)
        ax.grid(True, alpha=0.3)
    if axes[1].get_legend_handles_labels()[0]:
        legend_outside(axes[1], title="layer\n(1 = input side)", title_fontsize=SMALL)
    lines = title(fig, title_text or "Gradient norm per layer over training")
    layout(fig, top=top_margin(fig, lines), left=0.08, right=0.86, wspace=0.3)
    return fig


def grad_norm_by_layer(history, title_text=""):
    depth = depth_of(history)
    layers = np.arange(1, depth + 1)
    end = last_finite_row(history)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=DPI, sharex=True)
    for ax, stat, label in ((axes[0], "grad_norm", "‖dW[l]‖"), (axes[1], "delta_norm", "‖dZ[l]‖")):
        for row, style, when in ((0, "o--", "at init (step 0)"),
                                 (end, "s-", f"at the end (step {history['step'][end]})")):
            v = finite(layer_series(history, stat, row), log=True)
            if has_points(v):
                ax.plot(layers, v, style, label=when)
        log_axis(ax)
        layer_axis(ax, depth)
        ax.set_ylabel(label, fontsize=SMALL)
        ax.tick_params(labelsize=SMALL)
        ax.grid(True, alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:
        fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=2,
                   fontsize=SMALL, frameon=False)
    lines = title(fig, title_text or "Gradient norm by layer")
    layout(fig, top=top_margin(fig, lines), bottom=0.2, wspace=0.3)
    return fig


def loss_curves(history, title_text=""):
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=DPI)
    rows = thin(len(history["step"]), 2000)
    train_loss = finite(history["loss/train"][rows], log=True)
    ax.plot(history["step"][rows], train_loss, lw=1, label="train (batch of each step)")
    if "loss/test" in history:
        ax.plot(history["eval_step"], finite(history["loss/test"], log=True), "o-", ms=2,
                lw=1, label="test")
    log_axis(ax)
    step_axis(ax)
    ax.set_ylabel("loss", fontsize=SMALL)
    ax.tick_params(labelsize=SMALL)
    ax.grid(True, alpha=0.3)
    legend_outside(ax)
    lines = title(fig, title_text or "Loss")
    layout(fig, top=top_margin(fig, lines), left=0.1, right=0.72)
    return fig


def run_figures(history, title_text=""):
    """{file name: Figure} logged under figures/ for every run."""
    from .activations import activation_histograms, activation_histograms_by_layer
    return {
        "activation_saturation.png": activation_histograms_by_layer(history, title_text),
        "grad_norm_over_steps.png": grad_norm_over_steps(history, title_text),
        "grad_norm_by_layer.png": grad_norm_by_layer(history, title_text),
        "loss.png": loss_curves(history, title_text),
        "activation_histograms.png": activation_histograms(history, title_text),
    }


__all__ = ["depth_of", "grad_norm_by_layer", "grad_norm_over_steps", "last_finite_row",
           "layer_series", "loss_curves", "run_figures"]
