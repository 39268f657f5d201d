"""``python -m lab.report`` (``make report``): the studies' figures and measured numbers, read
back from the MLflow store.

For every study in ``conf/experiment/`` this finds the latest sweep (parent run tagged
``sweep=parent``) in the store, downloads its child runs' ``history.npz`` (and
``config.yaml``/``summary.json``), draws the study's figures into ``experiments/figures/`` and
fills the generated blocks of ``experiments/NAME.md``: everything between
``<!-- report:BLOCK -->`` and ``<!-- /report:BLOCK -->`` is rewritten, so no measured number in a
write-up is typed by hand. A study with no sweep in the store is reported as not run yet.

    python -m lab.report                      # default store, every study
    python -m lab.report --uri sqlite:///x.db --experiments-dir /tmp/exp --study exploding_identity
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from . import track  # noqa: E402
from .plots import DPI, _log_axis, finite, job_color  # noqa: E402
from .train import layer_key  # noqa: E402

log = logging.getLogger("lab.report")
REPO_ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS_DIR = REPO_ROOT / "experiments"
BLOCK_RE = re.compile(r"(<!-- report:(?P<name>[\w-]+) -->)(?P<body>.*?)(<!-- /report:(?P=name) -->)",
                      re.DOTALL)

# One colour per configuration value, the same in every figure.
INIT_COLORS = {"zeros": "#7f7f7f", "normal": "#d62728", "uniform": "#9467bd",
               "lecun": "#ff7f0e", "he": "#2ca02c", "xavier": "#1f77b4", "identity": "#333333"}
GAIN_COLORS = {0.5: "#2166ac", 0.9: "#67a9cf", 1.0: "#333333", 1.1: "#ef8a62", 1.5: "#b2182b"}
OPTIMIZER_COLORS = {"sgd": "#333333", "momentum": "#8c564b", "rmsprop": "#17becf",
                    "adam": "#e377c2"}
OPTIMIZER_STYLES = {"momentum": "--"}
ACT_STYLES = {"tanh": "-", "relu": "--", "sigmoid": "-.", "identity": ":"}
SIGMOID_SLOPE_AT_0 = 0.25


# ----------------------------------------------------------------------------- reading runs


@dataclass
class Job:
    """One child run: its parameters, tags, summary and full-resolution history."""
    run_id: str
    label: str
    status: str
    params: dict
    tags: dict
    summary: dict
    history: dict
    config: dict | None = None
    weights: list | None = None  # final W[l] (from params.npz) when the run logged them
    theta_final: np.ndarray | None = None  # the flat final parameters (params.npz)

    def param(self, key, cast=str):
        value = self.params.get(key)
        if value is None:
            return None
        if cast is bool:
            return value.lower() == "true"
        try:
            return cast(value)
        except ValueError:
            return value

    @property
    def depth(self):
        return sum(1 for k in self.history if k.startswith("grad_norm/layer_"))

    def layers(self, stat, row=0):
        """Per-layer values of ``stat`` at history row ``row`` (layers 1..L)."""
        L = self.depth
        return np.array([self.history[layer_key(stat, l, L)][row] for l in range(1, L + 1)],
                        dtype=float)

    def series(self, stat, layer):
        return np.asarray(self.history[layer_key(stat, layer, self.depth)], dtype=float)

    @property
    def steps(self):
        return np.asarray(self.history["step"])

    @property
    def loss(self):
        return np.asarray(self.history["loss/train"], dtype=float)

    @property
    def final_test_accuracy(self):
        acc = finite(self.history.get("accuracy/test", []))
        acc = acc[np.isfinite(acc)]
        return float(acc[-1]) if len(acc) else float("nan")


@dataclass
class Study:
    name: str
    parent_id: str
    started: datetime.datetime
    jobs: list[Job]
    runs_total: int
    failed: list[str] = field(default_factory=list)

    def counts(self):
        out = {}
        for job in self.jobs:
            out[job.status] = out.get(job.status, 0) + 1
        if self.failed:
            out["failed (no history)"] = len(self.failed)
        return out


def _download(client, run_id, path, dest):
    try:
        return Path(client.download_artifacts(run_id, path, dest))
    except Exception:  # a failed run has no artifacts; the caller skips it
        return None


def _final_params(path):
    """(flat theta, [W[l]]) at the end of the run from ``params.npz`` (flat theta: W[l] then
    b[l] per layer), or (None, None)."""
    if path is None:
        return None, None
    with np.load(path) as z:
        if "theta_final" not in z.files or "sizes" not in z.files:
            return None, None
        theta, sizes = np.array(z["theta_final"]), [int(s) for s in z["sizes"]]
    weights, offset = [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        weights.append(theta[offset:offset + n_in * n_out].reshape(n_out, n_in))
        offset += n_in * n_out + n_out
    return (theta, weights) if offset == theta.size else (None, None)


def latest_parent(client, experiment_id):
    """The newest finished sweep parent with children (else the newest with children)."""
    parents = client.search_runs([experiment_id], filter_string="tags.sweep = 'parent'",
                                 order_by=["attributes.start_time DESC"], max_results=50)
    fallback = None
    for parent in parents:
        kids = client.search_runs(
            [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
            max_results=1)
        if not kids:
            continue
        if parent.info.status == "FINISHED":
            return parent
        fallback = fallback or parent
    return fallback


def load_study(client, name, *, weights=False):
    """The latest sweep of study ``name`` with every child's history, or None."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return None
    parent = latest_parent(client, exp.experiment_id)
    if parent is None:
        return None
    runs = client.search_runs([exp.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
                              max_results=5000)
    jobs, failed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, run in enumerate(runs):
            dest = Path(tmp) / str(i)
            dest.mkdir()
            rid = run.info.run_id
            hist_path = _download(client, rid, "history.npz", dest)
            label = run.data.tags.get("mlflow.runName", run.info.run_name) or rid
            if hist_path is None:
                failed.append(label)
                continue
            with np.load(hist_path) as z:
                history = {k: np.array(z[k]) for k in z.files}
            summary_path = _download(client, rid, "summary.json", dest)
            summary = json.loads(summary_path.read_text()) if summary_path else {}
            config_path = _download(client, rid, "config.yaml", dest)
            config = yaml.safe_load(config_path.read_text()) if config_path else None
            job = Job(rid, label, run.data.tags.get("status", summary.get("status", "?")),
                      dict(run.data.params), dict(run.data.tags), summary, history, config)
            if weights:
                job.theta_final, job.weights = _final_params(
                    _download(client, rid, "params.npz", dest))
            jobs.append(job)
    started = datetime.datetime.fromtimestamp(parent.info.start_time / 1000,
                                             datetime.timezone.utc)
    return Study(name, parent.info.run_id, started, jobs, len(runs), failed)


# ----------------------------------------------------------------------------- formatting


def fmt(x, digits=3):
    """A number for a table: 3 significant digits (integers from 1000 to 1e5 in full),
    scientific as 1.2e-5 / 7.1e32, '–' for missing or non-finite."""
    if x is None:
        return "–"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    x = float(x)
    if not math.isfinite(x):
        return "–"
    if 1e3 <= abs(x) < 1e5:
        return f"{x:.0f}"
    text = f"{x:.{digits}g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def step_fmt(step):
    return "never" if step is None else str(int(step))


def pct(x):
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.0f} %"


