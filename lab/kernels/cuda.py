"""numba.cuda kernels: the GPU twin of ``cpu.py`` (same functions, signatures and numbers).

Runs on a real GPU, or on numba-cuda's simulator with ``NUMBA_ENABLE_CUDASIM=1`` (how the tests
run on machines without one). Importing this module compiles and launches nothing. This file is
the host side (device checks, workspaces, copies, launches, the public functions); the device
functions and kernels are ``cuda_device.py``.

Layout on the device: parameters, gradient and optimizer state are flat vectors in ``theta``'s
layout (see ``reference.py``); activations of all layers are stacked row-blocks of ``(units, m)``
buffers (``Z``, ``A`` and the backpropagated ``dZ``), examples along the contiguous axis, so
consecutive threads touch consecutive examples (coalesced loads and stores).

``train_chunk`` copies parameters, optimizer state, the batch schedule and the statistics arrays
to the device once, launches every step of the chunk with no host round trip (launches queue on
one stream), and copies everything back once. ``X``/``Y`` stay cached on the device between chunks
(keyed on the host array's identity, shape and a checksum). Divergence is decided on the device:
the update kernel reads the step's loss and gradient norm, and on divergence sets a flag that turns
every later kernel of the chunk into a no-op; the host reads the flag and step count once at the
end.

Launches per step (L weight layers): ``2 L + 3``
  - ``L`` forward: tiled ``W A + b`` and ``g`` fused, one kernel per layer (layer 1 also gathers
    the batch's columns of ``X`` through the shuffled order);
  - 1 output: softmax columns, loss terms, accuracy hits and ``dZ[L]`` (one thread per example);
  - ``L`` backward: one launch per layer whose blocks split between the tiled ``dW = dZ A^T``
    (+ ``db``) and the tiled ``dA = W^T dZ`` fused with ``* g'(Z)``;
  - 1 statistics: one block per layer (norms of ``dW``, ``dZ``, ``W``; activation mean and std in
    two passes; saturation; the first step's histograms with atomics) plus one block for the
    loss and accuracy;
  - 1 optimizer update over the flat parameters, one grid row per layer, that also decides
    divergence and finishes each layer's update ratio in its last block (atomic ticket).

Going further: (1) one persistent kernel per chunk for small nets: when every layer fits in one
block's shared memory (width <= ~64, batch <= ~256) a single block can run all steps of the chunk
with ``syncthreads`` between phases, so a chunk costs one launch; larger nets can do the same with a
cooperative grid sync between phases. (2) a population mode: the same kernel with a grid of many
independent nets of one shape (one block or block group per net, different seeds, inits or
learning rates) trains a whole sweep in one launch, which is where a GPU beats the CPU on the
small nets this lab studies. (3) float32 tiles: matmul tiles and accumulators are float64 for
every dtype (exact float64 results; float32 nets pay the float64 rate).
"""

import weakref
import zlib
from collections import OrderedDict

import numpy as np

from .codes import ADAM, BCE, CROSS_ENTROPY, MOMENTUM, RMSPROP, SOFTMAX
from .cuda_device import (  # noqa: F401  (SIMULATOR, NO_DEVICE: part of this module's API)
    NO_DEVICE,
    SIMULATOR,
    THREADS,
    TILE,
    _backward_layer,
    _forward_layer,
    _output_layer,
    _softmax_kernel,
    _step_stats,
    _update_flat,
    _update_step,
    cuda,
)
from .tuning import CUDA_PARAMS_PER_THREAD

# --- host side: device check, caches, workspaces ----------------------------------------------------

_device_ok = False


def require_device():
    """ValueError (one line) unless a GPU or the simulator is there."""
    global _device_ok
    if SIMULATOR or _device_ok:
        return
    try:
        _device_ok = bool(cuda.is_available())
    except Exception:  # a broken driver install reads as "no device"
        _device_ok = False
    if not _device_ok:
        raise ValueError(NO_DEVICE)


