"""Optimizers: a name, its hyper-parameters and its state (velocity ``v``, squared average ``s``).

The update rules themselves live in the kernels (``kernels/reference.py`` and its twins):
``sgd``: W -= lr dW;  ``momentum``: v = b v + (1-b) dW, W -= lr v;
``rmsprop``: s = b2 s + (1-b2) dW^2, W -= lr dW / (sqrt(s) + eps);
``adam``: both, with bias correction v/(1-b1^t), s/(1-b2^t), t counting updates from 1.
"""

from dataclasses import dataclass, field

import numpy as np

from .kernels.codes import (
    H_BETA,
    H_BETA1,
    H_BETA2,
    H_EPS,
    H_LR,
    H_THRESHOLD,
    N_HYPER,
    OPTIMIZERS,
    lookup,
)

# Each optimizer's own hyper-parameters and their defaults (DESIGN.md); any other key given
# to it is a mistake (RMSprop's decay is beta2, not beta), so it is refused, not ignored.
HYPER_DEFAULTS = {
    "sgd": {"lr": 0.01},
    "momentum": {"lr": 0.01, "beta": 0.9},
    "rmsprop": {"lr": 0.001, "beta2": 0.999, "eps": 1e-8},
    "adam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
}
HYPER_KEYS = ("lr", "beta", "beta1", "beta2", "eps")
UNUSED_FILL = {"lr": 0.0, "beta": 0.9, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}


@dataclass
class Optimizer:
    """``Optimizer("adam", lr=1e-3)``: keys an optimizer does not use raise ValueError;
    keys left out take the optimizer's defaults (``HYPER_DEFAULTS``)."""

    name: str = "sgd"
    lr: float | None = None
    beta: float | None = None
    beta1: float | None = None
    beta2: float | None = None
    eps: float | None = None
    t: int = 0  # updates applied so far
    velocity: np.ndarray | None = field(default=None, repr=False)
    square: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        self.code = lookup(OPTIMIZERS, self.name, "optimizer.name")
        own = HYPER_DEFAULTS[self.name]
        for key in HYPER_KEYS:
            value = getattr(self, key)
            if value is None:
                setattr(self, key, own.get(key))
            elif key not in own:
                hint = " (its decay rate is beta2)" if key == "beta" and "beta2" in own else ""
                raise ValueError(f"optimizer.{key}={value!r} does not apply to optimizer "
                                 f"{self.name!r}{hint}; its settings are: {', '.join(own)}")
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"optimizer.lr={self.lr!r} is not valid; it must be a finite "
                             "number > 0")
        for key in ("beta", "beta1", "beta2"):
            value = getattr(self, key)
            if value is not None and not 0 <= value < 1:
                raise ValueError(f"optimizer.{key}={value!r} is not valid; it must be in [0, 1)")
        if self.eps is not None and not (np.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"optimizer.eps={self.eps!r} is not valid; it must be a finite "
                             "number > 0")

    @property
    def settings(self):
        """The hyper-parameters this optimizer uses, e.g. {"lr": 0.001, "beta2": 0.999, ...}."""
        return {key: getattr(self, key) for key in HYPER_DEFAULTS[self.name]}

    def hyper(self, divergence_threshold=np.inf):
        """The hyper-parameter vector the kernels read (layout in kernels/codes.py)."""
        h = np.zeros(N_HYPER)
        for index, key in ((H_LR, "lr"), (H_BETA, "beta"), (H_BETA1, "beta1"),
                           (H_BETA2, "beta2"), (H_EPS, "eps")):
            value = getattr(self, key)
            # keys this optimizer does not use are never read; fill them with the usual
            # values so every kernel sees the same well-defined vector
            h[index] = UNUSED_FILL[key] if value is None else value
        h[H_THRESHOLD] = divergence_threshold
        return h

    def state_for(self, theta):
        """(velocity, square) buffers shaped like theta, allocated on first use."""
        if self.velocity is None or self.velocity.shape != theta.shape:
            self.velocity = np.zeros_like(theta)
            self.square = np.zeros_like(theta)
            self.t = 0
        return self.velocity, self.square

    def step(self, net, grad):
        """Apply one update to ``net`` from its flat gradient (``Network.flat_gradients``)."""
        vel, sq = self.state_for(net.theta)
        self.t += 1
        net.kernels.update(net.theta, grad, vel, sq, self.code, self.hyper(), self.t)
