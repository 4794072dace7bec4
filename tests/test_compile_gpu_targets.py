"""Every kernel configuration the launchers produce compiles to a cubin for sm80 and sm90 (the real
Triton pipeline and ptxas, which enforce dot sizes and typing that the interpreter skips), fits
the target's shared memory and does not spill heavily. Runs tests/gpu_compile.py in a process
without TRITON_INTERPRET (compiled kernels must be imported without it)."""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.slow
def test_kernels_compile_for_sm80_and_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    done = subprocess.run([sys.executable, os.path.join(HERE, "gpu_compile.py"), "--resources",
                           "80", "90"], env=env, capture_output=True, text=True, timeout=900)
    report = done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("sm")]
    assert done.returncode == 0, report[-6000:]
    assert len(lines) >= 2 * 40, report[-6000:]
    for target in ("sm80", "sm90"):
        assert any(line.startswith(f"{target} einsum_bwd_kernel") for line in lines)
