"""``python -m lab.report`` (``make report``): the studies' figures and measured numbers, read
back from the MLflow store.

For every study in ``conf/experiment/`` this finds the latest sweep (parent run tagged
``sweep=parent``) in the store, downloads its child runs' ``history.npz`` (and
``config.yaml``/``summary.json``), draws the study's figures into ``experiments/figures/`` and
fills the generated blocks of ``experiments/NAME.md``: everything between
``<!-- report:BLOCK -->`` and ``<!-- /report:BLOCK -->`` is rewritten, so no measured number in a
write-up is typed by hand. A study with no sweep in the store is reported as not run yet.

    python -m lab.report                      # default store, every study
    python -m lab.report --uri sqlite:///x.db --experiments-dir /tmp/exp --study exploding_identity
"""

from .charts import Output
from .generate import failures, main, report
from .studies import STUDIES

__all__ = ["Output", "STUDIES", "failures", "main", "report"]
