"""`pcc train FILE --train T [--valid V] [--test S] -o model.pt`: learn parameters by EM.

FILE is a .pc circuit or a checkpoint to continue training. Online EM over shuffled
mini-batches; after each epoch the validation log-likelihood decides early stopping; then
full-batch EM iterations polish the best epoch's model while validation improves, and the result
is saved. With --members N, N copies are trained so (the first from FILE, the others with seeds
seed+1..) and saved as one circuit that mixes them uniformly: an ensemble.

The recipe comes from the circuit; every option overrides its part of it:
  latent trees (pcc structure hclt, pcc structure hmm): parameters initialized from the
      training data (hidden states clustered, then counted; with ties, the states of all
      positions clustered together), {latent}
      (then the plain Chow-Liu tree that the structure holds is kept instead of the trained
      parameters if it scores better on validation). What the user leaves open is chosen on
      validation within --budget seconds: the hidden states and trees when the file leaves
      them open (`pcc structure hclt` without -k / --trees; -k and --trees here fix them), the
      pseudocount, --entropy and --soften unless given. Each candidate is trained by this
      recipe with full-batch EM cut at 20 iterations; the best goes on where it stopped. The
      choice is printed and recorded in the checkpoint (`pcc info`). A file with parameters
      (--init data) starts from them (--init keep) and keeps its capacity.
  other circuits: parameters random (or as the file gives them), {other}
Without --valid, a seeded 10% of the training rows (--seed) is held out for validation.
A circuit whose root has one unit per class trains class-conditionally with --label-column.

Ctrl-C (or SIGTERM) stops training: the best model so far is saved to -o and the command exits
with status 130. The output files are checked before training starts.

Runs survive a kill: every --snapshot-every seconds (default {every:g}) the run's state is written
beside -o (-o m.pt: m.pt.state, and the one before as m.pt.state.1; removed when the run ends),
and the same command with --resume goes on from the newest and ends with the parameters the run
would have reached without stopping (it refuses a snapshot of another circuit, other data or other
settings). --resume without a snapshot starts the run, so torchrun --max-restarts can restart it.

The data are read in pieces, never whole (an .npy file in place, a text file through a binary
cache in the temp folder), so a data file larger than memory trains. Launched by torchrun
(`torchrun --standalone --nproc-per-node=N -m pcc train ...`), every rank trains the same model
on its share of each batch (data-parallel EM, gloo on the CPU, NCCL on CUDA) and rank 0 alone
prints, logs and saves: see docs/distributed.md.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from ..errors import PcError

from .options import (add_device, add_timeout, column, metrics_file, non_negative_float,
                      non_negative_int, output_file, plot_file, positive_float, positive_int,
                      probability)

HELP = "train a circuit by EM on a data set"
EXAMPLES = """examples (a minute or two each on one core; nltcs.pt and by_x0.pt feed the examples
of `pcc eval`, `info`, `sample`, `mpe` and `inpaint`):
  pcc structure hclt --data data/nltcs/nltcs.train.data -o nltcs.pc
  pcc train nltcs.pc --train data/nltcs/nltcs.train.data --valid data/nltcs/nltcs.valid.data --test data/nltcs/nltcs.test.data -o nltcs.pt
  pcc train nltcs.pt --train data/nltcs/nltcs.train.data --valid data/nltcs/nltcs.valid.data --epochs 10 -o nltcs_more.pt   # continue
  pcc structure rat --vars 16 -o rat.pc
  pcc train rat.pc --train data/nltcs/nltcs.train.data --valid data/nltcs/nltcs.valid.data --members 1 --log curve.csv --plot curve.png -o one.pt
  pcc structure rat --vars 15 --classes 2 -o by_x0.pc          # one density of x1..x15 per value of x0
  pcc train by_x0.pc --label-column 1 --members 1 --train data/nltcs/nltcs.train.data --valid data/nltcs/nltcs.valid.data -o by_x0.pt

