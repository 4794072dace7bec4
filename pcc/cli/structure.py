"""`pcc structure pd|rat|hclt`: generate a region graph and write it as a `.pc` file."""
from __future__ import annotations

import argparse
import dataclasses
import sys

from ..errors import StructureError
from ..files import write_text
from ..capacity import with_open_line
from ..ir import Circuit
from ..region_graph import counts
from ..sizes import MAX_ELEMENTS, check_circuit_size
from ..structures import (defaults, hidden_markov_model, parse_family, poon_domingos,
                          random_binary_trees)
from ..structures.chow_liu import load_columns
from ..structures.hclt import hclt_of_columns
from ..structures.provenance import header
from .options import (at_least_two, non_negative_float, non_negative_int, output_or_stdout,
                      positive_float, positive_int)

HELP = ("generate a region graph (Poon-Domingos, RAT-SPN, hidden Chow-Liu tree, hidden Markov "
        "model) as a .pc file")
_FORMAT = argparse.RawDescriptionHelpFormatter


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "structure", help=HELP,
        description="Generate a region graph and write it as a .pc file. A structure with more\n"
                    "than 2^31 parameters is refused: it could not be built.",
        formatter_class=_FORMAT,
        epilog="examples:\n"
               "  pcc structure pd --height 28 --width 28 --delta 7 -k 10 -o pd.pc\n"
               "  pcc structure rat --vars 16 --depth 4 --replicas 10 -o rat.pc\n"
               "  pcc structure hclt --data data/nltcs/nltcs.train.data -o nltcs.pc\n"
               "  pcc structure hmm --length 64 --hidden 128 --vocab 96 -o text.pc\n"
               "Run `pcc structure KIND --help` for each kind's options.")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True

    pd = kinds.add_parser(
        "pd", help="Poon-Domingos rectangles of an H x W (x C) image", formatter_class=_FORMAT,
        description="Poon-Domingos region graph with the Einsum Networks split rule: a rectangle is cut\n"
                    "at every multiple of the first (coarsest) delta that lies inside it, else of the\n"
                    "next delta, and so on; rectangles with no cut are the grid cells. Pixel (r, c),\n"
                    "channel ch is variable (r * W + c) * C + ch (an H x W x C image, flattened); every\n"
                    "rectangle holds all channels of its pixels. A cell is an input region whose units\n"
                    "factorize over its channels, or with --channel-split a sum over a product of its\n"
                    "channel halves, split down to one input region per channel.",
        epilog="examples:\n"
               "  pcc structure pd --height 28 --width 28 --delta 7 -k 10 -o pd28.pc       # 100 regions\n"
               "  pcc structure pd --height 28 --width 28 --delta 7,1 -o pd28_pixels.pc    # single-pixel leaves\n"
               "  pcc structure pd --height 32 --width 32 --delta 32 --delta-w 8 --channels 3 \\\n"
               "      --leaf normal -o svhn.pc                                            # vertical strips\n"
               "  pcc structure pd --height 32 --width 32 --channels 3 --delta 8 --channel-split \\\n"
               "      --leaf 'categorical(n=256)' -o rgb32.pc                             # RGB, channels split")
    pd.add_argument("--height", type=positive_int, required=True, metavar="H", help="image height in pixels")
    pd.add_argument("--width", type=positive_int, required=True, metavar="W", help="image width in pixels")
    pd.add_argument("--delta", required=True, metavar="D[,D...]",
                    help="split steps along the height, coarsest first (numbers >= 1, comma-separated)")
    pd.add_argument("--delta-w", metavar="D[,D...]", help="split steps along the width (default: --delta)")
    pd.add_argument("--channels", type=positive_int, default=1, metavar="C", help="values per pixel (default 1)")
    pd.add_argument("--channel-split", action="store_true",
                    help="split each grid cell's channels into halves down to one input region per "
                         "channel (default: one input region per cell, factorized over its channels)")
    _common_options(pd, leaf_default=str(defaults.LEAF))
    pd.set_defaults(run=_run_pd)

    rat = kinds.add_parser(
        "rat", help="RAT-SPN random binary trees over N variables", formatter_class=_FORMAT,
        description="RAT-SPN region graph: each replica splits a seeded random permutation of the\n"
                    "variables into halves, depth times; all replicas share the root (one partition\n"
                    "per replica). The depth is capped at floor(log2 N).",
        epilog="examples:\n"
               "  pcc structure rat --vars 16 -o rat16.pc\n"
               "  pcc structure rat --vars 784 --depth 3 --replicas 20 -k 10 --leaf 'binomial(n=255)' -o rat.pc\n"
               "  pcc structure rat --vars 15 --classes 2 -o by_x0.pc     # one density per class")
    rat.add_argument("--vars", type=positive_int, required=True, metavar="N", help="number of variables")
    rat.add_argument("--depth", type=positive_int, metavar="D",
                     help=f"split levels per tree (default {defaults.RAT_MAX_DEPTH}, capped at floor(log2 N))")
    rat.add_argument("--replicas", type=positive_int, default=defaults.RAT_REPLICAS, metavar="R",
                     help=f"number of random trees (default {defaults.RAT_REPLICAS})")
    rat.add_argument("--seed", type=non_negative_int, default=defaults.RAT_SEED, metavar="S",
                     help=f"random seed (default {defaults.RAT_SEED})")
    _common_options(rat, leaf_default=str(defaults.LEAF))
    rat.set_defaults(run=_run_rat)

    hclt = kinds.add_parser(
        "hclt", help="hidden Chow-Liu tree learned from discrete, continuous or mixed data",
        formatter_class=_FORMAT,
        description="Hidden Chow-Liu tree (HCLT): the Chow-Liu tree of the data (maximum spanning tree of\n"
                    "smoothed mutual information, rooted at its center) with a hidden variable of K states\n"
                    "per variable: K leaf distributions per variable, a K x K sum on every tree edge, and at\n"
                    "every tree node the element-wise product (`.*`) of its leaf and its children's edges.\n"
                    "--trees M mixes M trees sharing the leaves (tree m > 0 from a bootstrap resample).",
        epilog="examples:\n"
               "  pcc structure hclt --data data/nltcs/nltcs.train.data -o nltcs.pc\n"
               "  pcc structure hclt --data data/nltcs/nltcs.train.data -k 16 --trees 1 -o nltcs1.pc\n"
               "  pcc structure hclt --data data/nltcs/nltcs.train.data -k 2 --trees 1 --init data -o nltcs2.pc\n"
               "data: one sample per line, comma-separated numbers (debd), CSV (a header names the\n"
               "variables) or .npy; a column of whole numbers 0..31 gets a discrete leaf (bernoulli\n"
               "or categorical), any other a normal one per hidden state (--leaf F: F for all); the\n"
               "tree's mutual information is counted for discrete pairs and Gaussian for the others\n"
               "(docs/cli.md). A missing value (empty, ?, nan) leaves its row out of the pairs it\n"
               "belongs to.\n"
               "capacity: without -k / --trees the file says that `pcc train` chooses them on\n"
               "validation (it is written with K=32 and 8 trees, the most it may use).\n"
               "The file starts with comment lines: this command, the data file (rows, sha256),\n"
               "each tree's root and edges, and where the starting values come from.\n"
               "starting values: without --init the file has no param blocks; `pcc train` then\n"
               "computes them from its training data (hidden states by k-means, then counts), but\n"
               "`pcc compile` (or pcc.compile) of the file alone draws random ones. --init data\n"
               "computes the data-based ones here, from --data, and writes them as param blocks.")
    hclt.add_argument("--data", required=True, metavar="FILE", help="training data file (debd, CSV or .npy)")
    hclt.add_argument("--trees", type=positive_int, metavar="M",
                      help=f"number of trees mixed at the root (default: the file holds "
                           f"{defaults.HCLT_TREES}; `pcc train` uses the first M of them, M in "
                           f"{defaults.HCLT_TREE_CHOICES} chosen on validation)")
    hclt.add_argument("--smoothing", type=non_negative_float, default=defaults.HCLT_SMOOTHING, metavar="A",
                      help=f"Laplace count added to every pair-table cell (default {defaults.HCLT_SMOOTHING})")
    hclt.add_argument("--correlation", type=positive_float, default=defaults.HCLT_CORRELATION,
                      metavar="R",
                      help=f"continuous columns whose every pair has |correlation| >= R share one "
                           f"hidden variable and one mvnormal leaf (at most {defaults.HCLT_GROUP} "
                           f"columns; default {defaults.HCLT_CORRELATION}; 1: none)")
    hclt.add_argument("--seed", type=non_negative_int, default=0, metavar="S",
                      help="seed of the bootstrap resamples of trees 1.. and of --init data (default 0)")
    hclt.add_argument("--init", choices=("none", "data"), default="none",
                      help="data: write starting values computed from --data as param blocks (as "
                           "`pcc train` computes them); none (default): no param blocks, so `pcc "
                           "train` computes them from its own training data and `pcc compile` "
                           "alone draws random ones")
    _common_options(hclt, leaf_default=None, k_default=None)
    hclt.set_defaults(run=_run_hclt)

    hmm = kinds.add_parser(
        "hmm", help="hidden Markov model over sequences of T tokens", formatter_class=_FORMAT,
        description="Hidden Markov model as a circuit: T categorical variables x0..x{T-1} (the tokens),\n"
                    "a hidden state of H values per position, element-wise products and an H x H\n"
                    "transition sum per step along the chain. Homogeneous by default: one transition\n"
                    "matrix and one emission table for every position (`tie` statements); --untied\n"
                    "gives each position its own.\n"
                    "Data: one sequence per row, T columns of tokens 0..V-1; a shorter sequence ends in\n"
                    "missing values (empty, ?, nan), which are summed out: its likelihood is that of\n"
                    "the shorter sequence.",
        epilog="examples:\n"
               "  pcc structure hmm --length 64 --hidden 128 --vocab 96 -o text.pc\n"
               "  pcc structure hmm --length 20 --hidden 8 --vocab 4 --untied -o dna20.pc\n"
               "  pcc structure hmm --length 16 --hidden 4 --vocab 2 -o nltcs_hmm.pc && \\\n"
               "      pcc train nltcs_hmm.pc --train data/nltcs/nltcs.train.data \\\n"
               "      --valid data/nltcs/nltcs.valid.data -o nltcs_hmm.pt\n"
               "examples/text_hmm.py trains one on characters of a text file.")
    hmm.add_argument("--length", type=positive_int, required=True, metavar="T",
                     help="tokens per sequence (the longest; shorter rows end in missing values)")
    hmm.add_argument("--hidden", type=positive_int, required=True, metavar="H",
                     help="hidden states")
    hmm.add_argument("--vocab", type=at_least_two, required=True, metavar="V",
                     help="token values 0..V-1 (at least 2)")
    hmm.add_argument("--untied", action="store_true",
                     help="a transition matrix and an emission table per position (default: one "
                          "of each, shared by every position)")
    hmm.add_argument("-o", "--output", type=output_or_stdout, default="-", metavar="FILE.pc",
                     help="output file, written atomically; - for stdout (default)")
    hmm.set_defaults(run=_run_hmm, classes=1)


