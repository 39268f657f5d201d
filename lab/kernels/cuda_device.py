"""Device side of the CUDA kernels: ``@cuda.jit`` device functions and kernels, and the launch
geometry they are compiled with. The host side (workspaces, copies, launches, the public
functions) is ``cuda.py``; the formulas are ``cpu.py``'s, and the tests compare both with the CPU
and with the numpy reference.

Importing this module compiles and launches nothing; it raises one ``ValueError`` line when
numba.cuda cannot be imported at all.
"""

import math
import sys
import warnings

import numpy as np

from .codes import (
    BCE,
    CROSS_ENTROPY,
    H_BETA,
    H_BETA1,
    H_BETA2,
    H_EPS,
    H_LR,
    H_THRESHOLD,
    L_ACT_MEAN,
    L_ACT_STD,
    L_DELTA,
    L_GRAD,
    L_SATURATION,
    L_UPDATE,
    L_WEIGHT,
    LEAKY_RELU,
    LEAKY_SLOPE,
    MOMENTUM,
    MSE,
    RELU,
    RMSPROP,
    S_ACCURACY,
    S_GRAD_TOTAL,
    S_LOSS,
    SATURATION_SHARE,
    SGD,
    SIGMOID,
    SOFTMAX,
    TANH,
    delta_bin,
)
from .tuning import (
    CUDA_SIM_THREADS,
    CUDA_SIM_TILE,
    CUDA_THREADS,
    CUDA_TILE,
)

try:
    from numba import cuda
except ImportError as err:  # e.g. the CUDA Python bindings are missing: fail in one line
    raise ValueError("no CUDA device; numba.cuda does not import ("
                     f"{(str(err).strip() or type(err).__name__).splitlines()[0]}); use "
                     "backend=cpu") from None
try:  # numba-cuda keeps its own config (read when numba.cuda was first imported)
    from numba.cuda.core import config as _cuda_config
except ImportError:  # pragma: no cover - older numba-cuda
    from numba.core import config as _cuda_config

NO_DEVICE = "no CUDA device; use backend=cpu or set NUMBA_ENABLE_CUDASIM=1 for the simulator"
SIMULATOR = bool(_cuda_config.ENABLE_CUDASIM)

# launch geometry (compile-time constants of the kernels)
TILE = CUDA_SIM_TILE if SIMULATOR else CUDA_TILE
THREADS = CUDA_SIM_THREADS if SIMULATOR else CUDA_THREADS
N_RED = 6  # values reduced at once by the statistics kernel
TILE_PAD = TILE + 1  # row length of transposed-read tiles: no shared-memory bank conflicts

# small nets launch small grids on purpose; numba warns about every such launch
warnings.filterwarnings("ignore", message=r"Grid size \d+ will likely result in GPU under-utilization")

kernel = cuda.jit(cache=True)
device = cuda.jit(device=True)


def _fix_simulator_shared_arrays():
    """The simulator finds a block's shared array by call site with a check-then-set that two of
    its Python threads can interleave, handing them different arrays (sporadic wrong results);
    dict.setdefault makes that lookup atomic."""
    from numba.cuda.simulator import kernelapi

    shared = kernelapi.FakeCUDAShared
    if getattr(shared, "_lab_atomic", False):
        return
    original = shared.array

    def array(self, shape, dtype, alignment=None):
        if alignment is not None or shape == 0:
            return original(self, shape, dtype, alignment)
        if not isinstance(dtype, np.dtype) and not isinstance(dtype, type):
            dtype = kernelapi.numpy_support.as_dtype(dtype)
        caller = sys._getframe(1)
        return self._allocations.setdefault((caller.f_code.co_filename, caller.f_lineno),
                                            np.empty(shape, dtype))

    shared.array = array
    shared._lab_atomic = True


if SIMULATOR:
    _fix_simulator_shared_arrays()


# --- device functions: activations, slopes, saturation, histogram bins ----------------------------

@device
def _sigmoid(z):
    e = math.exp(-abs(z))
    return 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)


@device
def _activate(code, z):
    """g(z) for the elementwise activations; softmax is finished per column (output kernel)."""
    if code == SIGMOID:
        return _sigmoid(z)
    if code == TANH:
        return math.tanh(z)
    if code == RELU:
        return z if z > 0 else 0.0
    if code == LEAKY_RELU:
        return z if z > 0 else LEAKY_SLOPE * z
    return z  # IDENTITY, SOFTMAX (placeholder)


