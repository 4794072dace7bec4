"""pcc_kernels: the layer kernels of pcc (installed from the `kernels/` folder as `pcc_kernels`).

Kernels know tensors and shapes, never circuits. Values live in *arenas*: one tensor [M, B, K] of
log-values per unit count K, one row per region (or partition) of that K. Every op reads its inputs
from arena rows by index (the gather is part of the kernel) and writes its output rows in place.

Two implementations share one signature: `pcc_kernels.reference` (torch, runs anywhere; the torch
backend) and `pcc_kernels.triton_ops` (Triton; CUDA, or CPU under TRITON_INTERPRET=1).
Discrete leaf groups use one more kernel on every device, `reference.table_contraction` (a
batched product of log-probability tables with one-hot codes; a cuBLAS/MKL product does it well).
"""
