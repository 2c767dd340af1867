"""dldna_lite: the helper package of the *dldna-lite* book.

Modules map to chapters: ``data``/``models``/``train``/``config`` (foundation), ``viz`` and ``widgets`` (plots and
interactive figures shared by all chapters).
"""
from . import config, data, models, train, viz, widgets
from .config import device, profile, seed_everything, sizes
from .data import batches, load_fashion_mnist
from .train import History, evaluate, train as fit

__all__ = ["config", "data", "models", "train", "viz", "widgets", "device", "profile", "seed_everything", "sizes",
           "batches", "load_fashion_mnist", "History", "evaluate", "fit"]
__version__ = "0.1.0"
