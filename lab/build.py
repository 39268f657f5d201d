"""A resolved config (plain dict) -> the data set, the network and the optimizer it describes.

Shared by the app, the figure worker and the report, so each rebuilds a run the same way;
nothing here touches MLflow or Hydra.
"""

from .data import make_dataset
from .network import Network
from .optim import Optimizer
from .schema import layer_sizes, validate


def make_data(cfg):
    """The config's data set; ValueError for bad data (non-finite values, too few images)."""
    data_cfg = dict(cfg["data"])
    name = data_cfg.pop("name")
    n_train, n_test = data_cfg.pop("n_train"), data_cfg.pop("n_test")
    normalize = data_cfg.pop("normalize")
    return make_dataset(name, n_train, n_test, seed=cfg["seed"], normalize_inputs=normalize,
                        **data_cfg)


def build(cfg, ds=None, checked=False):
    """(dataset, network, optimizer) from a config dict; ConfigError for bad settings
    (``checked``: the caller already validated ``cfg`` against ``ds``: a job's config is
    validated once)."""
    if ds is None:
        ds, checked = make_data(cfg), False
    if not checked:
        validate(cfg, n_x=ds.n_x, n_y=ds.n_y, n_train=ds.X_train.shape[1])
    model, init = cfg["model"], cfg["init"]
    sizes = layer_sizes(ds.n_x, ds.n_y, model["depth"], model["width"])
    net = Network(sizes, model["activation"], model["output_activation"], init=init["name"],
                  gain=init["gain"], seed=cfg["seed"], dtype=cfg.get("dtype", "float64"),
                  backend=cfg["backend"])
    # null keys are the ones this optimizer does not use (conf/optimizer/<name>.yaml)
    optimizer = Optimizer(**{k: v for k, v in cfg["optimizer"].items() if v is not None})
    return ds, net, optimizer