def _common_options(parser: argparse.ArgumentParser, leaf_default: str | None,
                    k_default: int | None = defaults.K) -> None:
    default = (f"default {k_default}" if k_default is not None else
               f"default: `pcc train` chooses it on validation from "
               f"{', '.join(map(str, defaults.HCLT_K_CHOICES))}; the file is written with {defaults.HCLT_K}")
    parser.add_argument("-k", type=positive_int, default=k_default, metavar="K",
                        help=f"units per region; the root gets --classes ({default})")
    parser.add_argument("--classes", type=positive_int, default=1, metavar="C",
                        help="units of the root: 1 for one density (default), C for one density per "
                             "class (train it with `pcc train --label-column`)")
    parser.add_argument("--leaf", default=leaf_default, metavar="FAMILY",
                        help="leaf family, as in .pc files: bernoulli, categorical(n=4), binomial(n=255), "
                             f"normal (default {leaf_default or 'bernoulli for 0/1 data, else categorical'})")
    parser.add_argument("-o", "--output", type=output_or_stdout, default="-", metavar="FILE.pc",
                        help="output file, written atomically; - for stdout (default)")


def _run_pd(args) -> int:
    _check_leaves(args.height * args.width * args.channels, args.k)
    circuit = poon_domingos(args.height, args.width, _deltas(args.delta, "--delta"),
                            deltas_w=None if args.delta_w is None else _deltas(args.delta_w, "--delta-w"),
                            channels=args.channels, channel_split=args.channel_split, k=args.k,
                            leaf=parse_family(args.leaf))
    return _write(circuit, args)


