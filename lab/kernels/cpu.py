"""Numba CPU kernels: the compiled twin of ``reference.py`` (same functions, same signatures).

One ``train_chunk`` call runs many optimizer steps entirely in compiled code (forward, backward,
update, per-step statistics into preallocated arrays); Python only sees the loop between chunks.
``cache=True`` so later processes start warm, ``nogil=True`` so a logging thread runs alongside.

This file is the math, in the seeds' notation (the chunk loop that strings it together into
training steps is ``cpu_chunk.py``); its helpers live beside it: ``intrinsics.py``
(views without reference counts, the float32 flush-to-zero mode, an atomic counter), ``blas.py``
(fixed-order sums, the three matrix products), ``threads.py`` (how a step is cut into parts and
how many threads take them), ``fastmath.py`` (vectorizable exp/sigmoid/tanh).

Where the time goes, and what keeps it small (``python -m lab.bench`` measures it):

- Matrix products: BLAS above ``tuning.BLAS_MIN_MACS`` multiply-adds (transposes passed as
  views, never copied), loop nests whose inner loop runs over the batch below it.
- Every elementwise loop vectorizes: ``exp``/``sigmoid``/``tanh`` come from ``fastmath`` (no libm
  calls), ``error_model='numpy'`` (no zero-division branches), and reductions never carry a
  floating-point sum through a loop LLVM would have to keep scalar: sums over a matrix go into
  per-column accumulators (a vector loop), sums along a row into eight interleaved partial sums
  (``blas.vsum``/``blas.dot``). The order of every sum is fixed by the code.
- Few passes over memory per layer and step: forward adds the bias, applies g, and gathers the
  activation mean and saturation in one pass; backward multiplies by g', sums the bias gradient,
  and gathers |dZ|^2 and the activation variance in one pass. Hidden layers keep no separate Z
  (g' and the saturation are read from A); only the output layer's Z is stored (losses need it).
- Steps with enough work run data-parallel: the batch is cut into more column blocks than
  threads, threads claim them one by one, and the parts' gradients are added in part order
  (``threads.chunk_plan``: the cut depends on the shape only, never on threads or timing).
- Small nets never compile the parallel code: the training chunk (``cpu_chunk.py``) has a
  serial entry point apart from the multi-part ones, so a first process that trains the
  2-wide net compiles only what it runs.
- float32 chunks flush subnormal numbers to zero (``intrinsics.flush_subnormals``), as XLA does.
"""

import math

import numpy as np

from . import fastmath as fm
from .blas import matmul, matmul_nt, matmul_tn, sq_sum, vsum
from .codes import (
    BCE,
    CROSS_ENTROPY,
    H_BETA,
    H_BETA1,
    H_BETA2,
    H_EPS,
    H_LR,
    IDENTITY,
    LEAKY_RELU,
    LEAKY_SLOPE,
    MOMENTUM,
    MSE,
    RELU,
    RMSPROP,
    SATURATION_SHARE,
    SGD,
    SIGMOID,
    SOFTMAX,
    TANH,
    delta_bin,
)
from .intrinsics import (
    float_bits,
    fp_mode,
    inline,
    inner,
    jit,
    mat,
    seg,
)
from .threads import chunk_plan

__all__ = ["forward", "evaluate", "gradients", "update", "fp_mode", "chunk_plan"]

SIG_SAT = SATURATION_SHARE * 0.25  # sigmoid's g'(z) = a (1 - a) is at most 1/4
# column accumulators (rows of the `acc` scratch array)
C_SUM, C_SAT, C_VAR, C_SQ = 0, 1, 2, 3
# Per-layer raw sums of one batch (or one part of it): raw[R_*, l]. The statistics follow from
# them (_finish_stats); parts of a batch combine exactly like the halves of a parallel variance.
R_SUM, R_SAT, R_M2, R_DSQ = 0, 1, 2, 3
N_RAW = 4


@inline
def _layer(theta, sizes, w_off, b_off, l):
    """(W, b) of layer l (0-based) as views of theta (no reference counts)."""
    n_in, n_out = sizes[l], sizes[l + 1]
    return mat(theta, w_off[l], n_out, n_in), seg(theta, b_off[l], n_out)


