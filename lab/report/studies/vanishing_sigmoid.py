"""conf/experiment/vanishing_sigmoid.yaml: its figures and measured blocks."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from ...history import finite
from ...views.style import DPI
from ..charts import INIT_COLORS, Output, finish, plot_log, save, sorted_by, style_axes, thin
from ..markdown import bullets, fmt, md_table, pct
from ..measure import SIGMOID_SLOPE_AT_0, fit_ratio, weight_variance

# vanishing_sigmoid ------------------------------------------------------------------


def render_vanishing_sigmoid(study, figdir):
    jobs = study.jobs
    inits = [i for i in INIT_COLORS if any(j.param("init.name") == i for j in jobs)]
    by_init = {i: sorted_by([j for j in jobs if j.param("init.name") == i],
                      lambda j: j.param("model.depth", int)) for i in inits}
    depths = sorted({j.param("model.depth", int) for j in jobs})
    width = jobs[0].param("model.width", int)
    figures = []

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), dpi=DPI)
    grad_rows, fits = [], {}
    for init in inits:
        group, color = by_init[init], INIT_COLORS[init]
        d = np.array([j.param("model.depth", int) for j in group])
        g1 = np.array([j.layers("grad_norm")[0] for j in group])
        gain = group[0].param("init.gain", float)
        c = math.sqrt(width * weight_variance(init, width, gain))
        pred = SIGMOID_SLOPE_AT_0 * c
        fitted = fit_ratio(g1, d)
        fits[init] = (pred, fitted)
        plot_log(axes[0], d, g1, "o-", color=color, label=f"{init}: ×{fmt(fitted, 2)} per layer")
        if init != "normal":
            plot_log(axes[0], d, g1[0] * pred ** (d - d[0]), ":", color=color, lw=1.5)
        acc = [j.final_test_accuracy for j in group]
        axes[1].plot(d, finite(acc), "o-", color=color, label=init)
        grad_rows.append([init, fmt(c), fmt(pred) + (" (bound)" if init == "normal" else ""),
                          fmt(fitted)] + [fmt(v) for v in g1])
    axes[0].plot([], [], "k:", lw=1.5, label="predicted: (1/4)·√(n·Var W) per layer")
    style_axes(axes[0], "depth L (weight layers)", "‖dW[1]‖ at step 0 (first layer)",
           "First layer's gradient vs depth")
    axes[0].set_xticks(depths)
    axes[1].axhline(0.1, color="k", lw=0.8, ls=":")
    axes[1].text(depths[0], 0.12, "chance (10 classes)", fontsize=8)
    style_axes(axes[1], "depth L (weight layers)", "test accuracy after training", "Trained?",
           log_y=False)
    axes[1].set_ylim(0, 1.02)
    axes[1].set_xticks(depths)
    deepest = max(depths)
    for init in inits:
        job = by_init[init][-1]
        if job.param("model.depth", int) == deepest:
            plot_log(axes[2], np.arange(1, deepest + 1), job.layers("delta_norm"), "o-",
                      color=INIT_COLORS[init], ms=4, label=init)
    style_axes(axes[2], "layer l (1 = next to the input)", "‖dZ[l]‖ at step 0",
           f"Backpropagated error by layer, depth {deepest}")
    finish(fig, f"Sigmoid nets on the 8×8 digits (width {width}, sgd, batches of "
            f"{jobs[0].param('train.batch_size')}): gradients vanish geometrically with depth",
            wspace=0.3, bottom=0.13)
    figures.append(save(fig, figdir / "vanishing_sigmoid.png"))

    # Glorot & Bengio (2010), Figure 2: mean activation of each hidden layer during training
    gb_depth = max((d for d in depths if d <= 6), default=depths[-1])
    gb_jobs = [j for i in inits for j in by_init[i] if j.param("model.depth", int) == gb_depth]
    fig, axes = plt.subplots(1, len(gb_jobs), figsize=(4.6 * len(gb_jobs), 4.2), dpi=DPI,
                             sharey=True, squeeze=False)
    cmap = plt.get_cmap("viridis")
    gb_rows = []
    for ax, job in zip(axes[0], gb_jobs):
        hidden = job.depth - 1
        rows = thin(len(job.steps), 500)
        for l in range(1, hidden + 1):
            color = cmap(0.9 * (l - 1) / max(hidden - 1, 1))
            mean, std = job.series("act_mean", l)[rows], job.series("act_std", l)[rows]
            if l in (1, hidden):  # bands of two layers only: more would hide the means
                ax.fill_between(job.steps[rows], finite(mean - std), finite(mean + std),
                                color=color, alpha=0.12, lw=0)
            ax.plot(job.steps[rows], finite(mean), color=color, lw=1.5,
                    label=f"layer {l}" + (" (top hidden)" if l == hidden else ""))
        ax.set_ylim(0, 1)
        style_axes(ax, "optimizer step", "sigmoid activation A[l]: mean\n(band: ± std, layers 1 and top)"
               if ax is
               axes[0, 0] else "", f"{job.param('init.name')} init", log_y=False,
               legend=ax is axes[0, 0], loc="upper right")
        top = job.series("act_mean", hidden)
        low = int(np.nanargmin(top))
        gb_rows.append([job.param("init.name"), fmt(top[0]), f"{fmt(top[low])} (step {low})",
                        fmt(top[-1]), pct(job.series("saturation", hidden)[-1]),
                        fmt(job.final_test_accuracy)])
    finish(fig, f"Mean activation of each hidden layer during training, depth {gb_depth} "
            f"(after Glorot & Bengio 2010, Fig. 2)", left=0.05, wspace=0.08, bottom=0.13)
    figures.append(save(fig, figdir / "vanishing_sigmoid_saturation.png"))

    acc_rows = [[i] + [fmt(j.final_test_accuracy) for j in by_init[i]] for i in inits]
    lines = []
    for init, (pred, fitted) in fits.items():
        if init == "normal":
            others = [f for i, (_, f) in fits.items() if i != "normal"]
            less = bool(others) and fitted > max(others)
            lines.append(f"normal (N(0, 1)): the first layer's gradient falls by ×{fmt(fitted, 2)}"
                         " per layer" + (", far less than with the scaled inits: large weights "
                                         f"(√(n·Var W) = {fmt(math.sqrt(width))}) offset "
                                         "σ' ≤ 1/4." if less else "."))
        else:
            lines.append(f"{init}: ‖dW[1]‖ falls by ×{fmt(fitted, 2)} per extra layer "
                         f"(predicted ×{fmt(pred, 2)}, i.e. σ'(0) = 1/4 times √(n·Var W)); "
                         f"from depth {depths[0]} to {depths[-1]} that is "
                         f"{fmt(fitted ** (depths[-1] - depths[0]), 2)}.")
    return Output({"result": bullets(lines),
                   "table": md_table(["init", "√(n·Var W)", "predicted factor per layer",
                                      "fitted factor"] + [f"‖dW[1]‖ @0, L={d}" for d in depths],
                                     grad_rows),
                   "accuracy": md_table(["init"] + [f"test acc, L={d}" for d in depths],
                                        acc_rows),
                   "glorot": md_table(["init", "top hidden mean @0", "lowest mean (step)",
                                       "mean at end", "top hidden saturated at end",
                                       "test accuracy"], gb_rows)},
                  figures, "the first layer's gradient against depth for each init (with "
                           "the predicted factor per layer), test accuracy by depth, ‖dZ[l]‖ by "
                           "layer")
