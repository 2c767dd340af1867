"""dldna_lite: the helper package of the *dldna-lite* book.

Modules map to chapters: ``data``/``models``/``train``/``config`` (foundation), ``viz`` and ``widgets`` (plots and
interactive figures shared by all chapters), ``notebook`` (``glue``: computed numbers into the prose, in the book and
in a student's kernel alike).
"""
from . import config, data, models, notebook, train, viz, widgets
from .config import device, profile, seed_everything, sizes
from .data import batches, load_fashion_mnist
from .notebook import glue
from .train import History, evaluate, train as fit

__all__ = ["config", "data", "models", "notebook", "train", "viz", "widgets", "device", "profile", "seed_everything",
           "sizes",
           "batches", "load_fashion_mnist", "glue", "History", "evaluate", "fit"]
__version__ = "0.1.0"
