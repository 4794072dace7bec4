"""`pcc sample MODEL -n N [-o FILE] [--png GRID.png]`: draw exact samples from a model.

Samples are drawn by ancestral sampling through the compiled plan (pcc.queries.sample). With
--evidence, each row of the evidence file (NaN or ? = free) gets N samples from the exact
conditional distribution, its observed values kept. Without -o and --png the samples are printed.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from ..errors import PcError
from .query_common import add_model_options

EXAMPLES = """examples:
  pcc sample digits.pt -n 64 -o samples.npy --png samples.png --image-shape 8x8
  pcc sample nltcs.pt -n 5                                   print 5 samples as CSV
  pcc sample digits.pt -n 4 --evidence half_images.data -o completions.csv
  pcc sample classes.pt -n 16 --root-unit 3 --png three.png   a class-conditional root's unit 3

--temperature T draws every latent choice (mixture component) from softmax(logits / T): 1 is
exact, below 1 favours the heavier components (0: always the heaviest), above 1 flattens them;
leaf values are always drawn from their own densities.
"""


def register(sub) -> None:
    p = sub.add_parser("sample", help="draw samples (optionally given evidence); save or picture",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(p)
    p.add_argument("-n", type=int, default=64,
                   help="number of samples (with --evidence: per evidence row; default 64)")
    p.add_argument("-o", "--output", help="write the samples: .npy, or CSV text for other names")
    p.add_argument("--png", help="write a picture of the samples as a grid of images")
    p.add_argument("--image-shape", metavar="HxW[xC]",
                   help="image layout for --png (default: square grayscale)")
    p.add_argument("--columns", type=int, help="images per row of the --png grid")
    p.add_argument("--scale", type=int, default=4, help="pixels per image pixel in --png")
    p.add_argument("--temperature", type=float, default=1.0, metavar="T",
                   help="temperature of the latent choices (default 1 = exact)")
    p.add_argument("--evidence", metavar="FILE",
                   help="rows of evidence (debd text, CSV or .npy; NaN or ? = free)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..queries import sample
    from ..queries.images import ImageShape
    from ..queries.pictures import save_grid
    from .common import load_rows
    from .query_common import generator, load_query_model, value_range, write_rows
    if args.n < 1:
        raise PcError(f"-n must be at least 1, got {args.n}")
    if not args.temperature >= 0:
        raise PcError(f"--temperature must be >= 0, got {args.temperature}")
    model = load_query_model(args)
    shape = ImageShape.parse(args.image_shape, model.num_vars) if args.png else None
    evidence = None if args.evidence is None else load_rows(args.evidence, model)
    per_row = args.n
    total = per_row * (1 if evidence is None else len(evidence))
    rows = sample(model, total, evidence, args.temperature, generator(args, model),
                  args.root_unit).cpu().numpy()
    if args.output:
        write_rows(args.output, rows)
        print(f"wrote {len(rows)} samples to {args.output}")
    if args.png:
        columns = args.columns or (per_row if evidence is not None else None)
        save_grid(shape.images(rows), args.png, value_range(model, rows), columns, args.scale)
        print(f"wrote {args.png}")
    if not args.output and not args.png:
        np.savetxt(sys.stdout, rows, fmt="%.9g", delimiter=",")
    return 0
