"""The Hydra config tree: composition, schema (typos and types), validate(), every study."""

import functools
import itertools
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lab.data import make_dataset
from lab.kernels.codes import ACTIVATIONS
from lab.schema import (
    Config,
    ConfigError,
    layer_sizes,
    register_configs,
    validate,
)
from lab.sweep import experiment_name

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "experiment")
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
SCHEMA_ERRORS = (ConfigCompositionException, OmegaConfBaseException)

# DESIGN.md, "Stable config keys".
STABLE_KEYS = [
    "seed", "backend", "model.depth", "model.width", "model.activation",
    "model.output_activation", "init.name", "init.gain", "optimizer.name", "optimizer.lr",
    "optimizer.beta", "optimizer.beta1", "optimizer.beta2", "optimizer.eps", "data.name",
    "data.n_train", "data.n_test", "data.normalize", "train.steps", "train.batch_size",
    "train.loss", "train.divergence_threshold", "tracking.enabled", "tracking.uri",
    "tracking.experiment", "tracking.log_every",
]

# A study is a `python -m lab -m +experiment=NAME` run of about a minute on 2 cores:
# keep its job count and its arithmetic (steps x batch x weights, summed over jobs) small.
MAX_JOBS = 30
MAX_WORK = 5e10


def make(overrides=(), conf_dir=CONF, hydra=False):
    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def data_shapes(cfg):
    """(n_x, n_y, n_train) of the data set the config describes, built by lab.data."""
    return _shapes(OmegaConf.to_yaml(cfg.data), cfg.seed)


@functools.cache
def _shapes(data_yaml, seed):
    options = OmegaConf.to_container(OmegaConf.create(data_yaml))
    name, n_train, n_test = options.pop("name"), options.pop("n_train"), options.pop("n_test")
    normalize = options.pop("normalize")
    ds = make_dataset(name, n_train, n_test, seed=seed, normalize_inputs=normalize, **options)
    return ds.n_x, ds.n_y, ds.X_train.shape[1]


def sweep(cfg):
    """Every job's overrides, expanded from hydra.sweeper.params like the basic sweeper."""
    params = cfg.hydra.sweeper.params or {}
    parser = OverridesParser.create()
    axes = []
    for key, spec in params.items():
        values = parser.parse_override(f"{key}={spec}").sweep_string_iterator()
        axes.append([f"{key}={value}" for value in values])
    return [list(job) for job in itertools.product(*axes)]


def bad(overrides, match, **shapes):
    with pytest.raises(ConfigError, match=match) as info:
        validate(make(overrides), **shapes)
    assert "\n" not in str(info.value)
    return str(info.value)


# ----------------------------------------------------------------------------- composition


def test_default_config_composes_and_validates():
    cfg = make()
    assert cfg.backend == "cpu" and cfg.seed == 0
    assert (cfg.model.depth, cfg.model.width, cfg.model.activation) == (10, 2, "identity")
    assert cfg.data.name == "identity" and cfg.train.batch_size == "full"
    assert (cfg.init.name, cfg.init.gain) == ("identity", 1.1)  # init/near_identity.yaml
    n_x, n_y, n_train = data_shapes(cfg)
    assert layer_sizes(n_x, n_y, cfg.model.depth, cfg.model.width) == [2] * 11
    validate(cfg, n_x=n_x, n_y=n_y, n_train=n_train)


def test_stable_keys_exist():
    cfg = make()
    for key in STABLE_KEYS:
        assert OmegaConf.select(cfg, key, default="<absent>") != "<absent>", key


def test_choosing_another_init_resets_the_gain():
    assert make(["init=he"]).init.gain == 1.0
    assert make(["init.gain=0.9"]).init == {"name": "identity", "gain": 0.9}


def test_hydra_settings():
    hydra = make(hydra=True).hydra
    assert hydra.job.chdir is False
    raw = OmegaConf.to_container(hydra, resolve=False)
    assert raw["run"]["dir"].startswith("outputs/")
    assert raw["sweep"]["dir"].startswith("multirun/")
    # two sweeps started in the same second never share a directory (nor a parent run)
    assert raw["run"]["dir"].endswith("-${gradlab_pid:}")
    assert raw["sweep"]["dir"].endswith("-${gradlab_pid:}")
    for study in EXPERIMENTS:  # a study inherits that directory, named after it
        text = (CONF / "experiment" / f"{study}.yaml").read_text()
        assert "dir:" not in text, study


@pytest.mark.parametrize("backend", ["cpu", "cuda", "numpy"])
def test_backend_group_sets_the_backend_key(backend):
    cfg = make([f"backend={backend}"])
    assert cfg.backend == backend
    validate(cfg)


def test_unknown_backend_lists_the_options():
    with pytest.raises(MissingConfigException, match="cuda"):
        make(["backend=gpu"])


