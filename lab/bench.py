"""``python -m lab.bench [--quick] [--out DIR]``: how fast a training step is, side by side.

One process, the same shapes, the same math (sigmoid hidden layers, identity output, MSE,
full-batch Adam): microseconds per training step (forward + backward + Adam, float64 and
float32) for

- ``numpy``: the reference kernels (``lab/kernels/reference.py``), one Python-level step at a time;
- ``numba``: the compiled chunk (``lab/kernels/cpu.py: train_chunk``) that ``lab.train`` calls;
  like the numpy reference it also records every per-step statistic (norms, activation mean,
  std and saturation, update ratios), which the peers below do not compute;
- ``torch``: PyTorch eager on the CPU with ``torch.optim.Adam`` (if installed);
- ``jax``: ``jax.jit`` over a ``lax.scan`` of K steps of the same math incl. Adam (if installed).

Each backend is warmed up first (its compile or first-call time is reported separately), then
timed over several rounds, one backend after the other (a backend's BLAS/OpenMP/XLA threads keep
spinning for a while after its last call and would slow the next one down); the result is the
median over rounds. The machine's load average is recorded: other processes on a 2-core machine
change every number here. Also measured: numpy's and numba's GEMM rate at
the 512-wide layer's shape, a fresh process's cold vs warm start (numba cache empty vs
populated), and, through the Hydra app ``python -m lab``, MLflow's cost per run (tracking on vs
off) and sweep throughput (16 jobs, basic launcher and joblib with 2 workers).

Writes ``bench-results.json`` (one object per measurement plus the machine),
``bench-results.md`` (the tables, for the README) and ``bench-steps-per-second.png`` into
``--out`` (default: the current directory). ``--quick`` (under a minute: fewer, shorter rounds,
no 512-wide shape, no cold start, no app runs) is what the test suite runs.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
GEMM_TARGET = 0.8  # numba's effective GFLOP/s at 10x512x1024 vs numpy's GEMM rate
SWEEP_JOBS = 16


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

class KernelRunner:
    """``train_chunk`` of a kernel set (``numpy`` reference or ``numba``) on a full batch."""

    steps_fixed = None

    def __init__(self, name, depth, width, batch, dtype):
        import lab
        from lab.kernels.codes import HIST_BINS, LAYER_STAT_NAMES, SCALAR_NAMES
        from lab.train import activation_ranges
        backend = "numpy" if name == "numpy" else "cpu"
        self.net = initial_net(depth, width, dtype, backend)
        self.X, self.Y = make_data(width, batch, dtype)
        self.opt = lab.Optimizer("adam", lr=LR)
        self.vel, self.sq = self.opt.state_for(self.net.theta)
        self.hyper = self.opt.hyper()
        self.loss_code = self.net.loss_code("mse")
        self.batch, L = batch, depth
        self.n_scalars, self.n_stats = len(SCALAR_NAMES), len(LAYER_STAT_NAMES)
        self.hist = (np.zeros((L, HIST_BINS), np.int64), np.zeros((L, HIST_BINS), np.int64))
        self.act_range = activation_ranges(self.net)
        self.order = np.arange(batch, dtype=np.int64)
        self._arrays = {}

    def _buffers(self, k):
        if k not in self._arrays:
            self._arrays = {k: (np.zeros(k, np.int64), np.full(k, self.batch, np.int64),
                                np.zeros((k, self.n_scalars)),
                                np.zeros((k, self.n_stats, self.net.depth)))}
        return self._arrays[k]

    def run(self, k):
        starts, counts, scalars, stats = self._buffers(k)
        done, diverged = self.net.kernels.train_chunk(
            self.net.theta, self.vel, self.sq, *self.net.layout, self.loss_code, self.opt.code,
            self.hyper, self.opt.t, self.X, self.Y, self.order, starts, counts, scalars, stats,
            *self.hist, self.act_range)
        if diverged:
            raise RuntimeError(f"benchmark run diverged at step {self.opt.t + done}")
        self.opt.t += int(done)


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

def _timed(fn, *args):
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def measure_shape(shape, dtype, peers, rounds, seconds_per_round, log):
    """{backend: {us_per_step, samples, first_call_s, steps_per_round}} for one shape/dtype."""
    depth, width, batch = shape
    runners, out = {}, {}
    for name in ("numpy", "numba", "torch"):
        if name == "torch" and "torch" not in peers:
            continue
        t0 = time.perf_counter()
        runner = KernelRunner(name, *shape, dtype) if name != "torch" else TorchRunner(*shape,
                                                                                         dtype)
        runner.run(1)  # numba: compile or load from the cache; others: first-call costs
        first = time.perf_counter() - t0
        per_step = _timed(runner.run, 2) / 2
        k = int(np.clip(round(seconds_per_round / per_step), 1, 100_000))
        runners[name] = (runner, k)
        out[name] = {"first_call_s": first, "steps_per_round": k}
    if "jax" in peers:
        numba_step = _timed(runners["numba"][0].run, 3) / 3
        k = int(np.clip(round(seconds_per_round / max(numba_step, 1e-7) / 2), 1, 20_000))
        t0 = time.perf_counter()
        runner = JaxRunner(*shape, dtype, k)
        runner.run(k)  # trace + compile + one run
        first = time.perf_counter() - t0
        steady = _timed(runner.run, k)
        runners["jax"] = (runner, k)
        out["jax"] = {"first_call_s": first, "compile_s": max(first - steady, 0.0),
                      "steps_per_round": k}
    for name, (runner, k) in runners.items():
        # one backend at a time: another's threads (BLAS, OpenMP, XLA) wind down for a while
        # after its last call and would steal cores from the next one's rounds
        time.sleep(0.2)
        runner.run(k)
        out[name]["samples"] = [_timed(runner.run, k) / k * 1e6 for _ in range(rounds)]
    for name, rec in out.items():
        rec["us_per_step"] = float(np.median(rec["samples"]))
        rec["best_us_per_step"] = float(np.min(rec["samples"]))
        rec["load_average"] = os.getloadavg()[0]
        log(f"  {name:6s} {dtype:8s} {shape}: {rec['us_per_step']:12.1f} us/step "
            f"(best {rec['best_us_per_step']:.1f}, k={rec['steps_per_round']}, first call "
            f"{rec['first_call_s']:.2f} s, load {rec['load_average']:.1f})")
    return out


def gemm_rates(width, batch, dtype, rounds):
    """Peak GFLOP/s (best round) of W @ A (width x width times width x batch) through numpy and
    through the numba kernels' BLAS call (numba links SciPy's BLAS, numpy its own), each with
    the process's BLAS threads."""
    from lab.kernels import cpu
    rng = np.random.default_rng(0)
    W = rng.standard_normal((width, width)).astype(dtype)
    A = rng.standard_normal((width, batch)).astype(dtype)
    out = np.empty((width, batch), dtype)
    flops = 2.0 * width * width * batch
    rates = {}
    def repeat(fn, reps):
        for _ in range(reps):
            fn()

    for name, fn in (("numpy", lambda: np.dot(W, A, out=out)),
                     ("numba", lambda: cpu._matmul(W, A, out))):
        fn()
        reps = max(1, int(0.05 / max(_timed(fn), 1e-6)))
        samples = [_timed(repeat, fn, reps) / reps for _ in range(rounds)]
        rates[name] = flops / float(np.min(samples)) / 1e9  # the best round: peak rate
    return rates


