"""`pcc inpaint MODEL --data D --mask KIND [--image-shape HxW] -o OUT.png`: hide part of some
images and fill it in from the model, as a picture: original | masked | completed.

The completions are exact conditional samples p(hidden | visible) (pcc.queries.sample with the
visible pixels as evidence), or with --mpe the max-product (MPE) completion. Hidden pixels are
drawn in blue.
"""
from __future__ import annotations

import argparse

from ..errors import PcError
from .options import image_shape, mask, non_negative_float, output_file, positive_int, scale
from .query_common import add_model_options

HELP = "complete hidden parts of images; write a picture"
EXAMPLES = """examples (nltcs.pt: see `pcc train --help`; its 16 variables drawn as 4x4 images):
  pcc inpaint nltcs.pt --data data/nltcs/nltcs.test.data --mask left-half --image-shape 4x4 -o inpaint.png
  pcc inpaint nltcs.pt --data data/nltcs/nltcs.test.data --mask random:0.5 --mpe --rows 12 -o mpe.png
  pcc inpaint nltcs.pt --data data/nltcs/nltcs.test.data --mask bottom-half --samples 4 -o four.png

masks: left-half, right-half, top-half, bottom-half, random:P (P: probability that a pixel is
hidden)
"""


def register(sub) -> None:
    p = sub.add_parser("inpaint", help=HELP, description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(p)
    p.add_argument("--data", required=True, metavar="FILE",
                   help="images, one per row (debd text, CSV or .npy)")
    p.add_argument("--mask", required=True, type=mask, metavar="KIND",
                   help="what to hide (see below)")
    p.add_argument("--image-shape", type=image_shape, metavar="HxW[xC]",
                   help="image layout (default: square grayscale)")
    p.add_argument("-o", "--output", required=True, type=output_file,
                   help="the picture to write (.png)")
    p.add_argument("--rows", type=positive_int, default=8,
                   help="how many images, from the first (default 8)")
    p.add_argument("--mpe", action="store_true", help="complete with the MPE state, not samples")
    p.add_argument("--samples", type=positive_int, default=1,
                   help="conditional samples per image, one column each (default 1)")
    p.add_argument("--temperature", type=non_negative_float, default=1.0, metavar="T",
                   help="temperature of the latent choices of the samples (default 1 = exact)")
    p.add_argument("--scale", type=scale, default=4,
                   help="pixels per image pixel (1..64, default 4)")
    p.set_defaults(run=run)


def run(args) -> int:
    import math

    import torch

    from ..queries import mpe, sample
    from ..queries.images import ImageShape
    from ..queries.pictures import save_panels
    from .common import load_rows
    from .query_common import generator, load_query_model, value_range
    if args.mpe and args.samples != 1:
        raise PcError("--mpe gives one completion per image; leave out --samples")
    model = load_query_model(args)
    shape = ImageShape.parse(args.image_shape, model.num_vars)
    images = torch.from_numpy(load_rows(args.data, model).x[: args.rows])
    hidden = shape.mask(args.mask, len(images), torch.Generator().manual_seed(args.seed))
    evidence = images.masked_fill(hidden, math.nan)
    if args.mpe:
        completions = [("MPE", mpe(model, evidence, args.root_unit)[0])]
    else:
        drawn = sample(model, len(images) * args.samples, evidence, args.temperature,
                       generator(args, model), args.root_unit).view(len(images), args.samples, -1)
        completions = [("sample" if args.samples == 1 else f"sample {i + 1}", drawn[:, i])
                       for i in range(args.samples)]
    columns = [("original", images), ("masked", evidence)] + completions
    save_panels([(title, shape.images(rows)) for title, rows in columns], args.output,
                value_range(model, images.numpy()), args.scale)
    print(f"wrote {args.output}")
    return 0
