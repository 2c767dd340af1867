"""Loss landscapes (chapters 03 "Loss landscapes I" and 04 "Loss landscapes II"): ``from dldna_lite import
landscape`` and ``landscape.scan_2d(model, data, d1, d2, xs, ys)``.

One module per idea a reader meets in the chapters:

* :mod:`.flat` -- flat parameter vectors ``[P]`` and back (``flat_params``, ``unflatten``, ``flatten``, ``split``);
* :mod:`.directions` -- random (filter-normalised), Hessian and rescaled directions through the weights;
* :mod:`.engine` -- the scan engine: lines, planes, interpolation between checkpoints, non-convexity of a slice;
* :mod:`.trajectories` -- recorded training paths, their PCA plane and t-SNE, the loss on a plane of flat vectors;
* :mod:`.topology` -- wavelet energy per scale and persistent homology (basins) of a gridded surface;
* :mod:`.connectivity` -- Bezier curves between two minima and loss barriers (mode connectivity);
* :mod:`.sightseeing` -- a trained plane on which the loss draws a chosen picture (Skorokhodov & Burtsev 2019);
* :mod:`.checkpoints` and :mod:`.cli` -- the scan of a saved checkpoint on one process or under ``torchrun``
  (``python -m dldna_lite.landscape``), built on :mod:`dldna_lite.distributed`.

Every function that evaluates a model reads ``f(model, data, <what it is about>, *, loss_fn=F.cross_entropy,
generator=None, ...)`` with ``data = (X, y)``, computes on the model's device and moves the data there.
"""
from .checkpoints import MODELS, build_model, load_checkpoint, model_hash, save_checkpoint, tensors_hash
from .cli import grid_coords, run_scan, scan_directions
from .connectivity import barrier, bezier_point, path_metrics, train_bezier
from .directions import (NORMS, direction_norms, full_direction, hessian_directions, random_direction, random_plane,
                         rescale_layers)
from .engine import evaluate_points, interpolate, nonconvex_fraction, point_evaluator, scan_1d, scan_2d
from .flat import flat_params, flatten, param_dict, set_flat, split, unflatten
from .sightseeing import SMILEY, fit_pattern, pattern_agreement, pattern_coords, plane_losses
from .topology import basins, count_minima, diagram_distance, sublevel_persistence, wavelet_decompose, wavelet_energy
from .trajectories import plane_surface, random_walks, record_trajectory, trajectory_pca, tsne_embedding

__all__ = ["MODELS", "build_model", "load_checkpoint", "model_hash", "save_checkpoint", "tensors_hash",
           "grid_coords", "run_scan", "scan_directions",
           "barrier", "bezier_point", "path_metrics", "train_bezier",
           "NORMS", "direction_norms", "full_direction", "hessian_directions", "random_direction", "random_plane",
           "rescale_layers",
           "evaluate_points", "interpolate", "nonconvex_fraction", "point_evaluator", "scan_1d", "scan_2d",
           "flat_params", "flatten", "param_dict", "set_flat", "split", "unflatten",
           "SMILEY", "fit_pattern", "pattern_agreement", "pattern_coords", "plane_losses",
           "basins", "count_minima", "diagram_distance", "sublevel_persistence", "wavelet_decompose", "wavelet_energy",
           "plane_surface", "random_walks", "record_trajectory", "trajectory_pca", "tsne_embedding"]
