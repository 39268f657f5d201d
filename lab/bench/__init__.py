"""``python -m lab.bench [--quick] [--out DIR]``: how fast a training step is, side by side.

One process, the same shapes, the same math (sigmoid hidden layers, identity output, MSE,
full-batch Adam): microseconds per training step (forward + backward + Adam, float64 and
float32) for

- ``numpy``: the reference kernels (``lab/kernels/reference.py``), one Python-level step at a time;
- ``numba``: the compiled chunk (``lab/kernels/cpu_chunk.py: train_chunk``) that ``lab.train`` calls;
  like the numpy reference it also records every per-step statistic (norms, activation mean,
  std and saturation, update ratios), which the peers below do not compute;
- ``torch``: PyTorch eager on the CPU with ``torch.optim.Adam`` (if installed);
- ``jax``: ``jax.jit`` over a ``lax.scan`` of K steps of the same math incl. Adam (if installed).

Each backend is warmed up first (its compile or first-call time is reported separately), then
timed over several rounds, the backends' rounds interleaved in an order rotated each round (so
a burst of other work on the machine falls on every backend alike) with a pause before each
round (a backend's BLAS/OpenMP/XLA threads keep spinning for a while after its last call and
would slow the next one down); the result is the median over rounds. The machine's load
average is recorded: other processes on a 2-core machine change every number here. Also
measured: numpy's and numba's GEMM rate at the 512-wide layer's shape, a fresh process's
cold vs warm start (numba cache empty vs populated), and, through the Hydra app
``python -m lab``, MLflow's cost per run (tracking on vs off) and sweep throughput (16 jobs,
basic launcher and joblib with 2 workers).

Load tolerance: for the 64-wide nets numba's ratio to each peer is measured idle and then
with one core kept busy by a background process the bench starts and stops (``load.py``).

Modules by idea: ``shapes`` (what is measured, targets), ``runners`` (one per backend),
``timing`` (µs per step, GEMM rate), ``load`` (idle vs one core busy), ``coldstart`` (fresh
processes), ``tracking`` (MLflow and sweep overhead through the app), ``report`` (tables,
figure), ``__main__`` (the command).

Writes ``bench-results.json`` (one object per measurement plus the machine),
``bench-results.md`` (the tables, for the README) and ``bench-steps-per-second.png`` into
``--out`` (default: the current directory). ``--quick`` (under a minute: fewer, shorter rounds,
no 512-wide shape, no cold start, no app runs) is what the test suite runs.
"""

from .shapes import (  # noqa: E402,F401
    BACKENDS,
    DTYPES,
    GEMM_TARGET,
    QUICK_SHAPES,
    SHAPES,
    TARGETS,
    flops_per_step,
    shape_name,
)
