#!/bin/bash
# One device-machine session (the GPU figures of issues 12 and 17: the Triton layer classes, values
# linear with a log-scale per row), under 10 minutes: bench/gpu.py (every target but PyJuice's),
# then bench/pyjuice_vs.py (pcc beside PyJuice 2.6.3). Needs torch >= 2.11 and triton >= 3.6 on the
# machine (the kernels use no newer Triton feature). Run from the repository root on a machine
# without network access:
#     bash bench/gpu_session.sh [PYJUICE_WHEEL]
# with the wheels pcc needs beyond the machine's own packages (lark) in .whl/, and PyJuice's wheel
# (`pip download --no-deps pyjuice==2.6.3`) at PYJUICE_WHEEL (default: .whl/pyjuice-*.whl); both
# stay out of git. Results (JSON, markdown tables for docs/benchmarks.md, logs) go to $OUT.
# Budgets: GPU_BUDGET / PYJUICE_BUDGET seconds per script (each also hard-stopped by `timeout`);
# PCC_TRITON_AUTOTUNE=0 skips the autotuner's timing runs if compile time is short.
set -u
OUT="${OUT:-.}"
WHEEL="${1:-$(ls .whl/pyjuice-*.whl 2>/dev/null | head -1)}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/lark-*.whl ${WHEEL:+"$WHEEL"} 2>&1 | tail -2
ln -sfn "$PWD/kernels" /tmp/site/pcc_kernels
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 TRITON_DEFAULT_FP_FUSION=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)' \
    | tee -a "$OUT/gpu.txt"

timeout 330 python3 bench/gpu.py --budget "${GPU_BUDGET:-270}" --json "$OUT/gpu.json" \
    --markdown "$OUT/gpu.md" 2>&1 | tee "$OUT/gpu.log"
echo "bench/gpu.py exit ${PIPESTATUS[0]}" | tee -a "$OUT/gpu.txt"

if [ -n "$WHEEL" ]; then
    timeout 230 python3 bench/pyjuice_vs.py --budget "${PYJUICE_BUDGET:-170}" \
        --json "$OUT/pyjuice.json" --markdown "$OUT/pyjuice.md" 2>&1 | tee "$OUT/pyjuice.log"
    echo "bench/pyjuice_vs.py exit ${PIPESTATUS[0]}" | tee -a "$OUT/gpu.txt"
else
    echo "no PyJuice wheel given: bench/pyjuice_vs.py skipped" | tee -a "$OUT/gpu.txt"
fi
