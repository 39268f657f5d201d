"""Plain-numpy reference kernels: the obviously-correct twin of ``cpu.py`` and ``cuda.py``.

Notation of the seeds: ``X`` is ``(n_x, m)`` (examples are columns), ``Z[l] = W[l] A[l-1] + b[l]``,
``A[l] = g(Z[l])``. Backward: ``dW[l] = dZ[l] A[l-1]^T``, ``db[l] = sum_cols dZ[l]``,
``dA[l-1] = W[l]^T dZ[l]``, ``dZ[l] = dA[l] * g'(Z[l])``; the loss's ``1/m`` is folded into ``dZ[L]``.

Parameters live in one flat vector ``theta``: layer ``l`` (0-based here) owns
``theta[w_off[l]:w_off[l] + n_out*n_in]`` (``W`` row-major) and ``theta[b_off[l]:b_off[l] + n_out]``.
Every kernel set exposes the same functions with the same signatures.
"""

import numpy as np

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


def layer_views(theta, sizes, w_off, b_off, l):
    """(W, b) of layer l (0-based) as views into theta; b has shape (n_out, 1)."""
    n_in, n_out = sizes[l], sizes[l + 1]
    W = theta[w_off[l]:w_off[l] + n_out * n_in].reshape(n_out, n_in)
    b = theta[b_off[l]:b_off[l] + n_out].reshape(n_out, 1)
    return W, b


# --- activations: forward g(Z), then the derivative g'(Z) right below it -------------------------