# --- activations: each g applied to a row, with its derivative g' right below it -----------------
# Forward rows compute a = g(z) with z = a + b in place, add a into s[j] (the activation mean) and
# 1 into c[j] where the unit saturates (s and c of a's dtype: vector loops that mix float32 and
# float64 run several times slower). Backward rows multiply d by g'(z), written from a = g(z).

@inner
def _identity_row(a, bi, m, s, c):
    """a = z; never saturates."""
    for j in range(m):
        v = a[j] + bi
        a[j] = v
        s[j] += v


@inner
def _sigmoid_row(a, bi, m, s, c):
    """a = sigmoid(z) = 1 / (1 + e^-z) (stable form, ``fastmath.sigmoid``); saturated where
    a (1 - a) < SATURATION_SHARE / 4."""
    one, zero, sat = a.dtype.type(1.0), a.dtype.type(0.0), a.dtype.type(SIG_SAT)
    for j in range(m):
        v = fm.sigmoid(a[j] + bi)
        a[j] = v
        s[j] += v
        c[j] += one if v * (one - v) < sat else zero


@inner
def _sigmoid_slope_row(d, a, m):
    """d *= sigmoid'(z) = a (1 - a)."""
    one = a.dtype.type(1.0)
    for j in range(m):
        d[j] = d[j] * (a[j] * (one - a[j]))


@inner
def _tanh_row(a, bi, m, s, c):
    """a = tanh(z) (``fastmath.tanh``); saturated where 1 - a^2 < SATURATION_SHARE."""
    one, zero, sat = a.dtype.type(1.0), a.dtype.type(0.0), a.dtype.type(SATURATION_SHARE)
    for j in range(m):
        v = fm.tanh(a[j] + bi)
        a[j] = v
        s[j] += v
        c[j] += one if one - v * v < sat else zero


@inner
def _tanh_slope_row(d, a, m):
    """d *= tanh'(z) = 1 - a^2."""
    one = a.dtype.type(1.0)
    for j in range(m):
        d[j] = d[j] * (one - a[j] * a[j])


@inner
def _relu_row(a, bi, m, s, c):
    """a = max(z, 0); saturated (dead) where z <= 0."""
    one, zero = a.dtype.type(1.0), a.dtype.type(0.0)
    for j in range(m):
        z = a[j] + bi
        v = z if z > 0 else zero
        a[j] = v
        s[j] += v
        c[j] += one if z <= 0 else zero


@inner
def _relu_slope_row(d, a, m):
    """d *= relu'(z) = [z > 0] (0 at z = 0; z > 0 exactly when a > 0)."""
    zero = a.dtype.type(0.0)
    for j in range(m):
        d[j] = d[j] if a[j] > 0 else zero


@inner
def _leaky_relu_row(a, bi, m, s, c):
    """a = z if z > 0 else LEAKY_SLOPE z; saturated where z <= 0."""
    one, zero, slope = a.dtype.type(1.0), a.dtype.type(0.0), a.dtype.type(LEAKY_SLOPE)
    for j in range(m):
        z = a[j] + bi
        v = z if z > 0 else slope * z
        a[j] = v
        s[j] += v
        c[j] += one if z <= 0 else zero


@inner
def _leaky_relu_slope_row(d, a, m):
    """d *= leaky_relu'(z) = 1 if z > 0 else LEAKY_SLOPE (LEAKY_SLOPE at z = 0)."""
    slope = a.dtype.type(LEAKY_SLOPE)
    for j in range(m):
        d[j] = d[j] if a[j] > 0 else d[j] * slope


@inner
def _activate_row(code, a, bi, m, s, c):
    """a[:m] = g(a[:m] + bi) for an elementwise activation (one branch per row)."""
    if code == SIGMOID:
        _sigmoid_row(a, bi, m, s, c)
    elif code == TANH:
        _tanh_row(a, bi, m, s, c)
    elif code == RELU:
        _relu_row(a, bi, m, s, c)
    elif code == LEAKY_RELU:
        _leaky_relu_row(a, bi, m, s, c)
    else:  # IDENTITY
        _identity_row(a, bi, m, s, c)


