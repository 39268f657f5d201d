"""Config dicts as MLflow params and tags: flattened with dotted keys, cut to MLflow's limits,
passwords in URIs masked."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import numpy as np

from .uri import mask_uri, truncate

# MLflow's limits (mlflow.utils.validation; tests check they still agree)
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000

T = TypeVar("T")


def _param_value(value: Any) -> str:
    if isinstance(value, str):
        text = mask_uri(value)
    elif isinstance(value, (list, tuple)):
        text = mask_uri(json.dumps(list(value), default=str))
    elif isinstance(value, np.ndarray):
        text = json.dumps(value.tolist(), default=str)
    elif isinstance(value, np.generic):
        text = str(value.item())
    else:
        text = str(value)
    return truncate(text, MAX_PARAM_VAL_LENGTH)


def flatten_params(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dict -> ``{"model.depth": "50", ...}`` ready for MLflow params.

    Lists become JSON strings, values are cut to MLflow's param length limit
    (``MAX_PARAM_VAL_LENGTH``, 6000 in MLflow >= 2) and passwords in URIs are masked.
    Empty dicts are kept as ``"{}"`` so the key stays visible.
    """
    out: dict[str, str] = {}
    for key, value in cfg.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            if value:
                out.update(flatten_params(value, name))
            else:
                out[name] = "{}"
        else:
            out[name] = _param_value(value)
    return out


def tag_value(value: Any) -> str:
    return truncate(mask_uri(str(value)), MAX_TAG_VAL_LENGTH)


def batches(items: list[T], size: int) -> Iterable[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
