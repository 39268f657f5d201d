"""One renderer per study in conf/experiment/: name -> (renderer, question, index figure)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..charts import Output
from ..load import Study
from .batch_size import render_batch_size
from .depth_scaling import render_depth_scaling
from .exploding_identity import render_exploding_identity
from .init_comparison import render_init_comparison
from .initialization_notes import render_initialization_notes
from .initialization_notes_digits import render_initialization_notes_digits
from .input_normalization import render_input_normalization
from .optimizer_comparison import render_optimizer_comparison
from .vanishing_sigmoid import render_vanishing_sigmoid

Renderer = Callable[[Study, Path], Output]
STUDIES: dict[str, tuple[Renderer, str, str]] = {
    # name: (renderer, question, figure the index shows)
    "exploding_identity": (render_exploding_identity,
                           "What does W = gain·I do to the gradients of a 10-layer linear net?",
                           "exploding_identity.png"),
    "vanishing_sigmoid": (render_vanishing_sigmoid,
                          "How fast does the gradient vanish through sigmoid layers?",
                          "vanishing_sigmoid.png"),
    "init_comparison": (render_init_comparison,
                        "Which initialization keeps a 30-layer ReLU net trainable?",
                        "init_comparison.png"),
    "optimizer_comparison": (render_optimizer_comparison,
                             "Can an optimizer get a deep sigmoid net off its plateau?",
                             "optimizer_comparison.png"),
    "batch_size": (render_batch_size, "What does the batch size do to noise and time?",
                   "batch_size.png"),
    "input_normalization": (render_input_normalization,
                            "Why standardize inputs with the training set's μ and σ?",
                            "input_normalization.png"),
    "depth_scaling": (render_depth_scaling,
                      "How deep can a net get, by activation and initialization?",
                      "depth_scaling.png"),
    "initialization_notes": (render_initialization_notes,
                             "Zero, too small, appropriate, too large: what each init does",
                             "initialization_notes.png"),
    "initialization_notes_digits": (render_initialization_notes_digits,
                                    "What do the inits do to each layer's activations on "
                                    "handwritten digits?",
                                    "initialization_notes_digits_histograms.png"),
}
NEEDS_WEIGHTS = {"init_comparison", "initialization_notes"}
