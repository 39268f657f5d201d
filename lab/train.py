"""The training loop: compiled chunks of optimizer steps, Python only between chunks.

Step ``t`` records the statistics of the parameters after ``t`` updates (loss, gradients and
activations on step ``t``'s batch) and the update applied at step ``t``. Chunks start at the
logged steps, so the test set is evaluated exactly at the parameters each logged row describes.
Nothing here imports MLflow or Hydra: progress and logging attach through ``on_chunk``.
"""

import functools
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .kernels.chunk import ChunkBuffers
from .kernels.chunk import activation_ranges as _activation_ranges
from .kernels.codes import (
    DELTA_LOG10_RANGE,
    LAYER_STAT_NAMES,
    S_ACCURACY,
    SCALAR_NAMES,
)

# about this many logged points per run when log_every is "auto"
AUTO_LOG_POINTS = 100


def layer_key(stat, layer, depth):
    """``grad_norm/layer_01``: layers 1-based, zero-padded to the width of L (at least 2)."""
    return f"{stat}/layer_{layer:0{max(2, len(str(depth)))}d}"


@functools.lru_cache(maxsize=64)
def layer_names(depth):
    """Every per-layer metric name, stat-major: grad_norm/layer_01 ... update_ratio/layer_L."""
    return tuple(layer_key(stat, l + 1, depth) for stat in LAYER_STAT_NAMES for l in range(depth))


@functools.lru_cache(maxsize=64)
def _layer_index(depth):
    return tuple((s, l) for s in range(len(LAYER_STAT_NAMES)) for l in range(depth))


def resolve_batch_size(batch_size, m):
    """int or "full" -> an int in [1, m], or ValueError."""
    if batch_size == "full":
        return m
    try:
        size = int(batch_size)
    except (TypeError, ValueError):
        size = None
    if size is None or size != batch_size or size < 1:
        raise ValueError(f"train.batch_size must be a positive integer or 'full', got "
                         f"{batch_size!r}")
    if size > m:
        raise ValueError(f"train.batch_size={size} exceeds the {m} training examples; use at "
                         f"most {m} or 'full'")
    return size


def log_steps(steps, log_every="auto"):
    """Logged steps: 0, every log_every, and the last step (steps - 1)."""
    if log_every == "auto":
        log_every = max(1, math.ceil(steps / AUTO_LOG_POINTS))
    if isinstance(log_every, bool) or not isinstance(log_every, (int, np.integer)) or log_every < 1:
        raise ValueError(f"tracking.log_every must be a positive integer or 'auto', got "
                         f"{log_every!r}")
    return np.unique(np.append(np.arange(0, steps, log_every), steps - 1)).astype(np.int64)


class BatchSchedule:
    """Which columns each step uses: epochs are seeded permutations split into batches of
    ``batch_size`` (the last one may be shorter); a full batch keeps the natural order."""

    def __init__(self, m, batch_size, seed):
        self.m, self.batch_size, self.seed = m, batch_size, seed
        self.per_epoch = math.ceil(m / batch_size)

    def epoch_order(self, epoch):
        if self.batch_size == self.m:
            return np.arange(self.m, dtype=np.int64)
        return np.random.default_rng([self.seed, epoch]).permutation(self.m).astype(np.int64)

    def chunk(self, t0, t1):
        """(order, starts, counts) for steps t0..t1-1, indices into a concatenation of epochs."""
        steps = np.arange(t0, t1)
        epochs, within = np.divmod(steps, self.per_epoch)
        first = epochs[0]
        order = np.concatenate([self.epoch_order(e) for e in range(first, epochs[-1] + 1)])
        starts = (epochs - first) * self.m + within * self.batch_size
        counts = np.minimum(self.batch_size, self.m - within * self.batch_size)
        return order, starts.astype(np.int64), counts.astype(np.int64)


