"""pcc_kernels: the layer kernels of pcc (installed from the `kernels/` folder as `pcc_kernels`).

Kernels know tensors and shapes, never circuits. Values live in *arenas*, one per unit count K
(`reference.Arena`): values [M, B, K] in linear space, each row normalized to a maximum of 1,
with a log-scale [M, B] and the norm [M, B] each layer divided its rows by; one row per region
(or partition) of that K. Every layer reads its inputs from arena rows by index (the gather is
part of the kernel) and writes its output rows in place; its backward adds the children's flows
into flow arenas and writes its weight flows W * dL/dW.

Layers are *bound*: built once per batch size onto their rows, weights, flows and shared
scratch buffers (`reference.Scratch`), then called: `attach()`, `forward(semiring)`,
`backward()`. Two implementations share these classes' signatures: `pcc_kernels.reference`
(torch, runs anywhere; the torch backend) and `pcc_kernels.triton_ops` (Triton; CUDA, or CPU under
TRITON_INTERPRET=1). `opaque` marks functions torch.compile runs eagerly instead of tracing.
"""
