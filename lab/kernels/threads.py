"""Thread planning for the CPU training chunk: how many parts a step is cut into, how many threads
take them, and how many threads BLAS may use meanwhile.

A step whose batch is big enough is cut into ``parts`` column blocks, more of them than threads
when the batch allows. Threads take the next unclaimed part as soon as they are free (an atomic
counter, ``intrinsics.fetch_add``), so a thread that the operating system descheduled on a busy
machine holds back only the part it is running, not half the step. Every part writes its own
gradient and raw sums, which are added in part order afterwards: the plan depends on the shape
only, so the numbers a run produces never depend on the number of threads or on timing.
"""

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numba
import numpy as np

from .tuning import (
    BIG_PART_MIN_COLUMNS,
    BLAS_MIN_MACS,
    BLAS_THREADS_MIN_MACS,
    PARALLEL_MIN_MACS,
    PARALLEL_MIN_PARAMS,
    PART_MIN_COLUMNS,
    PARTS_MAX,
)


@dataclass(frozen=True)
class ChunkPlan:
    """parts: column blocks per step (1: the plain serial step); big: the gradient sum, norms and
    update also run on all threads; blas_threads: BLAS's thread cap for the chunk (None: leave
    the process's setting)."""
    parts: int
    big: bool
    blas_threads: int | None


def chunk_plan(sizes, counts):
    """The plan for a chunk of steps whose batches have ``counts`` columns (shape only: see the
    module docstring). Parts when a step has at least ``PARALLEL_MIN_MACS`` multiply-adds and
    two parts of ``PART_MIN_COLUMNS`` columns fit the smallest batch (at most ``PARTS_MAX``);
    then ``big`` with at least ``PARALLEL_MIN_PARAMS`` parameters, whose parts have at least
    ``BIG_PART_MIN_COLUMNS`` columns. BLAS runs single-threaded whenever parts run, or when no
    matrix product reaches ``BLAS_THREADS_MIN_MACS``; and is left alone when no product reaches
    ``BLAS_MIN_MACS`` (no BLAS call at all: finding its thread controls costs a process ~0.3 s)."""
    sizes = np.asarray(sizes)
    m = int(np.min(counts)) if len(counts) else 1
    layer_macs = sizes[1:] * sizes[:-1]
    # every product an inlined loop nest: BLAS is never called, nothing to cap
    no_blas = int(layer_macs.max()) * (int(np.max(counts)) if len(counts) else 1) < BLAS_MIN_MACS
    step_macs = 3 * int(layer_macs.sum()) * m
    big = int(layer_macs.sum() + sizes[1:].sum()) >= PARALLEL_MIN_PARAMS
    parts = min(PARTS_MAX, m // (BIG_PART_MIN_COLUMNS if big else PART_MIN_COLUMNS))
    if step_macs >= PARALLEL_MIN_MACS and parts >= 2:
        return ChunkPlan(parts, big, None if no_blas else 1)
    blas = None if no_blas or int(layer_macs.max()) * m >= BLAS_THREADS_MIN_MACS else 1
    return ChunkPlan(1, False, blas)


# --- threads for the parts ----------------------------------------------------------------------

_pool_started = []


def part_threads(parts):
    """Threads for the parts: numba's (numba.get_num_threads()), at most OMP_NUM_THREADS when that
    is set (joblib/loky sets it to cores // workers in its workers), at most parts. On first use
    numba's OpenMP pool starts with passive waits (unless OMP_WAIT_POLICY says otherwise):
    spinning threads on a busy machine would stall each other for whole time slices."""
    if not _pool_started:
        saved = os.environ.get("OMP_WAIT_POLICY")
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            from numba.np.ufunc.parallel import _launch_threads
            _launch_threads()
        except ImportError:  # numba starts its pool on the first parallel call instead
            pass
        finally:
            if saved is None:
                os.environ.pop("OMP_WAIT_POLICY", None)
        _pool_started.append(True)
    threads = numba.get_num_threads()
    try:
        threads = min(threads, int(os.environ.get("OMP_NUM_THREADS", threads)))
    except ValueError:
        pass
    return max(1, min(threads, parts))


@contextmanager
def numba_threads(n):
    """Run the block with numba's thread count set to n, then put the previous count back."""
    before = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(before)


# --- BLAS threads -------------------------------------------------------------------------------
# numba's np.dot calls SciPy's OpenBLAS (numpy has its own, left alone). Its threads pay off only
# on large products; on the 64-wide layers they cost more in synchronization than they save (and
# they would fight the parts for the same cores), so a chunk sets them as planned and puts the
# process's setting back afterwards.

_blas_lock = threading.Lock()
_blas_state = {"controllers": None, "users": 0, "saved": []}


def _blas_controllers():
    """threadpoolctl handles on the BLAS that numba's np.dot calls (SciPy's, not numpy's)."""
    if _blas_state["controllers"] is None:
        try:
            import scipy
            from numba.np.linalg import ensure_blas
            from threadpoolctl import ThreadpoolController
            ensure_blas()  # loads SciPy's BLAS, the one numba calls
            home = os.path.dirname(os.path.dirname(os.path.abspath(scipy.__file__)))
            _blas_state["controllers"] = [
                c for c in ThreadpoolController().lib_controllers
                if c.user_api == "blas" and os.path.abspath(c.filepath).startswith(
                    os.path.join(home, "scipy"))]
        except Exception:  # no threadpoolctl or SciPy: leave BLAS alone
            _blas_state["controllers"] = []
    return _blas_state["controllers"]


@contextmanager
def blas_threads(n):
    """Run the block with at most n BLAS threads (None: as set); nestable, thread-safe."""
    if n is None:
        yield
        return
    with _blas_lock:
        if _blas_state["users"] == 0:
            _blas_state["saved"] = [(c, c.num_threads) for c in _blas_controllers()]
            for c, threads in _blas_state["saved"]:
                if threads > n:
                    c.set_num_threads(n)
        _blas_state["users"] += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_state["users"] -= 1
            if _blas_state["users"] == 0:
                for c, threads in _blas_state["saved"]:
                    c.set_num_threads(threads)
