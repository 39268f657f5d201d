"""What a user sees: matplotlib figures and the words and numbers the MLflow UI shows.

- ``style``: sizes, fonts, colours and axes shared by every figure
- ``training``: a run's gradient and loss figures, from the arrays of ``history.npz``
- ``activations``: activation and error distributions by layer
- ``dataset``: figures that need the data and the trained net (decision boundary, digits)
- ``sweep``: per-job summaries, sweep tables and the comparison figure
- ``describe``: which params apply, run and sweep descriptions (Markdown), experiment tags,
  the derived metrics that keep per-layer norms readable in MLflow's own charts

Nothing here imports MLflow or the app; submodules are imported on use (no matplotlib at
``import lab.views``).
"""
