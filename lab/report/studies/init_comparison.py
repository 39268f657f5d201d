"""conf/experiment/init_comparison.yaml: its figures and measured blocks."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from ...history import finite
from ...views.style import DPI
from ..charts import (
    INIT_COLORS,
    Output,
    clip_diverged,
    finish,
    loss_curve,
    plot_log,
    save,
    sorted_by,
    style_axes,
)
from ..markdown import bullets, diverged_note, fmt, md_table
from ..measure import fit_ratio, relu_scale_factor

# init_comparison --------------------------------------------------------------------


def _identical_rows(W):
    return W.shape[0] > 1 and bool(np.all(W == W[:1]))


def identical_rows_cell(job):
    """'k of n': weight matrices (with more than one row) whose rows are all equal at the
    end of the run; '–' when the run logged no final parameters."""
    if job.weights is None:
        return "–"
    multi = [w for w in job.weights if w.shape[0] > 1]
    return f"{sum(_identical_rows(w) for w in multi)} of {len(multi)}"


def render_init_comparison(study, figdir):
    order = list(INIT_COLORS)
    jobs = sorted_by(study.jobs, lambda j: order.index(j.param("init.name"))
               if j.param("init.name") in order else 99)
    L = jobs[0].depth
    width = jobs[0].param("model.width", int)
    act = jobs[0].param("model.activation")
    hidden = np.arange(1, L)
    figures = []
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.2), dpi=DPI)
    axes = axes.ravel()
    rows, measured = [], {}
    he_grad = next((np.median(j.layers("grad_norm")) for j in jobs
                    if j.param("init.name") == "he"), float("nan"))
    for job in jobs:
        init = job.param("init.name")
        color = INIT_COLORS.get(init, "k")
        a0, dz0, dw0 = job.layers("act_std"), job.layers("delta_norm"), job.layers("grad_norm")
        zero = "exactly 0 (off the log axis)"
        pred = relu_scale_factor(init, width, job.param("init.gain", float))
        for ax, v in ((axes[0], a0[:-1]), (axes[1], dz0), (axes[2], dw0)):
            x = hidden if len(v) == L - 1 else np.arange(1, L + 1)
            if pred > 2:  # exploding: would squeeze every other curve into a few decades
                ax.plot([], [], "o-", color=color, ms=3,
                        label=f"{init}: ×{fmt(pred, 2)} per layer, up to {fmt(np.nanmax(v), 1)}"
                              " (off this scale)")
            elif np.sum(finite(v, log=True) > 0) <= 1:
                plot_log(ax, x, v, "o", color=color, ms=3)
                ax.plot([], [], "o-", color=color, ms=3,
                        label=f"{init}: {zero}" if not np.any(v > 0) else
                        f"{init}: 0 except the output layer")
            else:
                plot_log(ax, x, v, "o-", color=color, ms=3, label=init)
        loss_curve(axes[3], job, color, f"{init} ({diverged_note(job)})")
        act_ratio = fit_ratio(a0[:-1])
        dz_ratio = 1 / fit_ratio(dz0[:-1])
        measured[init] = (pred, act_ratio, dz_ratio, float(np.median(dw0)))
        sym = identical_rows_cell(job)
        loss = job.loss
        rows.append([init, fmt(pred), fmt(act_ratio), fmt(dz_ratio), fmt(np.median(dw0)),
                     fmt(np.median(dw0) / he_grad), sym, diverged_note(job),
                     f"{fmt(loss[0])} → {fmt(loss[np.isfinite(loss)][-1])}",
                     fmt(job.final_test_accuracy)])
    style_axes(axes[0], "hidden layer l", "std of activations A[l] at step 0",
           "Activation scale by layer")
    style_axes(axes[1], "layer l (1 = next to the input)", "‖dZ[l]‖ at step 0",
           "Backpropagated error by layer")
    style_axes(axes[2], "layer l (1 = next to the input)", "‖dW[l]‖ at step 0",
           "Weight gradient by layer")
    clip_diverged(axes[3], jobs, [j.param("init.name") for j in jobs])
    style_axes(axes[3], "optimizer step (full batch, sgd)", "training loss (binary cross-entropy)",
           "Training")
    finish(fig, f"{L}-layer {act} net, width {width}, on circles: he keeps the scale, "
            f"xavier/lecun lose ×1/√2 per layer, N(0, 1) explodes, zeros never moves",
            top=0.92, bottom=0.07, left=0.07, wspace=0.22, hspace=0.32)
    figures.append(save(fig, figdir / "init_comparison.png"))
    lines = []
    for init, (pred, a, d, g) in measured.items():
        if init == "zeros":
            zjob = next(j for j in jobs if j.param("init.name") == "zeros")
            zero_grad = all(np.all(zjob.series("grad_norm", l) == 0)
                            for l in range(1, zjob.depth + 1))
            rows_same = identical_rows_cell(zjob)
            lines.append(
                ("zeros: every weight gradient is exactly 0 at every step (relu(0) = 0, so no "
                 "unit ever differs from its neighbours)" if zero_grad else
                 "zeros: some weight gradients are not 0")
                + (f"; weight matrices whose rows are all identical at the end: {rows_same}."
                   if rows_same != "–" else "."))
        else:
            lines.append(f"{init}: activation scale ×{fmt(a, 3)} per layer, ‖dZ[l]‖/‖dZ[l+1]‖ = "
                         f"{fmt(d, 3)} (predicted √(n·Var W / 2) = {fmt(pred, 3)} for both); "
                         f"median ‖dW[l]‖ {fmt(g)}"
                         + (f" = {fmt(g / he_grad)} × he's." if init != "he" and
                            math.isfinite(he_grad) else "."))
    return Output({"result": bullets(lines),
                   "table": md_table(["init", "predicted scale factor per layer",
                                      "act. scale factor (fit)", "‖dZ[l]‖/‖dZ[l+1]‖ (fit)",
                                      "median ‖dW[l]‖ @0", "÷ he's", "layers with identical "
                                      "rows at end", "status", "loss start → end",
                                      "test accuracy"], rows)},
                  figures, f"activation scale, ‖dZ[l]‖ and ‖dW[l]‖ by layer at step 0 and the "
                           f"training loss of a {L}-layer {act} net, per init")
