"""Numba CPU kernels: the compiled twin of ``reference.py`` (same functions, same signatures).

One ``train_chunk`` call runs many optimizer steps entirely in compiled code (forward, backward,
update, per-step statistics into preallocated arrays); Python only sees the loop between chunks.
``cache=True`` so later processes start warm, ``nogil=True`` so a logging thread runs alongside.
"""

import math

import numpy as np
from numba import njit

from .codes import (
    BCE,
    CROSS_ENTROPY,
    DELTA_LOG10_RANGE,
    H_BETA,
    H_BETA1,
    H_BETA2,
    H_EPS,
    H_LR,
    H_THRESHOLD,
    IDENTITY,
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
)
from .tuning import BLAS_MIN_MACS

jit = njit(cache=True, nogil=True)
DELTA_LO, DELTA_HI = DELTA_LOG10_RANGE


@jit
def layer_views(theta, sizes, w_off, b_off, l):
    n_in, n_out = sizes[l], sizes[l + 1]
    W = theta[w_off[l]:w_off[l] + n_out * n_in].reshape((n_out, n_in))
    b = theta[b_off[l]:b_off[l] + n_out]
    return W, b


# --- matrix products: loop nests for tiny layers, BLAS for the rest -------------------------------

@jit
def _matmul(W, A, out):
    """out = W @ A."""
    n_out, n_in = W.shape
    m = A.shape[1]
    if n_out * n_in * m >= BLAS_MIN_MACS:
        np.dot(W, A, out)
        return
    out[:, :] = 0.0
    for i in range(n_out):
        for k in range(n_in):
            w = W[i, k]
            for j in range(m):
                out[i, j] += w * A[k, j]


@jit
def _matmul_nt(dZ, A, out):
    """out = dZ @ A.T (the weight gradient)."""
    n_out, m = dZ.shape
    n_in = A.shape[0]
    if n_out * n_in * m >= BLAS_MIN_MACS:
        np.dot(dZ, A.T, out)
        return
    for i in range(n_out):
        for k in range(n_in):
            acc = 0.0
            for j in range(m):
                acc += dZ[i, j] * A[k, j]
            out[i, k] = acc


@jit
def _matmul_tn(W, dZ, out):
    """out = W.T @ dZ (the error sent to the previous layer)."""
    n_out, n_in = W.shape
    m = dZ.shape[1]
    if n_out * n_in * m >= BLAS_MIN_MACS:
        np.dot(W.T, dZ, out)
        return
    out[:, :] = 0.0
    for i in range(n_out):
        for k in range(n_in):
            w = W[i, k]
            for j in range(m):
                out[k, j] += w * dZ[i, j]


# --- activations: fused bias + g(Z), then g'(Z) ----------------------------------------------------

@jit
def _sigmoid(z):
    e = math.exp(-abs(z))
    return 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)


@jit
def _bias_activate(code, Z, b, A):
    """Z += b (column broadcast), A = g(Z), in one pass."""
    n, m = Z.shape
    if code == SOFTMAX:
        for i in range(n):
            for j in range(m):
                Z[i, j] += b[i]
        for j in range(m):
            zmax = Z[0, j]
            for i in range(1, n):
                zmax = max(zmax, Z[i, j])
            total = 0.0
            for i in range(n):
                A[i, j] = math.exp(Z[i, j] - zmax)
                total += A[i, j]
            for i in range(n):
                A[i, j] /= total
        return
    for i in range(n):
        bi = b[i]
        if code == IDENTITY:
            for j in range(m):
                Z[i, j] += bi
                A[i, j] = Z[i, j]
        elif code == SIGMOID:
            for j in range(m):
                Z[i, j] += bi
                A[i, j] = _sigmoid(Z[i, j])
        elif code == TANH:
            for j in range(m):
                Z[i, j] += bi
                A[i, j] = math.tanh(Z[i, j])
        elif code == RELU:
            for j in range(m):
                Z[i, j] += bi
                A[i, j] = Z[i, j] if Z[i, j] > 0 else 0.0
        else:  # LEAKY_RELU
            for j in range(m):
                Z[i, j] += bi
                A[i, j] = Z[i, j] if Z[i, j] > 0 else LEAKY_SLOPE * Z[i, j]


