"""conf/experiment/exploding_identity.yaml: its figures and measured blocks."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from ...views.style import DPI, job_color
from ..charts import (
    GAIN_COLORS,
    Output,
    clip_diverged,
    finish,
    loss_curve,
    plot_log,
    save,
    sorted_by,
    style_axes,
)
from ..markdown import bullets, diverged_note, fmt, md_table, step_fmt
from ..measure import first_below, fit_ratio


def _identity_predictions(job):
    """Closed forms for W[l] = gain*I on the run's own data (full batch): loss at step 0,
    ||dZ[l]|| and ||dW[l]||. None when the data cannot be rebuilt."""
    cfg = job.config
    if not cfg or cfg.get("train", {}).get("batch_size") != "full":
        return None
    from ...build import build  # the run's data set, rebuilt from its resolved config
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
        plot_log(axes[0], layers, dz, "o", color=color, ms=5,
                  label=f"{g:.1f}·I: ‖dZ[1]‖ = {fmt(ratio, 2)}·‖dZ[L]‖")
        spread = dw.max() / dw.min() - 1 if dw.min() > 0 else float("nan")
        plot_log(axes[1], layers, dw, "o", color=color, ms=5,
                  label=f"{g:.1f}·I: equal across layers to {fmt(spread, 1)}")
        if pred is not None:
            plot_log(axes[0], layers, pred["delta"], "--", color=color, lw=1.2)
            plot_log(axes[1], layers, np.full(job.depth, pred["grad"]), "--", color=color,
                      lw=1.2)
    for ax, what, loc in zip(axes, ("‖dZ[l]‖, backpropagated error",
                                    "‖dW[l]‖, weight gradient"), ("below", "below")):
        ax.plot([], [], "k--", lw=1.2, label="closed form: gain^(L−l)·‖dZ[L]‖" if
                "dZ" in what else "closed form: gain^(L−1)·‖dZ[L]Xᵀ‖")
        style_axes(ax, "layer l (1 = next to the input, L = 10 = output)",
               f"{what} at step 0\n(Frobenius norm; dots measured)", loc=loc)
        ax.set_xticks(np.arange(1, 11))


def render_exploding_identity(study, figdir):
    jobs = sorted_by(study.jobs, lambda j: j.param("init.gain", float))
    preds = {j.run_id: _identity_predictions(j) for j in jobs}
    figures = []

    fig, axes = plt.subplots(1, 3, figsize=(15, 5.6), dpi=DPI)
    _gain_panels(axes[:2], jobs, preds)
    for i, job in enumerate(jobs):
        g = job.param("init.gain", float)
        loss_curve(axes[2], job, _gain_color(g, i), f"{g:.1f}·I ({diverged_note(job)})")
    clip_diverged(axes[2], jobs, [f"{j.param('init.gain', float):.1f}·I" for j in jobs])
    style_axes(axes[2], f"optimizer step (full batch, sgd lr {jobs[0].param('optimizer.lr')})",
           "training loss (MSE)", legend=True, loc="below")
    finish(fig, "10-layer, 2-unit linear net with W[l] = gain·I on y = x + noise: error "
            "scales as gain^(L−l), weight gradients are equal across layers", left=0.06,
            wspace=0.32, bottom=0.33, top=0.9)
    figures.append(save(fig, figdir / "exploding_identity.png"))

    head = [j for j in jobs if round(j.param("init.gain", float), 3) in (0.5, 1.0, 1.5)]
    if head:
        fig, axes = plt.subplots(1, 2, figsize=(11, 5.2), dpi=DPI)
        _gain_panels(axes, head, preds)
        finish(fig, "Vanishing and exploding gradients in a 10-layer linear net, W[l] = gain·I: "
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