@device
def _times_slope(code, d, z, a):
    """d * g'(z) given a = g(z): sigmoid a (1 - a), tanh 1 - a^2, ReLU [z > 0], leaky ReLU
    1 or LEAKY_SLOPE (the expressions of cpu.py's slope rows)."""
    if code == SIGMOID:
        return d * (a * (1.0 - a))
    if code == TANH:
        return d * (1.0 - a * a)
    if code == RELU:
        return 0.0 if z <= 0 else d
    if code == LEAKY_RELU:
        return d * LEAKY_SLOPE if z <= 0 else d
    return d


@device
def _is_saturated(code, z, a):
    if code == SIGMOID or code == SOFTMAX:
        return a * (1.0 - a) < SATURATION_SHARE * 0.25
    if code == TANH:
        return 1.0 - a * a < SATURATION_SHARE
    if code == RELU or code == LEAKY_RELU:
        return z <= 0
    return False


@device
def _bin(v, lo, hi, nb):
    """Bin of v among nb on [lo, hi] (cpu._histogram's): outside (and NaN-low) values go to the
    end bins."""
    if not v > lo:
        return 0
    if v >= hi:
        return nb - 1
    return min(int(math.floor((v - lo) * (nb / (hi - lo)))), nb - 1)


_delta_bin = device(delta_bin)  # (lab/kernels/codes.py: shared with the CPU kernels)


@device
def _softmax_column(Z, A, j):
    n = Z.shape[0]
    zmax = Z[0, j]
    for i in range(1, n):
        zmax = max(zmax, Z[i, j])
    total = 0.0
    for i in range(n):
        A[i, j] = math.exp(Z[i, j] - zmax)
        total += A[i, j]
    for i in range(n):
        A[i, j] /= total


@device
def _block_reduce(red, nv):
    """Sum red[v, :blockDim.x] into red[v, 0] for v < nv (any block size); all threads see it."""
    t = cuda.threadIdx.x
    n = cuda.blockDim.x
    cuda.syncthreads()
    while n > 1:
        half = (n + 1) // 2
        if t < n - half:
            for v in range(nv):
                red[v, t] += red[v, t + half]
        cuda.syncthreads()
        n = half


@device
def _update_ratio(step_norm, w_norm):
    if w_norm > 0:
        return step_norm / w_norm
    return math.inf if step_norm > 0 else 0.0


@device
def _apply_update(theta, grad, vel, sq, p, opt_code, lr, beta, beta1, beta2, eps, c1, c2):
    """One parameter's optimizer step in place (cpu._update_segment's expressions); the step."""
    if opt_code == SGD:
        step = lr * grad[p]
    elif opt_code == MOMENTUM:
        vel[p] = beta * vel[p] + (1 - beta) * grad[p]
        step = lr * vel[p]
    elif opt_code == RMSPROP:
        sq[p] = beta2 * sq[p] + (1 - beta2) * grad[p] * grad[p]
        step = lr * grad[p] / (math.sqrt(sq[p]) + eps)
    else:  # ADAM
        vel[p] = beta1 * vel[p] + (1 - beta1) * grad[p]
        sq[p] = beta2 * sq[p] + (1 - beta2) * grad[p] * grad[p]
        step = lr * (vel[p] / c1) / (math.sqrt(sq[p] / c2) + eps)
    theta[p] -= step
    return step


# --- kernels ----------------------------------------------------------------------------------------
# Every kernel of a step returns at once when status[0] is set (an earlier step diverged); only
# the update kernel sets it, and all its threads reach the same decision.

