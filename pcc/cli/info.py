"""`pcc info MODEL.pt`: what a checkpoint holds: its circuit's summary, how it was trained and
its scores (from the checkpoint's meta). The checkpoint is verified (checksums, values) as when
it is loaded, but no model is built.

`pcc info MODEL.pt.state`: where the run a snapshot was taken from stands (`pcc train
--snapshot-every`): its stage, epoch, best score so far, the training time used, its settings."""
from __future__ import annotations

import argparse

HELP = "show a checkpoint's circuit, training configuration and scores (or a snapshot's run)"
EXAMPLES = """examples (nltcs.pt: see `pcc train --help`):
  pcc info nltcs.pt
  pcc info rat16.pt                   # from `pcc compile ir_examples/rat16.pc -o rat16.pt`
"""
# How the meta keys `pcc train` writes are shown, in this order; others follow as they are.
LABELS = {"source": "trained from", "data": "data", "label_column": "label column",
          "train": "configuration", "member_best_epochs": "best epochs", "interrupted":
          "interrupted", "train_ll": "train log-likelihood", "valid_ll": "valid log-likelihood",
          "test_ll": "test log-likelihood",
          "plain_chow_liu_tree": "plain Chow-Liu tree kept for members",
          "capacity": "capacity", "ranks": "trained on ranks"}
HIDDEN = {"best_epoch", "history"}


def register(sub) -> None:
    p = sub.add_parser("info", help=HELP, description=__doc__, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a checkpoint (.pt) written by `pcc train` or `pcc compile`, "
                                 "or a snapshot (.pt.state) of a `pcc train` run")
    p.set_defaults(run=run)


def run(args) -> int:
    from .. import checkpoint
    from ..errors import CheckpointError, PcError
    from ..frontend import parse
    from ..region_graph import summary
    from ..snapshot import is_snapshot
    if is_snapshot(args.model):
        return _snapshot(args.model)
    stored = checkpoint.read(args.model)
    try:
        circuit = parse(stored.circuit)
    except PcError as e:
        raise CheckpointError(f"{args.model}: the stored circuit is invalid "
                              f"({str(e).splitlines()[0]})") from None
    dtype = checkpoint.state_dtype(stored.state_dict)
    print(f"{args.model}: pcc checkpoint version {checkpoint.VERSION}, parameters in "
          f"{str(dtype).replace('torch.', '')}")
    print("circuit:")
    print("\n".join("  " + line for line in str(summary(circuit)).splitlines()))
    meta = stored.meta
    if not meta:
        return 0
    print("meta:")
    keys = [k for k in LABELS if k in meta] + sorted(k for k in meta if k not in LABELS
                                                    and k not in HIDDEN)
    width = max(len(LABELS.get(k, k)) for k in keys) if keys else 0
    for key in keys:
        value = meta[key]
        shown = f"{value:.4f}" if key.endswith("_ll") and isinstance(value, float) else _show(value)
        if key == "capacity":
            shown = _capacity(value, width + 4)
        print(f"  {LABELS.get(key, key):<{width}}  {shown}")
    if meta.get("history"):
        print(f"  {len(meta['history'])} epoch records (pcc train --log writes them as CSV/JSON)")
    return 0


def _snapshot(path: str) -> int:
    """Where a snapshot's run stands (`pcc.snapshot`)."""
    import os
    import time

    from ..snapshot import OLDER, describe, describe_best, read
    snap = read(path)
    where, made = snap.where, snap.made
    age = time.time() - snap.written
    print(f"{path}: pcc training snapshot {snap.serial}, written "
          f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(snap.written))} ({_ago(age)}), "
          f"{os.path.getsize(path):,} bytes")
    rows = [("stage", describe(where)), ("best score", describe_best(where)),
            ("training time", f"{where.get('seconds', 0.0):.1f} s"),
            ("made by", ", ".join(f"{k} {v}" for k, v in made.items())),
            ("settings", " ".join(f"{k} {v}" for k, v in snap.fingerprint.items()
                                  if k.startswith("--") and v is not None))]
    other = path[: -len(OLDER)] if path.endswith(OLDER) else path + OLDER
    if os.path.exists(other):
        rows.append(("newer" if path.endswith(OLDER) else "older", other))
    for label, value in rows:
        if value:
            print(f"  {label:<13}  {value}")
    return 0


def _capacity(search: dict, indent: int) -> str:
    """The capacity search's choice, then one line per candidate (`pcc.search.summary`)."""
    def text(c: dict) -> str:
        trees = f"{c['trees']} tree{'s' if c['trees'] > 1 else ''}"
        return (f"K={c['k']}, {trees}, pseudocount {c['pseudocount']:g}, entropy "
                f"{c['entropy']:g}, soften {c['soften']:g}")
    from ..search import capacity_rule
    lines = [f"{text(search)}, chosen on validation ({search['valid']:.4f}"
             f"{capacity_rule(search)}) from:"]
    for c in search["candidates"]:
        gap = f", {c['gap']:.4f} ± {c['se']:.4f} below the best so far" if c.get("se") else ""
        result = (f"valid {c['valid']:.4f}{gap}, {c['passes']} passes, {c['seconds']:.1f} s"
                  if c.get("valid") is not None else f"skipped: {c.get('skipped')}")
        lines.append(f"{' ' * indent}{text(c)}: {result}")
    return "\n".join(lines)


def _ago(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _show(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_show(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(map(_show, value))
    return str(value)