def gemm_efficiency(numba_us, dtype, rounds, log):
    """The 512-wide step's arithmetic rate against the GEMM rates of the same process."""
    rates = gemm_rates(512, 1024, dtype, rounds)
    out = [{"name": "gemm", "backend": backend, "dtype": dtype, "depth": 1, "width": 512,
            "batch": 1024, "gflops": rate} for backend, rate in rates.items()]
    gflops = flops_per_step(10, 512, 1024) / (numba_us * 1e-6) / 1e9
    out.append({"name": "gemm_efficiency", "backend": "numba", "dtype": dtype, "depth": 10,
                "width": 512, "batch": 1024, "gflops": gflops,
                "numpy_gemm_gflops": rates["numpy"], "numba_gemm_gflops": rates["numba"],
                "fraction": gflops / rates["numpy"], "us_per_step": numba_us})
    log(f"  GEMM {dtype}: numpy {rates['numpy']:.0f} GFLOP/s, numba's BLAS {rates['numba']:.0f}; "
        f"numba's step {gflops:.0f} GFLOP/s ({100 * gflops / rates['numpy']:.0f}% of numpy's)")
    return out


# --- fresh processes: JIT cold/warm start, the Hydra app ---------------------------------------------

START_SCRIPT = """
import json, time
t0 = time.perf_counter()
import numpy as np
import lab
t1 = time.perf_counter()
net = lab.Network([2] * 11, "sigmoid", init="xavier")
X = np.random.default_rng(0).standard_normal((2, 64))
lab.train(net, lab.Optimizer("adam", lr=1e-3), X, X, steps=100, X_test=X, Y_test=X)
print(json.dumps({"import_s": t1 - t0, "first_train_s": time.perf_counter() - t1}))
"""


