"""Integer codes shared by every kernel set, and the name tables that map config strings to them.

Compiled kernels branch on small integers (one branch per layer, not per element); the
Python layers translate the user's names once and list the valid choices in errors.
"""

import math

# Activations (hidden layers use the first five; softmax is an output activation only).
IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, SOFTMAX = 0, 1, 2, 3, 4, 5
ACTIVATIONS = {
    "identity": IDENTITY,
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "relu": RELU,
    "leaky_relu": LEAKY_RELU,
}
OUTPUT_ACTIVATIONS = {**ACTIVATIONS, "softmax": SOFTMAX}
LEAKY_SLOPE = 0.01
# saturation: fraction of units whose g'(z) is below this share of g's maximum slope
SATURATION_SHARE = 0.1

# Losses.
MSE, BCE, CROSS_ENTROPY = 0, 1, 2
LOSSES = {"mse": MSE, "bce": BCE, "cross_entropy": CROSS_ENTROPY}
# the output activation each loss's closed-form dZ[L] assumes (None: any elementwise one)
LOSS_OUTPUT = {"mse": None, "bce": "sigmoid", "cross_entropy": "softmax"}

# Optimizers and the layout of their hyper-parameter vector.
SGD, MOMENTUM, RMSPROP, ADAM = 0, 1, 2, 3
OPTIMIZERS = {"sgd": SGD, "momentum": MOMENTUM, "rmsprop": RMSPROP, "adam": ADAM}
H_LR, H_BETA, H_BETA1, H_BETA2, H_EPS, H_THRESHOLD = 0, 1, 2, 3, 4, 5
N_HYPER = 6

# Per-step statistics: scalars[k, S_*] and layer_stats[k, L_*, layer].
S_LOSS, S_GRAD_TOTAL, S_ACCURACY = 0, 1, 2
SCALAR_NAMES = ("loss/train", "grad_norm/total", "accuracy/train")
L_GRAD, L_DELTA, L_ACT_MEAN, L_ACT_STD, L_SATURATION, L_WEIGHT, L_UPDATE = range(7)
LAYER_STAT_NAMES = (
    "grad_norm", "delta_norm", "act_mean", "act_std", "saturation", "weight_norm", "update_ratio",
)

# Histogram bins (fixed per activation so runs compare): activations over the range of g,
# backpropagated errors over log10|dZ|.
HIST_BINS = 40
ACT_HIST_RANGE = {
    IDENTITY: (-4.0, 4.0),
    SIGMOID: (0.0, 1.0),
    TANH: (-1.0, 1.0),
    RELU: (0.0, 4.0),
    LEAKY_RELU: (-0.5, 4.0),
    SOFTMAX: (0.0, 1.0),
}
DELTA_LOG10_RANGE = (-12.0, 2.0)


def lookup(table: dict, name: str, what: str) -> int:
    """Map a config name to its code, or raise one clear ValueError listing the choices."""
    if not isinstance(name, str) or name not in table:
        raise ValueError(f"{what}={name!r} is not valid; choose one of: {', '.join(table)}")
    return table[name]


def delta_bin(a, nb):
    """The bin of log10(a), a = |dZ| >= 0, among nb bins on DELTA_LOG10_RANGE (0 and NaN: the
    low bin; outside values: the end bins). The one definition: the CPU kernels compile it
    (their histogram reads it from a table that reproduces it), the CUDA kernels compile it as
    a device function."""
    lo, hi = DELTA_LOG10_RANGE
    if not a > 0:  # also catches NaN
        return 0
    x = math.log10(a)
    if x <= lo:
        return 0
    if x >= hi:
        return nb - 1
    return min(int(math.floor((x - lo) * (nb / (hi - lo)))), nb - 1)
