"""Numba CPU kernels: the compiled twin of ``reference.py`` (same functions, same signatures).

One ``train_chunk`` call runs many optimizer steps entirely in compiled code (forward, backward,
update, per-step statistics into preallocated arrays); Python only sees the loop between chunks.
``cache=True`` so later processes start warm, ``nogil=True`` so a logging thread runs alongside.

Where the time goes, and what keeps it small (``python -m lab.bench`` measures it):

- Matrix products: BLAS above ``tuning.BLAS_MIN_MACS`` multiply-adds (transposes passed as
  views, never copied), loop nests whose inner loop runs over the batch below it.
- Every elementwise loop vectorizes: ``exp``/``sigmoid``/``tanh`` come from ``fastmath`` (no libm
  calls), ``error_model='numpy'`` (no zero-division branches), and reductions never carry a
  floating-point sum through a loop LLVM would have to keep scalar. Sums over a matrix go into
  per-column accumulators (a vector loop), sums along a row into eight interleaved partial sums
  (``_sum``/``_dot``). The order of every sum is fixed by the code, never by the machine's vector
  width or the chunking, so results are reproducible run to run.
- Few passes over memory per layer and step: forward adds the bias, applies g, and gathers the
  activation mean and saturation in one pass; backward multiplies by g', sums the bias gradient,
  and gathers |dZ|^2 and the activation variance in one pass. Hidden layers keep no separate Z
  (g' and the saturation are read from A); only the output layer's Z is stored (losses need it).
- Views made inside the kernels hold no reference count (``_seg``/``_mat``): numba's atomic
  reference counting cost more than the arithmetic of the 2-wide nets.
- Steps with enough work run data-parallel: the batch is cut into two column blocks that run
  forward/backward on two threads with single-threaded BLAS, and their gradients are added in a
  fixed order (``chunk_plan``; the split depends on the shape only, never on the threads).
- float32 chunks flush subnormal numbers to zero (``_flush_subnormals``), as XLA does.
"""

import math
import os
import platform
import threading
from contextlib import contextmanager

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array

from . import fastmath as fm
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
from .tuning import (
    BLAS_MIN_MACS,
    BLAS_THREADS_MIN_MACS,
    PARALLEL_MIN_COLUMNS,
    PARALLEL_MIN_MACS,
    PARALLEL_MIN_PARAMS,
    PARALLEL_PARTS,
)

jit = njit(cache=True, nogil=True, **fm.FLAGS)
DELTA_LO, DELTA_HI = DELTA_LOG10_RANGE
SIG_SAT = SATURATION_SHARE * 0.25  # sigmoid's g'(z) = a (1 - a) is at most 1/4
# column accumulators (rows of the `acc` scratch array)
C_SUM, C_SAT, C_VAR, C_SQ = 0, 1, 2, 3


# --- views without reference counting ------------------------------------------------------------
# A numba view (slice, reshape, row) increments and later decrements its buffer's reference count
# with atomic instructions behind function pointers: ~20 ns a view, which dominated the step of
# small nets (a few hundred views per step). These views carry no reference (like numba.carray):
# they are only made of buffers that outlive them inside one kernel call.

def _raw_view_codegen(ndim):
    def codegen(context, builder, sig, args):
        src = context.make_array(sig.args[0])(context, builder, args[0])
        intp = context.get_value_type(types.intp)
        dims = [context.cast(builder, v, t, types.intp) for v, t in zip(args[1:], sig.args[1:])]
        start, shape = dims[0], dims[1:]
        out = context.make_array(sig.return_type)(context, builder)
        itemsize = context.get_abi_sizeof(context.get_data_type(sig.return_type.dtype))
        strides = [intp(itemsize)]
        for n in reversed(shape[1:]):
            strides.insert(0, builder.mul(n, strides[0]))
        populate_array(out, data=builder.gep(src.data, [start]), shape=shape, strides=strides,
                       itemsize=itemsize, meminfo=None)
        return out._getvalue()
    return codegen


@intrinsic
def _seg(typingctx, buf, start, n):
    """buf[start:start + n] of a 1-D contiguous buffer, holding no reference."""
    if not (isinstance(buf, types.Array) and buf.ndim == 1 and buf.layout == "C"):
        return None
    return types.Array(buf.dtype, 1, "C")(buf, start, n), _raw_view_codegen(1)


@intrinsic
def _mat(typingctx, buf, start, rows, cols):
    """buf[start:start + rows*cols].reshape(rows, cols) of a 1-D contiguous buffer, no reference."""
    if not (isinstance(buf, types.Array) and buf.ndim == 1 and buf.layout == "C"):
        return None
    return types.Array(buf.dtype, 2, "C")(buf, start, rows, cols), _raw_view_codegen(2)


