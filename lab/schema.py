"""Config schemas for Hydra and the checks that run after composition.

Two layers of checking, both before any run starts:

1. Structure and types. The dataclasses below are registered in Hydra's ConfigStore
   (`register_configs()`); every yaml file under `conf/<group>/` starts from its group's
   schema (`defaults: [base_<group>, _self_]`) and `conf/config.yaml` from `base_config`.
   A misspelt key (`model.activaton=relu`) or a value of the wrong type
   (`optimizer.lr=abc`) then fails inside `compose` / `@hydra.main`.
2. Meaning. `validate(cfg)` checks names against the valid choices, ranges, and the
   combinations that cannot work (identity init on a non-square layer, `bce` without a
   sigmoid output, ...), raising `ConfigError` with one line that names the key, the
   bad value and the fix.

The app calls `register_configs()` before `@hydra.main`, then `validate(cfg, n_x, n_y,
n_train)` with the data set's shapes (without them every check but the shape-dependent
ones runs). Key names are the stable ones of DESIGN.md; valid names come from the modules
that implement them.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

# Valid names come from the modules that implement them: one table per name.
from .data import DATASETS
from .init import SCHEMES as INITS
from .kernels import BACKENDS
from .kernels.codes import ACTIVATIONS, LOSS_OUTPUT, LOSSES, OPTIMIZERS, OUTPUT_ACTIVATIONS
from .network import DTYPES

FULL_BATCH = "full"
DIGITS_IMAGES = 1797  # scikit-learn's bundled 8x8 digits (lab/data.py)
AUTO_LOG_EVERY = "auto"


class ConfigError(ValueError):
    """A composed config that is well-typed but cannot run; the message is one line."""


# ----------------------------------------------------------------------------- schemas


@dataclass
class ModelConfig:
    """Fully connected net with sizes `[n_x] + [width] * (depth - 1) + [n_y]`."""

    depth: int = 10  # weight layers L (>= 1); depth 1 is a linear/logistic model
    width: int = 2  # units in each hidden layer
    activation: str = MISSING  # hidden layers 1..L-1
    output_activation: str = "identity"  # layer L


@dataclass
class InitConfig:
    name: str = MISSING
    gain: float = 1.0  # multiplies the scheme's scale (identity: W = gain * I)


@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = MISSING
    beta: float = 0.9  # momentum
    beta1: float = 0.9  # adam, first moment
    beta2: float = 0.999  # rmsprop and adam, second moment
    eps: float = 1e-8  # rmsprop and adam


@dataclass
class DataConfig:
    """One schema for every data set (lab/data.py); each uses the fields its yaml names."""

    name: str = MISSING
    n_train: int = 256
    n_test: int = 256
    normalize: bool = False  # standardize inputs with the training set's mean and std
    noise: float = 0.0
    n_features: int = 2  # n_x of identity, linear and teacher
    scale_spread: float = 0.0  # linear: feature i scaled by 10^s, s spaced in [-spread, spread]
    teacher_depth: int = 3  # teacher: weight layers of the fixed random tanh net
    teacher_width: int = 16
    factor: float = 0.5  # circles: inner radius over outer radius
    turns: float = 1.5  # spiral: turns of each arm


@dataclass
class TrainConfig:
    steps: int = 2000  # optimizer updates
    batch_size: Any = FULL_BATCH  # int >= 1, or "full" for batch gradient descent
    loss: str = "mse"
    divergence_threshold: float = 1e6  # stop when the loss exceeds this (or is not finite)


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str | None = None  # else MLFLOW_TRACKING_URI, else sqlite:///<repo>/mlruns.db
    experiment: str | None = None  # else the +experiment= name, else "default"
    log_every: Any = AUTO_LOG_EVERY  # int >= 1, or "auto" (about 100 points per run)
    detail: str = "default"  # full | default | summary: points per metric (lab/track/detail.py)
    figures: bool = True
    progress: bool = True


@dataclass
class Config:
    seed: int = 0
    backend: str = "cpu"  # also the `backend/` group: see conf/config.yaml
    dtype: str = "float64"
    model: ModelConfig = field(default_factory=ModelConfig)
    init: InitConfig = field(default_factory=InitConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


GROUP_SCHEMAS = {
    "model": ModelConfig,
    "init": InitConfig,
    "optimizer": OptimizerConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "tracking": TrackingConfig,
}


def register_configs() -> None:
    """Store `base_config` and each group's `base_<group>` schema; safe to call twice."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for group, schema in GROUP_SCHEMAS.items():
        cs.store(group=group, name=f"base_{group}", node=schema)


# ----------------------------------------------------------------------------- checks


def layer_sizes(n_x: int, n_y: int, depth: int, width: int) -> list[int]:
    """`[n_x] + [width] * (depth - 1) + [n_y]`: the sizes `lab.Network` takes."""
    return [n_x] + [width] * (depth - 1) + [n_y]


def _choices(values: Iterable[str]) -> str:
    return ", ".join(values)