def _run_rat(args) -> int:
    _check_leaves(args.vars * args.replicas, args.k)
    circuit = random_binary_trees(args.vars, args.depth, args.replicas, k=args.k, leaf=parse_family(args.leaf),
                                  seed=args.seed)
    return _write(circuit, args)


def _run_hclt(args) -> int:
    leaf = None if args.leaf is None else parse_family(args.leaf)
    columns = load_columns(args.data)
    values = columns[0]
    circuit = hclt_of_columns(*columns, k=args.k or defaults.HCLT_K, leaf=leaf,
                              trees=args.trees or defaults.HCLT_TREES, smoothing=args.smoothing,
                              correlation=args.correlation, seed=args.seed)
    initialized = args.init == "data"
    if args.classes > 1:
        circuit = _with_root_units(circuit, args.classes)
    if initialized:
        check_circuit_size(circuit, None if args.output == "-" else args.output)
        circuit = dataclasses.replace(circuit, params=_data_params(circuit, values, args.seed))
    elif args.classes == 1:
        circuit = with_open_line(circuit, tuple(d for d in ("k", "trees")
                                                if getattr(args, d) is None))
    return _write(circuit, args, header(args.argv, circuit, args.data, len(values), initialized))


def _run_hmm(args) -> int:
    _check_leaves(args.length, args.hidden * args.vocab)
    return _write(hidden_markov_model(args.length, args.hidden, args.vocab,
                                      tied=not args.untied), args)