@inner
def _slope_row(code, d, a, m):
    """d[:m] *= g'(z) written from a = g(z); identity: unchanged."""
    if code == SIGMOID:
        _sigmoid_slope_row(d, a, m)
    elif code == TANH:
        _tanh_slope_row(d, a, m)
    elif code == RELU:
        _relu_slope_row(d, a, m)
    elif code == LEAKY_RELU:
        _leaky_relu_slope_row(d, a, m)


@inner
def _softmax_columns(Z, A):
    """A[:, j] = e^(Z[:, j] - max Z[:, j]) / sum_i e^(Z[i, j] - max Z[:, j]) (output only; its
    dZ comes with cross-entropy: (A - Y) / m)."""
    n, m = Z.shape
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


# --- a layer forward, then its backward ------------------------------------------------------------

@inner
def _zero_acc(acc, m):
    for r in range(acc.shape[0]):
        for j in range(m):
            acc[r, j] = 0


@inner
def _hidden_forward(code, A, b, raw, l, acc):
    """A = g(Z), Z = A + b in place (A holds W @ A_prev); raw[R_SUM] = sum A,
    raw[R_SAT] = #saturated units."""
    n, m = A.shape
    _zero_acc(acc, m)
    s, c = acc[C_SUM], acc[C_SAT]
    for i in range(n):
        _activate_row(code, A[i], b[i], m, s, c)
    raw[R_SUM, l] = vsum(s)
    raw[R_SAT, l] = vsum(c)


@inner
def _output_forward(code, Z, b, A, raw, l, acc):
    """Z += b, A = g(Z) for the output layer (Z holds W @ A_prev and is kept for the loss)."""
    n, m = Z.shape
    _zero_acc(acc, m)
    s, c = acc[C_SUM], acc[C_SAT]
    for i in range(n):
        a, z, bi = A[i], Z[i], b[i]
        if code != SOFTMAX:
            for j in range(m):
                a[j] = z[j]
            _activate_row(code, a, bi, m, s, c)  # g(z + b), z + b rounded as below
        for j in range(m):
            z[j] = z[j] + bi
    if code == SOFTMAX:
        _softmax_columns(Z, A)
        one, zero, sat = A.dtype.type(1.0), A.dtype.type(0.0), A.dtype.type(SIG_SAT)
        for i in range(n):
            a = A[i]
            for j in range(m):
                v = a[j]
                s[j] += v
                c[j] += one if v * (one - v) < sat else zero
    raw[R_SUM, l] = vsum(s)
    raw[R_SAT, l] = vsum(c)


@inner
def _delta_rows(code, D, A, db, raw, l, acc):
    """dZ = dA * g'(Z) in place of D for a hidden layer l (the output layer's D, l = L - 1,
    already is dZ[L]), db = sum_cols dZ; raw[R_DSQ] = |dZ|^2 and raw[R_M2] = sum (A - mean A)^2,
    the mean being raw[R_SUM] / size from the forward pass."""
    n, m = D.shape
    _zero_acc(acc, m)
    mean = D.dtype.type(raw[R_SUM, l] / (n * m))
    q, v = acc[C_SQ], acc[C_VAR]
    # (decided from l, not by a flag argument: numba compiles a function once more for every
    # literal argument, True and False included)
    hidden = l < raw.shape[1] - 1
    for i in range(n):
        d, a = D[i], A[i]
        if hidden:
            _slope_row(code, d, a, m)
        db[i] = vsum(d)
        for j in range(m):
            e = a[j] - mean
            q[j] += d[j] * d[j]
            v[j] += e * e
    raw[R_DSQ, l] = vsum(q)
    raw[R_M2, l] = vsum(v)


# --- losses ---------------------------------------------------------------------------------------

