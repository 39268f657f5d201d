"""Per-job summaries (what a sweep table and comparison figure need) and sweep tables."""

import csv
import io
import math

import numpy as np

from .plots import depth_of, last_finite_row, layer_series

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
    grad_init = layer_series(history, "grad_norm", depth, 0)
    grad_end = layer_series(history, "grad_norm", depth, end)
    delta_init = layer_series(history, "delta_norm", depth, 0)
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
        "delta_end": [_clean(v) for v in layer_series(history, "delta_norm", depth, end)],
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
