"""Initialization schemes (numpy only, seeded): the same seed gives the same parameters on every
backend. Biases start at zero. ``gain`` scales every scheme."""

import numpy as np

from .kernels.codes import lookup


def _std_normal(rng, n_out, n_in, gain):
    return rng.standard_normal((n_out, n_in)) * gain


def _scaled(scale_fn):
    def draw(rng, n_out, n_in, gain):
        return rng.standard_normal((n_out, n_in)) * gain * scale_fn(n_in, n_out)
    return draw


def _identity(rng, n_out, n_in, gain):
    return gain * np.eye(n_out, n_in)  # square: check_scheme refuses other layer sizes


def _uniform(rng, n_out, n_in, gain):
    bound = gain * np.sqrt(1.0 / n_in)
    return rng.uniform(-bound, bound, (n_out, n_in))


SCHEMES = {
    "zeros": lambda rng, n_out, n_in, gain: np.zeros((n_out, n_in)),
    "normal": _std_normal,
    "identity": _identity,
    "lecun": _scaled(lambda n_in, n_out: np.sqrt(1.0 / n_in)),
    "he": _scaled(lambda n_in, n_out: np.sqrt(2.0 / n_in)),
    "xavier": _scaled(lambda n_in, n_out: np.sqrt(2.0 / (n_in + n_out))),
    "uniform": _uniform,
}


def check_scheme(name, sizes=None, gain=1.0, key="init"):
    """ValueError for an unknown scheme, a non-finite gain, or ``identity`` on layer sizes
    (when known) that are not all equal."""
    lookup(SCHEMES, name, key)
    if not (isinstance(gain, (int, float, np.floating)) and np.isfinite(gain)):
        raise ValueError(f"gain={gain!r} is not valid; it must be a finite number")
    if name == "identity" and sizes is not None and len(set(sizes)) != 1:
        raise ValueError(f"{key}='identity' needs square weight matrices but the layer sizes "
                         f"are {list(sizes)}")


def init_weights(sizes, name="he", gain=1.0, seed=0, dtype=np.float64):
    """Lists (weights, biases) for layer sizes [n_0, ..., n_L]; W[l] is (n_l, n_{l-1})."""
    check_scheme(name, sizes, gain)
    rng = np.random.default_rng(seed)
    weights, biases = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        weights.append(SCHEMES[name](rng, n_out, n_in, gain).astype(dtype))
        biases.append(np.zeros((n_out, 1), dtype=dtype))
    return weights, biases