def process_start(cache_dir=None):
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", START_SCRIPT], env=env, capture_output=True,
                          text=True, check=True)
    wall = time.perf_counter() - t0
    return {"process_s": wall, **json.loads(proc.stdout.strip().splitlines()[-1])}


def app_available():
    return (Path(__file__).with_name("__main__.py").exists()
            and Path(__file__).resolve().parent.parent.joinpath("conf").is_dir())


def run_app(args, tmp, tag):
    """Wall seconds of ``python -m lab ARGS`` (run in tmp so nothing lands in the repo)."""
    cmd = [sys.executable, "-m", "lab", *args, f"hydra.run.dir={tmp}/{tag}/run",
           f"hydra.sweep.dir={tmp}/{tag}/sweep"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"python -m lab {' '.join(args)} failed ({proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")
    return wall


def train_seconds(run_dir):
    """Seconds the jobs under run_dir spent training (their summary.json's ``seconds``)."""
    return sum(json.loads(path.read_text()).get("seconds", 0.0)
               for path in Path(run_dir).rglob("summary.json"))


def app_measurements(tmp, rounds, log):
    """MLflow cost per run (tracking on vs off) and sweep throughput, through ``python -m lab``
    (default config: the lecture's 10x2 net, 2000 full-batch steps)."""
    uri = f"tracking.uri=sqlite:///{tmp}/bench.db"
    results = []
    run_app([uri, "tracking.progress=false"], tmp, "warmup")  # creates the store's schema
    variants = {"off": ["tracking=off"],
                "on": [uri, "tracking.progress=false", "tracking.figures=false"],
                "on+figures": [uri, "tracking.progress=false"]}
    walls = {name: [] for name in variants}
    trains = {name: [] for name in variants}
    for r in range(rounds):
        for name, args in variants.items():
            tag = f"run_{name.replace('+', '_')}_{r}"
            walls[name].append(run_app(args, tmp, tag))
            trains[name].append(train_seconds(Path(tmp) / tag / "run"))
    off = float(np.median(walls["off"]))
    for name in variants:
        wall = float(np.median(walls[name]))
        train = float(np.median(trains[name]))
        results.append({"name": "app_run", "backend": "numba", "variant": f"tracking {name}",
                        "dtype": "float64", "depth": 10, "width": 2, "batch": 256,
                        "steps": 2000, "seconds": wall, "train_seconds": train,
                        "overhead_seconds": wall - off})
        log(f"  python -m lab, tracking {name:10s}: {wall:6.2f} s process "
            f"({wall - off:+.2f} s vs off), {train:5.2f} s training")
    sweeps = {"basic": [uri, "tracking.progress=false"],
              "basic, figures off": [uri, "tracking.progress=false", "tracking.figures=false"],
              "basic, tracking off": ["tracking=off"],
              "joblib(2)": [uri, "tracking.progress=false", "hydra/launcher=joblib",
                            "hydra.launcher.n_jobs=2"]}
    seconds = {}
    for name, args in sweeps.items():
        tag = "sweep_" + "".join(ch if ch.isalnum() else "_" for ch in name)
        wall = run_app(["-m", f"seed=range(0,{SWEEP_JOBS})", *args], tmp, tag)
        seconds[name] = wall
        results.append({"name": "sweep", "backend": "numba", "variant": name,
                        "dtype": "float64", "depth": 10, "width": 2, "batch": 256,
                        "jobs": SWEEP_JOBS, "seconds": wall,
                        "seconds_per_job": wall / SWEEP_JOBS,
                        "train_seconds": train_seconds(Path(tmp) / tag / "sweep")})
        log(f"  sweep of {SWEEP_JOBS} jobs, {name:20s}: {wall:6.2f} s, "
            f"{wall / SWEEP_JOBS:5.2f} s/job")
    for r in results:
        if r["name"] == "sweep" and r["variant"] in ("basic", "basic, figures off"):
            r["tracking_share"] = max(0.0, 1.0 - seconds["basic, tracking off"] / r["seconds"])
    return results


