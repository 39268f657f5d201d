"""Vectorizable ``exp``, ``sigmoid`` and ``tanh`` for the numba kernels.

Numba lowers ``math.exp``/``math.tanh`` to scalar libm calls, which LLVM cannot turn into SIMD
code, so a loop applying them runs one element at a time (about 1 ms per step for the sigmoid
layers of a 10x64 net at batch 256). These versions use only arithmetic, ``rint`` and bit casts,
so a loop over them vectorizes (AVX2/AVX-512 on x86, NEON/SVE on ARM):

``exp(x) = 2**k * (1 + q)`` with ``k = rint(x / ln 2)``, ``r = x - k ln 2`` (Cody-Waite, two
constants), and ``q = expm1(r)`` from its Taylor polynomial on ``|r| <= ln(2)/2`` (degree 13 in
float64, 8 in float32). ``2**k`` is built from its exponent bits in two halves, so results that
are subnormal or overflow come out right. ``tanh(z) = -t / (2 + t)`` with ``t = expm1(-2|z|)``
(no cancellation near 0), sign restored; ``sigmoid`` is the reference's stable formula over this
``exp``. Accurate to a few ulp (``tests/test_fastmath.py`` compares with ``np.exp``/``np.tanh``
over the whole range, infinities and NaN included).

In compiled code call ``exp``, ``sigmoid``, ``tanh`` on a float32 or float64 scalar: an overload
picks the precision's version, which LLVM inlines into the caller's loop. From Python they fall
back to numpy (``exp_array`` etc. run the compiled versions over arrays, for tests and benchmarks).

Numba's cache tracks only the file of the function it compiled: after editing this file, delete
``lab/kernels/__pycache__`` so that cached kernels of ``cpu.py`` are rebuilt with the change.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

# Speed flags for these functions and the kernels that call them: 'contract' lets LLVM fuse a*b+c
# into an FMA; never 'nnan'/'ninf', since divergence detection needs NaN and inf to survive;
# error_model='numpy' drops the zero-division branches that would keep loops scalar.
FLAGS = {"fastmath": {"contract"}, "error_model": "numpy", "boundscheck": False}


# --- LLVM building blocks: round to nearest, and 2**k from exponent bits --------------------------

@intrinsic
def _rint(typingctx, x):
    """Round to nearest (ties to even) as a float of x's type: one vector instruction."""
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, sig, args):
        fn = builder.module.declare_intrinsic("llvm.rint", [args[0].type])
        return builder.call(fn, args)

    return x(x), codegen


@intrinsic
def _pow2(typingctx, k):
    """2.0**k for an integral float k whose biased exponent is in the normal range: the exponent
    bits (k + bias) << mantissa_bits reinterpreted as a float of k's type."""
    if not isinstance(k, types.Float):
        return None
    bits, bias, shift = (64, 1023, 52) if k.bitwidth == 64 else (32, 127, 23)

    def codegen(context, builder, sig, args):
        ity = ir.IntType(bits)
        n = builder.fptosi(args[0], ity)
        n = builder.add(n, ir.Constant(ity, bias))
        n = builder.shl(n, ir.Constant(ity, shift))
        return builder.bitcast(n, args[0].type)

    return k(k), codegen


# --- float64 ---------------------------------------------------------------------------------------

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # 32 significant bits: k * _LN2_HI is exact for |k| < 2**21
_LN2_LO = 1.90821492927058770002e-10
# 1/n! for n = 2..13: expm1(r) = r + r^2 (C2 + r (C3 + ...)), error < 1e-17 for |r| <= ln(2)/2
_C64 = tuple(1.0 / float(np.prod(np.arange(1, n + 1, dtype=np.float64))) for n in range(2, 14))
(_C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12, _C13) = _C64


@njit(**FLAGS)
def _expm1_reduced64(r):
    p = _C13
    p = p * r + _C12
    p = p * r + _C11
    p = p * r + _C10
    p = p * r + _C9
    p = p * r + _C8
    p = p * r + _C7
    p = p * r + _C6
    p = p * r + _C5
    p = p * r + _C4
    p = p * r + _C3
    p = p * r + _C2
    return r + (r * r) * p


@njit(**FLAGS)
def exp64(x):
    # clamp (NaN goes low, restored at the end): exp(+-1100) is already inf / 0
    xc = x if x > -1100.0 else -1100.0
    xc = xc if xc < 1100.0 else 1100.0
    k = _rint(xc * _LOG2E)
    r = (xc - k * _LN2_HI) - k * _LN2_LO
    q = _expm1_reduced64(r)
    k1 = _rint(k * 0.5 - 0.25)  # floor(k / 2) for integral k; k1, k - k1 in [-794, 794]
    s1 = _pow2(k1)
    y = (s1 + s1 * q) * _pow2(k - k1)
    return y if x == x else x


