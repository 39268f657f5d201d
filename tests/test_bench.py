"""Smoke test of ``python -m lab.bench --quick``: it runs, and writes every promised file with the
promised fields (the full benchmark stays out of the test suite)."""

import json
import subprocess
import sys

import pytest

from lab import bench

FIELDS = {"name", "backend", "dtype", "depth", "width", "batch"}


@pytest.mark.slow
def test_quick_benchmark_writes_results(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lab.bench", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((tmp_path / "bench-results.json").read_text())
    machine = doc["machine"]
    for key in ("cpu", "cores", "numpy", "numba", "blas", "load_start", "load_end"):
        assert key in machine
    assert machine["blas"] and all("version" in b for b in machine["blas"])
    results = doc["results"]
    assert results and all(FIELDS <= r.keys() for r in results)
    assert all("us_per_step" in r or "seconds" in r or "gflops" in r for r in results)
    steps = [r for r in results if r["name"] == "train_step"]
    for backend in ("numpy", "numba"):
        for shape in bench.QUICK_SHAPES:
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


def test_flops_and_targets_cover_every_shape():
    assert bench.flops_per_step(10, 512, 1024) == 2 * 1024 * 512 * 512 * 29
    assert set(bench.TARGETS) == set(bench.SHAPES)
