"""conf/experiment/batch_size.yaml: its figures and measured blocks."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from ...history import finite
from ...views.style import DPI
from ..charts import Output, finish, loss_curve, plot_log, save, sorted_by, style_axes
from ..markdown import bullets, fmt, md_table

# batch_size --------------------------------------------------------------------------


def _batch(job):
    b = job.param("train.batch_size")
    n = job.param("data.n_train", int)
    return n if b == "full" else int(b), b


def render_batch_size(study, figdir):
    jobs = sorted_by(study.jobs, lambda j: _batch(j)[0])
    cmap = plt.get_cmap("plasma")
    colors = {j.run_id: cmap(0.8 * k / max(len(jobs) - 1, 1)) for k, j in enumerate(jobs)}
    figures = []
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), dpi=DPI,
                             gridspec_kw={"width_ratios": [2, 1, 1]})
    rows, noise, per_epoch_s, sizes = [], [], [], []
    for job in jobs:
        b, label = _batch(job)
        n = job.param("data.n_train", int)
        color = colors[job.run_id]
        name = f"batch {label}" + (f" (= {n})" if label == "full" else "")
        loss = job.loss
        if b < n:  # every step's loss, faint, with its running mean over 100 steps on top
            loss_curve(axes[0], job, color, f"{name}: each step", lw=0.5, most=3000,
                        alpha=0.35)
            window = min(100, len(loss))
            smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
            plot_log(axes[0], job.steps[window - 1:], smooth, "-", color=color, lw=2,
                      label=f"{name}: mean of 100 steps")
        else:
            loss_curve(axes[0], job, color, name, lw=2.2)
        start = len(loss) // 10
        std = float(np.nanstd(np.diff(loss[start:])))
        steps = len(loss)
        per_epoch = math.ceil(n / b)
        epochs = steps / per_epoch
        seconds = float(job.summary.get("seconds") or float("nan"))
        noise.append(std)
        per_epoch_s.append(seconds / epochs)
        sizes.append(b)
        test = finite(job.history.get("loss/test", [np.nan]))
        rows.append([label, per_epoch, fmt(epochs), fmt(std), fmt(np.nanmean(loss[-steps // 10:])),
                     fmt(test[-1]), fmt(job.final_test_accuracy), fmt(seconds),
                     fmt(1e3 * seconds / epochs), fmt(1e6 * seconds / steps)])
    style_axes(axes[0], "optimizer step", "training loss on the step's batch (BCE)",
           "Loss curves (same number of updates)")
    for k, (b, s, t) in enumerate(zip(sizes, noise, per_epoch_s)):
        c = colors[jobs[k].run_id]
        axes[1].plot(b, finite([s], log=True), "o", color=c, ms=9)
        axes[1].annotate(fmt(s, 2), (b, s), xytext=(8, 4), textcoords="offset points",
                         fontsize=8)
        axes[2].plot(b, finite([1e3 * t], log=True), "s", color=c, ms=9)
        axes[2].annotate(f"{fmt(1e3 * t)} ms", (b, 1e3 * t), xytext=(8, 4),
                         textcoords="offset points", fontsize=8)
    for ax, ylabel, title in ((axes[1], "std of step-to-step loss change",
                               "Loss-curve noise"),
                              (axes[2], "training time per epoch (ms)", "Time per epoch")):
        ax.set_xscale("log")
        ax.set_xlim(min(sizes) / 2, max(sizes) * 4)
        ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.set_xticks(sizes, [str(_batch(j)[1]) for j in jobs])
        style_axes(ax, "batch size (examples per step)", ylabel, title, legend=False)
    finish(fig, f"Stochastic, mini-batch and batch gradient descent on moons "
            f"({jobs[0].param('data.n_train')} examples, {len(jobs[0].loss)} sgd steps each)",
            left=0.05, wspace=0.3)
    figures.append(save(fig, figdir / "batch_size.png"))
    grows = all(a > b for a, b in zip(noise, noise[1:]))
    lines = [("Noise grows as the batch shrinks" if grows else
              "Noise does not grow monotonically as the batch shrinks")
             + ": the std of the step-to-step loss change is "
             + ", ".join(f"{fmt(s)} at batch {_batch(j)[1]}" for j, s in zip(jobs, noise)) + ".",
             "Time per epoch: " + ", ".join(f"{fmt(1e3 * t)} ms at batch {_batch(j)[1]}"
                                            for j, t in zip(jobs, per_epoch_s))
             + " — one example per step pays the per-step overhead m times per epoch."]
    return Output({"result": bullets(lines),
                   "table": md_table(["batch", "steps per epoch", "epochs", "std of Δloss",
                                      "train loss (last 10 %)", "test loss", "test accuracy",
                                      "training s", "ms per epoch", "µs per step"], rows)},
                  figures, "loss curves, loss-curve noise and time per epoch, per batch size")
