"""dldna_lite: the helper package of the *dldna-lite* book. The file list is the map of the book:

==========================================  ====================================================================
shared by every chapter                     ``config`` (profiles, device, seeds), ``data`` (Fashion-MNIST in
                                            memory), ``models`` (every model builder), ``train`` (``fit``,
                                            ``evaluate``, ``run_seeds``, ``mean_std``), ``notebook`` (``glue``,
                                            ``show_source``, ``claim``), ``viz`` (plots), ``widgets`` (sliders)
01 Initialization                           ``init``
02 Optimizers                               ``optim`` (the optimizers, ``optim.build``, comparisons), ``surfaces``
                                            (2D toy surfaces and optimizer paths, also used in 04)
03, 04 Loss landscapes I and II             ``landscape`` (directions, the scan engine, trajectories, topology,
                                            mode connectivity, sightseeing, the ``python -m dldna_lite.landscape``
                                            scan CLI), ``hessian`` (its ``krylov``: Lanczos, power iteration),
                                            ``distributed`` (scans on several processes)
05 Training dynamics                        ``dynamics`` (monitoring, edge of stability), ``schedules``
06, 07 Modern stories, backprop memory      ``generalization`` (grokking, double descent), ``backprop``
exercises                                   ``exercises`` (one checker module per student notebook)
==========================================  ====================================================================

How every function is called (model first, then ``data = (X, y)``, options keyword-only) is in CONTRIBUTING.md.
"""
from . import config, data, models, notebook, train, viz, widgets
from .config import device, device_of, profile, seed_everything, sizes
from .data import batches, load_fashion_mnist
from .notebook import claim, glue, plural, show_source
from .train import History, evaluate, train as fit

__all__ = ["config", "data", "models", "notebook", "train", "viz", "widgets", "device", "device_of", "profile",
           "seed_everything", "sizes", "batches", "load_fashion_mnist", "glue", "plural", "show_source", "claim",
           "History", "evaluate", "fit"]
__version__ = "0.1.0"