# --- float32: flush subnormals to zero -------------------------------------------------------
# Deep sigmoid nets in float32 push the backpropagated errors below 1.2e-38, where every x86
# operation on a subnormal number takes a ~100-cycle microcode assist: the 50x64 net ran 1.7x
# slower in float32 than in float64. float32 chunks therefore run with the MXCSR flags FTZ and
# DAZ set (as XLA and GPU code do): values below float32's normal range count as 0. Each thread
# sets them for its own work and restores its previous mode; float64 is never touched (its
# subnormals start at 2.2e-308).

_X86 = platform.machine().lower() in ("x86_64", "amd64", "x86", "i386", "i686")
FTZ_DAZ = 0x8040


@intrinsic
def _mxcsr(typingctx, value):
    """Set the SSE control/status register to value (if value >= 0) and return its previous
    contents; a no-op returning -1 on other processors."""
    if not isinstance(value, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        if not _X86:
            return ir.Constant(i64, -1)
        i32 = ir.IntType(32)
        slot = builder.alloca(i32)
        ptr = builder.bitcast(slot, ir.IntType(8).as_pointer())
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type])
        store = builder.module.declare_intrinsic("llvm.x86.sse.stmxcsr", fnty=fnty)
        load = builder.module.declare_intrinsic("llvm.x86.sse.ldmxcsr", fnty=fnty)
        builder.call(store, [ptr])
        old = builder.load(slot)
        value = context.cast(builder, args[0], sig.args[0], types.int64)
        with builder.if_then(builder.icmp_signed(">=", value, ir.Constant(i64, 0))):
            builder.store(builder.trunc(value, i32), slot)
            builder.call(load, [ptr])
        return builder.zext(old, i64)

    return types.int64(value), codegen


@jit
def _flush_subnormals(theta):
    """Set FTZ/DAZ for a float32 theta in this thread; returns the mode to restore (or -1)."""
    if theta.itemsize != 4:
        return -1
    old = _mxcsr(-1)
    if old >= 0:
        _mxcsr(old | FTZ_DAZ)
    return old


@jit
def _restore_mode(old):
    if old >= 0:
        _mxcsr(old)


@jit
def fp_mode():
    """This thread's MXCSR (-1 off x86): tests check that kernels leave it as they found it."""
    return _mxcsr(-1)


@jit
def layer_views(theta, sizes, w_off, b_off, l):
    n_in, n_out = sizes[l], sizes[l + 1]
    W = theta[w_off[l]:w_off[l] + n_out * n_in].reshape((n_out, n_in))
    b = theta[b_off[l]:b_off[l] + n_out]
    return W, b


@jit
def _layer(theta, sizes, w_off, b_off, l):
    """layer_views without reference counting (internal)."""
    n_in, n_out = sizes[l], sizes[l + 1]
    return _mat(theta, w_off[l], n_out, n_in), _seg(theta, b_off[l], n_out)


# --- sums in a fixed order that still vectorizes -------------------------------------------------

@jit
def _sum(x):
    """sum(x) (1-D) as eight interleaved partial sums (SIMD-friendly, order fixed)."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    n = x.shape[0]
    p = 0
    while p + 8 <= n:
        s0 += x[p]
        s1 += x[p + 1]
        s2 += x[p + 2]
        s3 += x[p + 3]
        s4 += x[p + 4]
        s5 += x[p + 5]
        s6 += x[p + 6]
        s7 += x[p + 7]
        p += 8
    while p < n:
        s0 += x[p]
        p += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@jit
def _dot(x, y):
    """sum(x * y) (1-D) in the same fixed order as ``_sum``."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    n = x.shape[0]
    p = 0
    while p + 8 <= n:
        s0 += x[p] * y[p]
        s1 += x[p + 1] * y[p + 1]
        s2 += x[p + 2] * y[p + 2]
        s3 += x[p + 3] * y[p + 3]
        s4 += x[p + 4] * y[p + 4]
        s5 += x[p + 5] * y[p + 5]
        s6 += x[p + 6] * y[p + 6]
        s7 += x[p + 7] * y[p + 7]
        p += 8
    while p < n:
        s0 += x[p] * y[p]
        p += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@jit
def _sq_sum(x):
    """sum(x**2) (1-D) in the same fixed order as ``_sum``."""
    return _dot(x, x)


# --- matrix products: loop nests for tiny layers, BLAS for the rest -------------------------------

@jit
def _matmul(W, A, out):
    """out = W @ A."""
    n_out, n_in = W.shape
    m = A.shape[1]
    if n_out * n_in * m >= BLAS_MIN_MACS:
        np.dot(W, A, out)
        return
    for i in range(n_out):
        o = out[i]
        w = W[i, 0]
        a = A[0]
        for j in range(m):
            o[j] = w * a[j]
        for k in range(1, n_in):
            w = W[i, k]
            a = A[k]
            for j in range(m):
                o[j] += w * a[j]


