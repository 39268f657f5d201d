"""A sweep's jobs side by side: per-job summaries, tables (CSV, terminal), the comparison figure."""

import csv
import io
import math

import numpy as np

from ..history import depth_of, last_finite_row, layer_series

TABLE_COLUMNS = ("label", "status", "diverged_at_step", "final_loss", "final_test_loss",
                 "grad_first_init", "grad_last_init", "grad_first_end", "grad_last_end",
                 "delta_ratio_init", "seconds", "run_id")


def _clean(x):
    """JSON-safe float: non-finite becomes None."""
    x = float(x)
    return x if math.isfinite(x) else None


def job_summary(history, *, label, status, diverged_at_step, seconds, run_id=None, job=None):
    depth = depth_of(history)
    end = last_finite_row(history)
    losses = np.asarray(history["loss/train"], dtype=float)
    finite_losses = losses[np.isfinite(losses)]
    test = np.asarray(history.get("loss/test", []), dtype=float)
    finite_test = test[np.isfinite(test)]
    grad_init = layer_series(history, "grad_norm", 0)
    grad_end = layer_series(history, "grad_norm", end)
    delta_init = layer_series(history, "delta_norm", 0)
    with np.errstate(all="ignore"):
        delta_ratio = delta_init[0] / delta_init[-1]
    return {
        "label": label,
        "job": job,
        "status": status,
        "diverged_at_step": diverged_at_step,
        "run_id": run_id,
        "depth": depth,
        "steps_done": int(history["step"][-1]) + 1,
        "final_loss": _clean(finite_losses[-1]) if len(finite_losses) else None,
        "final_test_loss": _clean(finite_test[-1]) if len(finite_test) else None,
        "grad_init": [_clean(v) for v in grad_init],
        "grad_end": [_clean(v) for v in grad_end],
        "delta_init": [_clean(v) for v in delta_init],
        "delta_end": [_clean(v) for v in layer_series(history, "delta_norm", end)],
        "grad_first_init": _clean(grad_init[0]),
        "grad_last_init": _clean(grad_init[-1]),
        "grad_first_end": _clean(grad_end[0]),
        "grad_last_end": _clean(grad_end[-1]),
        "delta_ratio_init": _clean(delta_ratio),
        "seconds": round(float(seconds), 4),
    }


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table_csv(jobs):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(TABLE_COLUMNS)
    for job in jobs:
        writer.writerow([_cell(job.get(c)) for c in TABLE_COLUMNS])
    return out.getvalue()


def table_text(jobs, columns=("label", "status", "final_loss", "grad_first_init",
                              "grad_last_init", "grad_first_end", "grad_last_end")):
    """A fixed-width table for the terminal."""
    header = {"label": "config", "final_loss": "final loss", "grad_first_init": "|dW1| init",
              "grad_last_init": "|dWL| init", "grad_first_end": "|dW1| end",
              "grad_last_end": "|dWL| end"}
    rows = [[header.get(c, c) for c in columns]]
    for job in jobs:
        status = job.get("status", "")
        if status == "diverged" and job.get("diverged_at_step") is not None:
            status = f"diverged@{job['diverged_at_step']}"
        rows.append([status if c == "status" else _cell(job.get(c)) or "-" for c in columns])
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _dodge(n_jobs, width=0.3):
    """Horizontal offsets (in layers) that keep jobs whose values coincide apart."""
    if n_jobs <= 1:
        return np.zeros(max(n_jobs, 1))
    return np.linspace(-width, width, n_jobs)


