"""Test setup: Triton kernels run under the interpreter on CPU tensors (must be set before any
kernel module is imported), one torch thread (the machine is shared)."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