A checkpoint continues from its parameters, with --members 1 unless given.
"""


def register(sub) -> None:
    from ..train import DEFAULT_BUDGET
    from ..snapshot import DEFAULT_EVERY
    from ..train import DEFAULT_RECIPE, LATENT_TREE_RECIPE
    p = sub.add_parser("train", help=HELP,
                       description=__doc__.format(latent=_options_text(LATENT_TREE_RECIPE),
                                                  other=_options_text(DEFAULT_RECIPE),
                                                  every=DEFAULT_EVERY),
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="a .pc circuit or a checkpoint (.pt) to continue")
    p.add_argument("--train", required=True, metavar="FILE",
                   help="training data (debd text, CSV, or .npy; NaN or ? = missing)")
    p.add_argument("--valid", metavar="FILE", help="validation data (early stopping, polishing)")
    p.add_argument("--test", metavar="FILE", help="test data (scored at the end)")
    p.add_argument("-o", "--output", required=True, type=output_file,
                   help="checkpoint to write (atomically; also on Ctrl-C, with the best so far)")
    p.add_argument("--epochs", type=positive_int,
                   help="at most this many passes over the training data")
    p.add_argument("--batch-size", type=positive_int,
                   help="rows per online EM step")
    p.add_argument("--em-step", type=probability,
                   help="online EM step size, in (0, 1]")
    p.add_argument("--pseudocount", type=non_negative_float,
                   help="Dirichlet prior mass per distribution (>= 0)")
    p.add_argument("--patience", type=positive_int,
                   help="epochs without validation improvement before stopping")
    p.add_argument("--polish", type=non_negative_int,
                   help="full-batch EM iterations at the end, while validation improves")
    p.add_argument("--members", type=positive_int,
                   help="train this many copies and save their uniform mixture (an ensemble)")
    p.add_argument("-k", type=positive_int, metavar="K",
                   help="hidden states per variable of a latent tree whose file leaves them open "
                        "(default: chosen on validation)")
    p.add_argument("--trees", type=positive_int, metavar="M",
                   help="trees of such a latent tree to use, the first M of the file's "
                        "(default: chosen on validation, 1, 4 or 8 of them)")
    p.add_argument("--soften", type=non_negative_float, metavar="S",
                   help="leaf smoothing: after every EM update each leaf is mixed with its "
                        "variable's marginal, weight S (default: latent trees chosen on "
                        "validation, 0 for other circuits)")
    p.add_argument("--entropy", type=non_negative_float, metavar="T",
                   help="entropy regularization: every sum's weights maximize their expected "
                        "log-likelihood plus T times their entropy (default: latent trees chosen "
                        "on validation, 0 for other circuits)")
    p.add_argument("--budget", type=positive_float, metavar="SECONDS",
                   help=f"training time to plan within (default {DEFAULT_BUDGET:g}): the "
                        "capacity search plans within 70%% of it and full-batch EM gets the "
                        "iterations the rest holds")
    p.add_argument("--init", choices=("data", "keep"),
                   help="data: initialize a latent tree from the training data; keep: start "
                        "from the parameters FILE holds (random ones for a .pc without params)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the initial parameters and the shuffling")
    p.add_argument("--label-column", type=column, metavar="NAME|N",
                   help="the data column holding each row's class, by header name or position "
                        "from 1: trains one density per class (a root with one unit per class)")
    add_device(p)
    p.add_argument("--log", type=metrics_file, metavar="FILE.csv|FILE.json",
                   help="write per-epoch metrics here, updated after every epoch")
    p.add_argument("--plot", type=plot_file, metavar="FILE.png",
                   help="draw the learning curve (needs matplotlib: pip install 'pcc[images]')")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.add_argument("--snapshot-every", type=non_negative_float, default=DEFAULT_EVERY,
                   metavar="SECONDS",
                   help=f"write the run's state beside -o (m.pt.state) this often, to resume "
                        f"from after a kill (default {DEFAULT_EVERY:g}; 0: never)")
    p.add_argument("--resume", action="store_true",
                   help="go on from the newest snapshot beside -o (start the run if there is "
                        "none): the same command, data and settings end at the same parameters")
    add_timeout(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from .. import distributed
    with distributed.session(args.device, args.timeout) as group:
        return _train(args, group)


def _train(args, group) -> int:
    """`pcc train` in one process (group None) or as one rank of a torchrun launch: every rank
    trains the same model on its share of the data; rank 0 alone prints, logs and saves."""
    import contextlib
    import signal

    from .. import checkpoint
    from ..distributed import together
    from ..rows import HELD_OUT, hold_out
    from ..members import fit_members
    from ..train import TrainConfig, evaluate, interrupt_on
    from .common import is_checkpoint, load_model, open_rows
    from .train_log import EpochLog
    main = group is None or group.is_main
    splits = {}
    with contextlib.ExitStack() as stack:
        if group is not None:  # signals stop every rank after the same step (pcc.distributed)
            stack.enter_context(group.interrupt_on(signal.SIGINT, signal.SIGTERM))

        def load():
            model = load_model(args.file, seed=args.seed,
                               device=args.device if group is None else group.device)
            model = _fixed_capacity(model, args)
            for name, path in (("train", args.train), ("valid", args.valid), ("test", args.test)):
                if path:
                    splits[name] = stack.enter_context(open_rows(path, model, args.label_column,
                                                                 group))
            return model
        model = together(group, load)
        continuing = is_checkpoint(args.file)
        if "valid" not in splits:
            splits["train"], splits["valid"] = hold_out(splits["train"], HELD_OUT, args.seed)
            if main:
                print(f"no --valid: validating on {len(splits['valid'])} of the "
                      f"{len(splits['train']) + len(splits['valid'])} training rows ({HELD_OUT:.0%}, "
                      f"drawn with --seed {args.seed}), training on the rest", file=sys.stderr)
        given = {field: getattr(args, option[2:].replace("-", "_"))
                 for field, option in OPTIONS.items()}
        asked = TrainConfig(**{**given, "members": args.members or (1 if continuing else None),
                               "init": args.init or ("keep" if continuing else None)})
        config = asked.resolved(model.circuit, model.plan, len(splits["train"]))
        snapshots = together(group, lambda: _snapshots(args, model, config, group))
        if args.resume and group is not None:
            _same_snapshot(group, snapshots)
        log = EpochLog(args.log, args.plot) if main else EpochLog()
        with (interrupt_on(signal.SIGINT, signal.SIGTERM) if group is None
              else contextlib.nullcontext()):
            model, histories = fit_members(model, splits["train"], splits["valid"], asked,
                                           progress=not args.quiet and main, on_epoch=log,
                                           snapshots=snapshots)
        log.draw()
        best = [h.best_epoch for h in histories if h.best_epoch > 0]
        interrupted = histories[-1].interrupted
        if interrupted and main and snapshots.latest is not None:
            from ..snapshot import describe
            print(f"--resume goes on from the snapshot {snapshots.path} "
                  f"({describe(snapshots.latest)})", file=sys.stderr)
        if not best:
            if main:
                print("interrupted before the first epoch ended: nothing saved", file=sys.stderr)
            return 130
        scores = {} if interrupted else {name: evaluate(model, rows)
                                         for name, rows in splits.items()}
        capacity = histories[0].capacity
        if capacity is not None:
            config = replace(config, **{f: capacity[f] for f in ("pseudocount", "entropy",
                                                                 "soften")})
        meta = {"source": args.file,
                "data": {name: path for name, path in (("train", args.train),
                                                       ("valid", args.valid),
                                                       ("test", args.test)) if path},
                "train": dict(config.__dict__), "best_epoch": best[0], "member_best_epochs": best,
                "history": log.records, **{f"{k}_ll": s.mean for k, s in scores.items()}}
        if not args.valid:
            meta["data"]["valid"] = (f"{len(splits['valid'])} training rows held out "
                                     f"({HELD_OUT:.0%}, --seed {args.seed})")
        if capacity is not None:
            meta["capacity"] = capacity
        if group is not None:
            meta["ranks"] = group.size
        if args.label_column is not None:
            meta["label_column"] = args.label_column
        if interrupted:
            meta["interrupted"] = True
        if any(h.plain_tree for h in histories):
            meta["plain_chow_liu_tree"] = [i + 1 for i, h in enumerate(histories) if h.plain_tree]
        # rank 0 saves; if that fails, every rank says so
        together(group, lambda: checkpoint.save(model, args.output, meta) if main else None,
                 interrupt=False)
        if main and not interrupted:
            snapshots.remove()  # the run is over
    if not main:
        return 130 if interrupted else 0
    if interrupted:
        print(f"interrupted: saved the best model so far ({len(best)} member"
              f"{'s' if len(best) > 1 else ''}, best epoch {', '.join(map(str, best))}) to "
              f"{args.output}", file=sys.stderr)
        return 130
    if capacity is not None:
        from ..search import capacity_rule, label
        tried = sum(1 for c in capacity["candidates"] if c["valid"] is not None)
        print(f"chose {label(capacity)} on validation ({tried} candidates tried"
              f"{capacity_rule(capacity)})")
    print(f"best epoch {', '.join(map(str, best))}; wrote {args.output}")
    plain = [str(i + 1) for i, h in enumerate(histories) if h.plain_tree]
    if plain:
        print(f"member{'s' if len(plain) > 1 else ''} {', '.join(plain)}: the plain Chow-Liu "
              "tree scored better on validation than the trained latent tree and was kept")
    print("mean log-likelihood: " + ", ".join(f"{k} {s.mean:.4f}" for k, s in scores.items()))
    return 0


def _same_snapshot(group, snapshots) -> None:
    """A RankError on every rank unless every rank resumed from the same snapshot (or none)."""
    from ..distributed import RankError
    found = group.gather(None if snapshots.resumed is None else snapshots.resumed.digest)
    if len(set(found)) > 1:
        seen = ", ".join(f"rank {r}: {'none' if d is None else d[:12]}" for r, d in
                         enumerate(found))
        raise RankError(f"the ranks found different snapshots at {snapshots.path} ({seen}): "
                        "give -o a folder that every node shares")


# TrainConfig's settings and the options that set them (a snapshot names a difference so)
OPTIONS = {"epochs": "--epochs", "batch_size": "--batch-size", "step_size": "--em-step",
           "pseudocount": "--pseudocount", "patience": "--patience", "polish": "--polish",
           "seed": "--seed", "members": "--members", "init": "--init", "soften": "--soften",
           "entropy": "--entropy", "budget": "--budget"}


def _fixed_capacity(model, args):
    """`model` with the capacity -k and --trees fix (a latent tree whose file leaves them open:
    `pcc.capacity`), its other open dimensions still open; `model` itself without them."""
    if args.k is None and args.trees is None:
        return model
    from ..capacity import is_resizable, open_dimensions, resize, tree_count, with_open_line
    from ..compiler import compile as compile_circuit
    circuit = model.circuit
    dims = open_dimensions(circuit) if is_resizable(circuit) else ()
    for option, dim in (("-k", "k"), ("--trees", "trees")):
        if getattr(args, dim) is not None and dim not in dims:
            raise PcError(f"{option}: {args.file} fixes its {'hidden states' if dim == 'k' else 'trees'}"
                          " (only a latent tree from `pcc structure hclt` without -k / --trees "
                          "leaves them to pcc train)")
    trees = tree_count(circuit)
    if args.trees is not None and args.trees > trees:
        raise PcError(f"--trees {args.trees}: {args.file} has {trees} tree{'s' if trees > 1 else ''}")
    resized = resize(circuit, args.k or circuit.inputs[0].k, args.trees or trees)
    left = tuple(d for d in dims if getattr(args, d) is None)
    return compile_circuit(with_open_line(resized, left), backend=model.backend,
                           seed=args.seed).to(next(model.parameters()).device)


def _snapshots(args, model, config, group):
    """The run's Snapshots beside -o (rank 0 writes them), resumed from with --resume; without
    it, a note if an unfinished run left one there."""
    from tqdm.auto import tqdm

    from ..snapshot import Snapshots, circuit_hash, describe, file_hash, parameters_hash
    main = group is None or group.is_main
    fingerprint = {"circuit": circuit_hash(model.circuit),
                   "training data": file_hash(args.train),
                   "validation data": file_hash(args.valid) if args.valid else None,
                   **{option: getattr(config, field) for field, option in OPTIONS.items()},
                   "--label-column": args.label_column,
                   "starting parameters": parameters_hash(model)}  # after --seed, which sets them
    made = {"ranks": 1 if group is None else group.size,
            "device": next(model.parameters()).device.type}
    snapshots = Snapshots(f"{args.output}.state", args.snapshot_every, fingerprint, write=main,
                          made=made, say=lambda line: tqdm.write(line, file=sys.stderr)
                          if main else None)
    if args.resume:
        snapshots.resume()
    elif main:
        earlier = snapshots.existing()
        if earlier is not None:
            snapshots.say(f"{earlier.path} holds a snapshot of a run that did not finish "
                          f"({describe(earlier.where)}): starting a new run"
                          f"{', whose snapshots replace it' if args.snapshot_every else ''} "
                          "(--resume would go on from it)")
    return snapshots


def _options_text(recipe) -> str:
    return (f"--epochs {recipe.epochs} --batch-size {recipe.batch_size} --em-step "
            f"{recipe.step_size} --pseudocount {recipe.pseudocount} --patience {recipe.patience} "
            f"--polish {recipe.polish} --members {recipe.members}")