def md_table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def bullets(lines):
    return "\n".join(f"- {line}" for line in lines)


def not_run(name):
    return f"_Not run yet (`make sweep EXP={name}`)._"


def run_block(study, command):
    counts = ", ".join(f"{v} {k}" for k, v in sorted(study.counts().items()))
    return (f"_Measured by `{command}` on {study.started:%Y-%m-%d %H:%M} UTC: MLflow experiment "
            f"`{study.name}`, parent run `{study.parent_id}`, {study.runs_total} runs "
            f"({counts}). Regenerate with `make report`._")


# ----------------------------------------------------------------------------- measurements


def first_below(values, threshold):
    """First index where ``values`` < threshold, or None."""
    idx = np.flatnonzero(np.asarray(values, dtype=float) < threshold)
    return int(idx[0]) if len(idx) else None


def fit_ratio(values, layers=None):
    """exp(slope) of log(values) against the layer index: the factor per layer."""
    v = np.asarray(values, dtype=float)
    x = np.arange(1, len(v) + 1) if layers is None else np.asarray(layers, dtype=float)
    ok = np.isfinite(v) & (v > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.exp(np.polyfit(x[ok], np.log(v[ok]), 1)[0]))


def relu_scale_factor(init, width, gain):
    """Predicted factor per square ReLU layer of the activation (and, backwards, ||dZ||) scale:
    sqrt(n Var(W) / 2)."""
    var = weight_variance(init, width, gain)
    return math.sqrt(width * var / 2) if var is not None else float("nan")


def weight_variance(init, n, gain=1.0):
    """Var(W) of a square n x n layer under scheme ``init`` (DESIGN.md's table)."""
    return {"zeros": 0.0, "normal": gain ** 2, "lecun": gain ** 2 / n, "he": 2 * gain ** 2 / n,
            "xavier": gain ** 2 * 2 / (2 * n), "uniform": gain ** 2 / (3 * n)}.get(init)


def diverged_note(job):
    if job.status == "diverged":
        return f"diverged at step {job.tags.get('diverged_at_step', '?')}"
    return job.status


# ----------------------------------------------------------------------------- figure helpers