@jit
def _matmul_nt(dZ, A, out):
    """out = dZ @ A.T (the weight gradient)."""
    n_out, m = dZ.shape
    n_in = A.shape[0]
    if n_out * n_in * m >= BLAS_MIN_MACS:
        np.dot(dZ, A.T, out)
        return
    for i in range(n_out):
        d = dZ[i]
        for k in range(n_in):
            out[i, k] = _dot(d, A[k])


@jit
def _matmul_tn(W, dZ, out):
    """out = W.T @ dZ (the error sent to the previous layer)."""
    n_out, n_in = W.shape
    m = dZ.shape[1]
    if n_out * n_in * m >= BLAS_MIN_MACS:
        np.dot(W.T, dZ, out)
        return
    for k in range(n_in):
        o = out[k]
        w = W[0, k]
        d = dZ[0]
        for j in range(m):
            o[j] = w * d[j]
        for i in range(1, n_out):
            w = W[i, k]
            d = dZ[i]
            for j in range(m):
                o[j] += w * d[j]


# --- forward: bias + g(Z) in place, with the activation mean and saturation in the same pass ------

@jit
def _activate_row(code, a, bi, m, s, c):
    """a[:m] = g(a[:m] + bi) for an elementwise activation, adding a into s[j] and 1 into c[j]
    where the unit saturates (s and c of a's dtype: vector loops that mix float32 and float64
    run several times slower)."""
    one, zero = a.dtype.type(1.0), a.dtype.type(0.0)
    if code == SIGMOID:
        sat = a.dtype.type(SIG_SAT)
        for j in range(m):
            v = fm.sigmoid(a[j] + bi)
            a[j] = v
            s[j] += v
            c[j] += one if v * (one - v) < sat else zero
    elif code == TANH:
        sat = a.dtype.type(SATURATION_SHARE)
        for j in range(m):
            v = fm.tanh(a[j] + bi)
            a[j] = v
            s[j] += v
            c[j] += one if one - v * v < sat else zero
    elif code == RELU:
        for j in range(m):
            z = a[j] + bi
            v = z if z > 0 else zero
            a[j] = v
            s[j] += v
            c[j] += one if z <= 0 else zero
    elif code == LEAKY_RELU:
        slope = a.dtype.type(LEAKY_SLOPE)
        for j in range(m):
            z = a[j] + bi
            v = z if z > 0 else slope * z
            a[j] = v
            s[j] += v
            c[j] += one if z <= 0 else zero
    else:  # IDENTITY
        for j in range(m):
            v = a[j] + bi
            a[j] = v
            s[j] += v


@jit
def _softmax_columns(Z, A):
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


@jit
def _zero_acc(acc, m):
    for r in range(acc.shape[0]):
        for j in range(m):
            acc[r, j] = 0


# Per-layer raw sums of one batch (or one part of it): raw[R_*, l]. The statistics follow from
# them (_finish_stats); parts of a batch combine exactly like the halves of a parallel variance.
R_SUM, R_SAT, R_M2, R_DSQ = 0, 1, 2, 3
N_RAW = 4


@jit
def _hidden_forward(code, A, b, raw, l, acc):
    """A = g(A + b) in place (A holds W @ A_prev); sum and saturated count into raw."""
    n, m = A.shape
    _zero_acc(acc, m)
    s, c = acc[C_SUM], acc[C_SAT]
    for i in range(n):
        _activate_row(code, A[i], b[i], m, s, c)
    raw[R_SUM, l] = _sum(s)
    raw[R_SAT, l] = _sum(c)


@jit
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
    raw[R_SUM, l] = _sum(s)
    raw[R_SAT, l] = _sum(c)


# --- backward: dZ = dA * g'(A) with the bias gradient and the statistics in the same pass -------

@jit
def _slope_row(code, d, a, m):
    """d[:m] *= g'(z) written from a = g(z) (ReLU: z > 0 exactly when a > 0)."""
    one = a.dtype.type(1.0)
    if code == SIGMOID:
        for j in range(m):
            d[j] = d[j] * (a[j] * (one - a[j]))
    elif code == TANH:
        for j in range(m):
            d[j] = d[j] * (one - a[j] * a[j])
    elif code == RELU:
        zero = a.dtype.type(0.0)
        for j in range(m):
            d[j] = d[j] if a[j] > 0 else zero
    elif code == LEAKY_RELU:
        slope = a.dtype.type(LEAKY_SLOPE)
        for j in range(m):
            d[j] = d[j] if a[j] > 0 else d[j] * slope


