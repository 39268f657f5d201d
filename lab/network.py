"""``Network``: parameters in one flat vector, a layout, and a kernel set that does the math."""

from dataclasses import dataclass, field

import numpy as np

from .history import layer_key
from .init import init_weights
from .kernels import get_kernels, reference
from .kernels.codes import (
    ACTIVATIONS,
    LAYER_STAT_NAMES,
    LOSS_OUTPUT,
    LOSSES,
    OUTPUT_ACTIVATIONS,
    lookup,
)

DTYPES = {"float64": np.float64, "float32": np.float32}


@dataclass
class Inspection:
    """What ``Network.inspect`` saw: lists over layers 1..L (index 0 is layer 1)."""

    loss: float
    Z: list  # pre-activations Z[l], (n_l, m)
    A: list  # activations A[l] = g(Z[l]), (n_l, m)
    dZ: list  # backpropagated errors dZ[l], (n_l, m)
    dW: list  # weight gradients dW[l] = dZ[l] A[l-1]^T
    db: list
    stats: dict = field(repr=False)  # grad_norm/layer_01, act_mean/layer_01, ... (floats)


def _check_sizes(sizes):
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes {sizes!r} gives depth {len(sizes) - 1}; need at least "
                         "[n_x, n_y] (depth >= 1)")
    if any(int(n) != n or n < 1 for n in sizes):
        raise ValueError(f"sizes {sizes!r} must be positive integers")
    return np.array(sizes, dtype=np.int64)


def check_loss(loss, output_activation, loss_key="loss", output_key="output_activation"):
    """The loss's code; ValueError when the loss and the output activation do not go together
    (each loss's closed-form dZ[L] assumes its output activation: kernels/codes.LOSS_OUTPUT)."""
    code = lookup(LOSSES, loss, loss_key)
    lookup(OUTPUT_ACTIVATIONS, output_activation, output_key)
    needed = LOSS_OUTPUT[loss]
    if needed is not None and output_activation != needed:
        raise ValueError(f"{loss_key}={loss!r} needs {output_key}={needed!r}, got "
                         f"{output_activation!r}; set {output_key}={needed}")
    if needed is None and output_activation == "softmax":
        raise ValueError(f"{output_key}='softmax' needs {loss_key}='cross_entropy', got "
                         f"{loss!r}; set {loss_key}=cross_entropy")
    return code


def check_activations(activation, output_activation, hidden_key="activation",
                      output_key="output_activation"):
    """(hidden code, output code); softmax is an output activation only."""
    return (lookup(ACTIVATIONS, activation, hidden_key),
            lookup(OUTPUT_ACTIVATIONS, output_activation, output_key))


def check_dtype(dtype, key="dtype"):
    lookup(DTYPES, dtype, key)
    return np.dtype(DTYPES[dtype])


