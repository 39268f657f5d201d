"""conf/experiment/initialization_notes_digits.yaml: its figures and measured blocks."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ...history import finite
from ...views.style import DPI
from ..charts import INIT_COLORS, Output, finish, loss_curve, save, sorted_by, style_axes
from ..markdown import fmt, md_table, pct


def render_initialization_notes_digits(study, figdir):
    order = ["zeros", "uniform", "xavier", "normal", "lecun", "he"]
    jobs = sorted_by(study.jobs, lambda j: order.index(j.param("init.name"))
               if j.param("init.name") in order else 99)
    hidden = jobs[0].depth - 1
    figures = []
    fig, axes = plt.subplots(hidden, len(jobs), figsize=(3.4 * len(jobs), 1.45 * hidden + 1.3),
                             dpi=DPI, sharex=True, squeeze=False)
    shades = plt.get_cmap("plasma")
    for c, job in enumerate(jobs):
        h = job.history
        counts, steps = h["hist/act"], h["hist_step"]
        picks = sorted(set(np.linspace(0, len(steps) - 1, 3).round().astype(int).tolist()))
        for l in range(1, hidden + 1):
            ax = axes[l - 1, c]
            lo, hi = h["hist/act_range"][l - 1]
            edges = np.linspace(lo, hi, counts.shape[2] + 1)
            for k, p in enumerate(picks):
                share = counts[p, l - 1] / max(counts[p, l - 1].sum(), 1)
                ax.stairs(100 * share, edges, color=shades(0.75 * (1 - k / max(len(picks) - 1,
                                                                               1))),
                          lw=1.3, label=f"step {steps[p]}")
            ax.set_yscale("symlog", linthresh=1)
            ax.set_ylim(0, 100)
            ax.yaxis.set_minor_locator(plt.NullLocator())
            ax.tick_params(labelsize=7)
            if c == 0:
                ax.set_ylabel(f"layer {l}\n% of units", fontsize=8)
            if l == 1:
                ax.set_title(f"{job.param('init.name')} (test acc {fmt(job.final_test_accuracy)})",
                             fontsize=9)
        axes[-1, c].set_xlabel(f"{job.param('model.activation')} activation A[l]", fontsize=8)
    axes[0, -1].legend(fontsize=7, loc="upper right")
    finish(fig, "Distribution of each hidden layer's activations on the digits, at the start, "
            "middle and end of training", top=1 - 0.75 / fig.get_figheight(),
            bottom=0.55 / fig.get_figheight(), left=0.06, wspace=0.15, hspace=0.2)
    figures.append(save(fig, figdir / "initialization_notes_digits_histograms.png"))

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), dpi=DPI)
    rows = []
    for job in jobs:
        init = job.param("init.name")
        color = INIT_COLORS.get(init, "k")
        if "accuracy/test" in job.history:
            axes[0].plot(job.history["eval_step"], finite(job.history["accuracy/test"]), "-",
                         color=color, label=init)
        loss_curve(axes[1], job, color, init)
        acc = finite(job.history.get("accuracy/test", [np.nan]))
        sat = job.layers("saturation", -1)[:-1]
        rows.append([init, fmt(acc[0]), fmt(acc[-1]), fmt(job.loss[-1]),
                     " / ".join(pct(s) for s in sat)])
    axes[0].axhline(0.1, color="k", ls=":", lw=0.8)
    style_axes(axes[0], "optimizer step", "test accuracy", "Test accuracy", log_y=False)
    axes[0].set_ylim(0, 1)
    style_axes(axes[1], "optimizer step", "training loss (cross-entropy, batch of the step)",
           "Loss")
    j0 = jobs[0]
    finish(fig, f"{j0.depth}-layer {j0.param('model.activation')} net on the 8×8 digits, "
            f"width {j0.param('model.width')}, sgd lr {j0.param('optimizer.lr')}", left=0.07)
    figures.append(save(fig, figdir / "initialization_notes_digits.png"))
    return Output({"table": md_table(["init", "test acc @0", "test acc at end", "final loss",
                                      "saturated tanh units at end, layers 1…" + str(hidden)],
                                     rows)},
                  figures, "each hidden layer's activation histogram at three moments of "
                           "training, per init")