def activate(code, Z):
    if code == IDENTITY:
        return Z.copy()
    if code == SIGMOID:
        # stable for large |z|: never exponentiate a positive number
        e = np.exp(-np.abs(Z))
        return np.where(Z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(Z.dtype)
    if code == TANH:
        return np.tanh(Z)
    if code == RELU:
        return np.where(Z > 0, Z, 0).astype(Z.dtype)
    if code == LEAKY_RELU:
        return np.where(Z > 0, Z, LEAKY_SLOPE * Z).astype(Z.dtype)
    if code == SOFTMAX:
        E = np.exp(Z - Z.max(axis=0, keepdims=True))
        return E / E.sum(axis=0, keepdims=True)
    raise ValueError(f"unknown activation code {code}")


def activation_slope(code, Z, A):
    """Elementwise g'(Z) (given A = g(Z)); at z = 0 ReLU's slope is 0 and leaky ReLU's 0.01."""
    if code == IDENTITY:
        return np.ones_like(Z)
    if code == SIGMOID:
        return A * (1 - A)
    if code == TANH:
        return 1 - A * A
    if code == RELU:
        return (Z > 0).astype(Z.dtype)
    if code == LEAKY_RELU:
        return np.where(Z > 0, 1, LEAKY_SLOPE).astype(Z.dtype)
    raise ValueError(f"activation code {code} has no elementwise derivative")


def saturated(code, Z, A):
    """Boolean mask of saturated units: g'(z) below SATURATION_SHARE of its maximum (ReLU: z <= 0)."""
    if code in (SIGMOID, SOFTMAX):
        return A * (1 - A) < SATURATION_SHARE * 0.25
    if code == TANH:
        return 1 - A * A < SATURATION_SHARE
    if code in (RELU, LEAKY_RELU):
        return Z <= 0
    return np.zeros(Z.shape, dtype=bool)


# --- losses: value and dZ[L] with the 1/m folded in ----------------------------------------------

def loss_value(loss_code, ZL, AL, Y):
    m = Y.shape[1]
    if loss_code == MSE:
        return np.sum((AL - Y) ** 2) / m
    if loss_code == BCE:
        # from logits: log(1 + e^z) - y z, finite for saturated outputs
        return np.sum(np.maximum(ZL, 0) - Y * ZL + np.log1p(np.exp(-np.abs(ZL)))) / m
    if loss_code == CROSS_ENTROPY:
        zmax = ZL.max(axis=0, keepdims=True)
        lse = zmax + np.log(np.sum(np.exp(ZL - zmax), axis=0, keepdims=True))
        return np.sum(Y * (lse - ZL)) / m
    raise ValueError(f"unknown loss code {loss_code}")


def output_delta(loss_code, out_act, ZL, AL, Y):
    m = Y.shape[1]
    if loss_code == MSE:
        return (2.0 / m) * (AL - Y) * activation_slope(out_act, ZL, AL)
    return (AL - Y) / m  # bce with sigmoid output, cross-entropy with softmax output


def accuracy(loss_code, AL, Y):
    if loss_code == BCE:
        return np.mean((AL > 0.5) == (Y > 0.5))
    if loss_code == CROSS_ENTROPY:
        return np.mean(np.argmax(AL, axis=0) == np.argmax(Y, axis=0))
    return np.nan


# --- forward and backward passes -----------------------------------------------------------------

def forward_layers(theta, sizes, w_off, b_off, hidden_act, out_act, X):
    """Lists Z[1..L], A[0..L] (A[0] = X)."""
    L = len(sizes) - 1
    Zs, As = [], [X]
    for l in range(L):
        W, b = layer_views(theta, sizes, w_off, b_off, l)
        Z = W @ As[-1] + b
        Zs.append(Z)
        As.append(activate(out_act if l == L - 1 else hidden_act, Z))
    return Zs, As


def backward_layers(theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, Zs, As, Y):
    """(loss, flat grad, list dZ[1..L])."""
    L = len(sizes) - 1
    grad = np.zeros_like(theta)
    deltas = [None] * L
    dZ = output_delta(loss_code, out_act, Zs[-1], As[-1], Y)
    for l in range(L - 1, -1, -1):
        deltas[l] = dZ
        dW, db = layer_views(grad, sizes, w_off, b_off, l)
        dW[...] = dZ @ As[l].T
        db[...] = dZ.sum(axis=1, keepdims=True)
        if l > 0:
            W, _ = layer_views(theta, sizes, w_off, b_off, l)
            dA = W.T @ dZ
            dZ = dA * activation_slope(hidden_act, Zs[l - 1], As[l])
    return loss_value(loss_code, Zs[-1], As[-1], Y), grad, deltas


def forward(theta, sizes, w_off, b_off, hidden_act, out_act, X):
    return forward_layers(theta, sizes, w_off, b_off, hidden_act, out_act, X)[1][-1]


def evaluate(theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, X, Y):
    """(loss, accuracy) on a whole data set; accuracy is NaN for regression."""
    Zs, As = forward_layers(theta, sizes, w_off, b_off, hidden_act, out_act, X)
    return loss_value(loss_code, Zs[-1], As[-1], Y), accuracy(loss_code, As[-1], Y)


def gradients(theta, sizes, w_off, b_off, hidden_act, out_act, loss_code, X, Y):
    Zs, As = forward_layers(theta, sizes, w_off, b_off, hidden_act, out_act, X)
    loss, grad, _ = backward_layers(theta, sizes, w_off, b_off, hidden_act, out_act, loss_code,
                                    Zs, As, Y)
    return loss, grad


# --- optimizer update over the flat parameter vector ---------------------------------------------

def update(theta, grad, vel, sq, opt_code, hyper, t):
    """One update in place; t counts updates from 1 (Adam's bias correction). Returns the step."""
    lr = hyper[H_LR]
    if opt_code == SGD:
        step = lr * grad
    elif opt_code == MOMENTUM:
        beta = hyper[H_BETA]
        vel[...] = beta * vel + (1 - beta) * grad
        step = lr * vel
    elif opt_code == RMSPROP:
        beta2, eps = hyper[H_BETA2], hyper[H_EPS]
        sq[...] = beta2 * sq + (1 - beta2) * grad * grad
        step = lr * grad / (np.sqrt(sq) + eps)
    else:  # ADAM
        beta1, beta2, eps = hyper[H_BETA1], hyper[H_BETA2], hyper[H_EPS]
        vel[...] = beta1 * vel + (1 - beta1) * grad
        sq[...] = beta2 * sq + (1 - beta2) * grad * grad
        v_hat = vel / (1 - beta1 ** t)
        s_hat = sq / (1 - beta2 ** t)
        step = lr * v_hat / (np.sqrt(s_hat) + eps)
    theta -= step
    return step


def update_ratio(step_norm, w_norm):
    """||dW|| / ||W||; a zero matrix that moves has an infinite ratio, one that stays has 0."""
    if w_norm > 0:
        return step_norm / w_norm
    return np.inf if step_norm > 0 else 0.0


# --- the training chunk --------------------------------------------------------------------------

def histogram(values, lo, hi, counts):
    """Add values into len(counts) equal bins on [lo, hi]; outside values land in the end bins."""
    nb = counts.shape[0]
    idx = np.floor((values.ravel() - lo) / (hi - lo) * nb)
    idx = np.clip(np.nan_to_num(idx, nan=0.0), 0, nb - 1).astype(np.int64)
    counts += np.bincount(idx, minlength=nb)


def layer_statistics(code, W, dW, dZ, Z, A):
    """One layer's statistics in LAYER_STAT_NAMES order up to update_ratio: ||dW||, ||dZ||,
    mean and std of A = g(Z), the saturated share, ||W|| (Frobenius norms)."""
    return (np.sqrt(np.sum(dW * dW)), np.sqrt(np.sum(dZ * dZ)), A.mean(), A.std(),
            saturated(code, Z, A).mean(), np.sqrt(np.sum(W * W)))


def train_chunk(theta, vel, sq, sizes, w_off, b_off, hidden_act, out_act, loss_code, opt_code,
                hyper, t_start, X, Y, order, starts, counts, scalars, layer_stats,
                hist_act, hist_delta, act_range):
    """Run len(starts) optimizer steps; step k uses columns order[starts[k]:starts[k]+counts[k]].

    Fills scalars[k] and layer_stats[k] for every step, and the histograms at the first step.
    Returns (steps_done, diverged): a step whose loss or gradient is non-finite, or whose loss
    exceeds hyper[H_THRESHOLD], is recorded and ends the chunk without updating.
    """
    L = len(sizes) - 1
    for k in range(len(starts)):
        idx = order[starts[k]:starts[k] + counts[k]]
        Zs, As = forward_layers(theta, sizes, w_off, b_off, hidden_act, out_act, X[:, idx])
        loss, grad, deltas = backward_layers(theta, sizes, w_off, b_off, hidden_act, out_act,
                                             loss_code, Zs, As, Y[:, idx])
        grad_total = np.sqrt(np.sum(grad * grad))
        scalars[k, S_LOSS] = loss
        scalars[k, S_GRAD_TOTAL] = grad_total
        scalars[k, S_ACCURACY] = accuracy(loss_code, As[-1], Y[:, idx])
        for l in range(L):
            code = out_act if l == L - 1 else hidden_act
            W, _ = layer_views(theta, sizes, w_off, b_off, l)
            dW, _ = layer_views(grad, sizes, w_off, b_off, l)
            layer_stats[k, :L_UPDATE, l] = layer_statistics(code, W, dW, deltas[l], Zs[l],
                                                            As[l + 1])
            layer_stats[k, L_UPDATE, l] = 0.0
            if k == 0:
                histogram(As[l + 1], act_range[l, 0], act_range[l, 1], hist_act[l])
                with np.errstate(divide="ignore"):
                    log_delta = np.log10(np.abs(deltas[l]))
                histogram(log_delta, DELTA_LOG10_RANGE[0], DELTA_LOG10_RANGE[1], hist_delta[l])
        if not (np.isfinite(loss) and np.isfinite(grad_total)) or loss > hyper[H_THRESHOLD]:
            return k + 1, True
        step = update(theta, grad, vel, sq, opt_code, hyper, t_start + k + 1)
        for l in range(L):
            dW, _ = layer_views(step, sizes, w_off, b_off, l)
            layer_stats[k, L_UPDATE, l] = update_ratio(np.sqrt(np.sum(dW * dW)),
                                                       layer_stats[k, L_WEIGHT, l])
    return len(starts), False