@kernel
def _forward_layer(W, b, P, X, order, starts, counts, gather, xb, code, Z, A, status, k):
    """Z = W P + b, A = g(Z) on TILE x TILE output tiles; P = X[:, order[batch]] when gather
    (and the blocks of the first tile row store it in xb for the backward pass)."""
    if status[0] != 0:
        return
    Ws = cuda.shared.array((TILE, TILE), np.float64)
    Ps = cuda.shared.array((TILE, TILE), np.float64)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    j = cuda.blockIdx.x * TILE + tx
    i = cuda.blockIdx.y * TILE + ty
    n_out, n_in = W.shape
    m = counts[k]
    base = starts[k]
    acc = 0.0
    for t0 in range(0, n_in, TILE):
        c = t0 + tx
        Ws[ty, tx] = W[i, c] if i < n_out and c < n_in else 0.0
        r = t0 + ty
        v = 0.0
        if r < n_in and j < m:
            if gather:
                v = X[r, order[base + j]]
                if cuda.blockIdx.y == 0:
                    xb[r, j] = v
            else:
                v = P[r, j]
        Ps[ty, tx] = v
        cuda.syncthreads()
        for kk in range(min(TILE, n_in - t0)):
            acc += Ws[ty, kk] * Ps[kk, tx]
        cuda.syncthreads()
    if i < n_out and j < m:
        Z[i, j] = acc + b[i]
        A[i, j] = _activate(code, Z[i, j])


@kernel
def _softmax_kernel(Z, A, m):
    j = cuda.grid(1)
    if j < m:
        _softmax_column(Z, A, j)


@kernel
def _output_layer(out_act, loss_code, Z, A, Y, order, starts, counts, dZ, lossc, hits, status, k):
    """Per example j: softmax (if any), its loss terms, accuracy hits and dZ[L] (1/m folded in)."""
    if status[0] != 0:
        return
    j = cuda.grid(1)
    m = counts[k]
    if j >= m:
        return
    col = order[starts[k] + j]
    n = Z.shape[0]
    if out_act == SOFTMAX:
        _softmax_column(Z, A, j)
    total = 0.0
    if loss_code == MSE:
        for i in range(n):
            diff = A[i, j] - Y[i, col]
            total += diff * diff
            dZ[i, j] = _times_slope(out_act, (2.0 / m) * diff, Z[i, j], A[i, j])
    else:
        if loss_code == BCE:
            for i in range(n):
                z = Z[i, j]
                total += max(z, 0.0) - Y[i, col] * z + math.log1p(math.exp(-abs(z)))
        else:  # CROSS_ENTROPY over the softmax column
            zmax = Z[0, j]
            for i in range(1, n):
                zmax = max(zmax, Z[i, j])
            s = 0.0
            for i in range(n):
                s += math.exp(Z[i, j] - zmax)
            lse = zmax + math.log(s)
            for i in range(n):
                total += Y[i, col] * (lse - Z[i, j])
        for i in range(n):
            dZ[i, j] = (A[i, j] - Y[i, col]) / m
    lossc[j] = total
    h = 0.0
    if loss_code == BCE:
        for i in range(n):
            if (A[i, j] > 0.5) == (Y[i, col] > 0.5):
                h += 1.0
    elif loss_code == CROSS_ENTROPY:
        best_a = 0
        best_y = 0
        for i in range(1, n):
            if A[i, j] > A[best_a, j]:
                best_a = i
            if Y[i, col] > Y[best_y, col]:
                best_y = i
        if best_a == best_y:
            h = 1.0
    hits[j] = h


