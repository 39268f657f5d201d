"""The CPU training chunk: many optimizer steps in one compiled call (``train_chunk``, exported
by ``cpu.py`` as part of its kernel set), built from ``cpu.py``'s passes over a batch.

A step's batch is cut into ``parts`` column blocks (``threads.chunk_plan``). Each part runs
forward and backward on its columns alone, into its own slot of the workspace (gradient, raw
sums, loss, hits, histograms); the parts' slots are then added in part order and one update
follows. parts = 1 is the plain step (``_chunk_serial``, which compiles no parallel code);
parts > 1 runs as a team of threads claiming parts (``_chunk_team``), or, for big nets, with
layer-parallel sums and updates (``_chunk_parts``). Which thread ran a part never matters: the
numbers are the same for any thread count and any timing.
"""

import math
import threading
from collections import OrderedDict, namedtuple

import numba
import numpy as np
from numba import njit, prange

from . import fastmath as fm
from .blas import add_sq_sum, sq_sum
from .codes import (
    H_THRESHOLD,
    L_ACT_MEAN,
    L_ACT_STD,
    L_DELTA,
    L_GRAD,
    L_SATURATION,
    L_UPDATE,
    L_WEIGHT,
    S_ACCURACY,
    S_GRAD_TOTAL,
    S_LOSS,
)
from .cpu import (
    N_RAW,
    R_DSQ,
    R_M2,
    R_SAT,
    R_SUM,
    _backward_pass,
    _corrections,
    _delta_bin_table,
    _forward_pass,
    _hits,
    _is_packed,
    _unit_offsets,
    _update_ratio,
    _update_segment,
    _update_span,
    _view,
)
from .intrinsics import (
    atomic_read,
    compare_and_swap,
    fetch_add,
    flush_subnormals,
    inline,
    inner,
    jit,
    mat,
    restore_mode,
    seg,
    sleep_us,
    yield_thread,
)
from .threads import blas_threads, chunk_plan, numba_threads, part_threads
from .tuning import TEAM_SLEEP_US, TEAM_SPIN_YIELDS, UPDATE_BLOCK

# the parallel regions, called from compiled code only (no wrappers: see intrinsics.inner)
parallel_jit = njit(cache=True, nogil=True, parallel=True, no_cpython_wrapper=True,
                    no_cfunc_wrapper=True, **fm.FLAGS)

Workspace = namedtuple("Workspace", [
    "uoff",  # row offset of each layer in the stacked buffers
    "stride",  # length of one part's slot in xb, yb, zb, ab, da/db, acc
    "xb", "yb", "zb", "ab", "da", "db", "acc",  # per-part batch, Z[L], A, two dZ, accumulators
    "grads",  # parts x n_theta: each part's gradient (part 0's becomes the step's)
    "raws",  # (parts, N_RAW, L) raw sums of each part
    "hists_act", "hists_delta",  # (parts, L, bins) the first step's histograms
    "losses", "hits",  # (parts,), (parts, 2)
    "counter",  # int64[8], atomic: Q_CLAIM, Q_DONE, Q_EPOCH, Q_STOP, Q_RESULT (see _chunk_team)
    "sums",  # (L, 3): |dW|^2, |db|^2, |W|^2 per layer
    "moved",  # (L,): |step W|^2 per layer
    "steps",  # n_theta: the update's steps (never written over the gradient: see _update_serial)
    "bin_base", "bin_edge",  # the log10|dZ| histogram's table (cpu._delta_bin_table)
])


