"""Moved to :mod:`lab.views.sweep`; kept so old imports work."""

from .views.sweep import TABLE_COLUMNS, job_summary, table_csv, table_text  # noqa: F401
