#!/bin/bash
# One device-machine session: bench/gpu.py, then the main job (RAT on nltcs) trained on the GPU.
# Run from the repository root on a machine without network access, with the wheels pcc needs
# beyond the machine's own packages (lark) in .whl/; results go to $OUT.
set -e
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
ln -sfn "$PWD/kernels" /tmp/site/pcc_kernels
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
OUT="${OUT:-.}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 bench/gpu.py --budget "${BUDGET:-200}" --json "$OUT/gpu.json" 2>&1 | tee "$OUT/gpu.log"
pcc() { python3 -c 'import sys; from pcc.cli.main import main; sys.exit(main(sys.argv[1:]))' "$@"; }
d=data/nltcs/nltcs
pcc structure rat --vars 16 -o /tmp/nltcs.pc
time pcc train /tmp/nltcs.pc --train $d.train.data --valid $d.valid.data --test $d.test.data \
    --device cuda --epochs 5 --members 2 --quiet -o /tmp/nltcs.pt 2>&1 | tee "$OUT/train.log"
