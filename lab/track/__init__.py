"""MLflow, and only here: URIs, the store, the background writer, runs and sweep parents,
every query of the store, and sync of run directories into a store.

One idea per module: :mod:`.uri` (URIs, masking), :mod:`.store` (client, checks, retries,
experiments), :mod:`.params` (config -> params/tags), :mod:`.writer` (background metric
writer), :mod:`.detail` (what the store receives of each chunk), :mod:`.record` (the run
directory), :mod:`.runs` (runs and sweep parents), :mod:`.read` (queries), :mod:`.sync`
(run directories -> store, repair of lost runs), :mod:`.sweep_writer` (the writer process of a
run or sweep) and its two ways into a store, :mod:`.sinks` (MLflow's SQLite tables directly,
:mod:`.fastsql`, or MLflow's client). MLflow is imported on first use, and on a SQLite store
the writer process never imports it.
"""

from .detail import LEVELS as DETAIL_LEVELS
from .detail import StorePlan, store_series
from .params import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
    flatten_params,
)
from .record import RunRecord
from .recorded import RecordedRun
from .runs import (
    PARENT_ENV_VAR,
    PARENT_ID_FILE,
    STATUS_TO_MLFLOW,
    RunTracker,
    StoreIncomplete,
    SweepParent,
    log_artifacts,
    sync_command,
)
from .store import (
    RETRY_BUDGET_S,
    TrackingUnreachable,
    check_reachable,
    ensure_store,
    get_or_create_experiment,
    quiet_store_logs,
)
from .uri import (
    artifact_root_for,
    default_artifact_root,
    mask_config,
    mask_log_records,
    mask_uri,
    one_line,
    resolve_tracking_uri,
)
from .writer import MetricWriter

__all__ = [
    "DETAIL_LEVELS", "MAX_METRICS_PER_BATCH", "MAX_PARAM_VAL_LENGTH", "MAX_PARAMS_TAGS_PER_BATCH",
    "MAX_TAG_VAL_LENGTH", "PARENT_ENV_VAR", "PARENT_ID_FILE", "RETRY_BUDGET_S",
    "STATUS_TO_MLFLOW", "MetricWriter", "RecordedRun", "RunRecord", "RunTracker", "StoreIncomplete",
    "StorePlan", "SweepParent", "TrackingUnreachable", "artifact_root_for", "check_reachable",
    "default_artifact_root", "ensure_store", "flatten_params", "get_or_create_experiment", "log_artifacts",
    "mask_config", "mask_log_records", "mask_uri", "one_line", "quiet_store_logs",
    "resolve_tracking_uri", "store_series", "sync_command",
]
