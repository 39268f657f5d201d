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

from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

# Every rule about a value lives in the module that uses the value (the model layer); the
# checks below call those rules with the config's key names and turn their ValueError into a
# one-line ConfigError.
from .budget import check_fits
from .data import check_options
from .init import SCHEMES as INITS
from .init import check_scheme
from .kernels import BACKENDS
from .kernels.codes import lookup
from .network import check_activations, check_dtype, check_loss
from .optim import Optimizer
from .track.detail import check_detail
from .train import check_settings

FULL_BATCH = "full"
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
    # null: not used by this optimizer (each conf/optimizer/<name>.yaml sets its own;
    # lab/optim.py HYPER_DEFAULTS lists them)
    beta: float | None = None  # momentum
    beta1: float | None = None  # adam, first moment
    beta2: float | None = None  # rmsprop and adam, second moment
    eps: float | None = None  # rmsprop and adam


@dataclass
class DataConfig:
    """One schema for every data set (lab/data.py); each sets the fields it uses in its yaml
    (lab/data.py OPTIONS), the others stay null."""

    name: str = MISSING
    n_train: int = 256
    n_test: int = 256
    normalize: bool = False  # standardize inputs with the training set's mean and std
    noise: float | None = None
    n_features: int | None = None  # n_x of identity, linear and teacher
    scale_spread: float | None = None  # linear: feature i scaled by 10^s, s in [-spread, spread]
    teacher_depth: int | None = None  # teacher: weight layers of the fixed random tanh net
    teacher_width: int | None = None
    factor: float | None = None  # circles: inner radius over outer radius
    turns: float | None = None  # spiral: turns of each arm


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
    sqlite_direct: bool = True  # the writer writes MLflow's SQLite tables itself (sinks.py)


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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_at_least(key: str, value: Any, low: int) -> None:
    if not _is_int(value) or value < low:
        raise ConfigError(f"{key}={value!r} is not valid; it must be an integer >= {low}")


def _set(section: Any) -> dict:
    """The keys of a config section that have a value (null means: does not apply)."""
    return {k: v for k, v in section.items() if v is not None}


def _known_keys(cfg: Any) -> None:
    """ConfigError for a key no schema has: ``+model.dropout=0.5`` would otherwise run and log
    a param that does nothing. Hydra's own ``hydra`` node (launchers included) is not checked."""
    top = [f.name for f in fields(Config)]
    for key in cfg:
        if key == "hydra":
            continue
        if key not in top:
            raise ConfigError(f"{key} is not a setting of the lab; remove the '+{key}=...' "
                              f"override (settings: {', '.join(top)})")
        if key in GROUP_SCHEMAS:
            own = [f.name for f in fields(GROUP_SCHEMAS[key])]
            for sub in cfg[key]:
                if sub not in own:
                    raise ConfigError(f"{key}.{sub} is not a setting of the lab; remove the "
                                      f"'+{key}.{sub}=...' override (settings of {key}: "
                                      f"{', '.join(own)})")


def validate(
    cfg: Any,
    n_x: int | None = None,
    n_y: int | None = None,
    n_train: int | None = None,
) -> None:
    """Check a composed config; raise `ConfigError` naming the first bad key.

    `n_x`, `n_y`: the data's input and output sizes, when known; they enable the checks that
    need the layer sizes (identity init on square layers only, the memory the run needs).
    `n_train`: the number of training examples (default `data.n_train`).
    """
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.structured(cfg) if not isinstance(cfg, dict) else OmegaConf.create(cfg)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        key = missing[0]
        raise ConfigError(f"{key} has no value; set it, e.g. on the command line: {key}=...")
    _known_keys(cfg)

    _int_at_least("seed", cfg.seed, 0)
    model, data, train = cfg.model, cfg.data, cfg.train
    _int_at_least("model.depth", model.depth, 1)
    _int_at_least("model.width", model.width, 1)
    sizes = None if n_x is None or n_y is None else layer_sizes(n_x, n_y, model.depth,
                                                                 model.width)
    try:
        lookup(BACKENDS, cfg.backend, "backend")
        check_dtype(cfg.dtype)
        check_activations(model.activation, model.output_activation, "model.activation",
                          "model.output_activation")
        _check_init(cfg.init.name, cfg.init.gain, sizes, n_x, n_y, model.width)
        Optimizer(**_set(cfg.optimizer))
        options = _set(data)
        check_options(options.pop("name"), options.pop("n_train"), options.pop("n_test"),
                      **{k: v for k, v in options.items() if k != "normalize"})
        check_loss(train.loss, model.output_activation, "train.loss", "model.output_activation")
        examples = data.n_train if n_train is None else n_train
        _, logged = check_settings(train.steps, train.batch_size, examples,
                                   cfg.tracking.log_every, train.divergence_threshold)
        check_detail(cfg.tracking.detail)
        if sizes is not None:
            check_fits(sizes, data.n_train + data.n_test, train.steps, len(logged), cfg.dtype)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _check_init(name: str, gain: float, sizes, n_x, n_y, width) -> None:
    """init.check_scheme with the fix for a config: which width makes the layers square."""
    try:
        check_scheme(name, sizes, gain, key="init.name")
    except ValueError as exc:
        if name != "identity" or sizes is None:
            raise ValueError(str(exc).replace("gain=", "init.gain=", 1)) from None
        others = ", ".join(n for n in INITS if n != "identity")
        if n_x == n_y:
            fix = f"use model.width={n_x} or pick another init: {others}"
        else:
            fix = f"the data has n_x={n_x} != n_y={n_y}, so pick another init: {others}"
        raise ValueError(f"{exc}; {fix}") from None
