"""conf/experiment/depth_scaling.yaml: its figures and measured blocks."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ...history import finite
from ...views.style import DPI
from ..charts import ACT_STYLES, INIT_COLORS, Output, finish, plot_log, save, sorted_by, style_axes
from ..markdown import fmt, md_table

# depth_scaling ------------------------------------------------------------------------


def render_depth_scaling(study, figdir):
    jobs = study.jobs
    combos = sorted({(j.param("model.activation"), j.param("init.name")) for j in jobs},
                    key=lambda c: (c[0] != "tanh", c[1] != "xavier", c))
    depths = sorted({j.param("model.depth", int) for j in jobs})
    dcmap = plt.get_cmap("viridis")
    dcolor = {d: dcmap(0.9 * k / max(len(depths) - 1, 1)) for k, d in enumerate(depths)}
    figures = []
    fig, axes = plt.subplots(2, len(combos), figsize=(4.2 * len(combos), 7.6), dpi=DPI,
                             sharey="row", squeeze=False)
    acc_rows, ratio_rows = [], []
    for c, (act, init) in enumerate(combos):
        group = sorted_by([j for j in jobs if (j.param("model.activation"), j.param("init.name"))
                     == (act, init)], lambda j: j.param("model.depth", int))
        for job in group:
            d = job.param("model.depth", int)
            layers = np.arange(1, d + 1)
            for r, stat in enumerate(("delta_norm", "grad_norm")):
                plot_log(axes[r, c], layers, job.layers(stat), "-", color=dcolor[d], lw=1.4,
                          label=f"L = {d}")
        for r, what in enumerate(("‖dZ[l]‖ at step 0", "‖dW[l]‖ at step 0")):
            style_axes(axes[r, c], "layer l (1 = next to the input)", what if c == 0 else "",
                   f"{act}, {init}" if r == 0 else None, legend=(c == 0 and r == 0),
                   loc="lower right")
        acc_rows.append([act, init] + [fmt(next((j.final_test_accuracy for j in group
                                                  if j.param("model.depth", int) == d), None))
                                       for d in depths])
        ratio_rows.append([act, init] + [fmt(next(
            (j.layers("delta_norm")[0] / j.layers("delta_norm")[-1] for j in group
             if j.param("model.depth", int) == d), None)) for d in depths])
    j0 = jobs[0]
    finish(fig, f"Gradient norm by layer at initialization, depths {depths[0]}–{depths[-1]} "
            f"(width {j0.param('model.width')}, circles)", top=0.92, bottom=0.07, left=0.06,
            wspace=0.08, hspace=0.25)
    figures.append(save(fig, figdir / "depth_scaling.png"))

    fig, ax = plt.subplots(figsize=(7, 4.4), dpi=DPI)
    for act, init, *_ in acc_rows:
        group = sorted_by([j for j in jobs if (j.param("model.activation"), j.param("init.name"))
                     == (act, init)], lambda j: j.param("model.depth", int))
        ax.plot([j.param("model.depth", int) for j in group],
                finite([j.final_test_accuracy for j in group]), ACT_STYLES.get(act, "-"),
                marker="o",
                color=INIT_COLORS.get(init, "k"), label=f"{act}, {init}")
    ax.axhline(0.5, color="k", ls=":", lw=0.8)
    style_axes(ax, "depth L (weight layers)", "test accuracy after training",
           f"Which nets still train ({j0.param('train.steps')} steps, batch "
           f"{j0.param('train.batch_size')})", log_y=False)
    ax.set_xticks(depths)
    ax.set_ylim(0.4, 1.02)
    fig.subplots_adjust(left=0.11, right=0.98, bottom=0.13, top=0.9)
    figures.append(save(fig, figdir / "depth_scaling_accuracy.png"))
    return Output({"accuracy": md_table(["activation", "init"] +
                                        [f"test acc, L={d}" for d in depths], acc_rows),
                   "table": md_table(["activation", "init"] +
                                     [f"‖dZ[1]‖/‖dZ[L]‖ @0, L={d}" for d in depths],
                                     ratio_rows)},
                  figures, f"‖dZ[l]‖ and ‖dW[l]‖ by layer at step 0 for depths "
                           f"{depths[0]}–{depths[-1]}, per activation × init")
