"""BLAS-like helpers of the CPU kernels: sums in a fixed order that still vectorize, and the three
matrix products of a training step (loop nests for tiny layers, BLAS for the rest).

Every sum here has its order fixed by the code, never by the machine's vector width, the number
of threads or the chunking, so results are reproducible run to run.
"""

import numpy as np

from .intrinsics import inner, jit
from .tuning import BLAS_MIN_MACS


@inner
def vsum(x):
    """sum(x) (1-D) as eight interleaved partial sums s_r = sum_{p = r mod 8} x[p], added as
    ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)): SIMD-friendly, order fixed."""
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


@inner
def dot(x, y):
    """sum(x * y) (1-D) in the same fixed order as ``vsum``."""
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


@inner
def add_sq_sum(x, y):
    """x += y (1-D, in place), returning sum(x**2) of the result in ``dot``'s fixed order: the
    sum of two gradients and its squared norm in one pass."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    n = x.shape[0]
    p = 0
    while p + 8 <= n:
        v0 = x[p] + y[p]
        v1 = x[p + 1] + y[p + 1]
        v2 = x[p + 2] + y[p + 2]
        v3 = x[p + 3] + y[p + 3]
        v4 = x[p + 4] + y[p + 4]
        v5 = x[p + 5] + y[p + 5]
        v6 = x[p + 6] + y[p + 6]
        v7 = x[p + 7] + y[p + 7]
        x[p], x[p + 1], x[p + 2], x[p + 3] = v0, v1, v2, v3
        x[p + 4], x[p + 5], x[p + 6], x[p + 7] = v4, v5, v6, v7
        s0 += v0 * v0
        s1 += v1 * v1
        s2 += v2 * v2
        s3 += v3 * v3
        s4 += v4 * v4
        s5 += v5 * v5
        s6 += v6 * v6
        s7 += v7 * v7
        p += 8
    while p < n:
        v = x[p] + y[p]
        x[p] = v
        s0 += v * v
        p += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@inner
def sq_sum(x):
    """sum(x**2) (1-D) = dot(x, x): one fixed-order reduction."""
    return dot(x, x)


@jit
def matmul(W, A, out):
    """out = W @ A (the forward product Z = W A[l-1]): BLAS from ``tuning.BLAS_MIN_MACS``
    multiply-adds on, else out[i, :] = sum_k W[i, k] A[k, :] with the batch as inner loop."""
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


@inner
def matmul_nt(dZ, A, out):
    """out = dZ @ A.T (the weight gradient dW = dZ A[l-1]^T; the transpose is a view, never a
    copy); small: out[i, k] = dot(dZ[i, :], A[k, :])."""
    n_out, m = dZ.shape
    n_in = A.shape[0]
    if n_out * n_in * m >= BLAS_MIN_MACS:
        np.dot(dZ, A.T, out)
        return
    for i in range(n_out):
        d = dZ[i]
        for k in range(n_in):
            out[i, k] = dot(d, A[k])


@inner
def matmul_tn(W, dZ, out):
    """out = W.T @ dZ (the error sent back, dA[l-1] = W^T dZ); small: out[k, :] = sum_i W[i, k]
    dZ[i, :]."""
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
