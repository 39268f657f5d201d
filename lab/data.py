"""Data sets (numpy only, seeded) with examples as columns, and input normalization.

Normalization uses the training set's mean and standard deviation and reuses them, unchanged,
on the test set (the test set is never looked at to fit anything).
"""

import inspect
import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Dataset:
    name: str
    X_train: np.ndarray  # (n_x, m_train)
    Y_train: np.ndarray  # (n_y, m_train)
    X_test: np.ndarray
    Y_test: np.ndarray
    task: str  # "regression" | "binary" | "multiclass"
    mu: np.ndarray | None = None  # (n_x, 1) training-set statistics when normalized
    sigma: np.ndarray | None = None

    @property
    def n_x(self):
        return self.X_train.shape[0]

    @property
    def n_y(self):
        return self.Y_train.shape[0]

    @property
    def default_loss(self):
        return {"regression": "mse", "binary": "bce", "multiclass": "cross_entropy"}[self.task]


def fit_normalizer(X_train):
    """(mu, sigma) per feature; constant features get sigma = 1 so they stay finite."""
    mu = X_train.mean(axis=1, keepdims=True)
    sigma = X_train.std(axis=1, keepdims=True)
    sigma[sigma == 0] = 1.0
    return mu, sigma


def normalize(ds: Dataset) -> Dataset:
    mu, sigma = fit_normalizer(ds.X_train)
    return Dataset(ds.name, (ds.X_train - mu) / sigma, ds.Y_train, (ds.X_test - mu) / sigma,
                   ds.Y_test, ds.task, mu, sigma)


# --- generators: each returns (X, Y, task) for m examples ------------------------------------------

def _identity(rng, m, n_features=2, noise=0.0):
    """The lecture's target: y = x (so a deep identity net with W = I is exact)."""
    X = rng.standard_normal((n_features, m))
    return X, X + noise * rng.standard_normal(X.shape), "regression"


def _linear(rng, m, n_features=4, noise=0.1, scale_spread=0.0):
    """y = w . (x / s) + noise where feature i is stretched by s_i in 10^[-spread, +spread]:
    with a large spread the loss surface is badly conditioned unless inputs are normalized."""
    scales = np.logspace(-scale_spread, scale_spread, n_features)[:, None]
    Xn = rng.standard_normal((n_features, m))
    w = np.random.default_rng(12345).standard_normal((1, n_features))  # fixed target
    Y = w @ Xn + noise * rng.standard_normal((1, m))
    return Xn * scales, Y, "regression"


def _teacher(rng, m, n_features=4, teacher_depth=3, teacher_width=16, noise=0.0):
    """Targets from a fixed random tanh "teacher" net (seed 12345), inputs N(0, 1)."""
    trng = np.random.default_rng(12345)
    X = rng.standard_normal((n_features, m))
    A = X
    sizes = [n_features] + [teacher_width] * (teacher_depth - 1) + [1]
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        Z = trng.standard_normal((n_out, n_in)) / np.sqrt(n_in) @ A
        A = np.tanh(Z) if l < len(sizes) - 2 else Z
    return X, A + noise * rng.standard_normal(A.shape), "regression"


def _circles(rng, m, noise=0.1, factor=0.5):
    labels = rng.integers(0, 2, m)
    angle = rng.uniform(0, 2 * np.pi, m)
    radius = np.where(labels == 1, factor, 1.0)
    X = np.stack([radius * np.cos(angle), radius * np.sin(angle)])
    return X + noise * rng.standard_normal(X.shape), labels[None, :].astype(float), "binary"


def _moons(rng, m, noise=0.1):
    labels = rng.integers(0, 2, m)
    t = rng.uniform(0, np.pi, m)
    X = np.where(labels == 0, [np.cos(t), np.sin(t)], [1 - np.cos(t), 0.5 - np.sin(t)])
    return X + noise * rng.standard_normal(X.shape), labels[None, :].astype(float), "binary"


def _spiral(rng, m, noise=0.1, turns=1.5):
    """Two interleaved arms; arm 1 is arm 0 turned by pi."""
    labels = rng.integers(0, 2, m)
    r = rng.uniform(0.1, 1.0, m)
    angle = 2 * np.pi * turns * r + np.pi * labels
    X = np.stack([r * np.cos(angle), r * np.sin(angle)])
    return X + noise * rng.standard_normal(X.shape), labels[None, :].astype(float), "binary"


