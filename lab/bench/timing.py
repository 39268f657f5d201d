"""Timing: microseconds per training step per backend, and the GEMM rate of the same process."""

import os
import time

import numpy as np

from .runners import JaxRunner, KernelRunner, TorchRunner
from .shapes import flops_per_step


def _timed_cores(fn, *args):
    """(wall seconds, cores used: the process's CPU seconds over them) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn(*args)
    wall = time.perf_counter() - t0
    return wall, (time.process_time() - c0) / max(wall, 1e-9)


def _timed(fn, *args):
    """Wall seconds of one call."""
    return _timed_cores(fn, *args)[0]


def measure_shape(shape, dtype, peers, rounds, seconds_per_round, log, with_numpy=True,
                  tag=""):
    """{backend: {us_per_step, samples, cores, first_call_s, steps_per_round}} for one
    shape/dtype; cores: the process's CPU time over the wall time of the backend's rounds
    (median), how many cores its threads kept busy, waiting included."""
    depth, width, batch = shape
    runners, out = {}, {}
    for name in ("numpy", "numba", "torch"):
        if (name == "torch" and "torch" not in peers) or (name == "numpy" and not with_numpy):
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
    for runner, k in runners.values():
        runner.run(k)  # warm: caches, pages, thread pools
    names = list(runners)
    for name in names:
        out[name]["samples"], out[name]["cores_samples"] = [], []
    # Rounds interleaved, the order rotated each round: a burst of other work on the machine
    # falls on every backend's rounds alike instead of on one backend's block of rounds, so
    # the ratios of one run compare like with like.
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            runner, k = runners[name]
            # another backend's threads (BLAS, OpenMP, XLA) wind down for a while after its
            # last call and would steal cores from this one's round
            time.sleep(0.2)
            wall, cores = _timed_cores(runner.run, k)
            out[name]["samples"].append(wall / k * 1e6)
            out[name]["cores_samples"].append(cores)
    for name, rec in out.items():
        rec["us_per_step"] = float(np.median(rec["samples"]))
        rec["cores"] = float(np.median(rec.pop("cores_samples")))
        rec["best_us_per_step"] = float(np.min(rec["samples"]))
        rec["load_average"] = os.getloadavg()[0]
        log(f"  {tag}{name:6s} {dtype:8s} {shape}: {rec['us_per_step']:12.1f} us/step "
            f"(best {rec['best_us_per_step']:.1f}, {rec['cores']:.2f} cores, "
            f"k={rec['steps_per_round']}, first call "
            f"{rec['first_call_s']:.2f} s, load {rec['load_average']:.1f})")
    return out


def gemm_rates(width, batch, dtype, rounds):
    """GFLOP/s of W @ A (width x width times width x batch) through numpy and through the numba
    kernels' BLAS call (numba links SciPy's BLAS, numpy its own), each with the process's BLAS
    threads: {name: {"median": rate of the median round, "best": of the best round}}."""
    from lab.kernels.blas import matmul
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
                     ("numba", lambda: matmul(W, A, out))):
        fn()
        reps = max(1, int(0.05 / max(_timed(fn), 1e-6)))
        samples = [_timed(repeat, fn, reps) / reps for _ in range(rounds)]
        rates[name] = {"median": flops / float(np.median(samples)) / 1e9,
                       "best": flops / float(np.min(samples)) / 1e9}
    return rates


def gemm_efficiency(step, dtype, rounds, log):
    """The 512-wide step's arithmetic rate against the GEMM rates of the same process: median
    against median (the table's statistic; a busy moment slows both alike), best round against
    best round beside it. step: numba's record (us_per_step, best_us_per_step)."""
    rates = gemm_rates(512, 1024, dtype, rounds)
    out = [{"name": "gemm", "backend": backend, "dtype": dtype, "depth": 1, "width": 512,
            "batch": 1024, "gflops": rate["median"], "best_gflops": rate["best"]}
           for backend, rate in rates.items()]
    flops = flops_per_step(10, 512, 1024)
    gflops = flops / (step["us_per_step"] * 1e-6) / 1e9
    best_gflops = flops / (step["best_us_per_step"] * 1e-6) / 1e9
    # the stricter reference: whichever BLAS ran faster just now
    reference = max(r["median"] for r in rates.values())
    best_reference = max(r["best"] for r in rates.values())
    out.append({"name": "gemm_efficiency", "backend": "numba", "dtype": dtype, "depth": 10,
                "width": 512, "batch": 1024, "gflops": gflops,
                "numpy_gemm_gflops": rates["numpy"]["median"],
                "numba_gemm_gflops": rates["numba"]["median"],
                "fraction": gflops / reference, "best_gflops": best_gflops,
                "fraction_best": best_gflops / best_reference, "us_per_step": step["us_per_step"]})
    log(f"  GEMM {dtype}: numpy {rates['numpy']['median']:.0f} GFLOP/s, numba's BLAS "
        f"{rates['numba']['median']:.0f} (medians); numba's step {gflops:.0f} GFLOP/s "
        f"({100 * gflops / reference:.0f}% of the faster; best rounds "
        f"{100 * best_gflops / best_reference:.0f}%)")
    return out


# --- fresh processes: JIT cold/warm start, the Hydra app ---------------------------------------------
