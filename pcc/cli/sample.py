"""`pcc sample MODEL -n N [-o FILE] [--png GRID.png]`: draw exact samples from a model.

Samples are drawn by ancestral sampling through the compiled plan (pcc.queries.sample). With
--evidence, each row of the evidence file (NaN or ? = free) gets N samples from the exact
conditional distribution, its observed values kept. Without -o and --png the samples are printed.
"""
from __future__ import annotations

import argparse

from .options import image_shape, non_negative_float, output_file, positive_int, scale
from .query_common import add_model_options

HELP = "draw samples (optionally given evidence); save or picture"
EXAMPLES = """examples (nltcs.pt and by_x0.pt: see `pcc train --help`):
  pcc sample nltcs.pt -n 5                                    # print 5 samples as CSV
  pcc sample nltcs.pt -n 64 -o samples.npy --png samples.png --image-shape 4x4
  pcc sample nltcs.pt -n 3 --evidence data/nltcs/nltcs.missing.data -o completions.csv
  pcc sample by_x0.pt -n 16 --root-unit 1 -o class1.csv      # x1..x15 given x0 = 1

--temperature T draws every latent choice (mixture component) from softmax(logits / T): 1 is
exact, below 1 favours the heavier components (0: always the heaviest), above 1 flattens them;
leaf values are always drawn from their own densities.
"""


def register(sub) -> None:
    p = sub.add_parser("sample", help=HELP, description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(p)
    p.add_argument("-n", type=positive_int, default=64,
                   help="number of samples (with --evidence: per evidence row; default 64)")
    p.add_argument("-o", "--output", type=output_file,
                   help="write the samples: .npy, or CSV text for other names")
    p.add_argument("--png", type=output_file,
                   help="write a picture of the samples as a grid of images")
    p.add_argument("--image-shape", type=image_shape, metavar="HxW[xC]",
                   help="image layout for --png (default: square grayscale)")
    p.add_argument("--columns", type=positive_int, help="images per row of the --png grid")
    p.add_argument("--scale", type=scale, default=4,
                   help="pixels per image pixel in --png (1..64, default 4)")
    p.add_argument("--temperature", type=non_negative_float, default=1.0, metavar="T",
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
    model = load_query_model(args)
    shape = ImageShape.parse(args.image_shape, model.num_vars) if args.png else None
    evidence = None if args.evidence is None else load_rows(args.evidence, model).x
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
        write_rows("-", rows)
    return 0