@jit
def _times_slope(code, Z, A, dZ):
    """dZ *= g'(Z) elementwise (given A = g(Z))."""
    n, m = Z.shape
    if code == IDENTITY:
        return
    for i in range(n):
        if code == SIGMOID:
            for j in range(m):
                dZ[i, j] *= A[i, j] * (1.0 - A[i, j])
        elif code == TANH:
            for j in range(m):
                dZ[i, j] *= 1.0 - A[i, j] * A[i, j]
        elif code == RELU:
            for j in range(m):
                if Z[i, j] <= 0:
                    dZ[i, j] = 0.0
        else:  # LEAKY_RELU
            for j in range(m):
                if Z[i, j] <= 0:
                    dZ[i, j] *= LEAKY_SLOPE


@jit
def _saturation(code, Z, A):
    n, m = Z.shape
    count = 0
    for i in range(n):
        for j in range(m):
            if code == SIGMOID or code == SOFTMAX:
                count += A[i, j] * (1.0 - A[i, j]) < SATURATION_SHARE * 0.25
            elif code == TANH:
                count += 1.0 - A[i, j] * A[i, j] < SATURATION_SHARE
            elif code == RELU or code == LEAKY_RELU:
                count += Z[i, j] <= 0
    return count / (n * m)


# --- losses ---------------------------------------------------------------------------------------

@jit
def _loss_and_output_delta(loss_code, out_act, ZL, AL, Y, dZ):
    """Loss value, and dZ[L] written into dZ (1/m folded in)."""
    n, m = Y.shape
    total = 0.0
    if loss_code == MSE:
        for i in range(n):
            for j in range(m):
                diff = AL[i, j] - Y[i, j]
                total += diff * diff
                dZ[i, j] = (2.0 / m) * diff
        _times_slope(out_act, ZL, AL, dZ)
        return total / m
    if loss_code == BCE:
        for i in range(n):
            for j in range(m):
                z = ZL[i, j]
                total += max(z, 0.0) - Y[i, j] * z + math.log1p(math.exp(-abs(z)))
    else:  # CROSS_ENTROPY over softmax columns
        for j in range(m):
            zmax = ZL[0, j]
            for i in range(1, n):
                zmax = max(zmax, ZL[i, j])
            s = 0.0
            for i in range(n):
                s += math.exp(ZL[i, j] - zmax)
            lse = zmax + math.log(s)
            for i in range(n):
                total += Y[i, j] * (lse - ZL[i, j])
    for i in range(n):
        for j in range(m):
            dZ[i, j] = (AL[i, j] - Y[i, j]) / m
    return total / m


@jit
def _accuracy(loss_code, AL, Y):
    n, m = Y.shape
    if loss_code == BCE:
        hits = 0
        for i in range(n):
            for j in range(m):
                hits += (AL[i, j] > 0.5) == (Y[i, j] > 0.5)
        return hits / (n * m)
    if loss_code == CROSS_ENTROPY:
        hits = 0
        for j in range(m):
            best_a, best_y = 0, 0
            for i in range(1, n):
                if AL[i, j] > AL[best_a, j]:
                    best_a = i
                if Y[i, j] > Y[best_y, j]:
                    best_y = i
            hits += best_a == best_y
        return hits / m
    return np.nan


# --- passes over a batch --------------------------------------------------------------------------

@jit
def _unit_offsets(sizes):
    """Row offset of each layer's units in the stacked Z/A buffers."""
    L = sizes.shape[0] - 1
    off = np.zeros(L + 1, dtype=np.int64)
    for l in range(L):
        off[l + 1] = off[l] + sizes[l + 1]
    return off