@jit
def _delta_rows(code, D, A, db, raw, l, acc, apply_slope):
    """D *= g'(A) (if apply_slope), db = row sums of D; |D|^2 and the squared deviations of A
    from its mean (raw[R_SUM, l] / size, from the forward pass) into raw."""
    n, m = D.shape
    _zero_acc(acc, m)
    mean = D.dtype.type(raw[R_SUM, l] / (n * m))
    q, v = acc[C_SQ], acc[C_VAR]
    for i in range(n):
        d, a = D[i], A[i]
        if apply_slope:
            _slope_row(code, d, a, m)
        db[i] = _sum(d)
        for j in range(m):
            e = a[j] - mean
            q[j] += d[j] * d[j]
            v[j] += e * e
    raw[R_DSQ, l] = _sum(q)
    raw[R_M2, l] = _sum(v)


# --- losses ---------------------------------------------------------------------------------------

@jit
def _loss_and_output_delta(loss_code, out_act, ZL, AL, Y, dZ, m_all):
    """Loss summed over these columns / m_all, and dZ[L] written into dZ (1/m_all folded in; g'
    included for MSE). m_all is the whole batch's size (a part of a batch sees only its own
    columns)."""
    n, m = Y.shape
    total = 0.0
    if loss_code == MSE:
        scale = 2.0 / m_all
        for i in range(n):
            a, y, d = AL[i], Y[i], dZ[i]
            for j in range(m):
                d[j] = a[j] - y[j]
            total += _sq_sum(d)
            for j in range(m):
                d[j] = scale * d[j]
            if out_act != IDENTITY and out_act != SOFTMAX:
                _slope_row(out_act, d, a, m)
        return total / m_all
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
        a, y, d = AL[i], Y[i], dZ[i]
        for j in range(m):
            d[j] = (a[j] - y[j]) / m_all
    return total / m_all


@jit
def _hits(loss_code, AL, Y):
    """(correct, counted) predictions: per output unit for BCE, per column for cross-entropy,
    (0, 0) for regression."""
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


@jit
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


@jit
def _view(buf, row0, rows, m):
    return _mat(buf, row0 * m, rows, m)


@jit
def _owned_view(buf, row0, rows, m):
    """Like _view, but holding a reference: for a view used after its buffer's last mention in
    the function that allocated it (numba frees a buffer right after its last use, so a
    reference-free view of it would read freed memory)."""
    return buf[row0 * m:(row0 + rows) * m].reshape((rows, m))


@jit
def _forward_pass(theta, sizes, w_off, b_off, hidden_act, out_act, A0, m, uoff, zbuf, abuf,
                  raw, accbuf):
    """Activations of every layer into abuf (the output layer's Z into zbuf); each layer's
    activation sum and saturated count into raw (cheap, so always)."""
    L = sizes.shape[0] - 1
    acc = _mat(accbuf, 0, 4, m)
    prev = A0
    for l in range(L - 1):
        W, b = _layer(theta, sizes, w_off, b_off, l)
        A = _view(abuf, uoff[l], sizes[l + 1], m)
        _matmul(W, prev, A)
        _hidden_forward(hidden_act, A, b, raw, l, acc)
        prev = A
    W, b = _layer(theta, sizes, w_off, b_off, L - 1)
    Z = _view(zbuf, 0, sizes[L], m)
    _matmul(W, prev, Z)
    _output_forward(out_act, Z, b, _view(abuf, uoff[L - 1], sizes[L], m), raw, L - 1, acc)


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
def _backward_pass(theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, A0, Y, m, m_all,
                   uoff, zbuf, abuf, grad, dz_a, dz_b, raw, hist, hist_act, hist_delta,
                   act_range, accbuf):
    """Loss (over these m columns, / m_all); grad filled; |dZ|^2 and the activations' squared
    deviations into raw (the forward pass left the sums there); histograms if hist."""
    L = sizes.shape[0] - 1
    acc = _mat(accbuf, 0, 4, m)
    nL = sizes[L]
    AL = _view(abuf, uoff[L - 1], nL, m)
    dZ = _view(dz_a, 0, nL, m)
    loss = _loss_and_output_delta(loss_code, out_act, _view(zbuf, 0, nL, m), AL, Y, dZ, m_all)
    _, db = _layer(grad, sizes, w_off, b_off, L - 1)
    _delta_rows(out_act, dZ, AL, db, raw, L - 1, acc, False)
    cur, other = dz_a, dz_b
    for l in range(L - 1, -1, -1):
        n_out, n_in = sizes[l + 1], sizes[l]
        dZ = _view(cur, 0, n_out, m)
        prev = A0 if l == 0 else _view(abuf, uoff[l - 1], n_in, m)
        W, _ = _layer(theta, sizes, w_off, b_off, l)
        dW, db = _layer(grad, sizes, w_off, b_off, l)
        _matmul_nt(dZ, prev, dW)
        if hist:
            _histogram(_view(abuf, uoff[l], n_out, m), act_range[l, 0], act_range[l, 1],
                       hist_act[l])
            _log10_abs_histogram(dZ, hist_delta[l])
        if l > 0:
            dA = _view(other, 0, n_in, m)
            _matmul_tn(W, dZ, dA)
            _, db_prev = _layer(grad, sizes, w_off, b_off, l - 1)
            _delta_rows(hidden_act, dA, prev, db_prev, raw, l - 1, acc, True)
            cur, other = other, cur
    return loss


