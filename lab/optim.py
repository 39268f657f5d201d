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


@dataclass
class Optimizer:
    name: str = "sgd"
    lr: float = 0.01
    beta: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    t: int = 0  # updates applied so far
    velocity: np.ndarray | None = field(default=None, repr=False)
    square: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        self.code = lookup(OPTIMIZERS, self.name, "optimizer")
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"optimizer.lr must be a positive number, got {self.lr!r}")
        for key in ("beta", "beta1", "beta2"):
            value = getattr(self, key)
            if not 0 <= value < 1:
                raise ValueError(f"optimizer.{key} must be in [0, 1), got {value!r}")
        if not self.eps > 0:
            raise ValueError(f"optimizer.eps must be positive, got {self.eps!r}")

    def hyper(self, divergence_threshold=np.inf):
        """The hyper-parameter vector the kernels read (layout in kernels/codes.py)."""
        h = np.zeros(N_HYPER)
        h[H_LR], h[H_BETA], h[H_BETA1], h[H_BETA2], h[H_EPS] = (
            self.lr, self.beta, self.beta1, self.beta2, self.eps)
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
