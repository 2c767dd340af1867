"""Plot helpers: one function per kind of plot, one palette for the whole book.

Colours are fixed per optimizer / initializer / variant name through :data:`PALETTE`, so "Adam" is the same colour
in every chapter; unknown names fall back to matplotlib's cycle. Every ``plot_*`` draws on the axis (or axes) it is
given, or on a new figure (:func:`new_axes`), and returns them; the few that lay out a figure of their own
(:func:`plot_schedule_run`, :func:`plot_planes`, :func:`plot_eigenvector_plane`, :func:`plot_slice_marker`,
:func:`plot_paths_on_plane`) return that figure. The modules, by chapter:

* :mod:`.base` -- :data:`PALETTE`, :func:`color`, :func:`new_axes` (all chapters);
* :mod:`.training` -- :func:`plot_history`, :func:`plot_steps` (00 "Quickstart", 01, 05);
* :mod:`.initialization` -- :func:`plot_layer_profile`, :func:`plot_singular_values`, :func:`plot_batchnorm_runs`
  (01 "Initialization");
* :mod:`.optimizers` -- :func:`plot_trajectory`, :func:`plot_surface_run`, :func:`plot_optimizer_runs` (02 "Optimizers
  from scratch");
* :mod:`.landscapes` -- slices, 3D surfaces, Hessian spectra, and the figures :func:`plot_interpolations`,
  :func:`plot_split_slices`, :func:`plot_rescaling_slices`, :func:`plot_planes`, :func:`plot_eigenvector_plane`,
  :func:`plot_curvature_history`, :func:`plot_slice_marker` (03 "Loss landscapes I"); persistence, wavelets,
  paths between minima, and :func:`plot_paths_on_plane`, :func:`plot_embeddings`, :func:`plot_filled_contour`,
  :func:`plot_loss_pictures` (04 "Loss landscapes II");
* :mod:`.dynamics` -- :func:`plot_monitor`, :func:`plot_sharpness`, :func:`plot_schedule_run`,
  :func:`plot_batch_sweep` (05 "Training dynamics");
* :mod:`.modern_ml` -- :func:`plot_grokking`, :func:`plot_grokking_loss`, :func:`plot_double_descent`,
  :func:`plot_backprop_cost`, :func:`plot_layer_grad_norms` (06, 07 "Stories from modern ML").
"""
from .base import PALETTE, color, new_axes
from .dynamics import plot_batch_sweep, plot_monitor, plot_schedule_run, plot_sharpness
from .initialization import plot_batchnorm_runs, plot_layer_profile, plot_singular_values
from .landscapes import (plot_curvature_history, plot_eigenvector_plane, plot_embeddings, plot_filled_contour,
                         plot_hessian_spectrum, plot_interpolations, plot_landscape_1d, plot_landscape_3d,
                         plot_landscape_contour, plot_loss_pictures, plot_path_losses, plot_paths_on_plane,
                         plot_persistence, plot_planes, plot_rescaling_slices, plot_slice_marker,
                         plot_split_slices, plot_wavelet_decomposition, plot_wavelet_energy)
from .modern_ml import plot_backprop_cost, plot_double_descent, plot_grokking, plot_grokking_loss, plot_layer_grad_norms
from .optimizers import plot_optimizer_runs, plot_surface_run, plot_trajectory
from .training import plot_history, plot_steps

__all__ = ["PALETTE", "color", "new_axes", "plot_history", "plot_steps", "plot_layer_profile", "plot_singular_values",
           "plot_batchnorm_runs", "plot_trajectory", "plot_surface_run", "plot_optimizer_runs", "plot_landscape_1d",
           "plot_landscape_contour", "plot_landscape_3d", "plot_hessian_spectrum", "plot_interpolations",
           "plot_split_slices", "plot_rescaling_slices", "plot_planes", "plot_eigenvector_plane",
           "plot_curvature_history", "plot_slice_marker", "plot_persistence", "plot_wavelet_energy",
           "plot_wavelet_decomposition", "plot_path_losses", "plot_paths_on_plane", "plot_embeddings",
           "plot_filled_contour", "plot_loss_pictures", "plot_monitor", "plot_sharpness", "plot_schedule_run",
           "plot_batch_sweep", "plot_grokking", "plot_grokking_loss", "plot_double_descent", "plot_backprop_cost",
           "plot_layer_grad_norms"]
