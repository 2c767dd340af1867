"""A stand-in for a GPU on a machine without one, to catch a tensor left on the wrong device.

The model goes to PyTorch's ``meta`` device (tensors with a shape and no data), the data stay on the CPU as a
student's would. PyTorch refuses any operation that mixes a ``meta`` tensor with a CPU tensor of one or more
dimensions -- exactly as it refuses CPU and CUDA tensors in one operation (0-dimensional CPU tensors are allowed on
both) -- so a code path that forgets a ``.to(device)`` raises here as it would on a GPU.

Meta tensors have no values, so under :func:`fake_device` reading a number out of one (``.item()``, ``bool()``)
gives 0.5 / 0 / True (so ``torch.isfinite`` checks pass) and copying one to the CPU gives zeros: enough for a code
path to run to its end. Only *where* the tensors are is checked; numbers computed this way mean nothing.
"""
from __future__ import annotations

import contextlib

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
META = torch.device("meta")


class _FakeValues(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is aten._local_scalar_dense.default and args[0].device == META:
            t = args[0]
            return True if t.dtype == torch.bool else 0.5 if t.is_floating_point() else 0
        if func is aten._to_copy.default and args[0].device == META and kwargs.get("device") is not None \
                and torch.device(kwargs["device"]).type == "cpu":
            return torch.zeros(args[0].shape, dtype=kwargs.get("dtype") or args[0].dtype)
        return func(*args, **kwargs)


@contextlib.contextmanager
def fake_device():
    """Run the body with meta tensors that can be read (as fake numbers) and copied to the CPU (as zeros)."""
    with _FakeValues():
        yield META