@jit
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
    loss = _loss_and_output_delta(loss_code, out_act, ZL, AL, Yc, _view(dz_a, 0, sizes[L], m),
                                  m)
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
                          raw, False, no_hist, no_hist, np.zeros((L, 2)), acc)
    return loss, grad


@jit
def _update_segment(theta, grad, vel, sq, lo, hi, opt_code, hyper, r1, r2, keep_step):
    """Update theta[lo:hi] in place; with keep_step, grad[lo:hi] is overwritten by the step.
    r1, r2: Adam's bias corrections 1/(1 - beta1^t), 1/(1 - beta2^t) (multiplied, not divided:
    one division per parameter instead of three). Loops index views from 0, so LLVM knows the
    indices are non-negative and vectorizes."""
    n = hi - lo
    th, gr, ve, sqr = _seg(theta, lo, n), _seg(grad, lo, n), _seg(vel, lo, n), _seg(sq, lo, n)
    lr = hyper[H_LR]
    if opt_code == SGD:
        for p in range(n):
            step = lr * gr[p]
            th[p] -= step
            if keep_step:
                gr[p] = step
    elif opt_code == MOMENTUM:
        beta = hyper[H_BETA]
        for p in range(n):
            v = beta * ve[p] + (1 - beta) * gr[p]
            ve[p] = v
            step = lr * v
            th[p] -= step
            if keep_step:
                gr[p] = step
    elif opt_code == RMSPROP:
        beta2, eps = hyper[H_BETA2], hyper[H_EPS]
        for p in range(n):
            g = gr[p]
            s = beta2 * sqr[p] + (1 - beta2) * g * g
            sqr[p] = s
            step = lr * g / (math.sqrt(s) + eps)
            th[p] -= step
            if keep_step:
                gr[p] = step
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
            if keep_step:
                gr[p] = step


@jit
def _corrections(hyper, t):
    return 1.0 / (1 - hyper[H_BETA1] ** t), 1.0 / (1 - hyper[H_BETA2] ** t)


@jit
def update(theta, grad, vel, sq, opt_code, hyper, t):
    r1, r2 = _corrections(hyper, t)
    _update_segment(theta, grad, vel, sq, 0, theta.shape[0], opt_code, hyper, r1, r2, False)


@jit
def _update_ratio(step_norm, w_norm):
    if w_norm > 0:
        return step_norm / w_norm
    return np.inf if step_norm > 0 else 0.0


@jit
def _is_packed(theta, sizes, w_off, b_off):
    """True for Network's layout: W[1] b[1] W[2] b[2] ... back to back, covering theta."""
    end = 0
    for l in range(sizes.shape[0] - 1):
        if w_off[l] != end or b_off[l] != end + sizes[l + 1] * sizes[l]:
            return False
        end = b_off[l] + sizes[l + 1]
    return end == theta.shape[0]


# --- BLAS threads -------------------------------------------------------------------------------
# numba's np.dot calls SciPy's OpenBLAS (numpy has its own, left alone). Its threads pay off only
# on large products; on the 64-wide layers they cost more in synchronization than they save (and
# they would fight the two data-parallel halves below for the same cores), so a chunk sets them
# as planned and puts the process's setting back afterwards.

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


# --- the training chunk ----------------------------------------------------------------------------
# A step's batch is cut into `parts` column blocks. Each part runs forward and backward on its
# columns alone (its own buffers, gradient, raw sums); the parts' gradients are then added in
# order and one update follows. parts = 1 is the plain step; parts = 2 runs the two halves on two
# threads (prange), each with single-threaded BLAS: one synchronization per step instead of one
# per matrix product. The split depends only on the shape (tuning.py), so results never depend
# on the number of threads.

@jit
def _part_sizes(sizes, max_m):
    units, widest = 0, sizes[0]
    for l in range(1, sizes.shape[0]):
        units += sizes[l]
        widest = max(widest, sizes[l])
    nL, n_x = sizes[sizes.shape[0] - 1], sizes[0]
    # strides of one part's slot in each buffer
    return np.array([n_x * max_m, nL * max_m, nL * max_m, units * max_m, widest * max_m,
                     4 * max_m], dtype=np.int64)


