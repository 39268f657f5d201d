"""The vectorizable exp/sigmoid/tanh of ``lab/kernels/fastmath.py`` against numpy over their
whole range, infinities and NaN included."""

import numpy as np
import pytest

from lab.kernels import fastmath, reference

ULP = 4  # allowed error of the compiled functions, in units in the last place of numpy's result


def _points(dtype):
    """Dense grids over the interesting range, random points, and the special values."""
    rng = np.random.default_rng(0)
    big = 800.0 if dtype == np.float64 else 120.0
    x = np.concatenate([
        np.linspace(-big, big, 200_001), rng.uniform(-40, 40, 100_000),
        rng.standard_normal(50_000) * 1e-3, rng.standard_normal(1000) * 1e-30,
        np.geomspace(1e-300 if dtype == np.float64 else 1e-37, 1e3, 5000),
        -np.geomspace(1e-300 if dtype == np.float64 else 1e-37, 1e3, 5000),
        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e308, -1e308],
        [709.78, 709.79, -708.39, -745.13, -745.14, 88.72, 88.73, -87.33, -103.97, -104.0],
    ])
    with np.errstate(over="ignore"):
        return x.astype(dtype)


def _ulp_error(got, want):
    """Errors in ulps of want; subnormal results are measured in ulps of the smallest normal
    (their absolute spacing), and infinities and NaN must match exactly."""
    info = np.finfo(want.dtype)
    same_special = (got == want) | (np.isnan(got) & np.isnan(want))
    finite = np.isfinite(want)
    assert np.all(same_special | finite), "infinities/NaN differ"
    assert np.all(np.isfinite(got[finite])), "finite result came out non-finite"
    w, g = want[finite].astype(np.float64), got[finite].astype(np.float64)
    spacing = np.spacing(np.maximum(np.abs(want[finite]), info.tiny)).astype(np.float64)
    return np.abs(g - w) / spacing


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["exp", "tanh", "sigmoid"])
def test_vectorizable_functions_match_numpy(name, dtype):
    x = _points(dtype)
    compiled = getattr(fastmath, f"{name}_array")
    with np.errstate(over="ignore", invalid="ignore"):
        want = getattr(fastmath, name)(x).astype(dtype)  # numpy (sigmoid: the reference form)
    got = compiled(x)
    assert got.dtype == dtype
    assert _ulp_error(got, want).max() <= ULP
    # the reference's own sigmoid is the formula the kernels must reproduce
    if name == "sigmoid":
        ref = reference.activate(1, x.reshape(1, -1)).ravel()
        assert _ulp_error(got, ref).max() <= ULP


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_special_values_and_symmetry(dtype):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype)
    assert np.array_equal(fastmath.exp_array(x), np.array([1, 1, np.inf, 0, np.nan], dtype),
                          equal_nan=True)
    t = fastmath.tanh_array(x)
    assert np.array_equal(t, np.array([0, -0.0, 1, -1, np.nan], dtype), equal_nan=True)
    assert np.signbit(t[1])  # tanh(-0) = -0
    assert np.array_equal(fastmath.sigmoid_array(x), np.array([0.5, 0.5, 1, 0, np.nan], dtype),
                          equal_nan=True)
    z = np.linspace(-30, 30, 6001).astype(dtype)
    np.testing.assert_array_equal(fastmath.tanh_array(-z), -fastmath.tanh_array(z))
