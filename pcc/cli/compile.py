"""`pcc compile FILE.pc [-o model.pt] [--explain[=regions]]`: compile a circuit, save it as a
checkpoint.

--explain prints the plan (layers, fused ops, shapes, parameters, FLOPs and bytes) from the
passes alone, without building the model, so that it can size circuits too large to build; a
circuit too large to build is an error, after the plan when --explain asks for it.
--explain=regions lists under each row the regions it computes. Every column is described in
docs/cli.md ("Reading --explain")."""
from __future__ import annotations

import argparse

from .options import non_negative_int, output_file

HELP = "compile a .pc file to a model checkpoint; --explain shows the plan"
EXAMPLES = """examples:
  pcc compile ir_examples/pd2x2.pc --explain          # layers, fused ops, shapes, costs
  pcc compile ir_examples/pd2x2.pc --explain=regions  # ... and the regions of every row
  pcc compile ir_examples/rat16.pc -o rat16.pt        # save an initialized model
"""


def register(sub) -> None:
    p = sub.add_parser("compile", help=HELP, description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="the .pc circuit (or a file `pcc import` reads)")
    p.add_argument("-o", "--output", type=output_file, help="checkpoint to write (.pt)")
    p.add_argument("--explain", nargs="?", const="ops", choices=("ops", "regions"),
                   help="print the plan: layers, fused ops, shapes, parameters, FLOPs, bytes "
                        "(--explain=regions: and the regions each row computes); columns: "
                        "docs/cli.md")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed for parameters the file does not give")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..compiler import as_circuit, compile as compile_circuit, plan
    from ..passes.explain import explain
    from ..sizes import check_build_size
    circuit = as_circuit(args.file)
    if args.explain or not args.output:
        circuit_plan = plan(circuit)
        print(explain(circuit_plan, regions=args.explain == "regions"))
        check_build_size(circuit, circuit_plan, where=args.file)
    if args.output:
        from .. import checkpoint  # imports torch: only when a model is built
        model = compile_circuit(circuit, backend="torch", seed=args.seed)
        checkpoint.save(model, args.output, {"source": args.file})
        print(f"wrote {args.output}")
    return 0