def _one_of(key: str, value: Any, valid: Iterable[str]) -> None:
    if value not in valid:
        raise ConfigError(f"{key}={value!r} is not valid; choose one of: {_choices(valid)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_at_least(key: str, value: Any, low: int) -> None:
    if not _is_int(value) or value < low:
        raise ConfigError(f"{key}={value!r} is not valid; it must be an integer >= {low}")


def _positive(key: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{key}={value!r} is not valid; it must be a finite number > 0")


def _fraction(key: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{key}={value!r} is not valid; it must be in [0, 1)")


def _int_or_word(key: str, value: Any, word: str) -> None:
    if value == word:
        return
    if not _is_int(value) or value < 1:
        raise ConfigError(
            f"{key}={value!r} is not valid; use an integer >= 1 or {word!r} ({key}={word})"
        )


def validate(
    cfg: Any,
    n_x: int | None = None,
    n_y: int | None = None,
    n_train: int | None = None,
) -> None:
    """Check a composed config; raise `ConfigError` naming the first bad key.

    `n_x`, `n_y`: the data's input and output sizes, when known; they enable the check
    that identity init only meets square weight matrices. `n_train`: the number of
    training examples; `train.batch_size` must not exceed it (default `data.n_train`).
    """
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.structured(cfg) if not isinstance(cfg, dict) else OmegaConf.create(cfg)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        key = missing[0]
        raise ConfigError(f"{key} has no value; set it, e.g. on the command line: {key}=...")

    _int_at_least("seed", cfg.seed, 0)
    _one_of("backend", cfg.backend, BACKENDS)
    _one_of("dtype", cfg.dtype, DTYPES)

    model = cfg.model
    _int_at_least("model.depth", model.depth, 1)
    _int_at_least("model.width", model.width, 1)
    _one_of("model.activation", model.activation, ACTIVATIONS)
    _one_of("model.output_activation", model.output_activation, OUTPUT_ACTIVATIONS)

    _one_of("init.name", cfg.init.name, INITS)
    if not math.isfinite(cfg.init.gain):
        raise ConfigError(f"init.gain={cfg.init.gain!r} is not valid; it must be finite")

    opt = cfg.optimizer
    _one_of("optimizer.name", opt.name, OPTIMIZERS)
    _positive("optimizer.lr", opt.lr)
    for key in ("beta", "beta1", "beta2"):
        _fraction(f"optimizer.{key}", opt[key])
    _positive("optimizer.eps", opt.eps)

    data = cfg.data
    _one_of("data.name", data.name, DATASETS)
    _int_at_least("data.n_train", data.n_train, 1)
    _int_at_least("data.n_test", data.n_test, 0)
    if data.name == "digits" and data.n_train + data.n_test > DIGITS_IMAGES:
        raise ConfigError(
            f"data.n_train + data.n_test = {data.n_train + data.n_test} exceeds the "
            f"{DIGITS_IMAGES} digits images; lower them (e.g. data.n_test="
            f"{max(DIGITS_IMAGES - data.n_train, 0)})"
        )
    for key in ("n_features", "teacher_depth", "teacher_width"):
        _int_at_least(f"data.{key}", data[key], 1)
    for key in ("noise", "scale_spread", "factor", "turns"):
        if not (math.isfinite(data[key]) and data[key] >= 0):
            raise ConfigError(f"data.{key}={data[key]!r} is not valid; it must be >= 0")

    train = cfg.train
    _int_at_least("train.steps", train.steps, 1)
    _int_or_word("train.batch_size", train.batch_size, FULL_BATCH)
    _one_of("train.loss", train.loss, LOSSES)
    _positive("train.divergence_threshold", train.divergence_threshold)
    needed = LOSS_OUTPUT[train.loss]
    if needed is not None and model.output_activation != needed:
        raise ConfigError(
            f"train.loss={train.loss!r} needs model.output_activation={needed!r}, "
            f"got {model.output_activation!r}; set model.output_activation={needed}"
        )

    _int_or_word("tracking.log_every", cfg.tracking.log_every, AUTO_LOG_EVERY)

    n_examples = data.n_train if n_train is None else n_train
    if train.batch_size != FULL_BATCH and train.batch_size > n_examples:
        raise ConfigError(
            f"train.batch_size={train.batch_size} is larger than the {n_examples} training "
            f"examples; use train.batch_size<={n_examples} or train.batch_size=full"
        )

    if cfg.init.name == "identity" and n_x is not None and n_y is not None:
        sizes = layer_sizes(n_x, n_y, model.depth, model.width)
        if len(set(sizes)) != 1:
            others = _choices([name for name in INITS if name != "identity"])
            if n_x == n_y:
                fix = f"use model.width={n_x} or pick another init: {others}"
            else:
                fix = f"the data has n_x={n_x} != n_y={n_y}, so pick another init: {others}"
            raise ConfigError(
                f"init.name='identity' needs square weight matrices but the layer sizes are "
                f"{sizes}; {fix}"
            )