@jit
def _view(buf, row0, rows, m):
    return buf[row0 * m:(row0 + rows) * m].reshape((rows, m))


@jit
def _forward_pass(theta, sizes, w_off, b_off, hidden_act, out_act, A0, m, uoff, zbuf, abuf):
    L = sizes.shape[0] - 1
    for l in range(L):
        W, b = layer_views(theta, sizes, w_off, b_off, l)
        prev = A0 if l == 0 else _view(abuf, uoff[l - 1], sizes[l], m)
        Z = _view(zbuf, uoff[l], sizes[l + 1], m)
        A = _view(abuf, uoff[l], sizes[l + 1], m)
        _matmul(W, prev, Z)
        _bias_activate(out_act if l == L - 1 else hidden_act, Z, b, A)


@jit
def _sq_norm(x):
    total = 0.0
    for v in x.ravel():
        total += v * v
    return total


@jit
def _histogram(values, lo, hi, counts):
    """Add values into len(counts) bins on [lo, hi]; outside (and NaN-low) values go to end bins."""
    nb = counts.shape[0]
    scale = nb / (hi - lo)
    for v in values.ravel():
        if not v > lo:  # also catches NaN and -inf
            counts[0] += 1
        elif v >= hi:
            counts[nb - 1] += 1
        else:
            counts[min(int(math.floor((v - lo) * scale)), nb - 1)] += 1


@jit
def _log10_abs_histogram(values, counts):
    nb = counts.shape[0]
    scale = nb / (DELTA_HI - DELTA_LO)
    for v in values.ravel():
        a = abs(v)
        if not a > 0:
            counts[0] += 1
            continue
        x = math.log10(a)
        if x <= DELTA_LO:
            counts[0] += 1
        elif x >= DELTA_HI:
            counts[nb - 1] += 1
        else:
            counts[min(int(math.floor((x - DELTA_LO) * scale)), nb - 1)] += 1


@jit
def _backward_pass(theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, A0, Y, m, uoff,
                   zbuf, abuf, grad, dz_a, dz_b, stats, record, hist_act, hist_delta, act_range):
    """Loss; grad filled; if record, per-layer stats[L_*, l] and (record > 1) histograms."""
    L = sizes.shape[0] - 1
    nL = sizes[L]
    ZL = _view(zbuf, uoff[L - 1], nL, m)
    AL = _view(abuf, uoff[L - 1], nL, m)
    dZ = _view(dz_a, 0, nL, m)
    loss = _loss_and_output_delta(loss_code, out_act, ZL, AL, Y, dZ)
    cur, other = dz_a, dz_b
    for l in range(L - 1, -1, -1):
        n_out, n_in = sizes[l + 1], sizes[l]
        dZ = _view(cur, 0, n_out, m)
        prev = A0 if l == 0 else _view(abuf, uoff[l - 1], n_in, m)
        dW, db = layer_views(grad, sizes, w_off, b_off, l)
        _matmul_nt(dZ, prev, dW)
        for i in range(n_out):
            acc = 0.0
            for j in range(m):
                acc += dZ[i, j]
            db[i] = acc
        if record:
            Z = _view(zbuf, uoff[l], n_out, m)
            A = _view(abuf, uoff[l], n_out, m)
            code = out_act if l == L - 1 else hidden_act
            mean = A.sum() / (n_out * m)
            var = 0.0
            for v in A.ravel():
                var += (v - mean) * (v - mean)
            W, _ = layer_views(theta, sizes, w_off, b_off, l)
            stats[L_GRAD, l] = math.sqrt(_sq_norm(dW))
            stats[L_DELTA, l] = math.sqrt(_sq_norm(dZ))
            stats[L_ACT_MEAN, l] = mean
            stats[L_ACT_STD, l] = math.sqrt(var / (n_out * m))
            stats[L_SATURATION, l] = _saturation(code, Z, A)
            stats[L_WEIGHT, l] = math.sqrt(_sq_norm(W))
            stats[L_UPDATE, l] = 0.0
            if record > 1:
                _histogram(A, act_range[l, 0], act_range[l, 1], hist_act[l])
                _log10_abs_histogram(dZ, hist_delta[l])
        if l > 0:
            W, _ = layer_views(theta, sizes, w_off, b_off, l)
            dA = _view(other, 0, n_in, m)
            _matmul_tn(W, dZ, dA)
            _times_slope(hidden_act, _view(zbuf, uoff[l - 1], n_in, m),
                         _view(abuf, uoff[l - 1], n_in, m), dA)
            cur, other = other, cur
    return loss


