import os

import numpy as np
import pytest

# CPU kernels and the numpy reference must agree everywhere; CUDA has its own (simulator) tests.
CPU_BACKENDS = ["numpy", "cpu"]


@pytest.fixture(params=CPU_BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_configure(config):
    # keep Hydra/MLflow from writing into the repo during tests that forget tmp paths
    os.environ.setdefault("MLFLOW_TRACKING_URI", "sqlite:///" + os.path.join(
        os.environ.get("PYTEST_TMPDIR", "/tmp"), "gradlab-pytest-mlruns.db"))


def store_steps(name, logged_steps, total_steps, log_every="auto", detail="default"):
    """Steps at which the store holds metric ``name`` of a run whose chunks started at
    ``logged_steps`` (what :mod:`lab.track.detail` selects at ``tracking.detail``)."""
    from lab.app import log_every_steps
    from lab.track.detail import StorePlan

    plan = StorePlan(total_steps, log_every_steps(total_steps, log_every), detail)
    steps = np.asarray(logged_steps)
    fine, coarse = plan.masks(steps)
    return steps[fine if plan.is_fine(name) else coarse].tolist()
