"""Moved to :mod:`lab.views.dataset` and :mod:`lab.views.activations`; kept so old imports work."""

from .views.activations import activation_histograms_by_layer  # noqa: F401
from .views.dataset import (  # noqa: F401
    data_figures,
    decision_boundary,
    is_2d_binary,
    misclassified_digits,
)