def sweep_comparison(jobs, title_text=""):
    """jobs: list of dicts with ``label``, ``grad_init`` and ``grad_end`` (per-layer ‖dW‖),
    ``final_loss`` and ``status``. Left: ‖dW[l]‖ by layer at step 0; middle: at the last
    finite step; right: final training loss per job. Jobs are told apart by colour and marker
    (20 distinct styles) and shifted a little along the layer axis, so lines that coincide
    (e.g. converged runs at 1e-15) stay visible side by side; one legend, right of the data."""
    import matplotlib.pyplot as plt

    from .style import (
        DPI,
        SMALL,
        finite,
        has_points,
        job_style,
        layer_axis,
        layout,
        log_axis,
        title,
        top_margin,
    )

    n = len(jobs)
    fig = plt.figure(figsize=(10, 4.2 + 0.12 * max(0, n - 10)), dpi=DPI)
    gs = fig.add_gridspec(1, 3, width_ratios=[1, 1, 0.8])
    ax_init = fig.add_subplot(gs[0])
    ax_end = fig.add_subplot(gs[1], sharey=ax_init)
    bx = fig.add_subplot(gs[2])
    shift = _dodge(n)
    depth = max((len(j.get("grad_init") or []) for j in jobs), default=1)
    for i, job in enumerate(jobs):
        style = job_style(i)
        for ax, key in ((ax_init, "grad_init"), (ax_end, "grad_end")):
            v = finite(job.get(key) or [], log=True)
            if len(v) and has_points(v):
                ax.plot(np.arange(1, len(v) + 1) + shift[i], v, "-", color=style["color"],
                        marker=style["marker"], ms=3.5, lw=1.1, alpha=0.9)
    for ax, when in ((ax_init, "at step 0"), (ax_end, "at the last step")):
        if any(ax.get_lines()):
            log_axis(ax)
        layer_axis(ax, depth, "layer l (1 = input side)")
        ax.set_title(f"‖dW[l]‖ {when}", fontsize=SMALL + 1)
        ax.tick_params(labelsize=SMALL)
        ax.grid(True, alpha=0.3)
    ax_end.tick_params(labelleft=False)
    same = _coinciding([finite(j.get("grad_end") or [], log=True) for j in jobs])
    for g in same:
        v = finite(jobs[g[0]].get("grad_end"), log=True)
        if len(v) >= 4:  # room on the line's right end for a label
            ax_end.annotate(f"jobs {', '.join(str(i + 1) for i in g)}\n(on top of each other)",
                            (len(v) + shift[g[-1]], v[-1]), xytext=(-4, 8),
                            textcoords="offset points", ha="right", va="bottom",
                            fontsize=SMALL, bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
    losses = finite([j.get("final_loss", np.nan) for j in jobs], log=True)
    y = np.arange(n)
    bx.barh(y, np.nan_to_num(losses, nan=0.0), color=[job_style(i)["color"] for i in range(n)])
    if has_points(losses):
        log_axis(bx, "x")
    for i, job in enumerate(jobs):
        status = job.get("status", "")
        text = f"{losses[i]:.2g}" if np.isfinite(losses[i]) else "no finite loss"
        if status and status != "completed":
            text += f" ({status})"
        bx.text(0.02, i, text, va="center", transform=bx.get_yaxis_transform(),
                fontsize=SMALL, color="black",
                bbox={"facecolor": "white", "alpha": 0.7, "lw": 0, "pad": 0.5})
    bx.set_yticks(y, [str(i + 1) for i in range(n)], fontsize=SMALL)
    bx.set_ylabel("job (legend order)", fontsize=SMALL)
    bx.set_title("final training loss", fontsize=SMALL + 1)
    bx.tick_params(labelsize=SMALL)
    bx.invert_yaxis()
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=job_style(i)["color"], marker=job_style(i)["marker"], ms=4,
                      lw=1.1) for i in range(n)]
    labels = _short_labels(jobs)
    for g in same:
        for i in g[1:]:
            labels[i] += f" (end: on {g[0] + 1})"
    if handles:
        fig.legend(handles, [f"{i + 1}. {t}" for i, t in enumerate(labels)], loc="upper left",
                   bbox_to_anchor=(0.005, 0.0), fontsize=SMALL, frameon=False,
                   ncol=2 if n > 5 else 1)
    lines = title(fig, title_text or "Sweep summary")
    legend_rows = -(-n // (2 if n > 5 else 1))
    fig.set_figheight(4.0 + 0.2 * legend_rows)
    bottom = (0.55 + 0.2 * legend_rows) / fig.get_figheight()
    for leg in fig.legends:
        leg.set_bbox_to_anchor((0.005, bottom - 0.5 / fig.get_figheight()))
    layout(fig, top=top_margin(fig, lines, 0.45), bottom=bottom, left=0.07, right=0.98,
           wspace=0.3)
    return fig


def _coinciding(series, rtol=0.25):
    """Groups (lists of job indices, 2 or more) whose lines lie on top of each other: within
    ``rtol`` at every layer."""
    groups = []
    for i, v in enumerate(series):
        if not len(v) or not np.isfinite(v).all():
            continue
        for g in groups:
            ref = series[g[0]]
            if len(ref) == len(v) and np.all(np.abs(np.log(v / ref)) < np.log1p(rtol)):
                g.append(i)
                break
        else:
            groups.append([i])
    return [g for g in groups if len(g) > 1]


def _short_labels(jobs):
    """Job labels without the overrides every job shares ("train.steps=600")."""
    parts = [(j.get("label") or "").split(", ") for j in jobs]
    common = set.intersection(*(set(p) for p in parts)) if len(parts) > 1 else set()
    return [", ".join(x for x in p if x not in common) or "(defaults)" for p in parts]
