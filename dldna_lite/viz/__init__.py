"""Plot helpers: one function per kind of plot, one palette for the whole book.

Colours are fixed per optimizer / initializer / variant name through :data:`PALETTE`, so "Adam" is the same colour
in every chapter; unknown names fall back to matplotlib's cycle. Every ``plot_*`` draws on the axis (or axes) it is
given, or on a new figure (:func:`new_axes`), and returns them. The modules, by chapter:

* :mod:`.base` -- :data:`PALETTE`, :func:`color`, :func:`new_axes` (all chapters);
* :mod:`.training` -- :func:`plot_history`, :func:`plot_steps` (00 "Quickstart", 01, 05);
* :mod:`.initialization` -- :func:`plot_layer_profile`, :func:`plot_singular_values` (01 "Initialization");
* :mod:`.optimizers` -- :func:`plot_trajectory`, :func:`plot_surface_run`, :func:`plot_optimizer_runs` (02 "Optimizers
  from scratch");
* :mod:`.landscapes` -- slices, 3D surfaces, Hessian spectra (03 "Loss landscapes I"); persistence, wavelets,
  paths between minima (04 "Loss landscapes II");
* :mod:`.dynamics` -- :func:`plot_monitor`, :func:`plot_sharpness` (05 "Training dynamics");
* :mod:`.modern_ml` -- :func:`plot_grokking`, :func:`plot_double_descent`, :func:`plot_backprop_cost` (06, 07
  "Stories from modern ML").
"""
from .base import PALETTE, color, new_axes
from .dynamics import plot_monitor, plot_sharpness
from .initialization import plot_layer_profile, plot_singular_values
from .landscapes import (plot_hessian_spectrum, plot_landscape_1d, plot_landscape_3d, plot_landscape_contour,
                         plot_path_losses, plot_persistence, plot_wavelet_decomposition, plot_wavelet_energy)
from .optimizers import plot_optimizer_runs, plot_surface_run, plot_trajectory
from .modern_ml import plot_backprop_cost, plot_double_descent, plot_grokking
from .training import plot_history, plot_steps

__all__ = ["PALETTE", "color", "new_axes", "plot_history", "plot_steps", "plot_layer_profile", "plot_singular_values",
           "plot_trajectory", "plot_surface_run", "plot_optimizer_runs", "plot_landscape_1d",
           "plot_landscape_contour", "plot_landscape_3d", "plot_hessian_spectrum", "plot_persistence",
           "plot_wavelet_energy", "plot_wavelet_decomposition", "plot_path_losses", "plot_monitor", "plot_sharpness",
           "plot_grokking", "plot_double_descent", "plot_backprop_cost"]
from .dynamics import plot_batch_sweep, plot_schedule_run  # chapter 05 (issue 28); not yet in __all__
from .modern_ml import plot_grokking_loss, plot_layer_grad_norms  # chapters 06, 07 (issue 28); not yet in __all__
from .landscapes import (plot_curvature_history, plot_eigenvector_plane, plot_embeddings,  # chapters 03, 04 (issue 28);
                         plot_filled_contour, plot_interpolations, plot_loss_pictures,  # not yet in __all__
                         plot_paths_on_plane, plot_planes, plot_rescaling_slices, plot_slice_marker)
from .initialization import plot_batchnorm_runs  # chapter 01 (issue 28); not yet in __all__
