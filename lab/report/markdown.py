"""Markdown for the write-ups: number formats, tables, and the generated blocks of experiments/*.md."""

from __future__ import annotations

import logging
import math
import re

import numpy as np

log = logging.getLogger("lab.report")
BLOCK_RE = re.compile(r"(<!-- report:(?P<name>[\w-]+) -->)(?P<body>.*?)(<!-- /report:(?P=name) -->)",
                      re.DOTALL)


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


def diverged_note(job):
    if job.status == "diverged":
        return f"diverged at step {job.tags.get('diverged_at_step', '?')}"
    return job.status


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
