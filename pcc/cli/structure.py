"""`pcc structure pd|rat|hclt`: generate a region graph and write it as a `.pc` file."""
from __future__ import annotations

import argparse
import sys

from ..files import write_text
from ..ir import Circuit
from ..region_graph import counts, parameter_count
from ..structures import (defaults, hidden_chow_liu_tree, parse_family, poon_domingos,
                          random_binary_trees)
from ..structures.arguments import StructureError

_FORMAT = argparse.RawDescriptionHelpFormatter


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "structure", help="generate a region graph (Poon-Domingos, RAT-SPN, hidden Chow-Liu tree) as a .pc file",
        description="Generate a region graph and write it as a .pc file.", formatter_class=_FORMAT,
        epilog="examples:\n"
               "  pcc structure pd --height 28 --width 28 --delta 7 -k 10 -o pd.pc\n"
               "  pcc structure rat --vars 16 --depth 4 --replicas 10 -o rat.pc\n"
               "  pcc structure hclt --data data/nltcs/nltcs.train.data -o nltcs.pc\n"
               "Run `pcc structure KIND --help` for each kind's options.")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True

    pd = kinds.add_parser(
        "pd", help="Poon-Domingos rectangles of an H x W image", formatter_class=_FORMAT,
        description="Poon-Domingos region graph with the Einsum Networks split rule: a rectangle is cut\n"
                    "at every multiple of the first (coarsest) delta that lies inside it, else of the\n"
                    "next delta, and so on; rectangles with no cut are input regions. Pixel (r, c),\n"
                    "channel ch is variable (r * W + c) * C + ch; channels stay with their pixel.",
        epilog="examples:\n"
               "  pcc structure pd --height 28 --width 28 --delta 7 -k 10 -o pd28.pc       # 100 regions\n"
               "  pcc structure pd --height 28 --width 28 --delta 7,1 -o pd28_pixels.pc    # single-pixel leaves\n"
               "  pcc structure pd --height 32 --width 32 --delta 32 --delta-w 8 --channels 3 \\\n"
               "      --leaf normal -o svhn.pc                                            # vertical strips")
    pd.add_argument("--height", type=int, required=True, metavar="H", help="image height in pixels")
    pd.add_argument("--width", type=int, required=True, metavar="W", help="image width in pixels")
    pd.add_argument("--delta", required=True, metavar="D[,D...]",
                    help="split steps along the height, coarsest first (numbers >= 1, comma-separated)")
    pd.add_argument("--delta-w", metavar="D[,D...]", help="split steps along the width (default: --delta)")
    pd.add_argument("--channels", type=int, default=1, metavar="C", help="values per pixel (default 1)")
    _common_options(pd, leaf_default=str(defaults.LEAF))
    pd.set_defaults(run=_run_pd)

    rat = kinds.add_parser(
        "rat", help="RAT-SPN random binary trees over N variables", formatter_class=_FORMAT,
        description="RAT-SPN region graph: each replica splits a seeded random permutation of the\n"
                    "variables into halves, depth times; all replicas share the root (one partition\n"
                    "per replica). The depth is capped at floor(log2 N).",
        epilog="examples:\n"
               "  pcc structure rat --vars 16 -o rat16.pc\n"
               "  pcc structure rat --vars 784 --depth 3 --replicas 20 -k 10 --leaf 'binomial(n=255)' -o rat.pc")
    rat.add_argument("--vars", type=int, required=True, metavar="N", help="number of variables")
    rat.add_argument("--depth", type=int, metavar="D",
                     help=f"split levels per tree (default {defaults.RAT_MAX_DEPTH}, capped at floor(log2 N))")
    rat.add_argument("--replicas", type=int, default=defaults.RAT_REPLICAS, metavar="R",
                     help=f"number of random trees (default {defaults.RAT_REPLICAS})")
    rat.add_argument("--seed", type=int, default=defaults.RAT_SEED, metavar="S",
                     help=f"random seed (default {defaults.RAT_SEED})")
    _common_options(rat, leaf_default=str(defaults.LEAF))
    rat.set_defaults(run=_run_rat)

    hclt = kinds.add_parser(
        "hclt", help="hidden Chow-Liu tree learned from discrete data", formatter_class=_FORMAT,
        description="Hidden Chow-Liu tree (HCLT): the Chow-Liu tree of the data (maximum spanning tree of\n"
                    "smoothed mutual information, rooted at its center) with a hidden variable of K states\n"
                    "per variable: K leaf distributions per variable, a K x K sum on every tree edge, and at\n"
                    "every tree node the element-wise product (`.*`) of its leaf and its children's edges.\n"
                    "--trees M mixes M trees sharing the leaves (tree m > 0 from a bootstrap resample).",
        epilog="examples:\n"
               "  pcc structure hclt --data data/nltcs/nltcs.train.data -o nltcs.pc\n"
               "  pcc structure hclt --data data/nltcs/nltcs.train.data -k 16 --trees 4 -o nltcs4.pc\n"
               "data: one sample per line, comma-separated non-negative integers (debd), CSV or .npy.")
    hclt.add_argument("--data", required=True, metavar="FILE", help="training data file (debd, CSV or .npy)")
    hclt.add_argument("--trees", type=int, default=1, metavar="M",
                      help="number of trees mixed at the root (default 1)")
    hclt.add_argument("--smoothing", type=float, default=defaults.HCLT_SMOOTHING, metavar="A",
                      help=f"Laplace count added to every pair-table cell (default {defaults.HCLT_SMOOTHING})")
    hclt.add_argument("--seed", type=int, default=0, metavar="S",
                      help="seed of the bootstrap resamples of trees 1.. (default 0)")
    _common_options(hclt, leaf_default=None, k_default=defaults.HCLT_K)
    hclt.set_defaults(run=_run_hclt)