class Network:
    """A fully connected net; ``sizes = [n_0, ..., n_L]``, ``activation`` on layers 1..L-1,
    ``output_activation`` on layer L. Backends: ``cpu`` (numba), ``numpy``, ``cuda``."""

    def __init__(self, sizes, activation, output_activation="identity", init="he", gain=1.0,
                 seed=0, dtype="float64", backend="cpu"):
        self._setup(sizes, activation, output_activation, dtype, backend)
        weights, biases = init_weights(list(self.sizes), init, gain, seed, self.dtype)
        self._pack(weights, biases)

    @classmethod
    def from_params(cls, weights, biases, activation, output_activation="identity",
                    backend="cpu", dtype=None):
        """A network holding copies of the given ``W[l]`` (n_l, n_{l-1}) and ``b[l]`` (n_l, 1)."""
        weights = [np.asarray(W) for W in weights]
        if not weights or any(W.ndim != 2 for W in weights):
            raise ValueError("weights must be a non-empty list of 2-D arrays W[l] of shape "
                             "(n_l, n_{l-1})")
        sizes = [weights[0].shape[1]] + [W.shape[0] for W in weights]
        for l, W in enumerate(weights[1:], start=2):
            if W.shape[1] != sizes[l - 1]:
                raise ValueError(f"W[{l}] has shape {W.shape}; expected (*, {sizes[l - 1]}) to "
                                 f"follow W[{l - 1}]")
        if len(biases) != len(weights):
            raise ValueError(f"got {len(weights)} weight matrices but {len(biases)} bias vectors")
        biases = [np.asarray(b).reshape(-1, 1) for b in biases]
        for l, (b, n) in enumerate(zip(biases, sizes[1:]), start=1):
            if b.shape[0] != n:
                raise ValueError(f"b[{l}] has {b.shape[0]} entries; expected {n}")
        net = cls.__new__(cls)
        if dtype is None:
            dtype = "float32" if weights[0].dtype == np.float32 else "float64"
        net._setup(sizes, activation, output_activation, dtype, backend)
        net._pack(weights, biases)
        return net

    # -- construction ------------------------------------------------------------------------------
    def _setup(self, sizes, activation, output_activation, dtype, backend):
        self.sizes = _check_sizes(sizes)
        self.activation, self.output_activation = activation, output_activation
        self.hidden_code, self.output_code = check_activations(activation, output_activation)
        self.dtype = check_dtype(dtype)
        self.backend = backend
        self.kernels = get_kernels(backend)
        n_w = self.sizes[1:] * self.sizes[:-1]
        block = n_w + self.sizes[1:]  # each layer's W then b
        starts = np.concatenate([[0], np.cumsum(block)[:-1]]).astype(np.int64)
        self.w_off, self.b_off = starts, (starts + n_w).astype(np.int64)
        self.theta = np.zeros(int(block.sum()), dtype=self.dtype)

    def _pack(self, weights, biases):
        for l, (W, b) in enumerate(zip(weights, biases)):
            Wv, bv = self._views(self.theta, l)
            Wv[...] = W
            bv[...] = np.reshape(b, bv.shape)

    def _views(self, flat, l):
        n_in, n_out = self.sizes[l], self.sizes[l + 1]
        W = flat[self.w_off[l]:self.w_off[l] + n_out * n_in].reshape(n_out, n_in)
        b = flat[self.b_off[l]:self.b_off[l] + n_out].reshape(n_out, 1)
        return W, b

    def split(self, flat):
        """Flat vector (theta's layout) -> lists ([W...], [b...]) of views."""
        pairs = [self._views(flat, l) for l in range(self.depth)]
        return [W for W, _ in pairs], [b for _, b in pairs]

    # -- properties --------------------------------------------------------------------------------
    @property
    def depth(self):
        return len(self.sizes) - 1

    @property
    def weights(self):
        return self.split(self.theta)[0]

    @property
    def biases(self):
        return self.split(self.theta)[1]

    @property
    def layout(self):
        """Arguments every kernel takes after theta: (sizes, w_off, b_off, hidden, output)."""
        return self.sizes, self.w_off, self.b_off, self.hidden_code, self.output_code

    def __repr__(self):
        return (f"Network(sizes={self.sizes.tolist()}, activation={self.activation!r}, "
                f"output_activation={self.output_activation!r}, dtype={self.dtype.name!r}, "
                f"backend={self.backend!r})")

    # -- checks ------------------------------------------------------------------------------------
    def check_inputs(self, X, Y=None):
        """Contiguous arrays of the net's dtype, or ValueError naming the bad shape or value."""
        X = self._as_matrix(X, "X", self.sizes[0])
        if Y is None:
            return X
        Y = self._as_matrix(Y, "Y", self.sizes[-1])
        if Y.shape[1] != X.shape[1]:
            raise ValueError(f"X has {X.shape[1]} examples (columns) but Y has {Y.shape[1]}")
        return X, Y

    def _as_matrix(self, a, name, rows):
        a = np.asarray(a)
        if a.ndim != 2 or a.shape[0] != rows or a.shape[1] < 1:
            raise ValueError(f"{name} has shape {a.shape}; expected ({rows}, m) with examples "
                             "as columns, m >= 1")
        if not np.issubdtype(a.dtype, np.number) or not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains non-finite values (NaN or inf); clean the data "
                             "first")
        return np.ascontiguousarray(a, dtype=self.dtype)

    def loss_code(self, loss):
        return check_loss(loss, self.output_activation)

    # -- math --------------------------------------------------------------------------------------
    def forward(self, X):
        """ŷ = A[L], shape (n_L, m)."""
        return self.kernels.forward(self.theta, *self.layout, self.check_inputs(X))

    def flat_gradients(self, X, Y, loss="mse"):
        """(loss, gradient in theta's layout)."""
        code = self.loss_code(loss)
        X, Y = self.check_inputs(X, Y)
        value, grad = self.kernels.gradients(self.theta, *self.layout, code, X, Y)
        return float(value), grad

    def gradients(self, X, Y, loss="mse"):
        """(loss, [dW[1..L]], [db[1..L]]), shapes as the parameters."""
        value, grad = self.flat_gradients(X, Y, loss)
        dW, db = self.split(grad)
        return value, dW, db

    def inspect(self, X, Y, loss="mse"):
        """Look inside the network without training it: an ``Inspection`` holding every
        layer's Z[l], A[l], backpropagated error dZ[l], dW[l], db[l] for this X, Y, and their
        statistics under the history's names (``stats``). Computed by the numpy reference in
        float64 whatever the backend; the network is not changed."""
        code = self.loss_code(loss)
        X, Y = self.check_inputs(X, Y)
        theta = self.theta.astype(np.float64)
        X, Y = X.astype(np.float64), Y.astype(np.float64)
        layout = (self.sizes, self.w_off, self.b_off, self.hidden_code, self.output_code)
        Zs, As = reference.forward_layers(theta, *layout, X)
        value, grad, deltas = reference.backward_layers(theta, *layout, code, Zs, As, Y)
        dW, db = self.split(grad)
        stats = {}
        for l in range(self.depth):
            act = self.output_code if l == self.depth - 1 else self.hidden_code
            W = self._views(theta, l)[0]
            values = reference.layer_statistics(act, W, dW[l], deltas[l], Zs[l], As[l + 1])
            for stat, value_l in zip(LAYER_STAT_NAMES, values):
                stats[layer_key(stat, l + 1, self.depth)] = float(value_l)
        return Inspection(float(value), Zs, As[1:], deltas, dW, db, stats)

    def evaluate(self, X, Y, loss="mse"):
        """(loss, accuracy) on a whole set; accuracy is NaN for regression losses."""
        code = self.loss_code(loss)
        X, Y = self.check_inputs(X, Y)
        value, acc = self.kernels.evaluate(self.theta, *self.layout, code, X, Y)
        return float(value), float(acc)