@inner
def _loss(loss_code, ZL, AL, Y, D, m_all):
    """The loss over these columns with the whole batch's 1/m folded in (m = m_all: a part of a
    batch sees only its own columns); for mse it leaves D = ŷ - Y, where ``_output_delta``
    starts:

    - mse: L = (1/m) sum ||ŷ - y||^2;
    - bce (sigmoid output): L = (1/m) sum [max(z, 0) - y z + log(1 + e^-|z|)] from the logits z
      (finite for saturated outputs);
    - cross_entropy (softmax output): L = (1/m) sum_j [logsumexp(z_j) - y_j . z_j]."""
    n, m = Y.shape
    total = 0.0
    if loss_code == MSE:
        for i in range(n):
            a, y, d = AL[i], Y[i], D[i]
            for j in range(m):
                d[j] = a[j] - y[j]
            total += sq_sum(d)
    elif loss_code == BCE:
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
    return total / m_all


@inner
def _output_delta(loss_code, out_act, AL, Y, dZ, m_all):
    """dZ[L] after ``_loss``, with the whole batch's 1/m folded in:

    - mse: dZ[L] = (2/m)(ŷ - Y) * g'(Z[L]) (dZ holds ŷ - Y from ``_loss``);
    - bce (sigmoid output), cross_entropy (softmax output): dZ[L] = (ŷ - Y)/m."""
    n, m = Y.shape
    if loss_code == MSE:
        scale = 2.0 / m_all
        for i in range(n):
            d = dZ[i]
            for j in range(m):
                d[j] = scale * d[j]
            if out_act != IDENTITY and out_act != SOFTMAX:
                _slope_row(out_act, d, AL[i], m)
        return
    for i in range(n):
        a, y, d = AL[i], Y[i], dZ[i]
        for j in range(m):
            d[j] = (a[j] - y[j]) / m_all


@inner
def _hits(loss_code, AL, Y):
    """(correct, counted) predictions: per output unit for BCE ([ŷ > 1/2] == [y > 1/2]), per
    column for cross-entropy (argmax ŷ == argmax y), (0, 0) for regression."""
    n, m = Y.shape
    if loss_code == BCE:
        hits = 0
        for i in range(n):
            for j in range(m):
                hits += (AL[i, j] > 0.5) == (Y[i, j] > 0.5)
        return hits, n * m
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
        return hits, m
    return 0, 0


@inner
def _accuracy(loss_code, AL, Y):
    hits, counted = _hits(loss_code, AL, Y)
    return hits / counted if counted else np.nan


# --- passes over a batch --------------------------------------------------------------------------

@jit
def _unit_offsets(sizes):
    """Row offset of each layer's units in the stacked A buffer."""
    L = sizes.shape[0] - 1
    off = np.zeros(L + 1, dtype=np.int64)
    for l in range(L):
        off[l + 1] = off[l] + sizes[l + 1]
    return off


@inline
def _view(buf, row0, rows, m):
    return mat(buf, row0 * m, rows, m)


@inline
def _owned_view(buf, row0, rows, m):
    """Like _view, but holding a reference: for a view used after its buffer's last mention in
    the function that allocated it (numba frees a buffer right after its last use, so a
    reference-free view of it would read freed memory)."""
    return buf[row0 * m:(row0 + rows) * m].reshape((rows, m))


@inner
def _forward_pass(theta, sizes, w_off, b_off, hidden_act, out_act, A0, m, uoff, zbuf, abuf,
                  raw, accbuf):
    """A[l] = g(W[l] A[l-1] + b[l]) for l = 1..L into abuf (the output layer's Z into zbuf);
    each layer's activation sum and saturated count into raw (cheap, so always)."""
    L = sizes.shape[0] - 1
    acc = mat(accbuf, 0, 4, m)
    prev = A0
    for l in range(L - 1):
        W, b = _layer(theta, sizes, w_off, b_off, l)
        A = _view(abuf, uoff[l], sizes[l + 1], m)
        matmul(W, prev, A)
        _hidden_forward(hidden_act, A, b, raw, l, acc)
        prev = A
    W, b = _layer(theta, sizes, w_off, b_off, L - 1)
    Z = _view(zbuf, 0, sizes[L], m)
    matmul(W, prev, Z)
    _output_forward(out_act, Z, b, _view(abuf, uoff[L - 1], sizes[L], m), raw, L - 1, acc)