def _cdiv(a, b):
    return -(-int(a) // int(b))


def _fingerprint(a):
    """Cheap check that a cached host array still holds what was copied: shape, dtype, the sum,
    and a hash of up to 4096 evenly spaced entries."""
    flat = a.reshape(-1)
    sample = flat[::max(1, flat.size // 4096)]
    return a.shape, a.dtype.str, float(np.sum(flat)), zlib.crc32(np.ascontiguousarray(sample))


class _DeviceCopies:
    """Device copies of a few host arrays that do not change while training (X, Y, test sets)."""

    def __init__(self, size=4):
        self.size = size
        self.entries = OrderedDict()  # id -> (weakref, fingerprint, device array)

    def get(self, a):
        key = id(a)
        fp = _fingerprint(a)
        hit = self.entries.get(key)
        if hit is not None and hit[0]() is a and hit[1] == fp:
            self.entries.move_to_end(key)
            return hit[2]
        dev = cuda.to_device(a)
        try:
            ref = weakref.ref(a, lambda _r, key=key: self.entries.pop(key, None))
        except TypeError:  # not weak-referenceable: copy every time
            return dev
        self.entries[key] = (ref, fp, dev)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return dev


class _Workspace:
    """Device buffers and per-layer views for one layout, batch width and dtype."""

    def __init__(self, sizes, w_off, b_off, width, dtype, n_params):
        self.sizes_h = [int(s) for s in sizes]
        L = self.L = len(self.sizes_h) - 1
        self.width = width
        units = sum(self.sizes_h[1:])
        uoff = np.zeros(L, np.int64)
        uoff[1:] = np.cumsum(self.sizes_h[1:-1])
        self.z, self.a, self.d = (cuda.device_array((units, width), dtype) for _ in range(3))
        self.xb = cuda.device_array((self.sizes_h[0], width), dtype)
        self.theta, self.vel, self.sq, self.grad = (
            cuda.device_array(n_params, dtype) for _ in range(4))
        self.lossc = cuda.device_array(width, np.float64)
        self.hits = cuda.device_array(width, np.float64)
        self.gparts = cuda.device_array(L, np.float64)
        self.moved = cuda.to_device(np.zeros(L))
        self.tickets = cuda.to_device(np.zeros(L, np.int64))
        self.status = cuda.to_device(np.zeros(2, np.int64))
        self.sizes = cuda.to_device(np.asarray(self.sizes_h, np.int64))
        self.w_off = cuda.to_device(np.asarray(w_off, np.int64))
        self.b_off = cuda.to_device(np.asarray(b_off, np.int64))
        self.uoff = cuda.to_device(uoff)
        self.ident_order = cuda.to_device(np.arange(width, dtype=np.int64))
        self.ident_starts = cuda.to_device(np.zeros(1, np.int64))
        self.ident_counts = cuda.to_device(np.array([width], np.int64))
        self.W, self.b, self.gW, self.gb, self.Z, self.A, self.D = ([] for _ in range(7))
        for l in range(L):
            n_in, n_out = self.sizes_h[l], self.sizes_h[l + 1]
            wo, bo, uo = int(w_off[l]), int(b_off[l]), int(uoff[l])
            self.W.append(self.theta[wo:wo + n_out * n_in].reshape(n_out, n_in))
            self.b.append(self.theta[bo:bo + n_out])
            self.gW.append(self.grad[wo:wo + n_out * n_in].reshape(n_out, n_in))
            self.gb.append(self.grad[bo:bo + n_out])
            self.Z.append(self.z[uo:uo + n_out])
            self.A.append(self.a[uo:uo + n_out])
            self.D.append(self.d[uo:uo + n_out])
        # launch geometry: (grid, block) per kernel (configured at each call: the simulator keeps
        # only a kernel's latest configuration)
        self.tile_block = (TILE, TILE)
        self.fwd_grid = [(_cdiv(width, TILE), _cdiv(n, TILE)) for n in self.sizes_h[1:]]
        self.bwd_grid, self.n_wblocks = [], []
        for l in range(L):
            n_in, n_out = self.sizes_h[l], self.sizes_h[l + 1]
            n_w = _cdiv(n_out, TILE) * _cdiv(n_in, TILE)
            n_a = _cdiv(n_in, TILE) * _cdiv(width, TILE) if l > 0 else 0
            self.bwd_grid.append(n_w + n_a)
            self.n_wblocks.append(n_w)
        per_block = THREADS * CUDA_PARAMS_PER_THREAD
        widest = max(self.sizes_h[l] * self.sizes_h[l + 1] + self.sizes_h[l + 1] for l in range(L))
        self.update_grid = (_cdiv(widest, per_block), L)

    def reset_status(self):
        self.status.copy_to_device(np.zeros(2, np.int64))
        self.moved.copy_to_device(np.zeros(self.L))
        self.tickets.copy_to_device(np.zeros(self.L, np.int64))

    # -- passes (queued on the default stream; nothing waits for the device) ----------------------
    def forward(self, codes, X, order, starts, counts, gather, k):
        for l in range(self.L):
            P = X if l == 0 else self.A[l - 1]
            _forward_layer[self.fwd_grid[l], self.tile_block](
                self.W[l], self.b[l], P, X, order, starts, counts, gather if l == 0 else 0,
                self.xb, codes[l], self.Z[l], self.A[l], self.status, k)

    def output(self, out_act, loss_code, Y, order, starts, counts, k):
        L = self.L
        _output_layer[_cdiv(self.width, THREADS), THREADS](
            out_act, loss_code, self.Z[L - 1], self.A[L - 1], Y, order, starts, counts,
            self.D[L - 1], self.lossc, self.hits, self.status, k)

    def backward(self, hidden_act, A0, counts, k):
        for l in range(self.L - 1, -1, -1):
            P = A0 if l == 0 else self.A[l - 1]
            below = max(l - 1, 0)  # layer l-1's buffers (unused when l == 0)
            _backward_layer[self.bwd_grid[l], self.tile_block](
                self.W[l], self.D[l], P, self.gW[l], self.gb[l], self.D[below], self.Z[below],
                self.A[below], hidden_act, self.n_wblocks[l], counts, self.status, k)


_workspaces = OrderedDict()
_copies = _DeviceCopies()


def _workspace(theta, sizes, w_off, b_off, width):
    key = (tuple(int(s) for s in sizes), tuple(int(o) for o in w_off),
           tuple(int(o) for o in b_off), int(width), theta.dtype.str, theta.shape[0])
    ws = _workspaces.get(key)
    if ws is None:
        ws = _Workspace(sizes, w_off, b_off, int(width), theta.dtype, theta.shape[0])
        _workspaces[key] = ws
        while len(_workspaces) > 4:
            _workspaces.popitem(last=False)
    else:
        _workspaces.move_to_end(key)
    return ws


def _codes(L, hidden_act, out_act):
    return [int(hidden_act)] * (L - 1) + [int(out_act)]


def _host(a):
    return np.ascontiguousarray(a)


def _run_forward(theta, sizes, w_off, b_off, hidden_act, out_act, X):
    """Workspace after a forward pass over all columns of X (no gather)."""
    require_device()
    X = _host(X)
    m = X.shape[1]
    ws = _workspace(theta, sizes, w_off, b_off, m)
    ws.reset_status()
    ws.theta.copy_to_device(_host(theta))
    X_d = cuda.to_device(X)
    ws.forward(_codes(ws.L, hidden_act, out_act), X_d, ws.ident_order, ws.ident_starts,
               ws.ident_counts, 0, 0)
    return ws, X_d


def _run_output(ws, out_act, loss_code, Y):
    Y_d = cuda.to_device(_host(Y))
    ws.output(int(out_act), int(loss_code), Y_d, ws.ident_order, ws.ident_starts,
              ws.ident_counts, 0)


def _loss_and_accuracy(ws, loss_code, n_y):
    m = ws.width
    total = ws.lossc.copy_to_host().sum()
    hits = ws.hits.copy_to_host().sum()
    if loss_code == BCE:
        acc = hits / (n_y * m)
    elif loss_code == CROSS_ENTROPY:
        acc = hits / m
    else:
        acc = np.nan
    return float(total / m), float(acc)


# --- public kernels (same signatures as reference.py) ------------------------------------------------

def forward(theta, sizes, w_off, b_off, hidden_act, out_act, X):
    ws, _ = _run_forward(theta, sizes, w_off, b_off, hidden_act, out_act, X)
    L = ws.L
    if out_act == SOFTMAX:
        _softmax_kernel[_cdiv(ws.width, THREADS), THREADS](ws.Z[L - 1], ws.A[L - 1], ws.width)
    return ws.A[L - 1].copy_to_host()


def evaluate(theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, X, Y):
    """(loss, accuracy) on a whole data set; the device copy of X, Y is cached between calls."""
    require_device()
    X, Y = _host(X), _host(Y)
    ws = _workspace(theta, sizes, w_off, b_off, X.shape[1])
    ws.reset_status()
    ws.theta.copy_to_device(_host(theta))
    X_d, Y_d = _copies.get(X), _copies.get(Y)
    ws.forward(_codes(ws.L, hidden_act, out_act), X_d, ws.ident_order, ws.ident_starts,
               ws.ident_counts, 0, 0)
    ws.output(int(out_act), int(loss_code), Y_d, ws.ident_order, ws.ident_starts,
              ws.ident_counts, 0)
    return _loss_and_accuracy(ws, loss_code, Y.shape[0])


def gradients(theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, X, Y):
    ws, X_d = _run_forward(theta, sizes, w_off, b_off, hidden_act, out_act, X)
    _run_output(ws, out_act, loss_code, Y)
    ws.backward(int(hidden_act), X_d, ws.ident_counts, 0)
    loss, _ = _loss_and_accuracy(ws, loss_code, int(sizes[-1]))
    return loss, ws.grad.copy_to_host()


def update(theta, grad, vel, sq, opt_code, hyper, t):
    """One optimizer update of the host arrays theta, vel, sq in place."""
    require_device()
    arrays = [cuda.to_device(_host(a)) for a in (theta, grad, vel, sq)]
    n = theta.shape[0]
    _update_flat[_cdiv(n, THREADS), THREADS](*arrays, int(opt_code),
                                             cuda.to_device(_host(hyper)), int(t))
    for host, dev in ((theta, arrays[0]), (vel, arrays[2]), (sq, arrays[3])):
        host[...] = dev.copy_to_host()


def train_chunk(theta, vel, sq, sizes, w_off, b_off, hidden_act, out_act, loss_code, opt_code,
                hyper, t_start, X, Y, order, starts, counts, scalars, layer_stats,
                hist_act, hist_delta, act_range):
    """Run len(starts) optimizer steps on the device (see reference.train_chunk); host arrays
    theta, vel, sq, scalars, layer_stats and the histograms are updated on return."""
    require_device()
    n = int(starts.shape[0])
    ws = _workspace(theta, sizes, w_off, b_off, int(np.max(counts)))
    L = ws.L
    ws.reset_status()
    ws.theta.copy_to_device(_host(theta))
    uses_vel = opt_code in (MOMENTUM, ADAM)
    uses_sq = opt_code in (RMSPROP, ADAM)
    if uses_vel:
        ws.vel.copy_to_device(_host(vel))
    if uses_sq:
        ws.sq.copy_to_device(_host(sq))
    X_d, Y_d = _copies.get(_host(X)), _copies.get(_host(Y))
    order_d, starts_d, counts_d = (cuda.to_device(_host(a).astype(np.int64, copy=False))
                                   for a in (order, starts, counts))
    outputs = [cuda.to_device(_host(a)) for a in (scalars, layer_stats, hist_act, hist_delta)]
    scalars_d, stats_d, hist_act_d, hist_delta_d = outputs
    hyper_d = cuda.to_device(_host(hyper).astype(np.float64, copy=False))
    range_d = cuda.to_device(_host(act_range).astype(np.float64, copy=False))
    codes = _codes(L, hidden_act, out_act)
    hidden_act, out_act, loss_code, opt_code = (int(c) for c in (hidden_act, out_act, loss_code,
                                                                 opt_code))
    for k in range(n):
        ws.forward(codes, X_d, order_d, starts_d, counts_d, 1, k)
        ws.output(out_act, loss_code, Y_d, order_d, starts_d, counts_d, k)
        ws.backward(hidden_act, ws.xb, counts_d, k)
        _step_stats[L + 1, THREADS](
            ws.theta, ws.grad, ws.sizes, ws.w_off, ws.b_off, ws.uoff, hidden_act, out_act,
            loss_code, ws.z, ws.a, ws.d, ws.lossc, ws.hits, counts_d, scalars_d, stats_d,
            ws.gparts, hist_act_d, hist_delta_d, range_d, ws.status, k)
        _update_step[ws.update_grid, THREADS](
            ws.theta, ws.grad, ws.vel, ws.sq, ws.sizes, ws.w_off, ws.b_off, opt_code, hyper_d,
            scalars_d, stats_d, ws.gparts, ws.moved, ws.tickets, ws.status,
            int(t_start) + k + 1, k)
    # one copy back per chunk
    status = ws.status.copy_to_host()
    theta[...] = ws.theta.copy_to_host()
    if uses_vel:
        vel[...] = ws.vel.copy_to_host()
    if uses_sq:
        sq[...] = ws.sq.copy_to_host()
    for host, dev in zip((scalars, layer_stats, hist_act, hist_delta), outputs):
        host[...] = dev.copy_to_host()
    if status[0]:
        return int(status[1]), True
    return n, False
