"""The ``cpu`` kernel set: the numba math of ``cpu.py`` and its training chunk
(``cpu_chunk.py``, which builds on that math), under the names ``reference.py`` and
``cuda.py`` use."""

from . import cpu
from .cpu import chunk_plan, forward, fp_mode, gradients, update
from .cpu_chunk import train_chunk
from .threads import blas_threads


def evaluate(theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, X, Y):
    """``cpu.evaluate`` with BLAS's threads capped as a chunk of that shape caps them: on the
    lab's small layers a second BLAS thread costs more than it saves, and on a busy machine a
    descheduled one holds every product back (a 2000-step 10x64 run spent seconds there)."""
    with blas_threads(chunk_plan(sizes, [X.shape[1]]).blas_threads):
        return cpu.evaluate(theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, X, Y)


__all__ = ["forward", "evaluate", "gradients", "update", "train_chunk", "fp_mode", "chunk_plan"]