def _common_options(parser: argparse.ArgumentParser, leaf_default: str | None,
                    k_default: int = defaults.K) -> None:
    parser.add_argument("-k", type=int, default=k_default, metavar="K",
                        help=f"units per region; the root gets 1 (default {k_default})")
    parser.add_argument("--leaf", default=leaf_default, metavar="FAMILY",
                        help="leaf family, as in .pc files: bernoulli, categorical(n=4), binomial(n=255), "
                             f"normal (default {leaf_default or 'bernoulli for 0/1 data, else categorical'})")
    parser.add_argument("-o", "--output", default="-", metavar="FILE.pc",
                        help="output file, written atomically; - for stdout (default)")


def _run_pd(args) -> int:
    circuit = poon_domingos(args.height, args.width, _deltas(args.delta, "--delta"),
                            deltas_w=None if args.delta_w is None else _deltas(args.delta_w, "--delta-w"),
                            channels=args.channels, k=args.k, leaf=parse_family(args.leaf))
    return _write(circuit, args.output)


def _run_rat(args) -> int:
    circuit = random_binary_trees(args.vars, args.depth, args.replicas, k=args.k, leaf=parse_family(args.leaf),
                                  seed=args.seed)
    return _write(circuit, args.output)


def _run_hclt(args) -> int:
    leaf = None if args.leaf is None else parse_family(args.leaf)
    circuit = hidden_chow_liu_tree(args.data, k=args.k, leaf=leaf, trees=args.trees,
                                   smoothing=args.smoothing, seed=args.seed)
    return _write(circuit, args.output)


def _deltas(text: str, option: str) -> list[float]:
    try:
        return [float(item) for item in text.split(",")]
    except ValueError:
        raise StructureError(f"{option} wants numbers separated by commas, got {text!r}") from None


def _write(circuit: Circuit, output: str) -> int:
    """Print `circuit` as .pc text to stdout, or replace `output` with it in one step."""
    from ..frontend import to_text

    text = to_text(circuit)
    if output == "-":
        sys.stdout.write(text)
        return 0
    write_text(output, text)
    n = counts(circuit)
    print(f"wrote {output}: {n['regions']} regions ({n['inputs']} inputs, {n['sums']} sums, "
          f"{n['partitions']} partitions), {parameter_count(circuit):,} parameters", file=sys.stderr)
    return 0
