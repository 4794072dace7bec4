"""`pcc compile FILE.pc -o model.pt [--explain]`: compile a circuit, save it as a checkpoint."""
from __future__ import annotations

import argparse

EXAMPLES = """examples:
  pcc compile ir_examples/pd2x2.pc --explain          show layers, fused ops, costs
  pcc compile ir_examples/pd28x28_k10.pc -o pd.pt     save an initialized model
"""


def register(sub) -> None:
    p = sub.add_parser("compile", help="compile a .pc file to a model checkpoint",
                       description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="the .pc circuit")
    p.add_argument("-o", "--output", help="checkpoint to write (.pt)")
    p.add_argument("--explain", action="store_true",
                   help="print the plan: layers, fused ops, shapes, parameters, FLOPs, bytes")
    p.add_argument("--seed", type=int, default=0, help="seed for parameters the file does not give")
    p.set_defaults(run=run)


def run(args) -> int:
    from .. import checkpoint
    from ..compiler import compile as compile_circuit
    from ..passes.explain import explain
    model = compile_circuit(args.file, backend="torch", seed=args.seed)
    if args.explain or not args.output:
        print(explain(model.plan))
    if args.output:
        checkpoint.save(model, args.output, {"source": args.file})
        print(f"wrote {args.output}")
    return 0
