"""The Triton kernel set for a device, or a clear BackendError where it cannot run."""
from __future__ import annotations

from importlib import import_module
from types import ModuleType

import torch

from ..errors import BackendError

NEEDS = ("backend='triton' needs a CUDA device, or TRITON_INTERPRET=1 set before importing pcc "
         "to run the kernels on the CPU")


def triton_kernels(device: torch.device | str) -> ModuleType:
    """`pcc_kernels.triton_ops` if its kernels can run on `device`: a CUDA device, or the CPU when
    TRITON_INTERPRET=1 was set before the kernels were imported (the Triton interpreter)."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendError(f"{NEEDS}; CUDA is not available to torch here")
    if device.type not in ("cuda", "cpu"):
        raise BackendError(f"{NEEDS}; got a {device.type} device")
    try:
        ops = import_module("pcc_kernels.triton_ops")
    except ImportError as exc:
        raise BackendError(f"backend='triton' needs the triton package ({exc})") from exc
    if device.type == "cpu" and not ops.INTERPRETED:
        raise BackendError(f"{NEEDS}; got CPU tensors without TRITON_INTERPRET=1")
    return ops