@jit
def _buffers(theta, sizes, m):
    L = sizes.shape[0] - 1
    units = 0
    widest = 0
    for l in range(1, L + 1):
        units += sizes[l]
        widest = max(widest, sizes[l])
    widest = max(widest, sizes[0])
    dt = theta.dtype
    return (np.empty(units * m, dt), np.empty(units * m, dt),
            np.empty(widest * m, dt), np.empty(widest * m, dt))


# --- public kernels (same signatures as reference.py) ----------------------------------------------

@jit
def forward(theta, sizes, w_off, b_off, hidden_act, out_act, X):
    m = X.shape[1]
    L = sizes.shape[0] - 1
    uoff = _unit_offsets(sizes)
    zbuf, abuf, _, _ = _buffers(theta, sizes, m)
    A0 = np.ascontiguousarray(X)
    _forward_pass(theta, sizes, w_off, b_off, hidden_act, out_act, A0, m, uoff, zbuf, abuf)
    return _view(abuf, uoff[L - 1], sizes[L], m).copy()


@jit
def evaluate(theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, X, Y):
    m = X.shape[1]
    L = sizes.shape[0] - 1
    uoff = _unit_offsets(sizes)
    zbuf, abuf, dz_a, _ = _buffers(theta, sizes, m)
    A0 = np.ascontiguousarray(X)
    _forward_pass(theta, sizes, w_off, b_off, hidden_act, out_act, A0, m, uoff, zbuf, abuf)
    ZL = _view(zbuf, uoff[L - 1], sizes[L], m)
    AL = _view(abuf, uoff[L - 1], sizes[L], m)
    Yc = np.ascontiguousarray(Y)
    loss = _loss_and_output_delta(loss_code, out_act, ZL, AL, Yc, _view(dz_a, 0, sizes[L], m))
    return loss, _accuracy(loss_code, AL, Yc)


@jit
def gradients(theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, X, Y):
    m = X.shape[1]
    L = sizes.shape[0] - 1
    uoff = _unit_offsets(sizes)
    zbuf, abuf, dz_a, dz_b = _buffers(theta, sizes, m)
    A0 = np.ascontiguousarray(X)
    _forward_pass(theta, sizes, w_off, b_off, hidden_act, out_act, A0, m, uoff, zbuf, abuf)
    grad = np.empty_like(theta)
    stats = np.zeros((7, L))
    no_hist = np.zeros((L, 1), np.int64)
    loss = _backward_pass(theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, A0,
                          np.ascontiguousarray(Y), m, uoff, zbuf, abuf, grad, dz_a, dz_b, stats, 0,
                          no_hist, no_hist, np.zeros((L, 2)))
    return loss, grad