def _data_params(circuit: Circuit, values, seed: int) -> tuple:
    """The starting values `pcc train` computes for a latent tree from `values` (missing: NaN),
    rounded to 9 significant digits (float32 holds fewer; rows still sum to 1 within 1e-8)."""
    import torch

    from ..compiler import compile as compile_circuit
    from ..latent_forest import find_latent_forest
    from ..latent_tree import initialize
    from ..train import LATENT_TREE_RECIPE
    forest = find_latent_forest(circuit)
    if forest is None:  # --classes > 1: the root is not a latent-tree root
        raise StructureError("--init data needs a latent tree with one root unit; leave out --classes")
    model = compile_circuit(circuit, backend="torch", seed=seed, dtype=torch.float64)
    initialize(model, values, forest, LATENT_TREE_RECIPE.pseudocount, seed=seed)
    return tuple(dataclasses.replace(p, values=tuple(float(f"{v:.9g}") for v in p.values))
                 for p in model.ir_params())


def _check_leaves(slots: int, k: int) -> None:
    """Refuse before building: every (region, variable) slot of the inputs holds K parameters or
    more, so slots * K > 2^31 is too large whatever else the structure has."""
    if slots * k > MAX_ELEMENTS:
        raise StructureError(f"too large to build: its input regions alone would hold at least "
                             f"{slots * k:,} parameters (at most 2^31 = {MAX_ELEMENTS:,}); use "
                             "smaller -k or fewer variables or replicas")


def _deltas(text: str, option: str) -> list[float]:
    try:
        return [float(item) for item in text.split(",")]
    except ValueError:
        raise StructureError(f"{option} wants numbers separated by commas, got {text!r}") from None


def _write(circuit: Circuit, args, head: str | None = None) -> int:
    """Print `circuit` (its root given --classes units) as .pc text to stdout, or replace
    --output with it in one step, after the comment lines `head` (by default the command and
    where the starting values come from); a circuit too large to build is refused first."""
    from ..frontend import to_text

    output = args.output
    if args.classes > 1 and circuit.region(circuit.root).k != args.classes:
        circuit = _with_root_units(circuit, args.classes)
    parameters = check_circuit_size(circuit, None if output == "-" else output)
    text = ((head if head is not None else header(args.argv, circuit))
            + to_text(dataclasses.replace(circuit, comments=())))
    if output == "-":
        sys.stdout.write(text)
        return 0
    write_text(output, text)
    n = counts(circuit)
    print(f"wrote {output}: {n['regions']} regions ({n['inputs']} inputs, {n['sums']} sums, "
          f"{n['partitions']} partitions), {parameters:,} parameters", file=sys.stderr)
    return 0


def _with_root_units(circuit: Circuit, units: int) -> Circuit:
    """`circuit` with `units` units in its root region (one density per class)."""
    regions = tuple(dataclasses.replace(r, k=units) if r.name == circuit.root else r
                    for r in circuit.regions)
    return dataclasses.replace(circuit, regions=regions)