def _workspace(theta, sizes, parts, per_max, bins):
    """Every buffer a chunk needs, for parts of at most per_max columns (numpy, not compiled:
    a compiled allocator cost ~2 s of a cold start for what numpy does in microseconds)."""
    sizes = np.asarray(sizes)
    L = sizes.shape[0] - 1
    units, widest = int(sizes[1:].sum()), int(sizes.max())
    nL, n_x = int(sizes[L]), int(sizes[0])
    stride = np.array([n_x * per_max, nL * per_max, nL * per_max, units * per_max,
                       widest * per_max, 4 * per_max], dtype=np.int64)
    dt = theta.dtype
    n_theta = theta.shape[0]
    bin_base, bin_edge = _delta_bin_table(theta, bins)
    return Workspace(
        _unit_offsets(sizes), stride,
        np.empty(parts * stride[0], dt), np.empty(parts * stride[1], dt),
        np.empty(parts * stride[2], dt), np.empty(parts * stride[3], dt),
        np.empty(parts * stride[4], dt), np.empty(parts * stride[4], dt),
        np.empty(parts * stride[5], dt),
        np.empty(parts * n_theta, dt), np.zeros((parts, N_RAW, L)),
        np.zeros((parts, L, bins), np.int64), np.zeros((parts, L, bins), np.int64),
        np.zeros(parts), np.zeros((parts, 2), np.int64), np.zeros(8, np.int64),
        np.zeros((L, 3)), np.zeros(L), np.empty(n_theta, dt), bin_base, bin_edge)


def _reset(ws):
    """A pooled workspace made ready for a new chunk: the counters and the first step's
    histograms back to 0 (everything else is written before it is read)."""
    ws.counter[:] = 0
    ws.hists_act[...] = 0
    ws.hists_delta[...] = 0


# Workspaces are kept between chunks (at most WORKSPACES_KEPT shapes): a fresh one costs page
# faults on every chunk (~150 MB for the 10x512 net at batch 1024, tens of ms of kernel time).
# A chunk takes its workspace out of the pool and puts it back when done, so chunks running
# at the same time in other threads never share one.
WORKSPACES_KEPT = 2
_pool_lock = threading.Lock()
_pool = OrderedDict()


def _take_workspace(theta, sizes, parts, per_max, bins):
    key = (tuple(int(n) for n in sizes), int(parts), int(per_max), theta.dtype.str, int(bins))
    with _pool_lock:
        ws = _pool.pop(key, None)
    if ws is None:
        ws = _workspace(theta, sizes, parts, per_max, bins)
    _reset(ws)
    return key, ws


def _give_back(key, ws):
    with _pool_lock:
        _pool[key] = ws
        _pool.move_to_end(key)
        while len(_pool) > WORKSPACES_KEPT:
            _pool.popitem(last=False)


def release_workspaces():
    """Drop the kept workspaces (their memory goes back to the allocator)."""
    with _pool_lock:
        _pool.clear()


@inner
def _part_step(p, parts, theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, X, Y,
               order, start, m_all, hist, act_range, ws):
    """Forward and backward for part p of a step's batch: columns order[start + j] for j in
    [p per, min((p + 1) per, m_all)), per = ceil(m_all / parts), into part p's slot of ws."""
    mode = flush_subnormals(theta)
    n_x, n_y = sizes[0], sizes[sizes.shape[0] - 1]
    per = (m_all + parts - 1) // parts
    j0 = p * per
    m = min(per, m_all - j0)
    stride = ws.stride
    A0 = mat(ws.xb, p * stride[0], n_x, m)
    Yb = mat(ws.yb, p * stride[1], n_y, m)
    for j in range(m):
        col = order[start + j0 + j]
        for i in range(n_x):
            A0[i, j] = X[i, col]
        for i in range(n_y):
            Yb[i, j] = Y[i, col]
    n_theta = theta.shape[0]
    grad = seg(ws.grads, p * n_theta, n_theta)
    zbuf, abuf = seg(ws.zb, p * stride[2], stride[2]), seg(ws.ab, p * stride[3], stride[3])
    dz_a, dz_b = seg(ws.da, p * stride[4], stride[4]), seg(ws.db, p * stride[4], stride[4])
    accbuf = seg(ws.acc, p * stride[5], stride[5])
    raw = ws.raws[p]
    _forward_pass(theta, sizes, w_off, b_off, hidden_act, out_act, A0, m, ws.uoff, zbuf, abuf,
                  raw, accbuf)
    ws.losses[p] = _backward_pass(theta, sizes, w_off, b_off, hidden_act, out_act, loss_code,
                                  A0, Yb, m, m_all, ws.uoff, zbuf, abuf, grad, dz_a, dz_b, raw,
                                  hist, ws.hists_act[p], ws.hists_delta[p], act_range, accbuf,
                                  ws.bin_base, ws.bin_edge)
    h, c = _hits(loss_code, _view(abuf, ws.uoff[sizes.shape[0] - 2], n_y, m), Yb)
    ws.hits[p, 0] = h
    ws.hits[p, 1] = c
    restore_mode(mode)


