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