@inner
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


# the bin of log10|dZ| (lab/kernels/codes.py: its one definition, which the CUDA kernels share)
_delta_bin = jit(delta_bin)


@inner
def _float_format(x):
    """(exponent codes, bias, mantissa bits) of x's float type."""
    return (2048, 1023, 52) if x.itemsize == 8 else (256, 127, 23)


@jit
def _delta_bin_table(like, nb):
    """_delta_bin as a table over the binary exponent of a (dtype of ``like``): a bin spans
    14/40 decades, more than the octave [2^e, 2^(e+1)), so within one octave _delta_bin takes
    at most two values, base[e] and base[e] + 1 from edge[e] on (found by bisection on the
    float grid; +inf when the octave lies in one bin). Zero and subnormals (code 0) fall in the
    low bin, inf in the top one, NaN is sent low by the caller."""
    n_exp, bias, _ = _float_format(like)
    dt = like.dtype.type
    zero, two = dt(0.0), dt(2.0)
    base = np.zeros(n_exp, np.int64)
    edge = np.full(n_exp, np.inf, like.dtype)
    for e in range(1, n_exp - 1):
        lo = dt(math.ldexp(1.0, e - bias))
        hi = np.nextafter(dt(math.ldexp(1.0, e - bias + 1)), zero)  # the octave's largest float
        b = _delta_bin(lo, nb)
        base[e] = b
        if _delta_bin(hi, nb) == b:
            continue
        while True:  # invariant: bin(lo) == b < bin(hi)
            mid = lo + (hi - lo) / two
            if mid == lo or mid == hi:
                break
            if _delta_bin(mid, nb) > b:
                hi = mid
            else:
                lo = mid
        edge[e] = hi
    base[n_exp - 1] = nb - 1  # inf (NaN: sent low by the caller)
    edge[n_exp - 1] = np.nan  # never reached: inf stays in the top bin
    return base, edge


@inner
def _count_bins(values, bits, shift, mask, base, edge, counts):
    """counts[base[e] + (|v| >= edge[e])] += 1 for each value, e its exponent bits; NaN low."""
    for i in range(values.shape[0]):
        e = (bits[i] >> shift) & mask
        a = abs(values[i])
        b = base[e] + (1 if a >= edge[e] else 0)
        counts[b if a == a else 0] += 1


@jit
def _log10_abs_histogram(values, counts, base, edge):
    """Add log10|values| into len(counts) bins on DELTA_LOG10_RANGE (``_delta_bin`` read from its
    table: two lookups a value instead of a log10, ~5x faster)."""
    flat = values.ravel()
    n_exp, _, mant = _float_format(flat)
    _count_bins(flat, float_bits(flat), mant, n_exp - 1, base, edge, counts)


@inner
def _backward_pass(theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, A0, Y, m, m_all,
                   uoff, zbuf, abuf, grad, dz_a, dz_b, raw, hist, hist_act, hist_delta,
                   act_range, accbuf, bin_base, bin_edge):
    """Loss (over these m columns, / m_all) and, for l = L..1, dW[l] = dZ[l] A[l-1]^T,
    db[l] = sum_cols dZ[l], dZ[l-1] = (W[l]^T dZ[l]) * g'(Z[l-1]) into grad; |dZ|^2 and the
    activations' squared deviations into raw (the forward pass left the sums there); the
    histograms of A and log10|dZ| if hist (bin_base, bin_edge: ``_delta_bin_table``)."""
    L = sizes.shape[0] - 1
    acc = mat(accbuf, 0, 4, m)
    nL = sizes[L]
    AL = _view(abuf, uoff[L - 1], nL, m)
    dZ = _view(dz_a, 0, nL, m)
    loss = _loss(loss_code, _view(zbuf, 0, nL, m), AL, Y, dZ, m_all)
    _output_delta(loss_code, out_act, AL, Y, dZ, m_all)
    _, db = _layer(grad, sizes, w_off, b_off, L - 1)
    _delta_rows(out_act, dZ, AL, db, raw, L - 1, acc)
    cur, other = dz_a, dz_b
    for l in range(L - 1, -1, -1):
        n_out, n_in = sizes[l + 1], sizes[l]
        dZ = _view(cur, 0, n_out, m)
        prev = A0 if l == 0 else _view(abuf, uoff[l - 1], n_in, m)
        W, _ = _layer(theta, sizes, w_off, b_off, l)
        dW, db = _layer(grad, sizes, w_off, b_off, l)
        matmul_nt(dZ, prev, dW)
        if hist:
            _histogram(_view(abuf, uoff[l], n_out, m), act_range[l, 0], act_range[l, 1],
                       hist_act[l])
            _log10_abs_histogram(dZ, hist_delta[l], bin_base, bin_edge)
        if l > 0:
            dA = _view(other, 0, n_in, m)
            matmul_tn(W, dZ, dA)
            _, db_prev = _layer(grad, sizes, w_off, b_off, l - 1)
            _delta_rows(hidden_act, dA, prev, db_prev, raw, l - 1, acc)
            cur, other = other, cur
    return loss


