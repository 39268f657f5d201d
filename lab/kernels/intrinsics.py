"""LLVM-level building blocks of the CPU kernels: views that hold no reference, the x86
floating-point mode (flush subnormals to zero), and an atomic counter for dynamic scheduling.

Nothing here is math: ``cpu.py`` uses these so its loops stay fast and its results reproducible.
"""

import platform

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload
from numba.np.arrayobj import populate_array

from . import fastmath as fm

# Compiled entry points (called from Python): cached, release the GIL.
jit = njit(cache=True, nogil=True, **fm.FLAGS)
# Helpers only compiled code calls: no Python or C wrapper (numba would otherwise generate, optimize
# and compile both for every helper and signature, ~0.05 s of a cold start each; numba's own
# @overload implementations are built the same way). Called from Python, they would crash.
inner = njit(cache=True, nogil=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, **fm.FLAGS)
# One-line helpers (views): inlined into the caller's numba IR, never compiled on their own.
inline = njit(nogil=True, inline="always", **fm.FLAGS)


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
def seg(typingctx, buf, start, n):
    """buf[start:start + n] of a 1-D contiguous buffer, holding no reference."""
    if not (isinstance(buf, types.Array) and buf.ndim == 1 and buf.layout == "C"):
        return None
    return types.Array(buf.dtype, 1, "C")(buf, start, n), _raw_view_codegen(1)


@intrinsic
def mat(typingctx, buf, start, rows, cols):
    """buf[start:start + rows*cols].reshape(rows, cols) of a 1-D contiguous buffer, no reference."""
    if not (isinstance(buf, types.Array) and buf.ndim == 1 and buf.layout == "C"):
        return None
    return types.Array(buf.dtype, 2, "C")(buf, start, rows, cols), _raw_view_codegen(2)


def float_bits(x):
    """The bits of a 1-D float array as signed integers of its width (a view)."""
    return x.view(np.int64 if x.itemsize == 8 else np.int32)


@overload(float_bits)
def _float_bits(x):
    # chosen at typing time: a kernel compiles the view of its own float width only
    if not (isinstance(x, types.Array) and isinstance(x.dtype, types.Float)):
        return None
    ity = np.int64 if x.dtype.bitwidth == 64 else np.int32
    return lambda x: x.view(ity)


# --- atomic counter: parts of a step handed out to whichever thread asks first ------------------

def _is_counter(counter):
    """The atomics take a 1-D contiguous int64 array (typing time: refuse anything else)."""
    return (isinstance(counter, types.Array) and counter.ndim == 1 and counter.layout == "C"
            and counter.dtype == types.int64)


@intrinsic
def fetch_add(typingctx, counter, index, value):
    """counter[index] += value atomically (sequentially consistent); returns the old value.
    counter: a 1-D contiguous int64 array."""
    if not _is_counter(counter):
        return None

    def codegen(context, builder, sig, args):
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], sig.args[1], types.intp)
        v = context.cast(builder, args[2], sig.args[2], types.int64)
        ptr = builder.gep(arr.data, [i])
        return builder.atomic_rmw("add", ptr, v, "seq_cst")

    return types.int64(counter, index, value), codegen


@intrinsic
def atomic_read(typingctx, counter, index):
    """counter[index] read atomically (never hoisted out of a waiting loop)."""
    if not _is_counter(counter):
        return None

    def codegen(context, builder, sig, args):
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], sig.args[1], types.intp)
        ptr = builder.gep(arr.data, [i])
        return builder.load_atomic(ptr, "seq_cst", 8)

    return types.int64(counter, index), codegen


@intrinsic
def compare_and_swap(typingctx, counter, index, expected, value):
    """counter[index] = value if it equals expected, atomically (sequentially consistent);
    True when it did. counter: a 1-D contiguous int64 array."""
    if not _is_counter(counter):
        return None

    def codegen(context, builder, sig, args):
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], sig.args[1], types.intp)
        old = context.cast(builder, args[2], sig.args[2], types.int64)
        new = context.cast(builder, args[3], sig.args[3], types.int64)
        ptr = builder.gep(arr.data, [i])
        pair = builder.cmpxchg(ptr, old, new, "seq_cst", "seq_cst")
        return builder.extract_value(pair, 1)

    return types.boolean(counter, index, expected, value), codegen


@intrinsic
def sleep_us(typingctx, us):
    """Sleep about `us` microseconds (POSIX usleep): the core is free meanwhile."""
    if not isinstance(us, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(32)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "usleep")
        builder.call(fn, [builder.trunc(context.cast(builder, args[0], sig.args[0], types.int64),
                                        ir.IntType(32))])
        return context.get_dummy_value()

    return types.void(us), codegen


@intrinsic
def yield_thread(typingctx):
    """Give the core away (POSIX sched_yield) while waiting for other threads."""
    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.IntType(32), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "sched_yield")
        builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


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


@inner
def flush_subnormals(theta):
    """Set FTZ/DAZ for a float32 theta in this thread; returns the mode to restore (or -1)."""
    if theta.itemsize != 4:
        return -1
    old = _mxcsr(-1)
    if old >= 0:
        _mxcsr(old | FTZ_DAZ)
    return old


@inner
def restore_mode(old):
    if old >= 0:
        _mxcsr(old)


@jit
def fp_mode():
    """This thread's MXCSR (-1 off x86): tests check that kernels leave it as they found it."""
    return _mxcsr(-1)
