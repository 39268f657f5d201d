"""gradlab: see vanishing and exploding gradients happen, layer by layer."""

from .data import Dataset, make_dataset
from .network import Network
from .optim import Optimizer
from .train import TrainResult, train

__all__ = ["Dataset", "Network", "Optimizer", "TrainResult", "make_dataset", "train"]
