"""The ``cpu`` kernel set: the numba math of ``cpu.py`` and its training chunk
(``cpu_chunk.py``, which builds on that math), under the names ``reference.py`` and
``cuda.py`` use."""

from .cpu import chunk_plan, evaluate, forward, fp_mode, gradients, update
from .cpu_chunk import train_chunk

__all__ = ["forward", "evaluate", "gradients", "update", "train_chunk", "fp_mode", "chunk_plan"]
