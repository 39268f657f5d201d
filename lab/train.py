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

from .budget import check_fits
from .history import layer_names
from .kernels.chunk import ChunkBuffers, ChunkOutput
from .kernels.chunk import activation_ranges as _activation_ranges
from .kernels.codes import (
    DELTA_LOG10_RANGE,
    LAYER_STAT_NAMES,
    S_ACCURACY,
    SCALAR_NAMES,
)

# about this many logged points per run when log_every is "auto"
AUTO_LOG_POINTS = 100


@functools.lru_cache(maxsize=64)
def _layer_index(depth):
    return tuple((s, l) for s in range(len(LAYER_STAT_NAMES)) for l in range(depth))


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def resolve_batch_size(batch_size, m):
    """int or "full" -> an int in [1, m], or ValueError."""
    if batch_size == "full":
        return m
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"train.batch_size={batch_size!r} is not valid; use an integer >= 1 "
                         f"or 'full' (train.batch_size=full)")
    if batch_size > m:
        raise ValueError(f"train.batch_size={batch_size} is larger than the {m} training "
                         f"examples; use train.batch_size<={m} or train.batch_size=full")
    return int(batch_size)


def log_steps(steps, log_every="auto"):
    """Logged steps: 0, every log_every, and the last step (steps - 1)."""
    if log_every == "auto":
        log_every = max(1, math.ceil(steps / AUTO_LOG_POINTS))
    if not _is_int(log_every) or log_every < 1:
        raise ValueError(f"tracking.log_every={log_every!r} is not valid; use an integer >= 1 "
                         f"or 'auto' (tracking.log_every=auto)")
    return np.unique(np.append(np.arange(0, steps, log_every), steps - 1)).astype(np.int64)


def evaluated_steps(logged):
    """The logged steps at which the test set is evaluated: at most about AUTO_LOG_POINTS of
    them, first and last included (auto logging gives AUTO_LOG_POINTS + 1 logged steps with
    the last one: every one is evaluated)."""
    every = max(1, math.ceil(len(logged) / (AUTO_LOG_POINTS + 1)))
    picked = np.asarray(logged)[::every]
    return picked if picked[-1] == logged[-1] else np.append(picked, logged[-1])


def check_settings(steps, batch_size, m, log_every="auto", divergence_threshold=np.inf):
    """Every rule about a run's settings for ``m`` training examples; ValueError naming the
    key. Returns (batch size, logged steps)."""
    if not _is_int(steps) or steps < 1:
        raise ValueError(f"train.steps={steps!r} is not valid; it must be an integer >= 1")
    if not divergence_threshold > 0:  # inf is allowed: never stop early
        raise ValueError(f"train.divergence_threshold={divergence_threshold!r} is not valid; "
                         "it must be a number > 0")
    return resolve_batch_size(batch_size, m), log_steps(int(steps), log_every)


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


class CallPacer:
    """Splits the steps between two logged steps into compiled calls of about
    ``CALL_SECONDS`` each, so that Python (a SIGINT, a SIGTERM) gets control back within about
    a second whatever the net's size; the calls' rows are joined into one chunk, whose
    histograms are those of its first step. Results do not depend on the split."""

    CALL_SECONDS = 1.0
    FIRST_CALL_STEPS = 4  # the first call measures a step's time

    def __init__(self):
        self.seconds_per_step = None

    def run(self, buffers, order, starts, counts):
        parts, k = [], 0
        while k < len(starts):
            if self.seconds_per_step is None:
                n = self.FIRST_CALL_STEPS
            else:
                n = max(1, int(self.CALL_SECONDS / max(self.seconds_per_step, 1e-9)))
            started = time.perf_counter()
            out = buffers.run(order, starts[k:k + n], counts[k:k + n])
            self.seconds_per_step = (time.perf_counter() - started) / max(out.done, 1)
            parts.append(out)
            k += out.done
            if out.diverged:
                break
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        return ChunkOutput(sum(p.done for p in parts), parts[-1].diverged,
                           np.concatenate([p.scalars[:p.done] for p in parts]),
                           np.concatenate([p.layer_stats[:p.done] for p in parts]),
                           first.hist_act, first.hist_delta)


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
        """Loss of the trained network on the whole training set (``final/loss/train``)."""
        return float(self.history["final/loss/train"])


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
    m = X.shape[1]
    size, logged = check_settings(steps, batch_size, m, log_every, divergence_threshold)
    examples = max(m, X_test.shape[1] if has_test else 0)
    check_fits(net.sizes, examples, steps, len(logged), net.dtype)
    schedule = BatchSchedule(m, size, seed)
    bounds = np.append(logged, steps)
    buffers = ChunkBuffers(net, optimizer, X, Y, loss_code, divergence_threshold)
    pacer = CallPacer()
    act_range = buffers.act_range
    classifier = loss != "mse"
    L = net.depth

    evaluated = set(evaluated_steps(logged).tolist()) if has_test else set()
    chunks, status, diverged_at, seconds = [], "completed", None, 0.0
    for t0, t1 in zip(bounds[:-1], bounds[1:]):
        started = time.perf_counter()
        evals = {}
        if int(t0) in evaluated:
            evals = _evaluate(net, loss_code, X_test, Y_test, "test", classifier)
        out = pacer.run(buffers, *schedule.chunk(int(t0), int(t1)))
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
    history = assemble_history(chunks, L, classifier, act_range)
    # the rows above describe the parameters *before* each update; the network that training
    # leaves behind is evaluated once more, on the whole training (and test) set
    updates = int(history["step"][-1]) + 1 - int(status == "diverged")
    history["final_step"] = np.array(updates, dtype=np.int64)  # updates applied in all
    final = _evaluate(net, loss_code, X, Y, "train", classifier)
    if has_test:
        final.update(_evaluate(net, loss_code, X_test, Y_test, "test", classifier))
    history.update({f"final/{name}": np.array(value) for name, value in final.items()})
    return TrainResult(status, diverged_at, history, seconds)


def _evaluate(net, loss_code, X, Y, split, classifier):
    """{"loss/<split>": ..., "accuracy/<split>": ...} of the network as it is now."""
    with np.errstate(all="ignore"):  # a diverged network overflows; the values say so
        value, acc = net.kernels.evaluate(net.theta, *net.layout, loss_code, X, Y)
    out = {f"loss/{split}": float(value)}
    if classifier:
        out[f"accuracy/{split}"] = float(acc)
    return out


def assemble_history(chunks, depth, classifier, act_range):
    """One array per metric name at full resolution, plus ``step``; evaluations under their
    names with ``eval_step``; histograms (n_logged, L, bins) with ``hist_step``."""
    history = {"step": np.concatenate([c.steps for c in chunks]).astype(np.int64)}
    per_chunk = [c.metrics(depth, classifier) for c in chunks]
    for name in per_chunk[0]:
        history[name] = np.concatenate([p[name] for p in per_chunk])
    evaluated = [c for c in chunks if c.evals]
    history["eval_step"] = np.array([c.steps[0] for c in evaluated], dtype=np.int64)
    for name in evaluated[0].evals if evaluated else ():
        history[name] = np.array([c.evals[name] for c in evaluated])
    history["hist_step"] = np.array([c.steps[0] for c in chunks], dtype=np.int64)
    history["hist/act"] = np.stack([c.hist_act for c in chunks])
    history["hist/delta"] = np.stack([c.hist_delta for c in chunks])
    history["hist/act_range"] = act_range
    history["hist/delta_log10_range"] = np.array(DELTA_LOG10_RANGE)
    return history