@jit
def _part_step(p, parts, theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, X, Y,
               order, start, m_all, uoff, stride, xb, yb, zb, ab, da, dbuf, accb, grads, raws,
               hist, hists_act, hists_delta, act_range, losses, hits):
    """Forward and backward for part p of a step's batch (columns order[start + j])."""
    mode = _flush_subnormals(theta)
    n_x, n_y = sizes[0], sizes[sizes.shape[0] - 1]
    per = (m_all + parts - 1) // parts
    j0 = p * per
    m = min(per, m_all - j0)
    A0 = _mat(xb, p * stride[0], n_x, m)
    Yb = _mat(yb, p * stride[1], n_y, m)
    for j in range(m):
        col = order[start + j0 + j]
        for i in range(n_x):
            A0[i, j] = X[i, col]
        for i in range(n_y):
            Yb[i, j] = Y[i, col]
    n_theta = theta.shape[0]
    grad = _seg(grads, p * n_theta, n_theta)
    zbuf, abuf = _seg(zb, p * stride[2], stride[2]), _seg(ab, p * stride[3], stride[3])
    dz_a, dz_b = _seg(da, p * stride[4], stride[4]), _seg(dbuf, p * stride[4], stride[4])
    accbuf = _seg(accb, p * stride[5], stride[5])
    raw = raws[p]
    _forward_pass(theta, sizes, w_off, b_off, hidden_act, out_act, A0, m, uoff, zbuf, abuf, raw,
                  accbuf)
    losses[p] = _backward_pass(theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, A0,
                               Yb, m, m_all, uoff, zbuf, abuf, grad, dz_a, dz_b, raw, hist,
                               hists_act[p], hists_delta[p], act_range, accbuf)
    h, c = _hits(loss_code, _view(abuf, uoff[sizes.shape[0] - 2], n_y, m), Yb)
    hits[p, 0] = h
    hits[p, 1] = c
    _restore_mode(mode)


@njit(cache=True, nogil=True, parallel=True, **fm.FLAGS)
def _parts_parallel(parts, theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, X, Y,
                    order, start, m_all, uoff, stride, xb, yb, zb, ab, da, dbuf, accb, grads,
                    raws, hist, hists_act, hists_delta, act_range, losses, hits):
    for p in prange(parts):
        _part_step(p, parts, theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, X, Y,
                   order, start, m_all, uoff, stride, xb, yb, zb, ab, da, dbuf, accb, grads,
                   raws, hist, hists_act, hists_delta, act_range, losses, hits)


@jit
def _finish_stats(raws, parts, sizes, m_all, stats):
    """stats[L_ACT_MEAN, L_ACT_STD, L_SATURATION, L_DELTA] from the parts' raw sums (variance:
    the parts' squared deviations around their own means, combined as in Chan et al.)."""
    per = (m_all + parts - 1) // parts
    for l in range(sizes.shape[0] - 1):
        n = sizes[l + 1]
        total, sat, dsq = 0.0, 0.0, 0.0
        count, mean, m2 = 0.0, 0.0, 0.0
        for p in range(parts):
            cp = float(n * max(0, min(per, m_all - p * per)))
            if cp == 0:
                continue  # an empty part (batch smaller than the parts): nothing to add
            sp = raws[p, R_SUM, l]
            total += sp
            sat += raws[p, R_SAT, l]
            dsq += raws[p, R_DSQ, l]
            if count == 0:
                count, mean, m2 = cp, sp / cp, raws[p, R_M2, l]
            else:
                delta = sp / cp - mean
                both = count + cp
                m2 += raws[p, R_M2, l] + delta * delta * count * cp / both
                mean += delta * cp / both
                count = both
        stats[L_ACT_MEAN, l] = total / count
        stats[L_SATURATION, l] = sat / count
        stats[L_ACT_STD, l] = math.sqrt(m2 / count)
        stats[L_DELTA, l] = math.sqrt(dsq)


@njit(cache=True, nogil=True, parallel=True, **fm.FLAGS)
def _combine_parallel(grads, parts, theta, sizes, w_off, b_off, sums):
    """Layer by layer on all threads: the other parts' gradients added into part 0's, then
    sums[l] = (|dW|^2, |db|^2, |W|^2) while the layer is still in cache."""
    n = theta.shape[0]
    for l in prange(sizes.shape[0] - 1):
        mode = _flush_subnormals(theta)
        n_w, n_b = sizes[l + 1] * sizes[l], sizes[l + 1]
        for lo, cnt in ((w_off[l], n_w), (b_off[l], n_b)):
            g = _seg(grads, lo, cnt)
            for p in range(1, parts):
                other = _seg(grads, p * n + lo, cnt)
                for i in range(cnt):
                    g[i] += other[i]
        sums[l, 0] = _sq_sum(_seg(grads, w_off[l], n_w))
        sums[l, 1] = _sq_sum(_seg(grads, b_off[l], n_b))
        sums[l, 2] = _sq_sum(_seg(theta, w_off[l], n_w))
        _restore_mode(mode)


