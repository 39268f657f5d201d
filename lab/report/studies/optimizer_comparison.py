"""conf/experiment/optimizer_comparison.yaml: its figures and measured blocks."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ...history import finite
from ...views.style import DPI, job_color
from ..charts import (
    OPTIMIZER_COLORS,
    OPTIMIZER_STYLES,
    Output,
    finish,
    loss_curve,
    plot_log,
    save,
    sorted_by,
    style_axes,
    thin,
)
from ..markdown import bullets, fmt, md_table, step_fmt
from ..measure import TARGET_LOSS, first_below


def render_optimizer_comparison(study, figdir):
    order = list(OPTIMIZER_COLORS)
    jobs = sorted_by(study.jobs, lambda j: order.index(j.param("optimizer.name"))
               if j.param("optimizer.name") in order else 99)
    figures = []
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.4), dpi=DPI)
    rows = []
    for i, job in enumerate(jobs):
        name = job.param("optimizer.name")
        color = OPTIMIZER_COLORS.get(name, job_color(i))
        lr = job.param("optimizer.lr", float)
        ls = OPTIMIZER_STYLES.get(name, "-")
        loss_curve(axes[0], job, color, f"{name} (lr {lr:g})", ls=ls)
        r = thin(len(job.steps), 800)
        plot_log(axes[1], job.steps[r], job.series("update_ratio", 1)[r], ls, color=color, lw=1,
                  label=name)
        early = finite(job.series("update_ratio", 1)[:200], log=True)
        rows.append([name, f"{lr:g}", step_fmt(first_below(job.loss, 0.5)),
                     step_fmt(first_below(job.loss, TARGET_LOSS)), fmt(job.loss[-1]),
                     fmt(job.final_test_accuracy), fmt(np.nanmedian(early)),
                     fmt(job.layers("grad_norm")[0])])
    axes[0].axhline(TARGET_LOSS, color="k", ls=":", lw=1)
    axes[0].text(0, TARGET_LOSS * 1.1, f"target loss {TARGET_LOSS:g}", fontsize=8)
    j0 = jobs[0]
    style_axes(axes[0], "optimizer step (full batch)", "training loss (binary cross-entropy)",
           "Loss")
    style_axes(axes[1], "optimizer step", "‖ΔW[1]‖ / ‖W[1]‖ per step (first layer)",
           "How far each step moves the first layer")
    finish(fig, f"{j0.depth}-layer sigmoid net (width {j0.param('model.width')}) on circles: "
            "adaptive steps escape the vanishing-gradient plateau", left=0.07, wspace=0.25)
    figures.append(save(fig, figdir / "optimizer_comparison.png"))
    lines = []
    for job, row in zip(jobs, rows):
        hit = first_below(job.loss, TARGET_LOSS)
        lines.append(f"{row[0]}: " + (f"loss < {TARGET_LOSS:g} at step {hit}" if hit is not None
                                      else f"never below {TARGET_LOSS:g} in {len(job.loss)} "
                                           f"steps (final {fmt(job.loss[-1])})") +
                     f"; first-layer steps of {row[6]} of ‖W[1]‖ early on.")
    return Output({"result": bullets(lines),
                   "table": md_table(["optimizer", "lr", "steps to loss < 0.5",
                                      f"steps to loss < {TARGET_LOSS:g}", "final loss",
                                      "test accuracy", "median ‖ΔW[1]‖/‖W[1]‖, steps 0–199",
                                      "‖dW[1]‖ @0"], rows)},
                  figures, "loss curves and first-layer step sizes, per optimizer")