@njit(**FLAGS)
def tanh64(x):
    a = abs(x)
    a = a if a < 40.0 else 40.0  # tanh(40) == 1.0 in float64; also sends NaN to 40
    u = -2.0 * a
    k = _rint(u * _LOG2E)  # in [-116, 0]: one 2**k is enough
    r = (u - k * _LN2_HI) - k * _LN2_LO
    s = _pow2(k)
    t = s * _expm1_reduced64(r) + (s - 1.0)  # expm1(u), accurate near 0
    y = -t / (2.0 + t)
    y = -y if x < 0.0 else y
    return y if x == x else x


@njit(**FLAGS)
def sigmoid64(x):
    e = exp64(-abs(x))
    return 1.0 / (1.0 + e) if x >= 0.0 else e / (1.0 + e)


# --- float32 (all arithmetic in float32: twice the lanes) --------------------------------------

_F = np.float32
_LOG2E_F = _F(1.4426950408889634)
_LN2_HI_F = _F(0.693359375)  # 9 significant bits: exact products for |k| < 2**15
_LN2_LO_F = _F(-2.12194440e-4)
# 1/n! for n = 2..8: error < 2e-9 relative for |r| <= ln(2)/2
(_D2, _D3, _D4, _D5, _D6, _D7, _D8) = (_F(c) for c in _C64[:7])
_ONE_F, _TWO_F, _HALF_F, _QUARTER_F = _F(1.0), _F(2.0), _F(0.5), _F(0.25)


@njit(**FLAGS)
def _expm1_reduced32(r):
    p = _D8
    p = p * r + _D7
    p = p * r + _D6
    p = p * r + _D5
    p = p * r + _D4
    p = p * r + _D3
    p = p * r + _D2
    return r + (r * r) * p


@njit(**FLAGS)
def exp32(x):
    # exp(+-170) is inf / 0 in float32; k in [-246, 246] splits into normal halves
    xc = x if x > _F(-170.0) else _F(-170.0)
    xc = xc if xc < _F(170.0) else _F(170.0)
    k = _rint(xc * _LOG2E_F)
    r = (xc - k * _LN2_HI_F) - k * _LN2_LO_F
    q = _expm1_reduced32(r)
    k1 = _rint(k * _HALF_F - _QUARTER_F)
    s1 = _pow2(k1)
    y = (s1 + s1 * q) * _pow2(k - k1)
    return y if x == x else x


@njit(**FLAGS)
def tanh32(x):
    a = abs(x)
    a = a if a < _F(20.0) else _F(20.0)  # tanh(20) == 1.0 in float32
    u = -_TWO_F * a
    k = _rint(u * _LOG2E_F)
    r = (u - k * _LN2_HI_F) - k * _LN2_LO_F
    s = _pow2(k)
    t = s * _expm1_reduced32(r) + (s - _ONE_F)
    y = -t / (_TWO_F + t)
    y = -y if x < _F(0.0) else y
    return y if x == x else x


@njit(**FLAGS)
def sigmoid32(x):
    e = exp32(-abs(x))
    return _ONE_F / (_ONE_F + e) if x >= _F(0.0) else e / (_ONE_F + e)


# --- precision-generic names for compiled code (numpy fallbacks from Python) -------------------

def exp(x):
    """e**x; in compiled code the vectorizable version for x's precision."""
    return np.exp(x)


def tanh(x):
    """tanh(x); in compiled code the vectorizable version for x's precision."""
    return np.tanh(x)


def sigmoid(x):
    """1 / (1 + e**-x) in the reference's stable form; compiled: the vectorizable version."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _by_precision(f32, f64):
    def typer(x):
        if x == types.float32:
            return lambda x: f32(x)
        if isinstance(x, types.Float):
            return lambda x: f64(x)
        return None
    return typer


overload(exp, jit_options=FLAGS)(_by_precision(exp32, exp64))
overload(tanh, jit_options=FLAGS)(_by_precision(tanh32, tanh64))
overload(sigmoid, jit_options=FLAGS)(_by_precision(sigmoid32, sigmoid64))


# --- array versions (tests, benchmarks) ----------------------------------------------------------

@njit(cache=True, nogil=True, **FLAGS)
def exp_array(x):
    flat = np.ascontiguousarray(x).ravel()
    out = np.empty_like(flat)
    for i in range(flat.size):
        out[i] = exp(flat[i])
    return out.reshape(x.shape)


@njit(cache=True, nogil=True, **FLAGS)
def tanh_array(x):
    flat = np.ascontiguousarray(x).ravel()
    out = np.empty_like(flat)
    for i in range(flat.size):
        out[i] = tanh(flat[i])
    return out.reshape(x.shape)


@njit(cache=True, nogil=True, **FLAGS)
def sigmoid_array(x):
    flat = np.ascontiguousarray(x).ravel()
    out = np.empty_like(flat)
    for i in range(flat.size):
        out[i] = sigmoid(flat[i])
    return out.reshape(x.shape)
