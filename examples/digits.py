"""The image workflow on real images: scikit-learn's 8x8 digits (1797 images, pixels 0..16).

    python examples/digits.py                 export the data, then run the pcc commands below
    python examples/digits.py --export-only   only write out/digits/digits.{train,valid,test}.data

The data are split by a fixed shuffle into 1297 train, 200 valid and 300 test rows (debd text:
64 comma-separated integers per row, row-major pixels). Then, exactly as docs/queries.md lists
them, the script runs: a Poon-Domingos structure, EM training, a grid of samples, and inpainting
pictures (conditional samples and MPE) written to docs/img/. Needs scikit-learn and Pillow
(pip install 'pcc[images]'); about a minute on one CPU core.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

import numpy as np

SPLITS = {"train": 1297, "valid": 200, "test": 300}


def export_data(folder: str) -> dict[str, str]:
    """Write the three splits as debd text files; return their paths."""
    from sklearn.datasets import load_digits
    images = load_digits().data.astype(np.int64)  # [1797, 64], values 0..16
    order = np.random.default_rng(0).permutation(len(images))
    os.makedirs(folder, exist_ok=True)
    paths, start = {}, 0
    for name, size in SPLITS.items():
        paths[name] = os.path.join(folder, f"digits.{name}.data")
        np.savetxt(paths[name], images[order[start: start + size]], fmt="%d", delimiter=",")
        start += size
    return paths


def commands(data: str, pictures: str) -> list[str]:
    """The pcc commands of the workflow (docs/queries.md shows the same list)."""
    d, img = data, pictures
    return [
        f"pcc structure pd --height 8 --width 8 --delta 4,2 -k 32 --leaf 'binomial(n=16)' "
        f"-o {d}/digits.pc",
        f"pcc train {d}/digits.pc --train {d}/digits.train.data --valid {d}/digits.valid.data "
        f"--test {d}/digits.test.data --epochs 60 --em-step 0.2 --patience 5 --members 1 --quiet "
        f"-o {d}/digits.pt",
        f"pcc sample {d}/digits.pt -n 64 --columns 16 --scale 6 --png {img}/digits_samples.png",
        f"pcc inpaint {d}/digits.pt --data {d}/digits.test.data --mask left-half --rows 8 "
        f"--samples 3 --scale 6 -o {img}/digits_inpaint.png",
        f"pcc inpaint {d}/digits.pt --data {d}/digits.test.data --mask random:0.5 --rows 8 "
        f"--mpe --scale 6 -o {img}/digits_inpaint_mpe.png",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="out/digits", help="folder for data and models")
    parser.add_argument("--pictures", default="docs/img", help="folder for the pictures")
    parser.add_argument("--export-only", action="store_true", help="only write the data files")
    args = parser.parse_args()
    for name, path in export_data(args.data).items():
        print(f"wrote {path}")
    if args.export_only:
        return 0
    from pcc.cli.main import main as pcc
    os.makedirs(args.pictures, exist_ok=True)
    for command in commands(args.data, args.pictures):
        print(f"$ {command}", flush=True)
        status = pcc(shlex.split(command)[1:])
        if status:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
