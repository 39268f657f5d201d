"""What the bench measures: the shapes, the math every backend runs, the targets, and the data."""

import numpy as np

SHAPES = [(10, 2, 64), (10, 64, 256), (50, 64, 256), (10, 512, 1024)]  # (depth, width, batch)
QUICK_SHAPES = SHAPES[:3]
DTYPES = ("float64", "float32")
ACTIVATION = "sigmoid"
LR = 1e-3
BACKENDS = ("numpy", "numba", "torch", "jax")
# issue 7's targets: numba's speed-up over each peer (time ratio), per shape (both dtypes)
TARGETS = {
    (10, 2, 64): {"numpy": 20.0, "torch": 50.0, "jax": 1.5},
    (10, 64, 256): {"numpy": 1.5, "torch": 1.5, "jax": 1.2},
    (50, 64, 256): {"numpy": 1.5, "torch": 1.5, "jax": 1.2},
    (10, 512, 1024): {"numpy": 1.0, "torch": 1.0, "jax": 0.9},
}
GEMM_TARGET = 0.8  # numba's GFLOP/s at 10x512x1024 vs the faster GEMM (numpy's or numba's BLAS)
# issue 16: numba's ratio to each peer must stay within this share of its idle ratio when the
# bench keeps one core busy (10x64 and 50x64)
LOAD_TOLERANCE = 0.25
LOADED_SHAPES = [(10, 64, 256), (50, 64, 256)]


def shape_name(shape):
    """'10x64x256' for (depth, width, batch): how --shapes names a shape."""
    return "x".join(str(n) for n in shape)


def sizes_of(depth, width):
    return [width] * (depth + 1)


def flops_per_step(depth, width, batch):
    """Multiply-adds x 2 of forward (W A), weight gradients (dZ A^T) and errors sent back
    (W^T dZ, not for the first layer)."""
    return 2 * batch * width * width * (3 * depth - 1)


def make_data(width, batch, dtype):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((width, batch)).astype(dtype)
    Y = (0.5 * rng.standard_normal((width, batch))).astype(dtype)
    return X, Y


def initial_net(depth, width, dtype, backend="cpu"):
    import lab
    return lab.Network(sizes_of(depth, width), ACTIVATION, init="xavier", seed=0, dtype=dtype,
                       backend=backend)


# --- runners: run(k) does k training steps and returns when they are done --------------------------