@parallel_jit
def _parts_parallel(threads, parts, theta, sizes, w_off, b_off, hidden_act, out_act, loss_code,
                    X, Y, order, start, m_all, hist, act_range, ws):
    """The step's parts on `threads` threads, each claiming the next unclaimed part until none
    is left (dynamic: a slow or descheduled thread runs fewer parts)."""
    ws.counter[0] = 0
    for _ in prange(threads):
        p = fetch_add(ws.counter, 0, 1)
        while p < parts:
            _part_step(p, parts, theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, X,
                       Y, order, start, m_all, hist, act_range, ws)
            p = fetch_add(ws.counter, 0, 1)


@inner
def _combine_layer(grads, parts, theta, sizes, w_off, b_off, l, sums):
    """Layer l: the other parts' gradients added into part 0's in part order
    (((g_0 + g_1) + g_2) + ...), the squares of the result summed as the last part is added:
    sums[l, 0:2] = (|dW|^2, |db|^2) with no further pass over the gradient."""
    n = theta.shape[0]
    n_w, n_b = sizes[l + 1] * sizes[l], sizes[l + 1]
    for lo, cnt, slot in ((w_off[l], n_w, 0), (b_off[l], n_b, 1)):
        g = seg(grads, lo, cnt)
        if parts == 1:
            sums[l, slot] = sq_sum(g)
            continue
        for p in range(1, parts - 1):
            other = seg(grads, p * n + lo, cnt)
            for i in range(cnt):
                g[i] += other[i]
        sums[l, slot] = add_sq_sum(g, seg(grads, (parts - 1) * n + lo, cnt))


@inner
def _update_layer(theta, grad, vel, sq, opt_code, hyper, r1, r2, sizes, w_off, b_off, l, sums,
                  moved):
    """Layer l's update, measured as it goes: W in blocks of UPDATE_BLOCK parameters, each
    block's |W|^2 taken before and its steps' |step|^2 after its update while the block is in
    cache (sums[l, 2] = |W|^2 before the update, moved[l] = |step W|^2: one read of W and of
    dW, the steps in a block-sized buffer); then b."""
    n_w, n_b = sizes[l + 1] * sizes[l], sizes[l + 1]
    steps = np.empty(max(min(UPDATE_BLOCK, n_w), n_b), theta.dtype)
    w_sq, step_sq = 0.0, 0.0
    lo = w_off[l]
    for start in range(0, n_w, UPDATE_BLOCK):
        cnt = min(UPDATE_BLOCK, n_w - start)
        w_sq += sq_sum(seg(theta, lo + start, cnt))
        _update_span(theta, grad, vel, sq, lo + start, cnt, opt_code, hyper, r1, r2, steps)
        step_sq += sq_sum(seg(steps, 0, cnt))
    sums[l, 2] = w_sq
    moved[l] = step_sq
    _update_span(theta, grad, vel, sq, b_off[l], n_b, opt_code, hyper, r1, r2, steps)


