"""Smoke test of ``python -m lab.bench --quick``: it runs, and writes every promised file with the
promised fields (the full benchmark stays out of the test suite)."""

import json
import os
import subprocess
import sys

import pytest

from lab import bench

FIELDS = {"name", "backend", "dtype", "depth", "width", "batch"}
SMOKE_SHAPES = [(10, 2, 64)]
SMOKE = ",".join(bench.shape_name(s) for s in SMOKE_SHAPES)


@pytest.mark.slow
def test_quick_benchmark_writes_results(tmp_path):
    # without the peers, as on CI (their timing is what the full bench is for; the load
    # tolerance's records have a test of their own below), on the smallest shape (the others
    # add only their compiling and timing: the kernels' own tests cover their code)
    proc = subprocess.run([sys.executable, "-m", "lab.bench", "--quick", "--peers", "",
                           "--shapes", SMOKE, "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((tmp_path / "bench-results.json").read_text())
    machine = doc["machine"]
    for key in ("cpu", "cores", "numpy", "numba", "blas", "load_start", "load_end"):
        assert key in machine
    assert machine["blas"] and all("version" in b for b in machine["blas"])
    results = doc["results"]
    assert results and all(FIELDS <= r.keys() for r in results)
    assert all("us_per_step" in r or "seconds" in r or "gflops" in r or "us_loaded" in r
               or "predicted_us" in r for r in results)
    # the cores each backend's rounds kept busy: measured (not 0), never more than the machine
    # has (a loaded machine may give a one-thread backend much less than a core)
    steps = [r for r in results if r["name"] == "train_step"]
    assert steps and all(0.05 < r["cores"] <= machine["cores"] + 0.2 for r in steps)
    # the written GPU prediction: launches and bytes per step for every measured shape
    gpu = {(r["depth"], r["width"], r["batch"], r["dtype"]): r for r in results
           if r["name"] == "gpu_prediction"}
    assert set(gpu) == {s + (d,) for s in SMOKE_SHAPES for d in bench.DTYPES}
    assert gpu[(10, 2, 64, "float64")]["launches"] == 23  # 2L + 3
    ratio = gpu[(10, 2, 64, "float64")]["bytes"] / gpu[(10, 2, 64, "float32")]["bytes"]
    assert 1.9 < ratio <= 2.0  # everything but the float64 loss terms halves in float32
    steps = [r for r in results if r["name"] == "train_step"]
    for backend in ("numpy", "numba"):
        for shape in SMOKE_SHAPES:
            for dtype in bench.DTYPES:
                hit = [r for r in steps if (r["depth"], r["width"], r["batch"]) == shape
                       and r["dtype"] == dtype and r["backend"] == backend]
                assert len(hit) == 1 and hit[0]["us_per_step"] > 0
    # peers are optional: present with numbers, or named in a note
    for peer in ("torch", "jax"):
        assert (any(r["backend"] == peer for r in steps)
                or any(peer in note for note in doc["notes"]))
    assert any(r["name"] == "process_start" and r["seconds"] > 0 for r in results)
    assert "| 10×2, 64 | float64 |" in (tmp_path / "bench-results.md").read_text()
    assert (tmp_path / "bench-steps-per-second.png").stat().st_size > 10_000
    assert "numba vs numpy" in proc.stdout


def test_load_tolerance_records_idle_and_busy_ratios_to_each_peer():
    """numba's ratio to each installed peer as the machine is and with one core kept busy, with
    the load averages, and the table that shows them (a tiny net: the records, not the speed)."""
    from lab.bench.load import loaded_ratios
    from lab.bench.report import load_table
    from lab.bench.runners import available_peers

    peers, _ = available_peers()
    if not peers:
        pytest.skip("no peer installed (pip install -e '.[bench]'): no ratio to record")
    records = loaded_ratios(peers, ("float64",), 2, 0.01, lambda line: None, shapes=[(2, 8, 32)])
    assert len(records) == 1
    rec = records[0]
    assert rec["ratio_idle"].keys() == rec["ratio_loaded"].keys() == peers.keys()
    assert all(v > 0 for v in [*rec["ratio_idle"].values(), *rec["ratio_loaded"].values()])
    assert rec["us_loaded"].keys() == {"numba", *peers}
    assert rec["load_busy"] >= 0 and rec["load_idle"] >= 0
    for cores in (rec["cores_idle"], rec["cores_loaded"]):
        assert cores.keys() == {"numba", *peers}
        assert all(0 < c <= os.cpu_count() + 0.2 for c in cores.values())
    table = load_table(records)
    assert "one core busy" in table and "| 2×8, 32 float64 |" in table
    numba_cores = f"{rec['cores_idle']['numba']:.2f} → {rec['cores_loaded']['numba']:.2f}"
    assert numba_cores in table


def test_busy_core_process_is_started_and_stopped():
    from lab.bench.load import one_core_busy

    with one_core_busy() as proc:
        assert proc.poll() is None  # spinning
    assert proc.poll() is not None  # stopped when the block ends


def test_numba_runner_goes_through_the_public_chunk_api():
    """The bench times ChunkBuffers.run, the call lab.train makes: same numbers as lab.train."""
    import numpy as np

    import lab
    from lab.bench.runners import KernelRunner
    from lab.bench.shapes import LR, initial_net, make_data

    runner = KernelRunner("numba", 2, 8, 16, "float64")
    runner.run(5)
    net = initial_net(2, 8, "float64")
    X, Y = make_data(8, 16, "float64")
    lab.train(net, lab.Optimizer("adam", lr=LR), X, Y, steps=5)
    np.testing.assert_array_equal(runner.net.theta, net.theta)


def test_an_unknown_shape_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "lab.bench", "--shapes", "10x3x64"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "unknown shape 10x3x64; the bench's shapes are 10x2x64," in proc.stderr


def test_flops_and_targets_cover_every_shape():
    assert bench.flops_per_step(10, 512, 1024) == 2 * 1024 * 512 * 512 * 29
    assert set(bench.TARGETS) == set(bench.SHAPES)


def test_gemm_efficiency_compares_median_with_median_and_best_with_best():
    """The 512-wide step's rate against the GEMM rates of the same process: like with like."""
    from lab.bench.report import other_lines
    from lab.bench.shapes import flops_per_step
    from lab.bench.timing import gemm_efficiency

    step = {"us_per_step": 200_000.0, "best_us_per_step": 150_000.0}  # a step record's fields
    records = gemm_efficiency(step, "float32", 2, lambda line: None)
    gemm = {r["backend"]: r for r in records if r["name"] == "gemm"}
    (eff,) = [r for r in records if r["name"] == "gemm_efficiency"]
    assert gemm.keys() == {"numpy", "numba"}
    assert all(0 < g["gflops"] <= g["best_gflops"] for g in gemm.values())
    flops = flops_per_step(10, 512, 1024)
    assert eff["gflops"] == pytest.approx(flops / 0.2 / 1e9)
    assert eff["fraction"] == pytest.approx(
        eff["gflops"] / max(g["gflops"] for g in gemm.values()))
    assert eff["fraction_best"] == pytest.approx(
        flops / 0.15 / 1e9 / max(g["best_gflops"] for g in gemm.values()))
    (line,) = other_lines(records)
    assert f"{100 * eff['fraction']:.0f}% of the faster GEMM" in line
    assert f"best rounds {100 * eff['fraction_best']:.0f}%" in line