@pytest.mark.parametrize(
    "group,option",
    [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))],
)
def test_every_group_option_composes(group, option):
    cfg = make([f"{group}={option}"])
    if group == "model" and cfg.model.output_activation == "softmax":
        cfg.train.loss = "cross_entropy"
    validate(cfg)  # shapes left out: identity init only fits some data sets
    # the option's file is what the group holds: every key it sets, unchanged
    if group == "backend":  # a _global_ file setting the top-level key
        assert cfg.backend == option
        return
    own = OmegaConf.load(CONF / group / f"{option}.yaml")
    for key, value in own.items():
        if key != "defaults":
            assert cfg[group][key] == value, f"{group}.{key}"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_its_sweep_is_valid(name):
    text = (CONF / "experiment" / f"{name}.yaml").read_text()
    # the template's habit: the package line, then the command that runs the study
    assert text.startswith(f"# @package _global_\n# Run: python -m lab -m +experiment={name}\n")

    cfg = make([f"+experiment={name}"], hydra=True)
    assert cfg.tracking.experiment is None  # the MLflow experiment is named after the study
    assert experiment_name(cfg, cfg.hydra.runtime.choices) == name
    params = cfg.hydra.sweeper.params
    assert params, "an experiment sweeps something"
    for key in params:
        if key in GROUPS:
            continue  # options are checked by composing every job below
        assert OmegaConf.select(cfg, key, default="<absent>") != "<absent>", key

    jobs = sweep(cfg)
    assert 1 < len(jobs) <= MAX_JOBS
    work = 0.0
    for job in jobs:
        job_cfg = make([f"+experiment={name}", *job])
        n_x, n_y, n_train = data_shapes(job_cfg)
        validate(job_cfg, n_x=n_x, n_y=n_y, n_train=n_train)
        sizes = layer_sizes(n_x, n_y, job_cfg.model.depth, job_cfg.model.width)
        batch = job_cfg.train.batch_size
        batch = n_train if batch == "full" else batch
        weights = sum(a * b for a, b in itertools.pairwise(sizes))
        work += job_cfg.train.steps * batch * weights
    assert work <= MAX_WORK


# ----------------------------------------------------------------------------- schema


@pytest.mark.parametrize("override", ["model.activaton=relu", "optimzer.lr=0.1", "train.step=5"])
def test_key_typo_fails_at_composition(override):
    with pytest.raises(SCHEMA_ERRORS):
        make([override])


@pytest.mark.parametrize(
    "override",
    ["optimizer.lr=abc", "model.depth=1.5", "train.steps=many", "tracking.enabled=maybe"],
)
def test_wrong_type_fails_at_composition(override):
    with pytest.raises(SCHEMA_ERRORS):
        make([override])