@dataclass
class Chunk:
    """What one compiled call produced: rows for ``steps``; ``evals`` and histograms describe
    ``steps[0]`` (a logged step)."""
    steps: np.ndarray
    scalars: np.ndarray  # (n, len(SCALAR_NAMES))
    layer_stats: np.ndarray  # (n, len(LAYER_STAT_NAMES), L)
    evals: dict
    hist_act: np.ndarray  # (L, HIST_BINS) counts
    hist_delta: np.ndarray
    diverged: bool
    seconds: float

    def metrics(self, depth, classifier, rows=slice(None)):
        """{metric name: values at ``rows`` of self.steps} in the MLflow contract's names."""
        out = {name: self.scalars[rows, i] for i, name in enumerate(SCALAR_NAMES)
               if classifier or i != S_ACCURACY}
        for (s, l), name in zip(_layer_index(depth), layer_names(depth)):
            out[name] = self.layer_stats[rows, s, l]
        return out


@dataclass
class TrainResult:
    status: str  # "completed" | "diverged"
    diverged_at_step: int | None
    history: dict = field(repr=False)  # every per-step statistic plus evals and histograms
    seconds: float = 0.0  # wall time inside compiled chunks and evaluations

    @property
    def final_loss(self):
        losses = self.history["loss/train"]
        return float(losses[-1]) if len(losses) else float("nan")


def activation_ranges(net):
    return _activation_ranges(net.hidden_code, net.output_code, net.depth)


def train(net, optimizer, X, Y, *, steps, batch_size="full", loss="mse", seed=0,
          divergence_threshold=np.inf, log_every="auto", X_test=None, Y_test=None,
          on_chunk=None):
    """Train ``net`` in place for ``steps`` updates; returns a TrainResult.

    ``on_chunk(chunk)`` is called after every compiled chunk (to log, to show progress).
    """
    loss_code = net.loss_code(loss)
    X, Y = net.check_inputs(X, Y)
    has_test = X_test is not None and Y_test is not None and np.size(X_test) > 0
    if has_test:
        X_test, Y_test = net.check_inputs(X_test, Y_test)
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"train.steps must be a positive integer, got {steps!r}")
    m = X.shape[1]
    schedule = BatchSchedule(m, resolve_batch_size(batch_size, m), seed)
    logged = log_steps(int(steps), log_every)
    bounds = np.append(logged, steps)
    buffers = ChunkBuffers(net, optimizer, X, Y, loss_code, divergence_threshold)
    act_range = buffers.act_range
    classifier = loss != "mse"
    L = net.depth

    chunks, status, diverged_at, seconds = [], "completed", None, 0.0
    for t0, t1 in zip(bounds[:-1], bounds[1:]):
        started = time.perf_counter()
        evals = {}
        if has_test:
            test_loss, test_acc = net.kernels.evaluate(net.theta, *net.layout, loss_code,
                                                       X_test, Y_test)
            evals["loss/test"] = float(test_loss)
            if classifier:
                evals["accuracy/test"] = float(test_acc)
        out = buffers.run(*schedule.chunk(int(t0), int(t1)))
        done, diverged = out.done, out.diverged
        chunk = Chunk(np.arange(t0, t0 + done), out.scalars[:done], out.layer_stats[:done],
                      evals, out.hist_act, out.hist_delta, diverged,
                      time.perf_counter() - started)
        seconds += chunk.seconds
        chunks.append(chunk)
        if on_chunk is not None:
            on_chunk(chunk)
        if diverged:
            status, diverged_at = "diverged", int(t0 + done - 1)
            break
    return TrainResult(status, diverged_at, assemble_history(chunks, L, classifier, act_range),
                       seconds)


def assemble_history(chunks, depth, classifier, act_range):
    """One array per metric name at full resolution, plus ``step``; evaluations under their
    names with ``eval_step``; histograms (n_logged, L, bins) with ``hist_step``."""
    history = {"step": np.concatenate([c.steps for c in chunks]).astype(np.int64)}
    per_chunk = [c.metrics(depth, classifier) for c in chunks]
    for name in per_chunk[0]:
        history[name] = np.concatenate([p[name] for p in per_chunk])
    history["eval_step"] = np.array([c.steps[0] for c in chunks], dtype=np.int64)
    for name in chunks[0].evals:
        history[name] = np.array([c.evals[name] for c in chunks])
    history["hist_step"] = history["eval_step"]
    history["hist/act"] = np.stack([c.hist_act for c in chunks])
    history["hist/delta"] = np.stack([c.hist_delta for c in chunks])
    history["hist/act_range"] = act_range
    history["hist/delta_log10_range"] = np.array(DELTA_LOG10_RANGE)
    return history