@kernel
def _backward_layer(W, dZ, P, gW, gb, dA, Zp, Ap, hidden_act, n_wblocks, counts, status, k):
    """Blocks [0, n_wblocks): a tile of dW = dZ P^T and (first tile column) db = row sums of dZ.
    Blocks after: a tile of dA = (W^T dZ) * g'(Zp), the previous layer's error."""
    if status[0] != 0:
        return
    S1 = cuda.shared.array((TILE, TILE), np.float64)
    S2 = cuda.shared.array((TILE, TILE_PAD), np.float64)  # read as S2[tx, kk] too
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    n_out, n_in = W.shape
    m = counts[k]
    bid = cuda.blockIdx.x
    if bid < n_wblocks:
        n_cols = (n_in + TILE - 1) // TILE
        i = (bid // n_cols) * TILE + ty
        c0 = (bid % n_cols) * TILE
        with_db = bid % n_cols == 0 and tx == 0
        acc = 0.0
        acc_b = 0.0
        for t0 in range(0, m, TILE):
            col = t0 + tx
            S1[ty, tx] = dZ[i, col] if i < n_out and col < m else 0.0
            S2[ty, tx] = P[c0 + ty, col] if c0 + ty < n_in and col < m else 0.0
            cuda.syncthreads()
            kmax = min(TILE, m - t0)
            for kk in range(kmax):
                acc += S1[ty, kk] * S2[tx, kk]
            if with_db:
                for kk in range(kmax):
                    acc_b += S1[ty, kk]
            cuda.syncthreads()
        if i < n_out and c0 + tx < n_in:
            gW[i, c0 + tx] = acc
        if with_db and i < n_out:
            gb[i] = acc_b
    else:
        b2 = bid - n_wblocks
        n_cols = (dA.shape[1] + TILE - 1) // TILE
        r0 = (b2 // n_cols) * TILE
        c = r0 + ty
        j = (b2 % n_cols) * TILE + tx
        acc = 0.0
        for t0 in range(0, n_out, TILE):
            row = t0 + ty
            S1[ty, tx] = W[row, r0 + tx] if row < n_out and r0 + tx < n_in else 0.0
            S2[ty, tx] = dZ[row, j] if row < n_out and j < m else 0.0
            cuda.syncthreads()
            for kk in range(min(TILE, n_out - t0)):
                acc += S1[kk, ty] * S2[kk, tx]
            cuda.syncthreads()
        if c < n_in and j < m:
            dA[c, j] = _times_slope(hidden_act, acc, Zp[c, j], Ap[c, j])


@kernel
def _step_stats(theta, grad, sizes, w_off, b_off, uoff, hidden_act, out_act, loss_code, zbuf,
                abuf, dbuf, lossc, hits, counts, scalars, layer_stats, gparts, hist_act,
                hist_delta, act_range, status, k):
    """Block l < L: layer l's statistics into layer_stats[k, :, l] (histograms when k == 0) and
    its squared gradient norm into gparts[l]. Block L: loss and accuracy into scalars[k]."""
    if status[0] != 0:
        return
    red = cuda.shared.array((N_RED, THREADS), np.float64)
    t = cuda.threadIdx.x
    T = cuda.blockDim.x
    l = cuda.blockIdx.x
    L = sizes.shape[0] - 1
    m = counts[k]
    if l == L:
        s_loss = 0.0
        s_hits = 0.0
        for j in range(t, m, T):
            s_loss += lossc[j]
            s_hits += hits[j]
        red[0, t] = s_loss
        red[1, t] = s_hits
        _block_reduce(red, 2)
        if t == 0:
            scalars[k, S_LOSS] = red[0, 0] / m
            if loss_code == BCE:
                scalars[k, S_ACCURACY] = red[1, 0] / (sizes[L] * m)
            elif loss_code == CROSS_ENTROPY:
                scalars[k, S_ACCURACY] = red[1, 0] / m
            else:
                scalars[k, S_ACCURACY] = math.nan
        return
    n_out = sizes[l + 1]
    n_w = n_out * sizes[l]
    code = out_act if l == L - 1 else hidden_act
    r0 = uoff[l]
    N = n_out * m
    nb = hist_act.shape[1]
    lo = act_range[l, 0]
    hi = act_range[l, 1]
    s_a = 0.0
    s_sat = 0.0
    s_d = 0.0
    for e in range(t, N, T):
        i = r0 + e // m
        j = e % m
        a = abuf[i, j]
        d = dbuf[i, j]
        s_a += a
        if _is_saturated(code, zbuf[i, j], a):
            s_sat += 1.0
        s_d += d * d
        if k == 0:
            cuda.atomic.add(hist_act, (l, _bin(a, lo, hi, nb)), 1)
            cuda.atomic.add(hist_delta, (l, _delta_bin(abs(d), nb)), 1)
    s_w = 0.0
    s_gw = 0.0
    for p in range(w_off[l] + t, w_off[l] + n_w, T):
        s_w += theta[p] * theta[p]
        s_gw += grad[p] * grad[p]
    s_gb = 0.0
    for p in range(b_off[l] + t, b_off[l] + n_out, T):
        s_gb += grad[p] * grad[p]
    red[0, t] = s_a
    red[1, t] = s_sat
    red[2, t] = s_d
    red[3, t] = s_w
    red[4, t] = s_gw
    red[5, t] = s_gb
    _block_reduce(red, 6)
    mean = red[0, 0] / N
    sat = red[1, 0]
    s_d = red[2, 0]
    s_w = red[3, 0]
    s_gw = red[4, 0]
    s_gb = red[5, 0]
    cuda.syncthreads()  # everyone has read red before the second pass overwrites it
    s_v = 0.0
    for e in range(t, N, T):
        dev = abuf[r0 + e // m, e % m] - mean
        s_v += dev * dev
    red[0, t] = s_v
    _block_reduce(red, 1)
    if t == 0:
        layer_stats[k, L_GRAD, l] = math.sqrt(s_gw)
        layer_stats[k, L_DELTA, l] = math.sqrt(s_d)
        layer_stats[k, L_ACT_MEAN, l] = mean
        layer_stats[k, L_ACT_STD, l] = math.sqrt(red[0, 0] / N)
        layer_stats[k, L_SATURATION, l] = sat / N
        layer_stats[k, L_WEIGHT, l] = math.sqrt(s_w)
        layer_stats[k, L_UPDATE, l] = 0.0
        gparts[l] = s_gw + s_gb


@kernel
def _update_step(theta, grad, vel, sq, sizes, w_off, b_off, opt_code, hyper, scalars,
                 layer_stats, gparts, moved, tickets, status, t_update, k):
    """Grid row l updates layer l (W then b). First the divergence rule (every thread decides the
    same): a non-finite loss or gradient norm, or a loss above the threshold, records the step,
    skips the update and sets status = (1, k + 1). The last block of a row to finish turns the
    row's summed squared steps into update_ratio[k, l] and resets the accumulators."""
    if status[0] != 0:
        return
    L = sizes.shape[0] - 1
    g_total = 0.0
    for q in range(L):
        g_total += gparts[q]
    g_total = math.sqrt(g_total)
    loss = scalars[k, S_LOSS]
    bad = not (math.isfinite(loss) and math.isfinite(g_total)) or loss > hyper[H_THRESHOLD]
    tid = cuda.threadIdx.x
    if cuda.blockIdx.x == 0 and cuda.blockIdx.y == 0 and tid == 0:
        scalars[k, S_GRAD_TOTAL] = g_total
        if bad:
            status[1] = k + 1
            status[0] = 1
    if bad:
        return
    red = cuda.shared.array((1, THREADS), np.float64)
    l = cuda.blockIdx.y
    n_out = sizes[l + 1]
    lr = hyper[H_LR]
    beta = hyper[H_BETA]
    beta1 = hyper[H_BETA1]
    beta2 = hyper[H_BETA2]
    eps = hyper[H_EPS]
    c1 = 1 - beta1 ** t_update
    c2 = 1 - beta2 ** t_update
    first = cuda.blockIdx.x * cuda.blockDim.x + tid
    stride = cuda.gridDim.x * cuda.blockDim.x
    s_m = 0.0
    for p in range(w_off[l] + first, w_off[l] + n_out * sizes[l], stride):
        step = _apply_update(theta, grad, vel, sq, p, opt_code, lr, beta, beta1, beta2, eps, c1,
                             c2)
        s_m += step * step
    for p in range(b_off[l] + first, b_off[l] + n_out, stride):
        _apply_update(theta, grad, vel, sq, p, opt_code, lr, beta, beta1, beta2, eps, c1, c2)
    red[0, tid] = s_m
    _block_reduce(red, 1)
    if tid == 0:
        cuda.atomic.add(moved, l, red[0, 0])
        cuda.threadfence()
        ticket = cuda.atomic.add(tickets, l, 1)
        if ticket == cuda.gridDim.x - 1:  # the row's last block: every add has landed
            total = cuda.atomic.add(moved, l, 0.0)
            layer_stats[k, L_UPDATE, l] = _update_ratio(math.sqrt(total),
                                                        layer_stats[k, L_WEIGHT, l])
            moved[l] = 0.0
            tickets[l] = 0


@kernel
def _update_flat(theta, grad, vel, sq, opt_code, hyper, t_update):
    p = cuda.grid(1)
    if p < theta.shape[0]:
        beta1 = hyper[H_BETA1]
        beta2 = hyper[H_BETA2]
        _apply_update(theta, grad, vel, sq, p, opt_code, hyper[H_LR], hyper[H_BETA], beta1,
                      beta2, hyper[H_EPS], 1 - beta1 ** t_update, 1 - beta2 ** t_update)
