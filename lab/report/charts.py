"""Chart helpers shared by the study renderers: colours per configuration value, log axes, loss curves."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

from ..history import finite
from ..views.style import DPI, log_axis, thin
from .markdown import fmt

# One colour per configuration value, the same in every figure.
INIT_COLORS = {"zeros": "#7f7f7f", "normal": "#d62728", "uniform": "#9467bd",
               "lecun": "#ff7f0e", "he": "#2ca02c", "xavier": "#1f77b4", "identity": "#333333"}
GAIN_COLORS = {0.5: "#2166ac", 0.9: "#67a9cf", 1.0: "#333333", 1.1: "#ef8a62", 1.5: "#b2182b"}
OPTIMIZER_COLORS = {"sgd": "#333333", "momentum": "#8c564b", "rmsprop": "#17becf",
                    "adam": "#e377c2"}
OPTIMIZER_STYLES = {"momentum": "--"}
ACT_STYLES = {"tanh": "-", "relu": "--", "sigmoid": "-.", "identity": ":"}


def save(fig, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_log(ax, x, y, *args, **kwargs):
    """Plot on a log y axis with non-finite and non-positive values masked; False if nothing."""
    y = finite(y, log=True)
    if not np.isfinite(y).any():
        return False
    ax.plot(x, y, *args, **kwargs)
    return True


def loss_curve(ax, job, color, label, ls="-", lw=1.2, most=800, alpha=1.0):
    """Training loss over steps on a log axis; a diverged run ends with an x at its last
    finite loss."""
    rows = thin(len(job.steps), most)
    plot_log(ax, job.steps[rows], job.loss[rows], ls, color=color, lw=lw, label=label,
              alpha=alpha)
    if job.status == "diverged":
        loss = finite(job.loss, log=True)
        ok = np.flatnonzero(np.isfinite(loss))
        if len(ok):
            ax.plot(job.steps[ok[-1]], loss[ok[-1]], "x", color=color, ms=9, mew=2)


def clip_diverged(ax, jobs, labels):
    """Keep a loss axis on the runs that stayed finite: a diverged run's loss (up to ~1e30) is
    shown as an arrow at the top edge with its value written next to it."""
    kept = [finite(j.loss, log=True) for j in jobs if j.status != "diverged"]
    kept = [v[np.isfinite(v)] for v in kept if np.isfinite(v).any()]
    if not kept:
        return
    lo = min(v.min() for v in kept)
    top = max(v.max() for v in kept) * 30
    ax.set_ylim(lo / 3, top)
    for job, label in zip(jobs, labels):
        loss = finite(job.loss, log=True)
        ok = np.flatnonzero(np.isfinite(loss))
        if job.status == "diverged" and len(ok) and loss[ok].max() > top:
            color = ax.lines[0].get_color() if not ax.lines else None
            for line in ax.lines:
                if line.get_label().startswith(label):
                    color = line.get_color()
            ax.annotate(f"{label}: loss {fmt(loss[ok].max())} at step "
                        f"{int(job.steps[ok[-1]])}", xy=(job.steps[ok[-1]], top),
                        xytext=(12, -14), textcoords="offset points", fontsize=8, color=color,
                        arrowprops={"arrowstyle": "->", "color": color})


def style_axes(ax, xlabel, ylabel, title=None, log_y=True, legend=True, loc="best", ncol=1):
    """Axis labels, grid, log y; ``loc="below"`` puts the legend under the axes."""
    if log_y:
        log_axis(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        if loc == "below":
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=ncol,
                      frameon=False)
        else:
            ax.legend(fontsize=8, loc=loc, ncol=ncol)


def finish(fig, title, top=0.86, bottom=0.13, left=0.06, right=0.99, wspace=0.3, hspace=0.4):
    fig.suptitle(title, fontsize=11)
    fig.subplots_adjust(top=top, bottom=bottom, left=left, right=right, wspace=wspace,
                        hspace=hspace)


@dataclass
class Output:
    blocks: dict  # block name -> markdown
    figures: list  # paths written
    headline: str = ""  # one line for the index


def sorted_by(jobs, key):
    return sorted(jobs, key=key)