@parallel_jit
def _layers_parallel(threads, update_now, theta, grad_or_grads, vel, sq, parts, opt_code, hyper,
                     r1, r2, sizes, w_off, b_off, ws):
    """Layer by layer on `threads` threads, layers claimed one at a time: the gradient sum and
    norms (update_now False), or the update (update_now True)."""
    L = sizes.shape[0] - 1
    ws.counter[0] = 0
    for _ in prange(threads):
        mode = flush_subnormals(theta)
        l = fetch_add(ws.counter, 0, 1)
        while l < L:
            if update_now:
                _update_layer(theta, grad_or_grads, vel, sq, opt_code, hyper, r1, r2, sizes,
                              w_off, b_off, l, ws.sums, ws.moved)
            else:
                _combine_layer(grad_or_grads, parts, theta, sizes, w_off, b_off, l, ws.sums)
            l = fetch_add(ws.counter, 0, 1)
        restore_mode(mode)


@inner
def _finish_stats(raws, parts, sizes, m_all, stats):
    """stats[L_ACT_MEAN, L_ACT_STD, L_SATURATION, L_DELTA] from the parts' raw sums: mean = sum /
    count, std = sqrt(M2 / count) with the parts' squared deviations around their own means
    combined as in Chan et al. (M2 += M2_p + delta^2 n n_p / (n + n_p)), |dZ| = sqrt(sum)."""
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


@inner
def _combine_serial(theta, sizes, w_off, b_off, parts, ws):
    """The parts' gradients added into part 0's in part order with their norms
    (``_combine_layer``), then |W|^2 per layer, on this thread."""
    for l in range(sizes.shape[0] - 1):
        _combine_layer(ws.grads, parts, theta, sizes, w_off, b_off, l, ws.sums)
        ws.sums[l, 2] = sq_sum(seg(theta, w_off[l], sizes[l + 1] * sizes[l]))


@inner
def _weight_norms(k, sizes, ws, layer_stats):
    for l in range(sizes.shape[0] - 1):
        layer_stats[k, L_WEIGHT, l] = math.sqrt(ws.sums[l, 2])


@inner
def _record_step(k, parts, sizes, m_all, hyper, ws, scalars, layer_stats, hist_act, hist_delta,
                 weights_known):
    """Step k's statistics from the workspace (the weight norms too if weights_known: the big
    nets' update measures them); True when the step diverged (non-finite loss or gradient norm,
    or loss above hyper[H_THRESHOLD])."""
    L = sizes.shape[0] - 1
    stats = layer_stats[k]
    _finish_stats(ws.raws, parts, sizes, m_all, stats)
    if k == 0:
        for p in range(parts):
            hist_act += ws.hists_act[p]
            hist_delta += ws.hists_delta[p]
    loss, hit, counted = 0.0, 0, 0
    for p in range(parts):
        loss += ws.losses[p]
        hit += ws.hits[p, 0]
        counted += ws.hits[p, 1]
    grad_sq = 0.0
    for l in range(L):
        grad_sq += ws.sums[l, 0] + ws.sums[l, 1]
        stats[L_GRAD, l] = math.sqrt(ws.sums[l, 0])
        stats[L_UPDATE, l] = 0.0
    if weights_known:
        _weight_norms(k, sizes, ws, layer_stats)
    grad_total = math.sqrt(grad_sq)
    scalars[k, S_LOSS] = loss
    scalars[k, S_GRAD_TOTAL] = grad_total
    scalars[k, S_ACCURACY] = hit / counted if counted else np.nan
    return not (math.isfinite(loss) and math.isfinite(grad_total)) or loss > hyper[H_THRESHOLD]


