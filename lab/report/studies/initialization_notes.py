"""conf/experiment/initialization_notes.yaml: its figures and measured blocks."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ...views.style import DPI
from ..charts import (
    INIT_COLORS,
    Output,
    finish,
    loss_curve,
    plot_log,
    save,
    sorted_by,
    style_axes,
    thin,
)
from ..markdown import diverged_note, fmt, md_table, pct
from .init_comparison import identical_rows_cell

# initialization_notes (a) and (b) ----------------------------------------------------------


def _boundaries(jobs, gains, regime):
    """Decision boundary after training for each (init, gain): P(y=1) of the run's final
    parameters (params.npz) on a grid, with the training points."""
    from ...build import build  # the run's data set and network layout, from its config
    inits = [i for i in INIT_COLORS if any(j.param("init.name") == i for j in jobs)]
    fig, axes = plt.subplots(len(inits), len(gains), figsize=(3.3 * len(gains),
                             3.0 * len(inits) + 0.8), dpi=DPI, sharex=True, sharey=True,
                             squeeze=False)
    filled = None
    for job in jobs:
        r, c = inits.index(job.param("init.name")), gains.index(job.param("init.gain", float))
        ax = axes[r, c]
        ds, net, _ = build({**job.config, "backend": "numpy"})
        X, y = ds.X_train, ds.Y_train[0] > 0.5
        lo, hi = X.min(axis=1) - 0.2, X.max(axis=1) + 0.2
        g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 120), np.linspace(lo[1], hi[1], 120))
        surface = None
        if np.all(np.isfinite(job.theta_final)):
            net.theta[:] = job.theta_final
            with np.errstate(all="ignore"):
                surface = net.forward(np.stack([g0.ravel(), g1.ravel()]))[0].reshape(g0.shape)
        if surface is not None and np.all(np.isfinite(surface)):
            filled = ax.contourf(g0, g1, np.clip(surface, 0, 1), levels=np.linspace(0, 1, 11),
                                 cmap="RdBu", vmin=0, vmax=1, alpha=0.6)
            if surface.min() < 0.5 < surface.max():
                ax.contour(g0, g1, surface, levels=[0.5], colors="k", linewidths=1.2)
            else:
                ax.text(0.5, 0.04, "no boundary: one class everywhere", fontsize=7,
                        ha="center", transform=ax.transAxes,
                        bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
        else:
            ax.text(0.5, 0.5, "parameters not finite\n(diverged)", ha="center", va="center",
                    transform=ax.transAxes, fontsize=9, color="#d62728")
        ax.scatter(X[0, ~y], X[1, ~y], s=5, c="#c0392b", lw=0)
        ax.scatter(X[0, y], X[1, y], s=5, c="#1f5fa8", lw=0)
        outcome = ("diverged" if job.status == "diverged" else
                   f"test acc {fmt(job.final_test_accuracy, 2)}")
        ax.set_title(f"{job.param('init.name')}, gain {job.param('init.gain', float):g}: "
                     f"{outcome}", fontsize=8)
        ax.tick_params(labelsize=7)
        if c == 0:
            ax.set_ylabel("x2", fontsize=8)
        if r == len(inits) - 1:
            ax.set_xlabel(f"x1   ({regime.get(gains[c], 'appropriate')})", fontsize=8)
    fig.suptitle("Decision boundary after training (black line: P = 0.5; points: training "
                 "set, red y = 0, blue y = 1)", fontsize=10)
    fig.subplots_adjust(top=0.91, bottom=0.08, left=0.07, right=0.87, wspace=0.08,
                        hspace=0.25)
    if filled is not None:
        bar = fig.colorbar(filled, cax=fig.add_axes([0.9, 0.25, 0.018, 0.5]))
        bar.set_label("P(y = 1) after training", fontsize=8)
    return fig


def render_initialization_notes(study, figdir):
    jobs = study.jobs
    gains = sorted({j.param("init.gain", float) for j in jobs})
    order = list(INIT_COLORS)
    regime = {gains[0]: "too small", gains[-1]: "too large"} if len(gains) > 1 else {}
    figures = []
    fig, axes = plt.subplots(2, len(gains), figsize=(4.8 * len(gains), 7.4), dpi=DPI,
                             sharey="row", sharex=True, squeeze=False)
    rows = []
    for c, g in enumerate(gains):
        group = sorted_by([j for j in jobs if j.param("init.gain", float) == g],
                    lambda j: order.index(j.param("init.name")))
        for job in group:
            init = job.param("init.name")
            color = INIT_COLORS.get(init, "k")
            note = "" if job.status == "completed" else f" ({diverged_note(job)})"
            loss_curve(axes[0, c], job, color, f"{init}{note}")
            grad = job.series("grad_norm", 1)
            nonzero = np.flatnonzero(grad != 0)
            r = thin(len(job.steps), 800)
            if not len(nonzero):
                axes[1, c].plot([], [], "-", color=color, label=f"{init}: exactly 0")
            else:
                dead_from = nonzero[-1] + 1
                label = init if dead_from == len(grad) else f"{init}: 0 from step {dead_from}"
                plot_log(axes[1, c], job.steps[r], grad[r], "-", color=color, lw=1.2,
                          label=label, marker="o" if len(nonzero) < 5 else None, ms=4)
            loss = job.loss
            dead = np.nanmean(job.layers("saturation", -1)[:-1])
            rows.append([init, f"{g:g}", regime.get(g, "appropriate") if init != "zeros"
                         else "zero", diverged_note(job),
                         f"{fmt(loss[0])} → {fmt(loss[np.isfinite(loss)][-1])}",
                         fmt(job.final_test_accuracy), fmt(job.layers("grad_norm")[0]),
                         identical_rows_cell(job), pct(dead)])
        style_axes(axes[0, c], "", "training loss (BCE)" if c == 0 else "",
               f"gain {g:g} ({regime.get(g, 'appropriate')})")
        style_axes(axes[1, c], "optimizer step", "‖dW[1]‖, first layer's gradient" if c == 0
               else "")
    j0 = jobs[0]
    finish(fig, f"{j0.param('model.activation')} classifier on circles "
            f"({j0.depth - 1} hidden layers of {j0.param('model.width')}), weights zero, "
            "too small, appropriate or too large", top=0.92, bottom=0.07, left=0.07,
            wspace=0.06, hspace=0.25)
    figures.append(save(fig, figdir / "initialization_notes.png"))
    if all(j.theta_final is not None and j.config for j in jobs):
        figures.append(save(_boundaries(jobs, gains, regime),
                            figdir / "initialization_notes_boundaries.png"))
    return Output({"table": md_table(["init", "gain", "regime", "status", "loss start → end",
                                      "test accuracy", "‖dW[1]‖ @0",
                                      "layers with identical rows at end",
                                      "dead ReLUs (z ≤ 0) at end, hidden mean"], rows)},
                  figures, "loss and first-layer gradient for zero, too small, appropriate "
                           "and too large weights")
