"""Every kernel and code path compiles to a cubin for sm80 and sm90 (the real Triton pipeline and
ptxas, which enforce dot sizes and typing that the interpreter skips), fits the target's shared
memory, does not spill heavily, and the contraction kernels (the fused forward, weight flows,
children's flows) emit tensor-core instructions (mma.sync / wgmma) exactly for the tensor-core
precisions (tf32x3, tf32, bf16) and not for ieee (float32). Runs tests/gpu_compile.py, one
process per target, in processes without TRITON_INTERPRET (compiled kernels must be imported
without it)."""
import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.slow
def test_kernels_compile_for_sm80_and_sm90_with_tensor_cores():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    procs = {cap: subprocess.Popen([sys.executable, os.path.join(HERE, "gpu_compile.py"),
                                    "--resources", cap], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
             for cap in ("80", "90")}
    for cap, proc in procs.items():
        report = proc.communicate(timeout=1500)[0]
        assert proc.returncode == 0, report[-6000:]
        lines = [line for line in report.splitlines() if line.startswith(f"sm{cap} ")]
        assert len(lines) >= 40, report[-6000:]
        contractions = [line for line in lines
                        if re.match(rf"sm{cap} (einsum_fwd|flows|grads)_kernel", line)
                        and " sum " in line and " dot " in line and "fp64" not in line]
        for precision in ("tf32x3", "tf32", "bf16", "ieee"):
            ours = [line for line in contractions if f" {precision} " in line]
            assert ours, (cap, precision)
            for line in ours:
                uses = "(mma," in line or "(wgmma," in line
                assert uses == (precision != "ieee"), line