@inner
def _update_serial(theta, grad, vel, sq, opt_code, hyper, r1, r2, sizes, w_off, b_off, packed,
                   sums, moved, steps):
    """The update on one thread (one pass over all parameters when packed); the steps go to
    their own buffer, so each layer's update ratio is one more vector sum over its W part.
    (Writing them over grad, which the loop reads, made LLVM's runtime alias check fail:
    the scalar fallback loop ran, 4x slower for Adam.)"""
    if packed:
        _update_segment(theta, grad, vel, sq, opt_code, hyper, r1, r2, steps)
        for l in range(sizes.shape[0] - 1):
            moved[l] = sq_sum(seg(steps, w_off[l], sizes[l + 1] * sizes[l]))
    else:  # (sums[l, 2] measured again by the update: the statistics already hold the norms)
        for l in range(sizes.shape[0] - 1):
            _update_layer(theta, grad, vel, sq, opt_code, hyper, r1, r2, sizes, w_off, b_off, l,
                          sums, moved)


@inner
def _update_ratios(k, sizes, ws, layer_stats):
    for l in range(sizes.shape[0] - 1):
        layer_stats[k, L_UPDATE, l] = _update_ratio(math.sqrt(ws.moved[l]),
                                                    layer_stats[k, L_WEIGHT, l])


@inline
def _finish_step(k, parts, theta, vel, sq, sizes, w_off, b_off, opt_code, hyper, t_start, packed,
                 m_all, ws, scalars, layer_stats, hist_act, hist_delta):
    """After every part of step k: the gradients added in part order, the step's statistics,
    and (unless it diverged: returns True) the update and its ratios, on this thread."""
    _combine_serial(theta, sizes, w_off, b_off, parts, ws)
    if _record_step(k, parts, sizes, m_all, hyper, ws, scalars, layer_stats, hist_act,
                    hist_delta, np.bool_(True)):  # (typed, not literal: see _chunk_serial)
        return True
    r1, r2 = _corrections(hyper, t_start + k + 1)
    _update_serial(theta, seg(ws.grads, 0, theta.shape[0]), vel, sq, opt_code, hyper, r1, r2,
                   sizes, w_off, b_off, packed, ws.sums, ws.moved, ws.steps)
    _update_ratios(k, sizes, ws, layer_stats)
    return False


@jit
def _chunk_serial(theta, vel, sq, sizes, w_off, b_off, hidden_act, out_act, loss_code, opt_code,
                  hyper, t_start, X, Y, order, starts, counts, scalars, layer_stats, hist_act,
                  hist_delta, act_range, ws):
    """train_chunk's loop for one part per step, on this thread (no parallel code compiled).
    Part 0 of 1 are typed int64 values rather than the literals 0 and 1: numba compiles a
    function once more for every literal argument, and this way the team's steps share the
    compiled _part_step and _finish_step."""
    packed = _is_packed(theta, sizes, w_off, b_off)
    mode = flush_subnormals(theta)
    part, parts = np.int64(0), np.int64(1)
    for k in range(starts.shape[0]):
        _part_step(part, parts, theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, X, Y,
                   order, starts[k], counts[k], k == 0, act_range, ws)
        if _finish_step(k, parts, theta, vel, sq, sizes, w_off, b_off, opt_code, hyper, t_start,
                        packed, counts[k], ws, scalars, layer_stats, hist_act, hist_delta):
            restore_mode(mode)
            return k + 1, True
    restore_mode(mode)
    return starts.shape[0], False


# The team: one parallel region for the whole chunk (threads wake once per chunk, not once per
# step). Claims are numbered across steps: claim q is part q % parts of step q // parts. A thread
# takes claim q (compare-and-swap on Q_CLAIM) only once step q // parts is open (Q_EPOCH), so a
# waiting thread holds no part: it yields its core a few times, then sleeps (TEAM_SPIN_YIELDS,
# TEAM_SLEEP_US). The thread that finishes a step's last part (Q_DONE) finishes the step (sums,
# statistics, update) and opens the next. No thread ever waits for a thread that is waiting, so
# any number of threads, run in any interleaving (or one after the other), completes the
# chunk, and a descheduled thread holds back at most the part it is running.
Q_CLAIM, Q_DONE, Q_EPOCH, Q_STOP, Q_RESULT = 0, 1, 2, 3, 4