@jit
def _update_segment(theta, grad, vel, sq, lo, hi, opt_code, hyper, t):
    """Update theta[lo:hi] in place; returns the squared norm of the change."""
    lr = hyper[H_LR]
    moved = 0.0
    if opt_code == SGD:
        for p in range(lo, hi):
            step = lr * grad[p]
            theta[p] -= step
            moved += step * step
    elif opt_code == MOMENTUM:
        beta = hyper[H_BETA]
        for p in range(lo, hi):
            vel[p] = beta * vel[p] + (1 - beta) * grad[p]
            step = lr * vel[p]
            theta[p] -= step
            moved += step * step
    elif opt_code == RMSPROP:
        beta2, eps = hyper[H_BETA2], hyper[H_EPS]
        for p in range(lo, hi):
            sq[p] = beta2 * sq[p] + (1 - beta2) * grad[p] * grad[p]
            step = lr * grad[p] / (math.sqrt(sq[p]) + eps)
            theta[p] -= step
            moved += step * step
    else:  # ADAM
        beta1, beta2, eps = hyper[H_BETA1], hyper[H_BETA2], hyper[H_EPS]
        c1 = 1 - beta1 ** t
        c2 = 1 - beta2 ** t
        for p in range(lo, hi):
            vel[p] = beta1 * vel[p] + (1 - beta1) * grad[p]
            sq[p] = beta2 * sq[p] + (1 - beta2) * grad[p] * grad[p]
            step = lr * (vel[p] / c1) / (math.sqrt(sq[p] / c2) + eps)
            theta[p] -= step
            moved += step * step
    return moved


@jit
def update(theta, grad, vel, sq, opt_code, hyper, t):
    _update_segment(theta, grad, vel, sq, 0, theta.shape[0], opt_code, hyper, t)


@jit
def _update_ratio(step_norm, w_norm):
    if w_norm > 0:
        return step_norm / w_norm
    return np.inf if step_norm > 0 else 0.0


@jit
def train_chunk(theta, vel, sq, sizes, w_off, b_off, hidden_act, out_act, loss_code, opt_code,
                hyper, t_start, X, Y, order, starts, counts, scalars, layer_stats,
                hist_act, hist_delta, act_range):
    L = sizes.shape[0] - 1
    n_x, n_y = sizes[0], sizes[L]
    max_m = counts.max()
    uoff = _unit_offsets(sizes)
    zbuf, abuf, dz_a, dz_b = _buffers(theta, sizes, max_m)
    x_buf = np.empty(n_x * max_m, theta.dtype)
    y_buf = np.empty(n_y * max_m, theta.dtype)
    grad = np.empty_like(theta)
    for k in range(starts.shape[0]):
        m = counts[k]
        A0 = _view(x_buf, 0, n_x, m)
        Yb = _view(y_buf, 0, n_y, m)
        for j in range(m):
            col = order[starts[k] + j]
            for i in range(n_x):
                A0[i, j] = X[i, col]
            for i in range(n_y):
                Yb[i, j] = Y[i, col]
        _forward_pass(theta, sizes, w_off, b_off, hidden_act, out_act, A0, m, uoff, zbuf, abuf)
        loss = _backward_pass(theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, A0, Yb,
                              m, uoff, zbuf, abuf, grad, dz_a, dz_b, layer_stats[k],
                              2 if k == 0 else 1, hist_act, hist_delta, act_range)
        grad_total = math.sqrt(_sq_norm(grad))
        scalars[k, S_LOSS] = loss
        scalars[k, S_GRAD_TOTAL] = grad_total
        scalars[k, S_ACCURACY] = _accuracy(loss_code, _view(abuf, uoff[L - 1], n_y, m), Yb)
        if not (math.isfinite(loss) and math.isfinite(grad_total)) or loss > hyper[H_THRESHOLD]:
            return k + 1, True
        t = t_start + k + 1
        for l in range(L):
            n_w = sizes[l + 1] * sizes[l]
            moved = _update_segment(theta, grad, vel, sq, w_off[l], w_off[l] + n_w, opt_code,
                                    hyper, t)
            _update_segment(theta, grad, vel, sq, b_off[l], b_off[l] + sizes[l + 1], opt_code,
                            hyper, t)
            layer_stats[k, L_UPDATE, l] = _update_ratio(math.sqrt(moved),
                                                        layer_stats[k, L_WEIGHT, l])
    return starts.shape[0], False
