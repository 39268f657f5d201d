"""Progress of one run: a tqdm bar on a terminal, plain log lines otherwise."""

import math
import sys

import numpy as np
from tqdm.auto import tqdm

from .kernels.codes import L_GRAD, S_LOSS

LOG_LINES_PER_RUN = 10  # when output is not a terminal


def _fmt(x):
    return "nan" if not math.isfinite(x) else f"{x:.3g}"


class RunProgress:
    """Call ``update(chunk, depth)`` after each training chunk; ``close()`` at the end."""

    def __init__(self, total_steps, description, enabled=True, stream=None):
        self.total, self.description, self.enabled = total_steps, description, enabled
        self.stream = stream or sys.stderr
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(total=total_steps, desc=description, file=self.stream, leave=True,
                        dynamic_ncols=True, unit="step") if self.tty else None
        self.next_line = 0
        self.done = 0

    def update(self, chunk, depth):
        if not self.enabled:
            return
        row = len(chunk.steps) - 1
        loss = float(chunk.scalars[row, S_LOSS])
        first = chunk.layer_stats[row, L_GRAD, 0]
        last = chunk.layer_stats[row, L_GRAD, depth - 1]
        with np.errstate(all="ignore"):
            ratio = float(first / last) if last else float("inf")
        self.done = int(chunk.steps[-1]) + 1
        info = f"loss={_fmt(loss)} |dW1|/|dWL|={_fmt(ratio)}"
        if self.bar is not None:
            self.bar.set_postfix_str(info, refresh=False)
            self.bar.update(self.done - self.bar.n)
        elif self.done >= self.next_line or chunk.diverged or self.done >= self.total:
            print(f"{self.description}: step {self.done}/{self.total} {info}", file=self.stream,
                  flush=True)
            self.next_line = self.done + max(1, self.total // LOG_LINES_PER_RUN)

    def close(self, status=""):
        if self.bar is not None:
            if status:
                self.bar.set_description_str(f"{self.description} [{status}]")
            self.bar.close()
