"""Figures from a run's history (the arrays of ``history.npz``) and from a sweep's summaries.

Every function returns a matplotlib Figure and never plots a non-finite value: NaN/inf (a
diverged step) and, on log axes, non-positive values are masked out.
"""

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from .train import layer_key  # noqa: E402

DPI = 100
LAYER_CMAP = "viridis"
JOB_COLORS = plt.get_cmap("tab10").colors


def _layout(fig, top=0.88, bottom=0.12, left=0.08, right=0.98, wspace=0.25, hspace=0.35):
    """Fixed margins: tight_layout costs more than drawing these figures."""
    fig.subplots_adjust(top=top, bottom=bottom, left=left, right=right, wspace=wspace,
                        hspace=hspace)


def _log_axis(ax, axis="y"):
    """Log scale without minor ticks (building ~100 minor tick objects dominates save time)."""
    getattr(ax, f"set_{axis}scale")("log")
    getattr(ax, f"{axis}axis").set_minor_locator(matplotlib.ticker.NullLocator())


def finite(values, log=False):
    """Values as float with non-finite (and, for log axes, non-positive) entries set to NaN."""
    v = np.array(values, dtype=float)
    bad = ~np.isfinite(v) | ((v <= 0) if log else False)
    v[bad] = np.nan
    return v


def _thin(n, most=600):
    """Row indices for plotting at most ~``most`` points (keeps the last one)."""
    stride = max(1, n // most)
    idx = np.arange(0, n, stride)
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)


def _has_points(v):
    return np.isfinite(v).any()


def job_color(i):
    """One colour per job of a sweep, the same in every figure."""
    return JOB_COLORS[i % len(JOB_COLORS)]


def _layer_colors(depth):
    cmap = plt.get_cmap(LAYER_CMAP)
    return [cmap(x) for x in np.linspace(0.0, 0.9, depth)]


def _layers_shown(depth, most=12):
    """All layers for shallow nets, an even sample (always first and last) for deep ones."""
    if depth <= most:
        return list(range(1, depth + 1))
    return sorted(set(np.linspace(1, depth, most).round().astype(int).tolist()))


def depth_of(history):
    return sum(1 for k in history if k.startswith("grad_norm/layer_"))


def layer_series(history, stat, depth, row):
    """Per-layer values of ``stat`` at history row ``row`` (layer 1..L)."""
    return np.array([history[layer_key(stat, l, depth)][row] for l in range(1, depth + 1)])


def last_finite_row(history):
    """The last row whose gradient norms are all finite (the end of a diverged run)."""
    total = finite(history["grad_norm/total"])
    ok = np.flatnonzero(np.isfinite(total))
    return int(ok[-1]) if len(ok) else 0


def grad_norm_over_steps(history, title=""):
    depth = depth_of(history)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=DPI, sharex=True)
    colors = _layer_colors(depth)
    for ax, stat, label in ((axes[0], "grad_norm", "‖dW[l]‖ (Frobenius)"),
                            (axes[1], "delta_norm", "‖dZ[l]‖ (backpropagated error)")):
        rows = _thin(len(history["step"]))
        for l in _layers_shown(depth):
            v = finite(history[layer_key(stat, l, depth)][rows], log=True)
            if _has_points(v):
                ax.plot(history["step"][rows], v, color=colors[l - 1], lw=1.2,
                        label=f"layer {l}")
        _log_axis(ax)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=7, ncol=2, title="layer (1 = input side)", title_fontsize=7)
    fig.suptitle(title or "Gradient norm per layer over training", fontsize=10)
    _layout(fig)
    return fig


def grad_norm_by_layer(history, title=""):
    depth = depth_of(history)
    layers = np.arange(1, depth + 1)
    end = last_finite_row(history)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=DPI, sharex=True)
    for ax, stat, label in ((axes[0], "grad_norm", "‖dW[l]‖"), (axes[1], "delta_norm", "‖dZ[l]‖")):
        for row, style, when in ((0, "o--", "at init (step 0)"),
                                 (end, "s-", f"at the end (step {history['step'][end]})")):
            v = finite(layer_series(history, stat, depth, row), log=True)
            if _has_points(v):
                ax.plot(layers, v, style, label=when)
        _log_axis(ax)
        ax.set_xlabel("layer l (1 = next to the input)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title or "Gradient norm by layer", fontsize=10)
    _layout(fig)
    return fig


def loss_curves(history, title=""):
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=DPI)
    rows = _thin(len(history["step"]), 2000)
    train_loss = finite(history["loss/train"][rows], log=True)
    ax.plot(history["step"][rows], train_loss, lw=1, label="train (batch of each step)")
    if "loss/test" in history:
        ax.plot(history["eval_step"], finite(history["loss/test"], log=True), "o-", ms=2,
                lw=1, label="test")
    _log_axis(ax)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "Loss", fontsize=9)
    _layout(fig, left=0.12)
    return fig


