"""Moved to :mod:`lab.views` (``views/history.py``, ``views/style.py``); kept so old imports work."""

from .views.activations import activation_histograms  # noqa: F401
from .views.history import *  # noqa: F401,F403
from .views.history import depth_of, last_finite_row, layer_series, run_figures  # noqa: F401
from .views.style import DPI, finite, job_color, job_style  # noqa: F401
from .views.style import log_axis as _log_axis  # noqa: F401
from .views.sweep import sweep_comparison  # noqa: F401