@inner
def _wait(spins):
    """A waiting thread's spins-th wait: it yields its core first, then sleeps."""
    if spins < TEAM_SPIN_YIELDS:
        yield_thread()
    else:
        sleep_us(TEAM_SLEEP_US)


@inner
def _team_member(parts, theta, vel, sq, sizes, w_off, b_off, hidden_act, out_act, loss_code,
                 opt_code, hyper, t_start, X, Y, order, starts, counts, scalars, layer_stats,
                 hist_act, hist_delta, act_range, packed, ws):
    """One thread of the team: claims parts until the chunk is done (see above)."""
    n_steps = starts.shape[0]
    q = ws.counter
    mode = flush_subnormals(theta)
    spins = 0
    while atomic_read(q, Q_STOP) == 0:
        claim = atomic_read(q, Q_CLAIM)
        k = claim // parts
        if k >= n_steps:
            break
        if atomic_read(q, Q_EPOCH) < k:  # step k not open yet: wait, holding nothing
            _wait(spins)
            spins += 1
            continue
        if not compare_and_swap(q, Q_CLAIM, claim, claim + 1):
            continue  # another thread took it
        spins = 0
        _part_step(claim % parts, parts, theta, sizes, w_off, b_off, hidden_act, out_act,
                   loss_code, X, Y, order, starts[k], counts[k], k == 0, act_range, ws)
        if fetch_add(q, Q_DONE, 1) + 1 == (k + 1) * parts:  # the step's last part
            if _finish_step(k, parts, theta, vel, sq, sizes, w_off, b_off, opt_code, hyper,
                            t_start, packed, counts[k], ws, scalars, layer_stats, hist_act,
                            hist_delta):
                q[Q_RESULT] = k + 1
                fetch_add(q, Q_STOP, 1)
                break
            fetch_add(q, Q_EPOCH, 1)
    restore_mode(mode)


@parallel_jit
def _team(threads, parts, theta, vel, sq, sizes, w_off, b_off, hidden_act, out_act, loss_code,
          opt_code, hyper, t_start, X, Y, order, starts, counts, scalars, layer_stats, hist_act,
          hist_delta, act_range, packed, ws):
    """The chunk's steps on `threads` threads claiming parts. The parallel loop's body is one
    call of a serial function: numba's parallel passes then analyse a call, not the step's
    code (they took ~10 s of compiling on the body written out here)."""
    for _ in prange(threads):
        _team_member(parts, theta, vel, sq, sizes, w_off, b_off, hidden_act, out_act, loss_code,
                     opt_code, hyper, t_start, X, Y, order, starts, counts, scalars, layer_stats,
                     hist_act, hist_delta, act_range, packed, ws)


@jit
def _chunk_team(theta, vel, sq, sizes, w_off, b_off, hidden_act, out_act, loss_code, opt_code,
                hyper, t_start, X, Y, order, starts, counts, scalars, layer_stats, hist_act,
                hist_delta, act_range, parts, threads, ws):
    """train_chunk's loop for `parts` parts per step, claimed by `threads` threads."""
    packed = _is_packed(theta, sizes, w_off, b_off)
    _team(threads, parts, theta, vel, sq, sizes, w_off, b_off, hidden_act, out_act, loss_code,
          opt_code, hyper, t_start, X, Y, order, starts, counts, scalars, layer_stats, hist_act,
          hist_delta, act_range, packed, ws)
    if ws.counter[Q_STOP] != 0:
        return ws.counter[Q_RESULT], True
    return starts.shape[0], False


