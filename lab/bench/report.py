"""The bench's outputs: the machine, the Markdown tables for the README, the figure."""

import os
import platform
from pathlib import Path

import numpy as np

from .shapes import BACKENDS, DTYPES, GEMM_TARGET, LOAD_TOLERANCE, SHAPES, TARGETS


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
    if not steps:  # (--only-load)
        return ""
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
                         f"{100 * r['fraction']:.0f}% of the faster GEMM of the same run "
                         f"(numpy's {r['numpy_gemm_gflops']:.0f} GFLOP/s, numba's own BLAS call "
                         f"{r['numba_gemm_gflops']:.0f}; medians of the rounds, as in the table; "
                         f"best rounds {100 * r['fraction_best']:.0f}%) "
                         f"(target ≥ {100 * GEMM_TARGET:.0f}% {mark})")
        elif r["name"] == "process_start":
            nan = float("nan")
            lines.append(f"- fresh process, {r['variant']}: {r['process_s']:.1f} s "
                         f"({r.get('process_cpu_s', nan):.1f} s CPU; import "
                         f"{r['import_s']:.2f} s, first 100-step lab.train "
                         f"{r['first_train_s']:.2f} s, of which the test-set evaluate "
                         f"{r.get('evaluate_s', nan):.2f} s ({r.get('evaluate_cpu_s', nan):.2f} s "
                         f"CPU) and the training chunk {r.get('train_chunk_s', nan):.2f} s "
                         f"({r.get('train_chunk_cpu_s', nan):.2f} s CPU))")
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


def load_table(results):
    """Markdown table: numba's ratio to each peer idle and with one core busy."""
    rows = [r for r in results if r["name"] == "load_ratio"]
    if not rows:
        return ""
    lines = ["| shape, dtype | peer | ratio, no busy process | one core busy | change (target "
             f"within {100 * LOAD_TOLERANCE:.0f}%) | cores used, numba / peer: idle → busy | "
             "load average before → busy |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        for peer, idle in r["ratio_idle"].items():
            busy = r["ratio_loaded"][peer]
            change = busy / idle - 1
            mark = "✓" if change >= -r["tolerance"] else "✗"
            cores = (f"{r['cores_idle']['numba']:.2f} → {r['cores_loaded']['numba']:.2f} / "
                     f"{r['cores_idle'][peer]:.2f} → {r['cores_loaded'][peer]:.2f}")
            lines.append(f"| {r['depth']}×{r['width']}, {r['batch']} {r['dtype']} | {peer} | "
                         f"{idle:.2f}× | {busy:.2f}× | {100 * change:+.0f}% {mark} | {cores} | "
                         f"{r['load_idle']:.1f} → {r['load_busy']:.1f} |")
    return "\n".join(lines)


def gpu_table(results):
    """Markdown table of the CUDA prediction records (lab/bench/gpu.py)."""
    rows = [r for r in results if r["name"] == "gpu_prediction"]
    if not rows:
        return ""
    lines = ["| shape (depth×width, batch) | dtype | launches/step | MB moved/step | "
             "GFLOP/step | predicted µs/step (bound) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['depth']}×{r['width']}, {r['batch']} | {r['dtype']} | "
                     f"{r['launches']} | {r['bytes'] / 1e6:.2f} | {r['flops'] / 1e9:.3f} | "
                     f"{r['predicted_us']:,.0f} ({r['bound']}) |")
    return "\n".join(lines)


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
            "layers, MSE), median over rounds, the backends' rounds interleaved (each round's "
            "time and the best one are in "
            "bench-results.json); numba and numpy also record every per-step statistic. "
            "Speed-up = peer's time / numba's time. On a 2-core machine other processes change "
            "these numbers a lot, the multi-threaded backends' most: compare the load averages.",
            "",
            step_table(results, peers), ""]
    loaded = load_table(results)
    if loaded:
        text += ["Load tolerance: numba's speed-up over each peer as the machine is, then with "
                 "one core kept busy by a background process that the bench starts and stops "
                 "(measured back to back; the load average says how idle \"as is\" was).", "",
                 loaded, ""]
    gpu = gpu_table(results)
    if gpu:
        text += ["CUDA on a real GPU, predicted (`lab/bench/gpu.py`: launches, bytes and FLOPs per "
                 "step; time = the largest of launches × 4 µs, bytes at 1.5 TB/s, FLOPs at "
                 "1 TFLOP/s for the float64 tiles):", "", gpu, ""]
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