@inner
def _buffers(theta, sizes, m):
    """A of every layer stacked, the output layer's Z, two dZ buffers, column accumulators
    (of theta's dtype)."""
    L = sizes.shape[0] - 1
    units = 0
    widest = 0
    for l in range(1, L + 1):
        units += sizes[l]
        widest = max(widest, sizes[l])
    widest = max(widest, sizes[0])
    dt = theta.dtype
    return (np.empty(sizes[L] * m, dt), np.empty(units * m, dt), np.empty(widest * m, dt),
            np.empty(widest * m, dt), np.zeros(4 * m, dt))


# --- public kernels (same signatures as reference.py) ----------------------------------------------

@jit
def forward(theta, sizes, w_off, b_off, hidden_act, out_act, X):
    m = X.shape[1]
    L = sizes.shape[0] - 1
    uoff = _unit_offsets(sizes)
    zbuf, abuf, _, _, acc = _buffers(theta, sizes, m)
    A0 = np.ascontiguousarray(X)
    _forward_pass(theta, sizes, w_off, b_off, hidden_act, out_act, A0, m, uoff, zbuf, abuf,
                  np.zeros((N_RAW, L)), acc)
    return _owned_view(abuf, uoff[L - 1], sizes[L], m).copy()


@jit
def evaluate(theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, X, Y):
    m = X.shape[1]
    L = sizes.shape[0] - 1
    uoff = _unit_offsets(sizes)
    zbuf, abuf, dz_a, _, acc = _buffers(theta, sizes, m)
    A0 = np.ascontiguousarray(X)
    _forward_pass(theta, sizes, w_off, b_off, hidden_act, out_act, A0, m, uoff, zbuf, abuf,
                  np.zeros((N_RAW, L)), acc)
    ZL = _owned_view(zbuf, 0, sizes[L], m)
    AL = _owned_view(abuf, uoff[L - 1], sizes[L], m)
    Yc = np.ascontiguousarray(Y)
    loss = _loss(loss_code, ZL, AL, Yc, _view(dz_a, 0, sizes[L], m), m)
    return loss, _accuracy(loss_code, AL, Yc)


@jit
def gradients(theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, X, Y):
    m = X.shape[1]
    L = sizes.shape[0] - 1
    uoff = _unit_offsets(sizes)
    zbuf, abuf, dz_a, dz_b, acc = _buffers(theta, sizes, m)
    A0 = np.ascontiguousarray(X)
    raw = np.zeros((N_RAW, L))
    _forward_pass(theta, sizes, w_off, b_off, hidden_act, out_act, A0, m, uoff, zbuf, abuf,
                  raw, acc)
    grad = np.empty_like(theta)
    no_hist = np.zeros((L, 1), np.int64)
    loss = _backward_pass(theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, A0,
                          np.ascontiguousarray(Y), m, m, uoff, zbuf, abuf, grad, dz_a, dz_b,
                          raw, False, no_hist, no_hist, np.zeros((L, 2)), acc,
                          np.zeros(1, np.int64), np.zeros(1, theta.dtype))
    return loss, grad


# --- the optimizer update ---------------------------------------------------------------------------

