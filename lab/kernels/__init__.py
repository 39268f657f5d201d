"""Kernel sets: ``reference`` (numpy), ``cpu`` (numba), ``cuda`` (numba.cuda), same API each.

Every set provides ``forward``, ``evaluate``, ``gradients``, ``update`` and ``train_chunk`` over a
flat parameter vector (see ``reference.py`` for the layout and the formulas). Callers run
training chunks through ``chunk.ChunkBuffers`` rather than ``train_chunk`` itself.

The files: ``reference.py`` (numpy), ``numba_cpu.py`` (the ``cpu`` set: ``cpu.py``, the numba
math, and ``cpu_chunk.py``, its training chunk) with the helpers
``intrinsics.py``, ``blas.py``, ``threads.py``, ``fastmath.py``; ``cuda.py`` (host side) with
``cuda_device.py`` (device functions and kernels); ``codes.py`` (names to integer codes),
``tuning.py`` (every speed tunable), ``chunk.py`` (the shared chunk call).
"""

from importlib import import_module

BACKENDS = {"numpy": "reference", "cpu": "numba_cpu", "cuda": "cuda"}


def get_kernels(backend: str):
    """The kernel module for a backend name; ValueError naming the valid choices otherwise."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid choices: {', '.join(BACKENDS)}")
    module = import_module(f"{__name__}.{BACKENDS[backend]}")
    if backend == "cuda":
        module.require_device()
    return module
