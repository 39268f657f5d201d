"""``ChunkBuffers``: the one place a compiled training chunk is set up and called.

A kernel set's ``train_chunk`` takes 22 arrays and codes (the same signature in ``reference.py``,
``cpu.py`` and ``cuda.py``). ``lab.train``, the bench and the tests never write that call: they
build a ``ChunkBuffers`` for a network, an optimizer and a data set, then ``run`` chunks of steps
on a batch schedule. Duck-typed on ``net`` (``theta``, ``layout``, ``kernels``, ``depth``,
``hidden_code``, ``output_code``) and ``optimizer`` (``code``, ``t``, ``hyper``, ``state_for``), so
the kernels import nothing of the model layer.
"""

from dataclasses import dataclass

import numpy as np

from .codes import ACT_HIST_RANGE, HIST_BINS, LAYER_STAT_NAMES, SCALAR_NAMES


def activation_ranges(hidden_code, output_code, depth):
    """(depth, 2) histogram ranges of each layer's activations (fixed per activation)."""
    codes = [hidden_code] * (depth - 1) + [output_code]
    return np.array([ACT_HIST_RANGE[c] for c in codes], dtype=np.float64)


def full_batch_schedule(m, steps):
    """(order, starts, counts) for ``steps`` full-batch steps over m columns in their order."""
    return (np.arange(m, dtype=np.int64), np.zeros(steps, np.int64),
            np.full(steps, m, np.int64))


@dataclass
class ChunkOutput:
    """What one chunk produced: rows 0..done-1 of the per-step arrays, the first step's
    histograms, and whether the last step done diverged."""
    done: int
    diverged: bool
    scalars: np.ndarray  # (steps, len(SCALAR_NAMES))
    layer_stats: np.ndarray  # (steps, len(LAYER_STAT_NAMES), L)
    hist_act: np.ndarray  # (L, HIST_BINS)
    hist_delta: np.ndarray  # (L, HIST_BINS)


class ChunkBuffers:
    """The arrays a training chunk reads and writes besides the network's parameters: the
    optimizer's state, the data, the loss and hyper-parameter codes, the histogram ranges, and
    per-chunk output arrays. ``run`` advances ``optimizer.t`` by the updates applied.

    ``reuse=True`` in ``run`` keeps the output arrays between chunks of the same length (the
    bench's timing loop); by default each chunk gets fresh arrays that the caller may keep.
    """

    def __init__(self, net, optimizer, X, Y, loss_code, divergence_threshold=np.inf):
        self.net, self.optimizer = net, optimizer
        # C order: numba compiles a chunk once per array layout (a transposed one-hot Y would
        # compile every kernel of the chunk a second time)
        self.X, self.Y = np.ascontiguousarray(X), np.ascontiguousarray(Y)
        self.loss_code = int(loss_code)
        self.hyper = optimizer.hyper(divergence_threshold)
        self.vel, self.sq = optimizer.state_for(net.theta)
        self.act_range = activation_ranges(net.hidden_code, net.output_code, net.depth)
        self._kept = None

    def outputs(self, steps, reuse=False):
        """Output arrays for a chunk of ``steps`` steps (histograms zeroed)."""
        L = self.net.depth
        kept = self._kept
        if reuse and kept is not None and kept[0].shape[0] == steps:
            kept[2][...] = 0
            kept[3][...] = 0
            return kept
        out = (np.zeros((steps, len(SCALAR_NAMES))),
               np.zeros((steps, len(LAYER_STAT_NAMES), L)),
               np.zeros((L, HIST_BINS), np.int64), np.zeros((L, HIST_BINS), np.int64))
        if reuse:
            self._kept = out
        return out

    def run(self, order, starts, counts, reuse=False, **speed):
        """Steps k = 0..len(starts)-1 on columns order[starts[k]:starts[k] + counts[k]]; stops
        after a diverging step. ``speed`` (``plan``, ``threads``: the CPU kernels only) changes
        how fast, never the numbers."""
        net, opt = self.net, self.optimizer
        scalars, layer_stats, hist_act, hist_delta = self.outputs(len(starts), reuse)
        done, diverged = net.kernels.train_chunk(
            net.theta, self.vel, self.sq, *net.layout, self.loss_code, opt.code, self.hyper,
            opt.t, self.X, self.Y, order, starts, counts, scalars, layer_stats, hist_act,
            hist_delta, self.act_range, **speed)
        done, diverged = int(done), bool(diverged)
        opt.t += done - int(diverged)
        return ChunkOutput(done, diverged, scalars, layer_stats, hist_act, hist_delta)