def activation_histograms(history, title="", moments=4, most_layers=6):
    """One row per layer: the distribution of A[l] (left) and of log10|dZ[l]| (right) at a few
    logged moments of training, early (light) to late (dark)."""
    counts_a, counts_d = history["hist/act"], history["hist/delta"]
    depth = counts_a.shape[1]
    lo, hi = history["hist/delta_log10_range"]
    # hidden layers: a trained sigmoid/softmax output sits at 0 and 1 by design
    rows = _layers_shown(max(depth - 1, 1), most_layers)
    picks = sorted(set(np.linspace(0, len(history["hist_step"]) - 1, moments).round()
                       .astype(int).tolist()))
    shades = plt.get_cmap("plasma")(np.linspace(0.75, 0.0, len(picks)))
    fig, axes = plt.subplots(len(rows), 2, figsize=(10, 1.5 * len(rows) + 1.0), dpi=DPI,
                             squeeze=False, sharex="col", sharey="col")
    for r, l in enumerate(rows):
        a_lo, a_hi = history["hist/act_range"][l - 1]
        for ax, counts, (x0, x1) in ((axes[r, 0], counts_a, (a_lo, a_hi)),
                                     (axes[r, 1], counts_d, (lo, hi))):
            edges = np.linspace(x0, x1, counts.shape[2] + 1)
            for shade, p in zip(shades, picks):
                c = counts[p, l - 1]
                share = c / max(c.sum(), 1)
                ax.stairs(share, edges, color=shade,
                          label=f"step {history['hist_step'][p]}")
            ax.set_ylabel(f"layer {l}\nshare", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0, 0].set_title("activations A[l]", fontsize=9)
    axes[0, 1].set_title("log10 |dZ[l]|", fontsize=9)
    axes[-1, 0].set_xlabel("activation value")
    axes[-1, 1].set_xlabel("log10 |backpropagated error|")
    axes[0, 1].legend(fontsize=6, loc="upper left")
    fig.suptitle(title or "Activation and error distributions by layer", fontsize=10)
    _layout(fig, top=1 - 0.7 / fig.get_figheight(), bottom=0.45 / fig.get_figheight(),
            left=0.09, hspace=0.45)
    return fig


def run_figures(history, title=""):
    """{file name: Figure} logged under figures/ for every run."""
    from .plots_data import activation_histograms_by_layer
    return {
        "activation_saturation.png": activation_histograms_by_layer(history, title),
        "grad_norm_over_steps.png": grad_norm_over_steps(history, title),
        "grad_norm_by_layer.png": grad_norm_by_layer(history, title),
        "loss.png": loss_curves(history, title),
        "activation_histograms.png": activation_histograms(history, title),
    }


def sweep_comparison(jobs, title=""):
    """jobs: list of dicts with ``label``, ``grad_init`` and ``grad_end`` (per-layer ‖dW‖),
    ``final_loss`` and ``status``. Left: gradient norm by layer (init dashed, end solid), one
    colour per job; right: final training loss per job."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=DPI,
                                 gridspec_kw={"width_ratios": [3, 2]})
    for i, job in enumerate(jobs):
        color = job_color(i)
        for key, style in (("grad_init", "--"), ("grad_end", "-")):
            v = finite(job.get(key, []), log=True)
            if len(v) and _has_points(v):
                ax.plot(np.arange(1, len(v) + 1), v, style, color=color, marker=".",
                        label=job["label"] if key == "grad_end" else None)
    _log_axis(ax)
    ax.set_xlabel("layer l (1 = next to the input)")
    ax.set_ylabel("‖dW[l]‖ (dashed: step 0, solid: last step)")
    ax.grid(True, alpha=0.3)
    if jobs:
        ax.legend(fontsize=7, ncol=1 + len(jobs) // 12)
    labels = [j["label"] for j in jobs]
    losses = finite([j.get("final_loss", np.nan) for j in jobs], log=True)
    bars = bx.barh(np.arange(len(jobs)), np.nan_to_num(losses, nan=0.0),
                   color=[job_color(i) for i in range(len(jobs))])
    for i, job in enumerate(jobs):
        if job.get("status") != "completed":
            bx.text(0.01, i, job.get("status", ""), va="center", transform=bx.get_yaxis_transform(),
                    fontsize=7, color="black")
    bx.set_yticks(np.arange(len(jobs)), labels, fontsize=7)
    if _has_points(losses):
        _log_axis(bx, "x")
    bx.set_xlabel("final training loss")
    bx.invert_yaxis()
    del bars
    fig.suptitle(title or "Sweep summary", fontsize=10)
    _layout(fig, left=0.07, wspace=0.45)
    return fig