@njit(cache=True, nogil=True, parallel=True, **fm.FLAGS)
def _update_parallel(theta, grad, vel, sq, opt_code, hyper, r1, r2, sizes, w_off, b_off, moved):
    """Layer by layer on all threads: the update (steps into grad), then |step W|^2."""
    for l in prange(sizes.shape[0] - 1):
        mode = _flush_subnormals(theta)
        n_w = sizes[l + 1] * sizes[l]
        _update_segment(theta, grad, vel, sq, w_off[l], w_off[l] + n_w, opt_code, hyper, r1, r2,
                        True)
        _update_segment(theta, grad, vel, sq, b_off[l], b_off[l] + sizes[l + 1], opt_code, hyper,
                        r1, r2, True)
        moved[l] = _sq_sum(_seg(grad, w_off[l], n_w))
        _restore_mode(mode)


@jit
def _chunk(theta, vel, sq, sizes, w_off, b_off, hidden_act, out_act, loss_code, opt_code,
           hyper, t_start, X, Y, order, starts, counts, scalars, layer_stats, hist_act,
           hist_delta, act_range, parts, big):
    """train_chunk's loop: `parts` column blocks per step (the parallel ones on threads); with
    big, the gradient sum, norms and update run layer-parallel too (see chunk_plan)."""
    L = sizes.shape[0] - 1
    max_m = counts.max()
    per_max = (max_m + parts - 1) // parts
    uoff = _unit_offsets(sizes)
    stride = _part_sizes(sizes, per_max)
    dt = theta.dtype
    xb, yb = np.empty(parts * stride[0], dt), np.empty(parts * stride[1], dt)
    zb, ab = np.empty(parts * stride[2], dt), np.empty(parts * stride[3], dt)
    da, dbuf = np.empty(parts * stride[4], dt), np.empty(parts * stride[4], dt)
    accb = np.empty(parts * stride[5], dt)
    n_theta = theta.shape[0]
    grads = np.empty(parts * n_theta, dt)
    grad = _seg(grads, 0, n_theta)  # part 0's gradient; the others are added into it
    raws = np.zeros((parts, N_RAW, L))
    hists_act = np.zeros((parts, L, hist_act.shape[1]), np.int64)
    hists_delta = np.zeros((parts, L, hist_delta.shape[1]), np.int64)
    losses = np.zeros(parts)
    hits = np.zeros((parts, 2), np.int64)
    packed = _is_packed(theta, sizes, w_off, b_off)
    mode = _flush_subnormals(theta)
    sums = np.zeros((L, 3))
    moved = np.zeros(L)
    for k in range(starts.shape[0]):
        m_all = counts[k]
        if parts == 1:
            _part_step(0, 1, theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, X, Y,
                       order, starts[k], m_all, uoff, stride, xb, yb, zb, ab, da, dbuf, accb,
                       grads, raws, k == 0, hists_act, hists_delta, act_range, losses, hits)
        else:
            _parts_parallel(parts, theta, sizes, w_off, b_off, hidden_act, out_act, loss_code,
                            X, Y, order, starts[k], m_all, uoff, stride, xb, yb, zb, ab, da,
                            dbuf, accb, grads, raws, k == 0, hists_act, hists_delta, act_range,
                            losses, hits)
        stats = layer_stats[k]
        if big:  # sum the parts' gradients and take the norms on all threads
            _combine_parallel(grads, parts, theta, sizes, w_off, b_off, sums)
        else:
            for p in range(1, parts):
                other = _seg(grads, p * n_theta, n_theta)
                for i in range(n_theta):
                    grad[i] += other[i]
            for l in range(L):
                n_out, n_in = sizes[l + 1], sizes[l]
                sums[l, 0] = _sq_sum(_seg(grad, w_off[l], n_out * n_in))
                sums[l, 1] = _sq_sum(_seg(grad, b_off[l], n_out))
                sums[l, 2] = _sq_sum(_seg(theta, w_off[l], n_out * n_in))
        _finish_stats(raws, parts, sizes, m_all, stats)
        if k == 0:
            for p in range(parts):
                hist_act += hists_act[p]
                hist_delta += hists_delta[p]
        loss, hit, counted = 0.0, 0, 0
        for p in range(parts):
            loss += losses[p]
            hit += hits[p, 0]
            counted += hits[p, 1]
        grad_sq = 0.0
        for l in range(L):
            grad_sq += sums[l, 0] + sums[l, 1]
            stats[L_GRAD, l] = math.sqrt(sums[l, 0])
            stats[L_WEIGHT, l] = math.sqrt(sums[l, 2])
            stats[L_UPDATE, l] = 0.0
        grad_total = math.sqrt(grad_sq)
        scalars[k, S_LOSS] = loss
        scalars[k, S_GRAD_TOTAL] = grad_total
        scalars[k, S_ACCURACY] = hit / counted if counted else np.nan
        if not (math.isfinite(loss) and math.isfinite(grad_total)) or loss > hyper[H_THRESHOLD]:
            _restore_mode(mode)
            return k + 1, True
        # the steps overwrite grad (no longer needed): each layer's update ratio is then one
        # more vector sum over its W part
        r1, r2 = _corrections(hyper, t_start + k + 1)
        if big:
            _update_parallel(theta, grad, vel, sq, opt_code, hyper, r1, r2, sizes, w_off, b_off,
                             moved)
        else:
            if packed:  # one pass over all parameters
                _update_segment(theta, grad, vel, sq, 0, n_theta, opt_code, hyper, r1, r2, True)
            for l in range(L):
                n_w = sizes[l + 1] * sizes[l]
                if not packed:
                    _update_segment(theta, grad, vel, sq, w_off[l], w_off[l] + n_w, opt_code,
                                    hyper, r1, r2, True)
                    _update_segment(theta, grad, vel, sq, b_off[l], b_off[l] + sizes[l + 1],
                                    opt_code, hyper, r1, r2, True)
                moved[l] = _sq_sum(_seg(grad, w_off[l], n_w))
        for l in range(L):
            stats[L_UPDATE, l] = _update_ratio(math.sqrt(moved[l]), stats[L_WEIGHT, l])
    _restore_mode(mode)
    return starts.shape[0], False