def _thin(n, most=600):
    """Row indices for plotting at most ~``most`` points (keeps the last one)."""
    idx = np.arange(0, n, max(1, n // most))
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)


def save(fig, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _plot_log(ax, x, y, *args, **kwargs):
    """Plot on a log y axis with non-finite and non-positive values masked; False if nothing."""
    y = finite(y, log=True)
    if not np.isfinite(y).any():
        return False
    ax.plot(x, y, *args, **kwargs)
    return True


def _loss_curve(ax, job, color, label, ls="-", lw=1.2, most=800, alpha=1.0):
    """Training loss over steps on a log axis; a diverged run ends with an x at its last
    finite loss."""
    rows = _thin(len(job.steps), most)
    _plot_log(ax, job.steps[rows], job.loss[rows], ls, color=color, lw=lw, label=label,
              alpha=alpha)
    if job.status == "diverged":
        loss = finite(job.loss, log=True)
        ok = np.flatnonzero(np.isfinite(loss))
        if len(ok):
            ax.plot(job.steps[ok[-1]], loss[ok[-1]], "x", color=color, ms=9, mew=2)


def _clip_diverged(ax, jobs, labels):
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


def _style(ax, xlabel, ylabel, title=None, log_y=True, legend=True, loc="best", ncol=1):
    """Axis labels, grid, log y; ``loc="below"`` puts the legend under the axes."""
    if log_y:
        _log_axis(ax)
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


def _finish(fig, title, top=0.86, bottom=0.13, left=0.06, right=0.99, wspace=0.3, hspace=0.4):
    fig.suptitle(title, fontsize=11)
    fig.subplots_adjust(top=top, bottom=bottom, left=left, right=right, wspace=wspace,
                        hspace=hspace)


# ----------------------------------------------------------------------------- studies


@dataclass
class Output:
    blocks: dict  # block name -> markdown
    figures: list  # paths written
    headline: str = ""  # one line for the index


def _by(jobs, key):
    return sorted(jobs, key=key)


# exploding_identity -----------------------------------------------------------------


def _identity_predictions(job):
    """Closed forms for W[l] = gain*I on the run's own data (full batch): loss at step 0,
    ||dZ[l]|| and ||dW[l]||. None when the data cannot be rebuilt."""
    cfg = job.config
    if not cfg or cfg.get("train", {}).get("batch_size") != "full":
        return None
    from .app import build  # the run's data set, rebuilt from its resolved config
    ds, _, _ = build({**cfg, "backend": "numpy"})
    X, Y = ds.X_train, ds.Y_train
    g, L, m = job.param("init.gain", float), job.depth, X.shape[1]
    dZ_L = (2 / m) * (g ** L * X - Y)
    return {
        "loss0": float(np.sum((g ** L * X - Y) ** 2) / m),
        "delta": np.array([g ** (L - l) * np.linalg.norm(dZ_L) for l in range(1, L + 1)]),
        "grad": g ** (L - 1) * float(np.linalg.norm(dZ_L @ X.T)),
    }


def _gain_color(g, i):
    return GAIN_COLORS.get(round(g, 3), job_color(i))


def _gain_panels(axes, jobs, preds):
    """||dZ[l]|| and ||dW[l]|| at step 0 by layer: measured (markers), closed form (dashed)."""
    for i, job in enumerate(jobs):
        g = job.param("init.gain", float)
        color, pred = _gain_color(g, i), preds.get(job.run_id)
        layers = np.arange(1, job.depth + 1)
        dz, dw = job.layers("delta_norm"), job.layers("grad_norm")
        ratio = dz[0] / dz[-1] if dz[-1] > 0 else float("nan")
        _plot_log(axes[0], layers, dz, "o", color=color, ms=5,
                  label=f"{g:.1f}·I: ‖dZ[1]‖ = {fmt(ratio, 2)}·‖dZ[L]‖")
        spread = dw.max() / dw.min() - 1 if dw.min() > 0 else float("nan")
        _plot_log(axes[1], layers, dw, "o", color=color, ms=5,
                  label=f"{g:.1f}·I: equal across layers to {fmt(spread, 1)}")
        if pred is not None:
            _plot_log(axes[0], layers, pred["delta"], "--", color=color, lw=1.2)
            _plot_log(axes[1], layers, np.full(job.depth, pred["grad"]), "--", color=color,
                      lw=1.2)
    for ax, what, loc in zip(axes, ("‖dZ[l]‖, backpropagated error",
                                    "‖dW[l]‖, weight gradient"), ("below", "below")):
        ax.plot([], [], "k--", lw=1.2, label="closed form: gain^(L−l)·‖dZ[L]‖" if
                "dZ" in what else "closed form: gain^(L−1)·‖dZ[L]Xᵀ‖")
        _style(ax, "layer l (1 = next to the input, L = 10 = output)",
               f"{what} at step 0\n(Frobenius norm; dots measured)", loc=loc)
        ax.set_xticks(np.arange(1, 11))


def render_exploding_identity(study, figdir):
    jobs = _by(study.jobs, lambda j: j.param("init.gain", float))
    preds = {j.run_id: _identity_predictions(j) for j in jobs}
    figures = []

    fig, axes = plt.subplots(1, 3, figsize=(15, 5.6), dpi=DPI)
    _gain_panels(axes[:2], jobs, preds)
    for i, job in enumerate(jobs):
        g = job.param("init.gain", float)
        _loss_curve(axes[2], job, _gain_color(g, i), f"{g:.1f}·I ({diverged_note(job)})")
    _clip_diverged(axes[2], jobs, [f"{j.param('init.gain', float):.1f}·I" for j in jobs])
    _style(axes[2], f"optimizer step (full batch, sgd lr {jobs[0].param('optimizer.lr')})",
           "training loss (MSE)", legend=True, loc="below")
    _finish(fig, "10-layer, 2-unit linear net with W[l] = gain·I on y = x + noise: error "
            "scales as gain^(L−l), weight gradients are equal across layers", left=0.06,
            wspace=0.32, bottom=0.33, top=0.9)
    figures.append(save(fig, figdir / "exploding_identity.png"))

    head = [j for j in jobs if round(j.param("init.gain", float), 3) in (0.5, 1.0, 1.5)]
    if head:
        fig, axes = plt.subplots(1, 2, figsize=(11, 5.2), dpi=DPI)
        _gain_panels(axes, head, preds)
        _finish(fig, "Vanishing and exploding gradients in a 10-layer linear net, W[l] = gain·I: "
                "‖dZ[l]‖ ∝ gain^(L−l), every ‖dW[l]‖ equal", left=0.09, wspace=0.3,
                bottom=0.3, top=0.9)
        figures.append(save(fig, figdir / "headline.png"))

    rows, lines = [], []
    loss_err, ratio_err, spread = [], [], []
    for job in jobs:
        g, L = job.param("init.gain", float), job.depth
        pred = preds[job.run_id]
        dz, dw = job.layers("delta_norm"), job.layers("grad_norm")
        ratio = 1 / fit_ratio(dz)  # ||dZ[l]|| / ||dZ[l+1]||
        ratio_err.append(abs(ratio / g - 1))
        sp = float(np.max(dw) / np.min(dw) - 1) if np.min(dw) > 0 else float("nan")
        spread.append(sp)
        loss = job.loss
        hit = first_below(loss, 0.1)
        if pred is not None:
            loss_err.append(abs(loss[0] / pred["loss0"] - 1))
        outcome = diverged_note(job) if job.status == "diverged" else (
            f"loss < 0.1 at step {hit}" if hit is not None else "loss never < 0.1")
        rows.append([f"{g:g}", fmt(g ** L), fmt(pred["loss0"]) if pred else "–", fmt(loss[0]),
                     fmt(g), fmt(ratio), fmt(pred["grad"]) if pred else "–",
                     f"{fmt(np.min(dw))} – {fmt(np.max(dw))}", outcome,
                     fmt(loss[np.isfinite(loss)][-1])])
    table = md_table(["gain", "output scale gain^10", "loss @0 predicted", "loss @0 measured",
                      "‖dZ[l]‖/‖dZ[l+1]‖ predicted", "fitted", "‖dW[l]‖ @0 predicted",
                      "measured (min – max over layers)", "outcome", "final loss"], rows)
    if loss_err:
        lines.append(f"Output at init is gain^10·x: the loss at step 0 equals the closed form "
                     f"(1/m)‖gain^10·X − Y‖² to within {fmt(max(loss_err), 2)} (relative) "
                     f"for every gain.")
    lines.append(f"‖dZ[l]‖ changes by a factor gain per layer: the fitted factor "
                 f"‖dZ[l]‖/‖dZ[l+1]‖ equals the gain to within {fmt(max(ratio_err), 2)} "
                 f"(relative) for all {len(jobs)} nets (prediction: ‖dZ[l]‖ ∝ gain^(L−l)).")
    finite_spread = [s for s in spread if math.isfinite(s)]
    if finite_spread:
        lines.append(f"Every layer's weight gradient has the same norm: ‖dW[l]‖ differs "
                     f"across the 10 layers by at most {fmt(max(finite_spread), 2)} "
                     f"(relative), while between the nets it spans "
                     f"{fmt(min(j.layers('grad_norm')[0] for j in jobs))} to "
                     f"{fmt(max(j.layers('grad_norm')[0] for j in jobs))}.")
    for job in jobs:
        g, loss = job.param("init.gain", float), job.loss
        if job.status == "diverged":
            lines.append(f"{g:g}·I: sgd (lr {job.param('optimizer.lr', float):g}) "
                         f"{diverged_note(job)}: the loss jumped from {fmt(loss[0])} to "
                         f"{fmt(loss[-1])} after one update.")
        elif g < 0.75:
            plateau = first_below(loss, 0.95 * loss[0])
            half = first_below(loss, 0.5 * loss[0])
            hit = first_below(loss, 0.1)
            L, lr = job.depth, job.param("optimizer.lr", float)
            escape = g ** -(L - 2) / (2 * lr * (L - 2))
            stalls = plateau is None or plateau > 0.1 * len(loss)
            lines.append(
                f"{g:g}·I {'stalls' if stalls else 'does not stall'}: the loss stays within "
                f"5 % of its start ({fmt(loss[0])}) "
                f"until step {step_fmt(plateau)} of {len(loss)} and halves at step "
                f"{step_fmt(half)} (predicted escape a₀^−(L−2)/(2·lr·(L−2)) ≈ "
                f"{fmt(escape)} steps); only then does it escape"
                + (f", reaching 0.1 at step {hit} and {fmt(loss[-1])} (the noise floor) at "
                   f"step {int(job.steps[-1])}." if hit is not None else
                   f" — it never reaches 0.1 (final {fmt(loss[-1])}).")
            )
    return Output({"result": bullets(lines), "table": table}, figures,
                  "‖dZ[l]‖ and ‖dW[l]‖ by layer at step 0 against their closed forms, and the "
                  "loss curves, for each gain")


# vanishing_sigmoid ------------------------------------------------------------------


def render_vanishing_sigmoid(study, figdir):
    jobs = study.jobs
    inits = [i for i in INIT_COLORS if any(j.param("init.name") == i for j in jobs)]
    by_init = {i: _by([j for j in jobs if j.param("init.name") == i],
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
        _plot_log(axes[0], d, g1, "o-", color=color, label=f"{init}: ×{fmt(fitted, 2)} per layer")
        if init != "normal":
            _plot_log(axes[0], d, g1[0] * pred ** (d - d[0]), ":", color=color, lw=1.5)
        acc = [j.final_test_accuracy for j in group]
        axes[1].plot(d, finite(acc), "o-", color=color, label=init)
        grad_rows.append([init, fmt(c), fmt(pred) + (" (bound)" if init == "normal" else ""),
                          fmt(fitted)] + [fmt(v) for v in g1])
    axes[0].plot([], [], "k:", lw=1.5, label="predicted: (1/4)·√(n·Var W) per layer")
    _style(axes[0], "depth L (weight layers)", "‖dW[1]‖ at step 0 (first layer)",
           "First layer's gradient vs depth")
    axes[0].set_xticks(depths)
    axes[1].axhline(0.1, color="k", lw=0.8, ls=":")
    axes[1].text(depths[0], 0.12, "chance (10 classes)", fontsize=8)
    _style(axes[1], "depth L (weight layers)", "test accuracy after training", "Trained?",
           log_y=False)
    axes[1].set_ylim(0, 1.02)
    axes[1].set_xticks(depths)
    deepest = max(depths)
    for init in inits:
        job = by_init[init][-1]
        if job.param("model.depth", int) == deepest:
            _plot_log(axes[2], np.arange(1, deepest + 1), job.layers("delta_norm"), "o-",
                      color=INIT_COLORS[init], ms=4, label=init)
    _style(axes[2], "layer l (1 = next to the input)", "‖dZ[l]‖ at step 0",
           f"Backpropagated error by layer, depth {deepest}")
    _finish(fig, f"Sigmoid nets on the 8×8 digits (width {width}, sgd, batches of "
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
        rows = _thin(len(job.steps), 500)
        for l in range(1, hidden + 1):
            color = cmap(0.9 * (l - 1) / max(hidden - 1, 1))
            mean, std = job.series("act_mean", l)[rows], job.series("act_std", l)[rows]
            if l in (1, hidden):  # bands of two layers only: more would hide the means
                ax.fill_between(job.steps[rows], finite(mean - std), finite(mean + std),
                                color=color, alpha=0.12, lw=0)
            ax.plot(job.steps[rows], finite(mean), color=color, lw=1.5,
                    label=f"layer {l}" + (" (top hidden)" if l == hidden else ""))
        ax.set_ylim(0, 1)
        _style(ax, "optimizer step", "sigmoid activation A[l]: mean\n(band: ± std, layers 1 and top)"
               if ax is
               axes[0, 0] else "", f"{job.param('init.name')} init", log_y=False,
               legend=ax is axes[0, 0], loc="upper right")
        top = job.series("act_mean", hidden)
        low = int(np.nanargmin(top))
        gb_rows.append([job.param("init.name"), fmt(top[0]), f"{fmt(top[low])} (step {low})",
                        fmt(top[-1]), pct(job.series("saturation", hidden)[-1]),
                        fmt(job.final_test_accuracy)])
    _finish(fig, f"Mean activation of each hidden layer during training, depth {gb_depth} "
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
    jobs = _by(study.jobs, lambda j: order.index(j.param("init.name"))
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
                _plot_log(ax, x, v, "o", color=color, ms=3)
                ax.plot([], [], "o-", color=color, ms=3,
                        label=f"{init}: {zero}" if not np.any(v > 0) else
                        f"{init}: 0 except the output layer")
            else:
                _plot_log(ax, x, v, "o-", color=color, ms=3, label=init)
        _loss_curve(axes[3], job, color, f"{init} ({diverged_note(job)})")
        act_ratio = fit_ratio(a0[:-1])
        dz_ratio = 1 / fit_ratio(dz0[:-1])
        measured[init] = (pred, act_ratio, dz_ratio, float(np.median(dw0)))
        sym = identical_rows_cell(job)
        loss = job.loss
        rows.append([init, fmt(pred), fmt(act_ratio), fmt(dz_ratio), fmt(np.median(dw0)),
                     fmt(np.median(dw0) / he_grad), sym, diverged_note(job),
                     f"{fmt(loss[0])} → {fmt(loss[np.isfinite(loss)][-1])}",
                     fmt(job.final_test_accuracy)])
    _style(axes[0], "hidden layer l", "std of activations A[l] at step 0",
           "Activation scale by layer")
    _style(axes[1], "layer l (1 = next to the input)", "‖dZ[l]‖ at step 0",
           "Backpropagated error by layer")
    _style(axes[2], "layer l (1 = next to the input)", "‖dW[l]‖ at step 0",
           "Weight gradient by layer")
    _clip_diverged(axes[3], jobs, [j.param("init.name") for j in jobs])
    _style(axes[3], "optimizer step (full batch, sgd)", "training loss (binary cross-entropy)",
           "Training")
    _finish(fig, f"{L}-layer {act} net, width {width}, on circles: he keeps the scale, "
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


# optimizer_comparison ---------------------------------------------------------------

TARGET_LOSS = 0.1


def render_optimizer_comparison(study, figdir):
    order = list(OPTIMIZER_COLORS)
    jobs = _by(study.jobs, lambda j: order.index(j.param("optimizer.name"))
               if j.param("optimizer.name") in order else 99)
    figures = []
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.4), dpi=DPI)
    rows = []
    for i, job in enumerate(jobs):
        name = job.param("optimizer.name")
        color = OPTIMIZER_COLORS.get(name, job_color(i))
        lr = job.param("optimizer.lr", float)
        ls = OPTIMIZER_STYLES.get(name, "-")
        _loss_curve(axes[0], job, color, f"{name} (lr {lr:g})", ls=ls)
        r = _thin(len(job.steps), 800)
        _plot_log(axes[1], job.steps[r], job.series("update_ratio", 1)[r], ls, color=color, lw=1,
                  label=name)
        early = finite(job.series("update_ratio", 1)[:200], log=True)
        rows.append([name, f"{lr:g}", step_fmt(first_below(job.loss, 0.5)),
                     step_fmt(first_below(job.loss, TARGET_LOSS)), fmt(job.loss[-1]),
                     fmt(job.final_test_accuracy), fmt(np.nanmedian(early)),
                     fmt(job.layers("grad_norm")[0])])
    axes[0].axhline(TARGET_LOSS, color="k", ls=":", lw=1)
    axes[0].text(0, TARGET_LOSS * 1.1, f"target loss {TARGET_LOSS:g}", fontsize=8)
    j0 = jobs[0]
    _style(axes[0], "optimizer step (full batch)", "training loss (binary cross-entropy)",
           "Loss")
    _style(axes[1], "optimizer step", "‖ΔW[1]‖ / ‖W[1]‖ per step (first layer)",
           "How far each step moves the first layer")
    _finish(fig, f"{j0.depth}-layer sigmoid net (width {j0.param('model.width')}) on circles: "
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


# batch_size --------------------------------------------------------------------------


def _batch(job):
    b = job.param("train.batch_size")
    n = job.param("data.n_train", int)
    return n if b == "full" else int(b), b


def render_batch_size(study, figdir):
    jobs = _by(study.jobs, lambda j: _batch(j)[0])
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
            _loss_curve(axes[0], job, color, f"{name}: each step", lw=0.5, most=3000,
                        alpha=0.35)
            window = min(100, len(loss))
            smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
            _plot_log(axes[0], job.steps[window - 1:], smooth, "-", color=color, lw=2,
                      label=f"{name}: mean of 100 steps")
        else:
            _loss_curve(axes[0], job, color, name, lw=2.2)
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
    _style(axes[0], "optimizer step", "training loss on the step's batch (BCE)",
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
        _style(ax, "batch size (examples per step)", ylabel, title, legend=False)
    _finish(fig, f"Stochastic, mini-batch and batch gradient descent on moons "
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


# input_normalization -----------------------------------------------------------------


def render_input_normalization(study, figdir):
    jobs = _by(study.jobs, lambda j: bool(j.param("data.normalize", bool)))
    colors = {False: "#d62728", True: "#2ca02c"}
    figures = []
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.4), dpi=DPI)
    rows = []
    for job in jobs:
        norm = bool(job.param("data.normalize", bool))
        name = "standardized (train μ, σ)" if norm else "raw"
        c = colors[norm]
        _loss_curve(axes[0], job, c, f"{name}: train")
        if "loss/test" in job.history:
            _plot_log(axes[0], job.history["eval_step"], job.history["loss/test"], "o", color=c,
                      ms=3, label=f"{name}: test")
        r = _thin(len(job.steps), 800)
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
    _style(axes[0], "optimizer step (full batch, sgd)", "loss (MSE)", "Loss")
    _style(axes[1], "optimizer step", "share of saturated tanh units (tanh' < 0.1)",
           "Saturation of the hidden layers", log_y=False)
    axes[1].set_ylim(-0.02, 1.02)
    _finish(fig, f"Linear target on {jobs[0].param('data.n_features')} features with scales "
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
        group = _by([j for j in jobs if (j.param("model.activation"), j.param("init.name"))
                     == (act, init)], lambda j: j.param("model.depth", int))
        for job in group:
            d = job.param("model.depth", int)
            layers = np.arange(1, d + 1)
            for r, stat in enumerate(("delta_norm", "grad_norm")):
                _plot_log(axes[r, c], layers, job.layers(stat), "-", color=dcolor[d], lw=1.4,
                          label=f"L = {d}")
        for r, what in enumerate(("‖dZ[l]‖ at step 0", "‖dW[l]‖ at step 0")):
            _style(axes[r, c], "layer l (1 = next to the input)", what if c == 0 else "",
                   f"{act}, {init}" if r == 0 else None, legend=(c == 0 and r == 0),
                   loc="lower right")
        acc_rows.append([act, init] + [fmt(next((j.final_test_accuracy for j in group
                                                  if j.param("model.depth", int) == d), None))
                                       for d in depths])
        ratio_rows.append([act, init] + [fmt(next(
            (j.layers("delta_norm")[0] / j.layers("delta_norm")[-1] for j in group
             if j.param("model.depth", int) == d), None)) for d in depths])
    j0 = jobs[0]
    _finish(fig, f"Gradient norm by layer at initialization, depths {depths[0]}–{depths[-1]} "
            f"(width {j0.param('model.width')}, circles)", top=0.92, bottom=0.07, left=0.06,
            wspace=0.08, hspace=0.25)
    figures.append(save(fig, figdir / "depth_scaling.png"))

    fig, ax = plt.subplots(figsize=(7, 4.4), dpi=DPI)
    for act, init, *_ in acc_rows:
        group = _by([j for j in jobs if (j.param("model.activation"), j.param("init.name"))
                     == (act, init)], lambda j: j.param("model.depth", int))
        ax.plot([j.param("model.depth", int) for j in group],
                finite([j.final_test_accuracy for j in group]), ACT_STYLES.get(act, "-"),
                marker="o",
                color=INIT_COLORS.get(init, "k"), label=f"{act}, {init}")
    ax.axhline(0.5, color="k", ls=":", lw=0.8)
    _style(ax, "depth L (weight layers)", "test accuracy after training",
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


# initialization_notes (a) and (b) ----------------------------------------------------------


def _boundaries(jobs, gains, regime):
    """Decision boundary after training for each (init, gain): P(y=1) of the run's final
    parameters (params.npz) on a grid, with the training points."""
    from .app import build  # the run's data set and network layout, from its config
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
        group = _by([j for j in jobs if j.param("init.gain", float) == g],
                    lambda j: order.index(j.param("init.name")))
        for job in group:
            init = job.param("init.name")
            color = INIT_COLORS.get(init, "k")
            note = "" if job.status == "completed" else f" ({diverged_note(job)})"
            _loss_curve(axes[0, c], job, color, f"{init}{note}")
            grad = job.series("grad_norm", 1)
            nonzero = np.flatnonzero(grad != 0)
            r = _thin(len(job.steps), 800)
            if not len(nonzero):
                axes[1, c].plot([], [], "-", color=color, label=f"{init}: exactly 0")
            else:
                dead_from = nonzero[-1] + 1
                label = init if dead_from == len(grad) else f"{init}: 0 from step {dead_from}"
                _plot_log(axes[1, c], job.steps[r], grad[r], "-", color=color, lw=1.2,
                          label=label, marker="o" if len(nonzero) < 5 else None, ms=4)
            loss = job.loss
            dead = np.nanmean(job.layers("saturation", -1)[:-1])
            rows.append([init, f"{g:g}", regime.get(g, "appropriate") if init != "zeros"
                         else "zero", diverged_note(job),
                         f"{fmt(loss[0])} → {fmt(loss[np.isfinite(loss)][-1])}",
                         fmt(job.final_test_accuracy), fmt(job.layers("grad_norm")[0]),
                         identical_rows_cell(job), pct(dead)])
        _style(axes[0, c], "", "training loss (BCE)" if c == 0 else "",
               f"gain {g:g} ({regime.get(g, 'appropriate')})")
        _style(axes[1, c], "optimizer step", "‖dW[1]‖, first layer's gradient" if c == 0
               else "")
    j0 = jobs[0]
    _finish(fig, f"{j0.param('model.activation')} classifier on circles "
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


def render_initialization_notes_digits(study, figdir):
    order = ["zeros", "uniform", "xavier", "normal", "lecun", "he"]
    jobs = _by(study.jobs, lambda j: order.index(j.param("init.name"))
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
    _finish(fig, "Distribution of each hidden layer's activations on the digits, at the start, "
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
        _loss_curve(axes[1], job, color, init)
        acc = finite(job.history.get("accuracy/test", [np.nan]))
        sat = job.layers("saturation", -1)[:-1]
        rows.append([init, fmt(acc[0]), fmt(acc[-1]), fmt(job.loss[-1]),
                     " / ".join(pct(s) for s in sat)])
    axes[0].axhline(0.1, color="k", ls=":", lw=0.8)
    _style(axes[0], "optimizer step", "test accuracy", "Test accuracy", log_y=False)
    axes[0].set_ylim(0, 1)
    _style(axes[1], "optimizer step", "training loss (cross-entropy, batch of the step)",
           "Loss")
    j0 = jobs[0]
    _finish(fig, f"{j0.depth}-layer {j0.param('model.activation')} net on the 8×8 digits, "
            f"width {j0.param('model.width')}, sgd lr {j0.param('optimizer.lr')}", left=0.07)
    figures.append(save(fig, figdir / "initialization_notes_digits.png"))
    return Output({"table": md_table(["init", "test acc @0", "test acc at end", "final loss",
                                      "saturated tanh units at end, layers 1…" + str(hidden)],
                                     rows)},
                  figures, "each hidden layer's activation histogram at three moments of "
                           "training, per init")


# ----------------------------------------------------------------------------- registry

Renderer = Callable[[Study, Path], Output]
STUDIES: dict[str, tuple[Renderer, str, str]] = {
    # name: (renderer, question, figure the index shows)
    "exploding_identity": (render_exploding_identity,
                           "What does W = gain·I do to the gradients of a 10-layer linear net?",
                           "exploding_identity.png"),
    "vanishing_sigmoid": (render_vanishing_sigmoid,
                          "How fast does the gradient vanish through sigmoid layers?",
                          "vanishing_sigmoid.png"),
    "init_comparison": (render_init_comparison,
                        "Which initialization keeps a 30-layer ReLU net trainable?",
                        "init_comparison.png"),
    "optimizer_comparison": (render_optimizer_comparison,
                             "Can an optimizer get a deep sigmoid net off its plateau?",
                             "optimizer_comparison.png"),
    "batch_size": (render_batch_size, "What does the batch size do to noise and time?",
                   "batch_size.png"),
    "input_normalization": (render_input_normalization,
                            "Why standardize inputs with the training set's μ and σ?",
                            "input_normalization.png"),
    "depth_scaling": (render_depth_scaling,
                      "How deep can a net get, by activation and initialization?",
                      "depth_scaling.png"),
    "initialization_notes": (render_initialization_notes,
                             "Zero, too small, appropriate, too large: what each init does",
                             "initialization_notes.png"),
    "initialization_notes_digits": (render_initialization_notes_digits,
                                    "What do the inits do to each layer's activations on "
                                    "handwritten digits?",
                                    "initialization_notes_digits_histograms.png"),
}
NEEDS_WEIGHTS = {"init_comparison", "initialization_notes"}


def fill_blocks(text, blocks, default=None):
    """Replace every ``<!-- report:NAME -->`` block's body by ``blocks[NAME]`` (or
    ``default``); blocks with neither are left as they are. Returns (text, names filled)."""
    filled = []

    def sub(m):
        name = m.group("name")
        body = blocks.get(name, default)
        if body is None:
            return m.group(0)
        filled.append(name)
        return f"{m.group(1)}\n{body.strip()}\n{m.group(4)}"

    return BLOCK_RE.sub(sub, text), filled


def write_blocks(path, blocks, default=None):
    if not path.exists():
        log.warning("%s does not exist: its numbers were not written", path)
        return []
    text, filled = fill_blocks(path.read_text(), blocks, default)
    missing = sorted(set(blocks) - set(filled))
    if missing:
        log.warning("%s has no block(s) %s", path, ", ".join(missing))
    path.write_text(text)
    return filled


def index_block(results):
    lines = []
    for name, (_, question, figure) in STUDIES.items():
        out = results.get(name)
        lines.append(f"### [{name}]({name}.md)\n\n{question}  ")
        if isinstance(out, Exception):
            lines.append(f"_The report failed for this study ({type(out).__name__})._\n")
        elif out is None:
            lines.append(f"{not_run(name)}\n")
        else:
            lines.append(f"_Figure: {out.headline}._\n\n![{name}](figures/{figure})\n")
    return "\n".join(lines)


def report(uri=None, experiments_dir=EXPERIMENTS_DIR, studies=None):
    """Regenerate figures and write-up blocks; returns {study: Output or None}."""
    uri = track.resolve_tracking_uri(uri, REPO_ROOT)
    track.check_reachable(uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = MlflowClient(uri)
    experiments_dir = Path(experiments_dir)
    figdir = experiments_dir / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in studies or STUDIES:
        renderer = STUDIES[name][0]
        study = load_study(client, name, weights=name in NEEDS_WEIGHTS)
        md = experiments_dir / f"{name}.md"
        if study is None or not study.jobs:
            print(f"{name}: not run yet (make sweep EXP={name})")
            write_blocks(md, {}, default=not_run(name))
            results[name] = None
            continue
        try:
            out = renderer(study, figdir)
        except Exception as exc:  # one broken study must not hide the others
            log.error("%s: report failed: %s: %s", name, type(exc).__name__, exc)
            plt.close("all")
            results[name] = exc
            continue
        out.blocks["run"] = run_block(study, f"make sweep EXP={name}")
        write_blocks(md, out.blocks)
        results[name] = out
        print(f"{name}: {len(study.jobs)} runs from parent {study.parent_id}; "
              + ", ".join(p.name for p in out.figures))
    if studies is None or set(studies) == set(STUDIES):
        write_blocks(experiments_dir / "README.md", {"index": index_block(results)})
    return results


def failures(results):
    return [name for name, out in results.items() if isinstance(out, Exception)]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab.report", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else "
                        "sqlite:///<repo>/mlruns.db)")
    parser.add_argument("--experiments-dir", "--out", dest="experiments_dir",
                        default=str(EXPERIMENTS_DIR),
                        help="directory of the write-ups; figures go to its figures/")
    parser.add_argument("--study", action="append", choices=list(STUDIES),
                        help="only this study (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        results = report(args.uri, args.experiments_dir, args.study)
    except track.TrackingUnreachable as exc:
        print(f"gradlab: {exc}", file=sys.stderr)
        return 2
    if failures(results):
        print(f"gradlab: report failed for {', '.join(failures(results))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
