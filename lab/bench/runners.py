"""One runner per backend: ``run(k)`` does k training steps of the same math and returns when
they are done. The numba and numpy runners go through ``lab.kernels.chunk.ChunkBuffers``, the
public chunk call ``lab.train`` uses."""

import numpy as np

from .shapes import LR, initial_net, make_data


class KernelRunner:
    """``ChunkBuffers.run`` of a kernel set (``numpy`` reference or ``numba``) on a full batch,
    with every per-step statistic recorded as in ``lab.train``."""

    steps_fixed = None

    def __init__(self, name, depth, width, batch, dtype):
        import lab
        from lab.kernels.chunk import ChunkBuffers
        backend = "numpy" if name == "numpy" else "cpu"
        self.net = initial_net(depth, width, dtype, backend)
        X, Y = make_data(width, batch, dtype)
        self.buffers = ChunkBuffers(self.net, lab.Optimizer("adam", lr=LR), X, Y,
                                    self.net.loss_code("mse"))
        self.batch = batch
        self._schedule = {}

    def run(self, k):
        from lab.kernels.chunk import full_batch_schedule
        if k not in self._schedule:
            self._schedule = {k: full_batch_schedule(self.batch, k)}
        out = self.buffers.run(*self._schedule[k], reuse=True)
        if out.diverged:
            raise RuntimeError(f"benchmark run diverged at step {self.buffers.optimizer.t}")


class TorchRunner:
    """PyTorch eager: nn.Linear + nn.Sigmoid layers, sum-of-squares / m loss, torch.optim.Adam."""

    steps_fixed = None

    def __init__(self, depth, width, batch, dtype):
        import torch
        tdt = getattr(torch, dtype)
        net = initial_net(depth, width, dtype)
        layers = []
        for l, (W, b) in enumerate(zip(net.weights, net.biases)):
            lin = torch.nn.Linear(width, width, dtype=tdt)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(W.copy()))
                lin.bias.copy_(torch.from_numpy(b.ravel().copy()))
            layers.append(lin)
            if l < depth - 1:
                layers.append(torch.nn.Sigmoid())
        self.torch = torch
        self.model = torch.nn.Sequential(*layers)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR)
        X, Y = make_data(width, batch, dtype)
        self.X = torch.from_numpy(np.ascontiguousarray(X.T))  # torch's layout: (batch, features)
        self.Y = torch.from_numpy(np.ascontiguousarray(Y.T))
        self.batch = batch

    def run(self, k):
        model, opt, X, Y, m = self.model, self.opt, self.X, self.Y, self.batch
        for _ in range(k):
            opt.zero_grad(set_to_none=True)
            loss = ((model(X) - Y) ** 2).sum() / m
            loss.backward()
            opt.step()


class JaxRunner:
    """``jax.jit`` of a ``lax.scan`` over K steps (K fixed at compile time), Adam by hand with
    the same formulas as lab.optim (bias-corrected)."""

    def __init__(self, depth, width, batch, dtype, K):
        import jax
        import jax.numpy as jnp
        from jax import lax
        net = initial_net(depth, width, dtype)
        X, Y = make_data(width, batch, dtype)
        dt = jnp.dtype(dtype)
        b1, b2, eps = 0.9, 0.999, 1e-8
        self.steps_fixed = K

        def loss_fn(params, X, Y):
            A = X
            for l, (W, b) in enumerate(params):
                Z = W @ A + b
                A = jax.nn.sigmoid(Z) if l < depth - 1 else Z
            return jnp.sum((A - Y) ** 2) / batch

        @jax.jit
        def train(params, v, s, X, Y, t0):
            def step(carry, t):
                params, v, s = carry
                loss, g = jax.value_and_grad(loss_fn)(params, X, Y)
                c1, c2 = 1 - b1 ** t, 1 - b2 ** t
                v = jax.tree_util.tree_map(lambda v, g: b1 * v + (1 - b1) * g, v, g)
                s = jax.tree_util.tree_map(lambda s, g: b2 * s + (1 - b2) * g * g, s, g)
                params = jax.tree_util.tree_map(
                    lambda p, v, s: p - LR * (v / c1) / (jnp.sqrt(s / c2) + eps), params, v, s)
                return (params, v, s), loss

            ts = t0 + jnp.arange(1, K + 1, dtype=dt)
            (params, v, s), losses = lax.scan(step, (params, v, s), ts)
            return params, v, s, losses

        params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in zip(net.weights, net.biases)]
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        self.jax, self.fn = jax, train
        self.state = (params, zeros, zeros)
        self.X, self.Y = jnp.asarray(X), jnp.asarray(Y)
        self.t0 = lambda t: jnp.asarray(t, dtype=dt)
        self.t = 0

    def run(self, k):
        assert k == self.steps_fixed
        out = self.fn(*self.state, self.X, self.Y, self.t0(self.t))
        self.jax.block_until_ready(out)
        self.state, self.t = out[:3], self.t + k


def available_peers():
    """{name: version or None}, and notes for the missing ones."""
    found, notes = {}, []
    try:
        import torch
        found["torch"] = torch.__version__
    except ImportError:
        notes.append("torch not installed: pip install -e '.[bench]' (torch==2.13.0 CPU build)")
    try:
        import jax
        jax.config.update("jax_enable_x64", True)  # float64 runs in float64
        found["jax"] = jax.__version__
    except ImportError:
        notes.append("jax not installed: pip install -e '.[bench]'")
    return found, notes


# --- timing -------------------------------------------------------------------------------------