def chunk_plan(sizes, counts):
    """(parts, blas_threads, big) for a chunk: two data-parallel halves when a step has enough
    work and columns (tuning.PARALLEL_MIN_MACS, PARALLEL_MIN_COLUMNS), and then, with enough
    parameters (PARALLEL_MIN_PARAMS), the gradient sum, norms and update on all threads too
    (big). BLAS runs single-threaded whenever the halves run, or when no matrix product is big
    enough to gain from BLAS threads (BLAS_THREADS_MIN_MACS); None keeps the process's BLAS
    setting. Depends on the shape only: the numbers a run produces never depend on the
    machine's threads."""
    sizes = np.asarray(sizes)
    m = int(np.min(counts)) if len(counts) else 1
    layer_macs = sizes[1:] * sizes[:-1]
    step_macs = 3 * int(layer_macs.sum()) * m
    if (PARALLEL_PARTS > 1 and step_macs >= PARALLEL_MIN_MACS
            and m >= PARALLEL_PARTS * PARALLEL_MIN_COLUMNS):
        params = int(layer_macs.sum() + sizes[1:].sum())
        return PARALLEL_PARTS, 1, params >= PARALLEL_MIN_PARAMS
    return 1, (None if int(layer_macs.max()) * m >= BLAS_THREADS_MIN_MACS else 1), False


_threads_started = []


def _part_threads(parts):
    """Threads for the parts: numba's (numba.get_num_threads()), at most OMP_NUM_THREADS when that is
    set (joblib/loky sets it to cores // workers in its workers), at most parts. On first use
    numba's OpenMP pool starts with passive waits (unless OMP_WAIT_POLICY says otherwise):
    spinning threads on a busy machine would stall each other for whole time slices."""
    if not _threads_started:
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
        _threads_started.append(True)
    threads = numba.get_num_threads()
    try:
        threads = min(threads, int(os.environ.get("OMP_NUM_THREADS", threads)))
    except ValueError:
        pass
    return max(1, min(threads, parts))


def train_chunk(theta, vel, sq, sizes, w_off, b_off, hidden_act, out_act, loss_code, opt_code,
                hyper, t_start, X, Y, order, starts, counts, scalars, layer_stats,
                hist_act, hist_delta, act_range):
    """Run len(starts) optimizer steps in one compiled call (see reference.train_chunk for the
    contract); returns (steps_done, diverged)."""
    parts, blas, big = chunk_plan(sizes, counts)
    args = (theta, vel, sq, sizes, w_off, b_off, hidden_act, out_act, loss_code, opt_code, hyper,
            t_start, X, Y, order, starts, counts, scalars, layer_stats, hist_act, hist_delta,
            act_range, parts, big)
    with blas_threads(blas):
        if parts == 1:
            done, diverged = _chunk(*args)
        else:
            threads = _part_threads(parts)
            before = numba.get_num_threads()
            numba.set_num_threads(threads)
            try:
                done, diverged = _chunk(*args)
            finally:
                numba.set_num_threads(before)
    return int(done), bool(diverged)