# --- machine ------------------------------------------------------------------------------------

def machine_info(peers):
    import numba
    import threadpoolctl
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = [{k: d.get(k) for k in ("internal_api", "version", "num_threads", "architecture",
                                   "threading_layer", "filepath")}
            for d in threadpoolctl.threadpool_info() if d.get("user_api") == "blas"]
    info = {"cpu": model, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "torch": peers.get("torch"), "jax": peers.get("jax"),
            "blas": blas}
    try:
        import torch
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


# --- report -------------------------------------------------------------------------------------

def _fmt_us(us):
    return "—" if us is None else (f"{us:,.1f}" if us < 100 else f"{us:,.0f}")


def step_table(results, peers):
    """Markdown table: µs/step per backend and numba's speed-up over each (targets marked)."""
    steps = [r for r in results if r["name"] == "train_step"]
    by = {(r["depth"], r["width"], r["batch"], r["dtype"], r["backend"]): r["us_per_step"]
          for r in steps}
    shapes = sorted({(r["depth"], r["width"], r["batch"]) for r in steps},
                    key=lambda s: SHAPES.index(s) if s in SHAPES else 99)
    names = [b for b in BACKENDS if b in ("numpy", "numba") or b in peers]
    peers_cols = [b for b in names if b != "numba"]
    head = ("| shape (depth×width, batch) | dtype | "
            + " | ".join(f"{b} µs/step" for b in names) + " | "
            + " | ".join(f"numba vs {b} (target)" for b in peers_cols) + " |")
    lines = [head, "|" + "---|" * (2 + len(names) + len(peers_cols))]
    for shape in shapes:
        for dtype in DTYPES:
            key = shape + (dtype,)
            if key + ("numba",) not in by:
                continue
            us = {b: by.get(key + (b,)) for b in names}
            cells = [_fmt_us(us[b]) for b in names]
            ratios = []
            for b in peers_cols:
                if us[b] is None:
                    ratios.append("—")
                    continue
                ratio = us[b] / us["numba"]
                target = TARGETS.get(shape, {}).get(b)
                mark = "" if target is None else (" ✓" if ratio >= target else " ✗")
                ratios.append(f"{ratio:.2f}×" + (f" (≥{target:g}{mark})" if target else ""))
            lines.append(f"| {shape[0]}×{shape[1]}, {shape[2]} | {dtype} | "
                         + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def other_lines(results):
    lines = []
    for r in results:
        if r["name"] == "gemm_efficiency":
            mark = "✓" if r["fraction"] >= GEMM_TARGET else "✗"
            lines.append(f"- {r['depth']}×{r['width']}, batch {r['batch']}, {r['dtype']}: "
                         f"numba's step runs at {r['gflops']:.0f} GFLOP/s, "
                         f"{100 * r['fraction']:.0f}% of numpy's GEMM ({r['numpy_gemm_gflops']:.0f}"
                         f" GFLOP/s; numba's own BLAS call {r['numba_gemm_gflops']:.0f}) "
                         f"(target ≥ {100 * GEMM_TARGET:.0f}% {mark})")
        elif r["name"] == "process_start":
            lines.append(f"- fresh process, {r['variant']}: {r['process_s']:.1f} s "
                         f"(import {r['import_s']:.2f} s, first 100-step lab.train "
                         f"{r['first_train_s']:.2f} s)")
        elif r["name"] == "app_run":
            lines.append(f"- `python -m lab` (10×2 net, 2000 steps), {r['variant']}: "
                         f"{r['seconds']:.2f} s for the process ({r['overhead_seconds']:+.2f} s "
                         f"vs tracking off), of which {r['train_seconds']:.2f} s training")
        elif r["name"] == "sweep":
            share = (f", {100 * r['tracking_share']:.0f}% of it tracking (vs tracking off)"
                     if "tracking_share" in r else "")
            lines.append(f"- sweep of {r['jobs']} jobs, {r['variant']}: {r['seconds']:.1f} s, "
                         f"{r['seconds_per_job']:.2f} s/job{share}")
    return lines


def machine_line(machine):
    def owner(path):
        path = path or ""
        return ("numpy's" if "numpy" in path else "SciPy's, which numba calls" if "scipy" in path
                else Path(path).name)

    blas = ", ".join(f"{b['internal_api']} {b['version']} ({owner(b['filepath'])}, "
                     f"{b['num_threads']} threads)" for b in machine["blas"])
    peers = ", ".join(f"{k} {machine[k]}" for k in ("torch", "jax") if machine.get(k))
    return (f"{machine['cpu']}, {machine['cores']} cores; numpy {machine['numpy']}, "
            f"numba {machine['numba']}" + (f", {peers}" if peers else "")
            + f"; BLAS: {blas}; load average {machine['load_start']:.1f} → "
            f"{machine['load_end']:.1f}")


def write_markdown(path, results, machine, peers, notes, quick):
    text = [f"### Speed (`python -m lab.bench{' --quick' if quick else ''}`)", "",
            f"Machine: {machine_line(machine)}.", "",
            "µs per training step (forward + backward + Adam, full batch, sigmoid hidden "
            "layers, MSE), median over rounds (each round's time and the best one are in "
            "bench-results.json); numba and numpy also record every per-step statistic. "
            "Speed-up = peer's time / numba's time. On a 2-core machine other processes change "
            "these numbers a lot, the multi-threaded backends' most: compare the load averages.",
            "",
            step_table(results, peers), ""]
    extra = other_lines(results)
    if extra:
        text += extra + [""]
    text += [f"Note: {n}" for n in notes]
    path.write_text("\n".join(text).rstrip() + "\n")


def plot(path, results, peers):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = [r for r in results if r["name"] == "train_step"]
    shapes = [s for s in SHAPES if any((r["depth"], r["width"], r["batch"]) == s for r in steps)]
    names = [b for b in BACKENDS if b in ("numpy", "numba") or b in peers]
    colors = {"numpy": "#8c8c8c", "numba": "#d62728", "torch": "#ee7733", "jax": "#1f77b4"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    width = 0.8 / len(names)
    for ax, dtype in zip(axes, DTYPES):
        for i, name in enumerate(names):
            xs, ys = [], []
            for j, shape in enumerate(shapes):
                hit = [r for r in steps if (r["depth"], r["width"], r["batch"]) == shape
                       and r["dtype"] == dtype and r["backend"] == name]
                if hit:
                    xs.append(j + (i - (len(names) - 1) / 2) * width)
                    ys.append(1e6 / hit[0]["us_per_step"])
            bars = ax.bar(xs, ys, width, label=name, color=colors[name])
            for bar, y in zip(bars, ys):
                ax.text(bar.get_x() + bar.get_width() / 2, y * 1.08,
                        f"{y:,.0f}" if y >= 10 else f"{y:.2g}", ha="center", va="bottom",
                        fontsize=7, rotation=90)
        ax.set_yscale("log")
        ax.set_xticks(range(len(shapes)))
        ax.set_xticklabels([f"{d}×{w}\nbatch {b}" for d, w, b in shapes])
        ax.set_title(dtype)
        ax.grid(axis="y", which="major", alpha=0.3)
    axes[0].set_ylabel("training steps per second (log scale)")
    lo, hi = axes[0].get_ylim()
    axes[0].set_ylim(lo, hi * 8)
    axes[1].legend(loc="upper right", ncol=len(names), fontsize=8)
    fig.suptitle("Training steps per second (forward + backward + Adam), by shape and backend")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- main ---------------------------------------------------------------------------------------

def run(out_dir, quick=False, log=print, backends=None):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()[0]
    peers, notes = available_peers()
    if backends is not None:
        peers = {k: v for k, v in peers.items() if k in backends}
    shapes = QUICK_SHAPES if quick else SHAPES
    rounds, seconds_per_round = (3, 0.04) if quick else (7, 0.3)
    results = []
    log(f"training steps ({', '.join(['numpy', 'numba', *peers])}); "
        f"{'quick' if quick else 'full'} run, {rounds} rounds")
    for shape in shapes:
        for dtype in DTYPES:
            per = measure_shape(shape, dtype, peers, rounds, seconds_per_round, log)
            for backend, rec in per.items():
                results.append({"name": "train_step", "backend": backend, "dtype": dtype,
                                "depth": shape[0], "width": shape[1], "batch": shape[2],
                                "activation": ACTIVATION, **rec})
            if shape == (10, 512, 1024):  # right away, under the same load
                results += gemm_efficiency(per["numba"]["us_per_step"], dtype, rounds, log)
    with tempfile.TemporaryDirectory(prefix="gradlab-bench-") as tmp:
        if quick:
            notes.append("--quick: no cold start (compiling takes longer than the whole quick "
                         "run); warm start uses the package's numba cache")
            starts = {"warm (package cache)": None}
        else:
            cache = Path(tmp) / "numba-cache"
            starts = {"cold (empty numba cache)": cache, "warm (numba cache populated)": cache}
        for variant, cache in starts.items():
            rec = process_start(cache)
            results.append({"name": "process_start", "backend": "numba", "variant": variant,
                            "dtype": "float64", "depth": 10, "width": 2, "batch": 64,
                            "seconds": rec["process_s"], **rec})
            log(f"  fresh process, {variant}: {rec['process_s']:.1f} s (first lab.train "
                f"{rec['first_train_s']:.2f} s)")
        if quick:
            notes.append("--quick: MLflow overhead and sweep throughput skipped")
        elif not app_available():
            notes.append("python -m lab (lab/__main__.py) not found: MLflow overhead and sweep "
                         "throughput skipped")
        else:
            try:
                results += app_measurements(tmp, 3, log)
            except (RuntimeError, OSError) as exc:
                notes.append(f"app measurements failed: {exc}")
        shutil.rmtree(Path(tmp) / "numba-cache", ignore_errors=True)
    machine = machine_info(peers)
    machine["load_start"], machine["load_end"] = load_start, os.getloadavg()[0]
    doc = {"machine": machine, "quick": quick, "notes": notes, "results": results}
    (out_dir / "bench-results.json").write_text(json.dumps(doc, indent=1))
    write_markdown(out_dir / "bench-results.md", results, machine, peers, notes, quick)
    plot(out_dir / "bench-steps-per-second.png", results, peers)
    log("")
    log(f"Machine: {machine_line(machine)}")
    log(step_table(results, peers))
    for line in other_lines(results) + [f"Note: {n}" for n in notes]:
        log(line)
    log(f"wrote {out_dir / 'bench-results.json'}, bench-results.md, bench-steps-per-second.png")
    return doc


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab.bench", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="under a minute: fewer rounds, no 512-wide shape, no app runs")
    parser.add_argument("--out", default=".", help="directory for the results (default: .)")
    parser.add_argument("--peers", default="torch,jax",
                        help="comma-separated peers to include when installed (default: "
                             "torch,jax; '' for numpy and numba only)")
    args = parser.parse_args(argv)
    run(args.out, quick=args.quick, backends={p for p in args.peers.split(",") if p})


if __name__ == "__main__":
    main()