@inner
def _update_segment(th, gr, ve, sqr, opt_code, hyper, r1, r2, steps):
    """th -= step in place, with g = gr, v = ve, s = sqr (views of one segment of theta, grad,
    vel, sq; t counts updates from 1), each step into steps:

    - sgd:      step = lr g
    - momentum: v = beta v + (1 - beta) g;                    step = lr v
    - rmsprop:  s = beta2 s + (1 - beta2) g^2;                step = lr g / (sqrt(s) + eps)
    - adam:     v = beta1 v + (1 - beta1) g, s = beta2 s + (1 - beta2) g^2,
                step = lr (v r1) / (sqrt(s r2) + eps),  r1 = 1/(1 - beta1^t), r2 = 1/(1 - beta2^t)
                (multiplied, not divided: one division per parameter instead of three).

    steps is a buffer of its own: were it gr itself, LLVM's runtime alias check would send every
    call to the scalar loop (4x slower for Adam). Views indexed from 0: LLVM knows the indices
    are non-negative and vectorizes. (Views, not offsets: one compiled variant for every caller,
    where literal offsets such as 0 made numba compile one per literal.)"""
    n = th.shape[0]
    lr = hyper[H_LR]
    if opt_code == SGD:
        for p in range(n):
            step = lr * gr[p]
            th[p] -= step
            steps[p] = step
    elif opt_code == MOMENTUM:
        beta = hyper[H_BETA]
        for p in range(n):
            v = beta * ve[p] + (1 - beta) * gr[p]
            ve[p] = v
            step = lr * v
            th[p] -= step
            steps[p] = step
    elif opt_code == RMSPROP:
        beta2, eps = hyper[H_BETA2], hyper[H_EPS]
        for p in range(n):
            g = gr[p]
            s = beta2 * sqr[p] + (1 - beta2) * g * g
            sqr[p] = s
            step = lr * g / (math.sqrt(s) + eps)
            th[p] -= step
            steps[p] = step
    else:  # ADAM
        beta1, beta2, eps = hyper[H_BETA1], hyper[H_BETA2], hyper[H_EPS]
        for p in range(n):
            g = gr[p]
            v = beta1 * ve[p] + (1 - beta1) * g
            s = beta2 * sqr[p] + (1 - beta2) * g * g
            ve[p] = v
            sqr[p] = s
            step = lr * (v * r1) / (math.sqrt(s * r2) + eps)
            th[p] -= step
            steps[p] = step


@inline
def _update_span(theta, grad, vel, sq, lo, n, opt_code, hyper, r1, r2, steps):
    """``_update_segment`` on theta[lo:lo + n] and the same span of grad, vel, sq."""
    _update_segment(seg(theta, lo, n), seg(grad, lo, n), seg(vel, lo, n), seg(sq, lo, n),
                    opt_code, hyper, r1, r2, seg(steps, 0, n))


@inner
def _corrections(hyper, t):
    """Adam's bias corrections (1/(1 - beta1^t), 1/(1 - beta2^t))."""
    return 1.0 / (1 - hyper[H_BETA1] ** t), 1.0 / (1 - hyper[H_BETA2] ** t)


@jit
def update(theta, grad, vel, sq, opt_code, hyper, t):
    r1, r2 = _corrections(hyper, t)
    _update_segment(theta, grad, vel, sq, opt_code, hyper, r1, r2, np.empty_like(theta))


@inner
def _update_ratio(step_norm, w_norm):
    """||ΔW|| / ||W||; a zero matrix that moves has an infinite ratio, one that stays has 0."""
    if w_norm > 0:
        return step_norm / w_norm
    return np.inf if step_norm > 0 else 0.0


@inner
def _is_packed(theta, sizes, w_off, b_off):
    """True for Network's layout: W[1] b[1] W[2] b[2] ... back to back, covering theta."""
    end = 0
    for l in range(sizes.shape[0] - 1):
        if w_off[l] != end or b_off[l] != end + sizes[l + 1] * sizes[l]:
            return False
        end = b_off[l] + sizes[l + 1]
    return end == theta.shape[0]
