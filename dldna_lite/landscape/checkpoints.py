"""Checkpoints a scan can rebuild a model from, and hashes that say two processes hold the same tensors
(the torchrun scan of the appendix page "Running this book", :mod:`dldna_lite.landscape.cli`).

:func:`save_checkpoint` writes ``{"format", "model", "kwargs", "state_dict"}``, which
``torch.load(weights_only=True)`` reads; :func:`load_checkpoint` also takes a bare ``state_dict`` with a model name
and its keyword arguments. Model names are :data:`MODELS`: :func:`dldna_lite.models.build`'s, plus ``"residual"``
(:class:`dldna_lite.models.ResidualMLP`).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from .. import distributed, models

__all__ = ["MODELS", "build_model", "save_checkpoint", "load_checkpoint", "model_hash", "tensors_hash"]

#: Model names a checkpoint may name: :func:`dldna_lite.models.build`'s, plus the chapters' residual MLP.
MODELS = {**models.MODELS, "residual": models.ResidualMLP}
CHECKPOINT_FORMAT = "dldna_lite.checkpoint/1"


# ------------------------------------------------------------------------------------------------- checkpoints
def build_model(name: str, kwargs: dict | None = None) -> nn.Module:
    """``MODELS[name](**kwargs)``; ``ValueError`` for an unknown name (listing the valid ones) or bad kwargs."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    try:
        return MODELS[name](**(kwargs or {}))
    except TypeError as err:
        raise ValueError(f"model {name!r} does not accept kwargs {kwargs}: {err}") from None


def save_checkpoint(model: nn.Module, path: str | os.PathLike, name: str, **kwargs) -> Path:
    """Write ``model``'s weights with the recipe to rebuild it (``MODELS[name](**kwargs)``) to ``path``.

    The file is a dict ``{"format", "model": name, "kwargs": kwargs, "state_dict"}`` of plain types and CPU
    tensors, so ``torch.load(path, weights_only=True)`` reads it. Checks first that the recipe rebuilds a model
    the weights fit (``ValueError`` otherwise) and that ``kwargs`` are JSON values (no modules). Atomic write.
    """
    try:
        json.dumps(kwargs)
    except TypeError as err:
        raise ValueError(f"kwargs must be JSON values (numbers, strings, lists, dicts), got {kwargs}: {err}") from None
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    try:
        build_model(name, kwargs).load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"the model's weights do not fit {name}(**{kwargs}): {err}") from None
    checkpoint = {"format": CHECKPOINT_FORMAT, "model": name, "kwargs": kwargs, "state_dict": state}
    return distributed.atomic_write(path, lambda f: torch.save(checkpoint, f))


def _read(path: Path, device=None):
    """``torch.load(path, map_location=device or "cpu", weights_only=True)`` with a clear error for a missing or
    unreadable file."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; write one with "
                                "dldna_lite.landscape.save_checkpoint(model, path, name, **kwargs) "
                                "or torch.save(model.state_dict(), path)")
    try:
        return torch.load(path, map_location=device or "cpu", weights_only=True)
    except Exception as err:          # truncated zip, not a torch file, pickled classes weights_only refuses, ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ValueError(f"cannot read checkpoint {path} ({type(err).__name__}: {first}); it must be written by "
                         "save_checkpoint or be a state_dict saved with torch.save, readable by "
                         "torch.load(weights_only=True)") from None


def _canonical(kwargs: dict) -> str:
    return json.dumps(kwargs, sort_keys=True)          # tuples and lists compare equal, as in JSON


def load_checkpoint(path: str | os.PathLike, model: str | None = None, model_kwargs: dict | None = None, *,
                    device: torch.device | str | None = None) -> tuple[nn.Module, str, dict]:
    """``(model in eval mode, name, kwargs)`` from a :func:`save_checkpoint` file or a bare state_dict.

    A bare state_dict needs ``model`` (and ``model_kwargs`` unless the defaults fit); for a
    :func:`save_checkpoint` file they are optional and must agree with the file when given. Missing file:
    ``FileNotFoundError``; unreadable file, unknown model, weights that do not fit: ``ValueError`` saying what to do.
    ``device`` (default the CPU): the tensors are loaded there (``map_location``) and the model is built there.
    """
    path = Path(path)
    obj = _read(path, device)
    if isinstance(obj, dict) and "state_dict" in obj and "model" in obj:
        name, kwargs, state = obj["model"], dict(obj.get("kwargs") or {}), obj["state_dict"]
        if model is not None and model != name:
            raise ValueError(f"--model {model!r} but checkpoint {path} holds a {name!r} model; drop --model")
        if model_kwargs is not None and _canonical(model_kwargs) != _canonical(kwargs):
            raise ValueError(f"--model-kwargs {model_kwargs} but checkpoint {path} was saved with {kwargs}; "
                             "drop --model-kwargs")
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        if model is None:
            raise ValueError(f"checkpoint {path} is a bare state_dict: name its model with --model "
                             f"({', '.join(MODELS)}) and, unless the defaults fit, --model-kwargs as JSON")
        name, kwargs, state = model, dict(model_kwargs or {}), obj
    else:
        raise ValueError(f"checkpoint {path} holds a {type(obj).__name__}, neither a save_checkpoint dict "
                         "(keys model, kwargs, state_dict) nor a state_dict of tensors")
    net = build_model(name, kwargs).to(device or "cpu")
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"checkpoint {path} does not fit model {name!r} with kwargs {kwargs} "
                         f"(check --model / --model-kwargs): {err}") from None
    return net.eval(), name, kwargs


def tensors_hash(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """sha256 (hex) over ``name | dtype | shape | raw bytes`` of each tensor, in the order given."""
    h = hashlib.sha256()
    for name, t in named:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_hash(model: nn.Module) -> str:
    """sha256 of the state_dict (parameters and buffers), names sorted: the same weights give the same hash."""
    return tensors_hash(sorted(model.state_dict().items()))