GENERATORS = {
    "identity": _identity,
    "linear": _linear,
    "teacher": _teacher,
    "circles": _circles,
    "moons": _moons,
    "spiral": _spiral,
}


DIGITS_IMAGES = 1797  # scikit-learn's bundled 8x8 digits (tests check the count)


def _digits(seed, n_train, n_test):
    """scikit-learn's bundled 8x8 digits (1,797 images, no download), a seeded split,
    pixels scaled to [0, 1], labels one-hot (10, m)."""
    from sklearn.datasets import load_digits

    images = load_digits()
    X = images.data.T / 16.0
    labels = images.target
    order = np.random.default_rng(seed).permutation(X.shape[1])
    tr, te = order[:n_train], order[n_train:n_train + n_test]
    onehot = np.eye(10)[labels].T
    return X[:, tr], onehot[:, tr], X[:, te], onehot[:, te]


DATASETS = (*GENERATORS, "digits")
# each data set's own settings (data.<key>), read off its generator's signature
OPTIONS = {name: tuple(inspect.signature(gen).parameters)[2:] for name, gen in GENERATORS.items()}
OPTIONS["digits"] = ()
# settings that count things; every other setting is a non-negative real number
INTEGER_OPTIONS = ("n_features", "teacher_depth", "teacher_width")


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_options(name, n_train, n_test, **options):
    """Every rule about a data set's settings; ValueError naming the ``data.<key>``. A None
    option is not set (the data set's default applies)."""
    if name not in DATASETS:
        raise ValueError(f"data.name={name!r} is not valid; choose one of: {', '.join(DATASETS)}")
    if not _is_int(n_train) or n_train < 1:
        raise ValueError(f"data.n_train={n_train!r} is not valid; it must be an integer >= 1")
    if not _is_int(n_test) or n_test < 0:
        raise ValueError(f"data.n_test={n_test!r} is not valid; it must be an integer >= 0")
    if name == "digits" and n_train + n_test > DIGITS_IMAGES:
        raise ValueError(f"data.n_train + data.n_test = {n_train + n_test} exceeds the "
                         f"{DIGITS_IMAGES} digits images; lower them (e.g. data.n_test="
                         f"{max(DIGITS_IMAGES - n_train, 0)})")
    for key, value in options.items():
        if value is None:
            continue
        if key not in OPTIONS[name]:
            own = ", ".join(OPTIONS[name]) or "none besides n_train, n_test, normalize"
            raise ValueError(f"data.{key}={value!r} does not apply to data set {name!r}; its "
                             f"settings are: {own}")
        if key in INTEGER_OPTIONS:
            if not _is_int(value) or value < 1:
                raise ValueError(f"data.{key}={value!r} is not valid; it must be an integer >= 1")
        elif not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"data.{key}={value!r} is not valid; it must be a number >= 0")


def make_dataset(name, n_train=256, n_test=256, seed=0, normalize_inputs=False, **options):
    """A seeded Dataset; ``options`` are the data set's own settings (``OPTIONS[name]``:
    noise, n_features, scale_spread, ...); others raise ValueError."""
    check_options(name, n_train, n_test, **options)
    options = {key: value for key, value in options.items() if value is not None}
    if name == "digits":
        Xtr, Ytr, Xte, Yte = _digits(seed, n_train, n_test)
        task = "multiclass"
    else:
        rng = np.random.default_rng(seed)
        X, Y, task = GENERATORS[name](rng, n_train + n_test, **options)
        Xtr, Ytr, Xte, Yte = X[:, :n_train], Y[:, :n_train], X[:, n_train:], Y[:, n_train:]
    ds = Dataset(name, Xtr, Ytr, Xte, Yte, task)
    check_finite(ds)
    return normalize(ds) if normalize_inputs else ds


def check_finite(ds: Dataset):
    for label, a in (("X_train", ds.X_train), ("Y_train", ds.Y_train), ("X_test", ds.X_test),
                     ("Y_test", ds.Y_test)):
        if not np.all(np.isfinite(a)):
            bad = int(np.size(a) - np.isfinite(a).sum())
            raise ValueError(f"data set {ds.name!r}: {label} has {bad} non-finite values "
                             "(NaN/inf); fix the source data")