@jit
def _chunk_parts(theta, vel, sq, sizes, w_off, b_off, hidden_act, out_act, loss_code, opt_code,
                 hyper, t_start, X, Y, order, starts, counts, scalars, layer_stats, hist_act,
                 hist_delta, act_range, parts, threads, big, ws):
    """train_chunk's loop for big nets: `parts` parts per step on `threads` threads, then the
    gradient sum, norms and update layer by layer on the threads too (a parallel region per
    phase: on steps this long, waking the threads costs nothing)."""
    packed = _is_packed(theta, sizes, w_off, b_off)
    grad = seg(ws.grads, 0, theta.shape[0])
    no, yes = np.bool_(False), np.bool_(True)  # typed, not literal: one _layers_parallel
    mode = flush_subnormals(theta)
    for k in range(starts.shape[0]):
        m_all = counts[k]
        _parts_parallel(threads, parts, theta, sizes, w_off, b_off, hidden_act, out_act,
                        loss_code, X, Y, order, starts[k], m_all, k == 0, act_range, ws)
        if big:  # |dW|^2 with the sum; |W|^2 with the update (or below if the step diverged)
            _layers_parallel(threads, no, theta, ws.grads, vel, sq, parts, opt_code, hyper,
                             1.0, 1.0, sizes, w_off, b_off, ws)
        else:
            _combine_serial(theta, sizes, w_off, b_off, parts, ws)
        if _record_step(k, parts, sizes, m_all, hyper, ws, scalars, layer_stats, hist_act,
                        hist_delta, not big):
            if big:
                for l in range(sizes.shape[0] - 1):
                    ws.sums[l, 2] = sq_sum(seg(theta, w_off[l], sizes[l + 1] * sizes[l]))
                _weight_norms(k, sizes, ws, layer_stats)
            restore_mode(mode)
            return k + 1, True
        r1, r2 = _corrections(hyper, t_start + k + 1)
        if big:
            _layers_parallel(threads, yes, theta, grad, vel, sq, parts, opt_code, hyper, r1, r2,
                             sizes, w_off, b_off, ws)
            _weight_norms(k, sizes, ws, layer_stats)
        else:
            _update_serial(theta, grad, vel, sq, opt_code, hyper, r1, r2, sizes, w_off, b_off,
                           packed, ws.sums, ws.moved, ws.steps)
        _update_ratios(k, sizes, ws, layer_stats)
    restore_mode(mode)
    return starts.shape[0], False


def train_chunk(theta, vel, sq, sizes, w_off, b_off, hidden_act, out_act, loss_code, opt_code,
                hyper, t_start, X, Y, order, starts, counts, scalars, layer_stats,
                hist_act, hist_delta, act_range, plan=None, threads=None):
    """Run len(starts) optimizer steps in one compiled call (see reference.train_chunk for the
    contract); returns (steps_done, diverged). ``plan`` (default: ``chunk_plan`` of the shape)
    and ``threads`` (default: ``part_threads``) change the speed only, never the numbers: tests
    pass them to prove it."""
    if plan is None:
        plan = chunk_plan(sizes, counts)
    args = (theta, vel, sq, sizes, w_off, b_off, hidden_act, out_act, loss_code, opt_code, hyper,
            t_start, X, Y, order, starts, counts, scalars, layer_stats, hist_act, hist_delta,
            act_range)
    per_max = (int(counts.max()) + plan.parts - 1) // plan.parts if len(counts) else 1
    key, ws = _take_workspace(theta, sizes, plan.parts, per_max, hist_act.shape[1])
    try:
        with blas_threads(plan.blas_threads):
            if plan.parts == 1:
                done, diverged = _chunk_serial(*args, ws)
            else:
                n = part_threads(plan.parts) if threads is None else max(1, int(threads))
                with numba_threads(min(n, numba.config.NUMBA_NUM_THREADS)):
                    if plan.big:
                        done, diverged = _chunk_parts(*args, plan.parts, n, True, ws)
                    else:
                        done, diverged = _chunk_team(*args, plan.parts, n, ws)
    finally:
        _give_back(key, ws)
    return int(done), bool(diverged)