def test_typo_inside_a_yaml_file_fails(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    with (conf / "model" / "mlp.yaml").open("a") as f:
        f.write("activaton: tanh\n")
    with pytest.raises(SCHEMA_ERRORS):
        make(["model=mlp"], conf_dir=conf)


def test_register_configs_twice_is_harmless():
    register_configs()
    register_configs()
    assert make().model.depth == 10


# ----------------------------------------------------------------------------- validate()


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("value,expected", [("full", "full"), ("7", 7), ("1", 1)])
def test_batch_size_int_or_full(value, expected):
    cfg = make([f"train.batch_size={value}"])
    assert cfg.train.batch_size == expected
    validate(cfg, n_train=256)


@pytest.mark.parametrize("value", ["0", "-3", "half", "2.5", "true"])
def test_bad_batch_size(value):
    bad([f"train.batch_size={value}"], r"train\.batch_size=.*'full'")


def test_batch_size_larger_than_the_data():
    bad(["train.batch_size=300"], r"train\.batch_size=300.*256")
    bad(["train.batch_size=100"], r"train\.batch_size=100.*50", n_train=50)


@pytest.mark.parametrize("value", ["auto", "1", "25"])
def test_log_every_int_or_auto(value):
    cfg = make([f"tracking.log_every={value}"])
    validate(cfg)
    assert cfg.tracking.log_every == (value if value == "auto" else int(value))


@pytest.mark.parametrize("value", ["0", "never", "0.5"])
def test_bad_log_every(value):
    bad([f"tracking.log_every={value}"], r"tracking\.log_every=.*'auto'")


def test_unknown_activation_names_the_choices():
    message = bad(["model.activation=swish"], r"model\.activation='swish'")
    for name in ACTIVATIONS:
        assert name in message
    bad(["model.activation=softmax"], r"model\.activation='softmax'")
    bad(["model.output_activation=swish"], r"model\.output_activation=.*softmax")


@pytest.mark.parametrize(
    "override,key",
    [
        ("init.name=orthogonal", "init.name"),
        ("optimizer.name=adagrad", "optimizer.name"),
        ("train.loss=hinge", "train.loss"),
        ("data.name=mnist", "data.name"),
        ("dtype=float16", "dtype"),
    ],
)
def test_unknown_names(override, key):
    bad([override], rf"{key}=.*choose one of")


@pytest.mark.parametrize(
    "override",
    [
        "optimizer.lr=0", "optimizer.lr=-0.1", "optimizer.lr=inf", "train.steps=0",
        "model.depth=0", "model.width=0", "optimizer.beta=1.0", "optimizer.eps=0",
        "data.n_train=0", "data.noise=-1", "train.divergence_threshold=0",
    ],
)
def test_out_of_range(override):
    key = override.split("=")[0]
    bad([override], rf"^{key}=")


def test_loss_needs_its_output_activation():
    bad(["train.loss=bce"], r"model\.output_activation=sigmoid")
    bad(["train.loss=cross_entropy"], r"model\.output_activation=softmax")
    validate(make(["train.loss=bce", "model.output_activation=sigmoid"]))
    validate(make(["train.loss=cross_entropy", "model.output_activation=softmax"]))


def test_identity_init_needs_square_layers():
    square = ["init=identity"]
    validate(make(square), n_x=2, n_y=2)
    validate(make(square))  # shapes unknown: nothing to check
    validate(make([*square, "model.depth=1"]), n_x=5, n_y=5)
    bad([*square, "model.width=3"], r"init\.name='identity'.*\[2, 3, .*model\.width=2",
        n_x=2, n_y=2)
    bad([*square, "model.width=3"], r"n_x=3 != n_y=1", n_x=3, n_y=1)
    bad([*square, "model.depth=1"], r"\[3, 1\]", n_x=3, n_y=1)


def test_missing_value_is_named():
    with pytest.raises(ConfigError, match="has no value"):
        validate(OmegaConf.structured(Config))
    cfg = make()
    cfg.model.activation = "???"
    with pytest.raises(ConfigError, match=r"^model\.activation has no value"):
        validate(cfg)


def test_validate_accepts_a_plain_dict():
    cfg = OmegaConf.to_container(make(), resolve=True)  # what the app hands over
    validate(cfg, n_x=2, n_y=2, n_train=256)
    cfg["model"]["activation"] = "swish"
    with pytest.raises(ConfigError, match="model.activation"):
        validate(cfg)


@pytest.mark.parametrize("override,match", [
    ("+model.dropout=0.5", r"^model\.dropout is not a setting of the lab; remove the "
                           r"'\+model\.dropout=\.\.\.' override \(settings of model: depth, "),
    ("+foo=1", r"^foo is not a setting of the lab; remove the '\+foo=\.\.\.' override"),
])
def test_keys_the_lab_does_not_know_are_refused(override, match):
    bad([override], match)


def test_settings_that_do_not_apply_are_refused():
    bad(["optimizer=rmsprop", "optimizer.beta=0.5"], r"^optimizer\.beta=0\.5 does not apply")
    bad(["data=digits", "data.factor=0.3"], r"^data\.factor=0\.3 does not apply to data set "
                                            r"'digits'")
    cfg = make(["optimizer=rmsprop", "data=moons"])
    assert cfg.optimizer.beta is None and cfg.data.factor is None  # null: does not apply


def test_a_config_that_cannot_fit_in_memory_is_refused():
    bad(["model.depth=1000000"], r"^this run needs about .* GB of memory \(history: .*\) but "
                                 r"the limit is", n_x=2, n_y=2)


def test_a_command_line_sweep_replaces_the_studys_sweep_of_the_same_key():
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from lab.sweep import count_jobs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        def jobs(*overrides):
            cfg = GlobalHydra.instance().hydra.compose_config(
                "config", overrides=["+experiment=exploding_identity", *overrides],
                run_mode=RunMode.MULTIRUN, with_log_configuration=False)
            return count_jobs(cfg)

        assert jobs() == 5  # the study's own init.gain sweep
        assert jobs("init.gain=0.5,1.5") == 2  # replaced, not multiplied (was 10)
        assert jobs("seed=0,1") == 10  # another key multiplies


CACHE_CHECK = r"""
import json, sys
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from lab import config_cache
from lab.schema import register_configs

conf, jobs = sys.argv[1], json.loads(sys.argv[2])
register_configs()

def composed():
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        return [OmegaConf.to_yaml(compose("config", overrides=o, return_hydra_config=True))
                for o in jobs]

plain = composed()
assert config_cache.install()
print(json.dumps({"plain": plain, "cached": composed(), "again": composed()}))
"""


def test_config_cache_composes_every_job_as_hydra_does():
    """lab.config_cache (each config file parsed once per process, handed out as copies):
    the same configs, hydra node included, as Hydra's own composition, also when a job's
    overrides select other group options or edit what an earlier job loaded."""
    import json
    import subprocess
    import sys

    jobs = [[], ["seed=3", "init.gain=0.5"], ["model=mlp", "optimizer=adam", "init=he"],
            ["+experiment=vanishing_sigmoid"], ["data=moons", "model.output_activation=sigmoid",
                                                "train.loss=bce", "train.batch_size=32"],
            ["optimizer=adam", "optimizer.lr=0.5"], ["optimizer=adam"], ["seed=3"], []]
    done = subprocess.run([sys.executable, "-c", CACHE_CHECK, str(CONF), json.dumps(jobs)],
                          capture_output=True, text=True, timeout=120, cwd=CONF.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(set(out["plain"])) == len(jobs) - 1  # (the last job repeats the first)
    assert out["cached"] == out["plain"] and out["again"] == out["plain"]
