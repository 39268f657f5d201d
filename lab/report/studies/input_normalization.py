"""conf/experiment/input_normalization.yaml: its figures and measured blocks."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ...history import finite
from ...views.style import DPI
from ..charts import Output, finish, loss_curve, plot_log, save, sorted_by, style_axes, thin
from ..markdown import bullets, diverged_note, fmt, md_table, pct, step_fmt
from ..measure import first_below

# input_normalization -----------------------------------------------------------------


def render_input_normalization(study, figdir):
    jobs = sorted_by(study.jobs, lambda j: bool(j.param("data.normalize", bool)))
    colors = {False: "#d62728", True: "#2ca02c"}
    figures = []
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.4), dpi=DPI)
    rows = []
    for job in jobs:
        norm = bool(job.param("data.normalize", bool))
        name = "standardized (train μ, σ)" if norm else "raw"
        c = colors[norm]
        loss_curve(axes[0], job, c, f"{name}: train")
        if "loss/test" in job.history:
            plot_log(axes[0], job.history["eval_step"], job.history["loss/test"], "o", color=c,
                      ms=3, label=f"{name}: test")
        r = thin(len(job.steps), 800)
        for l, ls in ((1, "-"), (2, "--")):
            if l < job.depth:
                axes[1].plot(job.steps[r], finite(job.series("saturation", l)[r]), ls, color=c,
                             label=f"{name}: layer {l}")
        loss = job.loss
        test = finite(job.history.get("loss/test", [np.nan]))
        rows.append([name, diverged_note(job), fmt(loss[0]), fmt(loss[np.isfinite(loss)][-1]),
                     fmt(test[-1]), step_fmt(first_below(loss, 1.0)),
                     step_fmt(first_below(loss, 0.1)),
                     pct(job.series("saturation", 1)[0]), pct(job.series("saturation", 1)[-1])])
    spread = jobs[0].param("data.scale_spread", float)
    style_axes(axes[0], "optimizer step (full batch, sgd)", "loss (MSE)", "Loss")
    style_axes(axes[1], "optimizer step", "share of saturated tanh units (tanh' < 0.1)",
           "Saturation of the hidden layers", log_y=False)
    axes[1].set_ylim(-0.02, 1.02)
    finish(fig, f"Linear target on {jobs[0].param('data.n_features')} features with scales "
            f"10^-{spread:g} … 10^{spread:g}: raw vs standardized inputs", left=0.07,
            wspace=0.25)
    figures.append(save(fig, figdir / "input_normalization.png"))
    raw = next((j for j in jobs if not j.param("data.normalize", bool)), None)
    std = next((j for j in jobs if j.param("data.normalize", bool)), None)
    lines = []
    if raw is not None and std is not None:
        lines.append(f"After {len(std.loss)} steps the standardized inputs reach training loss "
                     f"{fmt(std.loss[-1])}, the raw ones {fmt(raw.loss[np.isfinite(raw.loss)][-1])}"
                     f" ({fmt(raw.loss[np.isfinite(raw.loss)][-1] / std.loss[-1], 2)} × higher).")
        lines.append(f"With raw inputs {pct(raw.series('saturation', 1)[0])} of the first "
                     f"layer's tanh units are saturated at step 0 (standardized: "
                     f"{pct(std.series('saturation', 1)[0])}).")
    return Output({"result": bullets(lines),
                   "table": md_table(["inputs", "status", "loss @0", "final train loss",
                                      "final test loss", "steps to loss < 1", "steps to < 0.1",
                                      "layer 1 saturated @0", "at end"], rows)},
                  figures, "loss and tanh saturation, raw vs standardized inputs")
