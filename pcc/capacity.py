"""The capacity of a latent-tree circuit (`pcc.latent_tree`): its number of hidden states K and
of trees, and which of them training may choose.

A generated HCLT whose K or number of trees the user did not fix says so in a comment line
(`pcc structure hclt` writes it in the file's header; `pcc.structures.hclt` in the Circuit's
comments):

    # capacity: open (k, trees): pcc train chooses them on validation; written here with K=32, 8 trees

`open_dimensions` reads it; `pcc.search` then tries other capacities by `resize`: every region
of the trees gets K units and the root keeps its first `trees` trees (the file's trees are the
candidates: tree 0 is the data's Chow-Liu tree, the others those of bootstrap resamples). A file
without the line (written by hand, with -k and --trees given, or holding parameters) keeps its
capacity.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from .ir import Circuit, Comment, Sum

DIMENSIONS = ("k", "trees")
_OPEN = re.compile(r"#\s*capacity:\s*open\s*\(([^)]*)\)")


@dataclass(frozen=True)
class Capacity:
    """K hidden states per variable, the first `trees` trees of the file, and the EM
    pseudocount (`pcc.train.TrainConfig.pseudocount`)."""

    k: int
    trees: int
    pseudocount: float

    def __str__(self) -> str:
        return (f"K={self.k}, {self.trees} tree{'s' if self.trees > 1 else ''}, "
                f"pseudocount {self.pseudocount:g}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def open_line(dimensions: tuple[str, ...], k: int, trees: int) -> str:
    """The comment line (without `#`) saying that `dimensions` are open; K and trees as written."""
    return (f"capacity: open ({', '.join(dimensions)}): pcc train chooses "
            f"{'it' if len(dimensions) == 1 else 'them'} on validation; written here with "
            f"K={k}, {trees} tree{'s' if trees > 1 else ''}")


def open_dimensions(circuit: Circuit) -> tuple[str, ...]:
    """The capacity dimensions ("k", "trees") that `circuit`'s comments leave open (none for a
    circuit with parameters)."""
    if circuit.params:
        return ()
    for comment in circuit.comments:
        m = _OPEN.match(comment.text)
        if m:
            names = {name.strip() for name in m.group(1).split(",")}
            return tuple(d for d in DIMENSIONS if d in names)
    return ()


def with_open_line(circuit: Circuit, dimensions: tuple[str, ...]) -> Circuit:
    """`circuit` with the comment line that leaves `dimensions` open (none: no line)."""
    from .latent_forest import find_latent_forest
    kept = tuple(c for c in circuit.comments if not _OPEN.match(c.text))
    forest = find_latent_forest(circuit)
    if dimensions and forest is not None:
        kept += (Comment(f"# {open_line(dimensions, forest.k, len(forest.roots))}", 0),)
    return dataclasses.replace(circuit, comments=kept)


def tree_count(circuit: Circuit) -> int:
    """The number of trees mixed at the root of a latent-tree circuit."""
    return len(circuit.region(circuit.root).partitions)


def resize(circuit: Circuit, k: int, trees: int) -> Circuit:
    """`circuit` (a latent tree without parameters) with K = `k` in every region but the root
    and only its first `trees` trees; the comment lines become one that records the choice."""
    root = circuit.region(circuit.root)
    if not 1 <= trees <= len(root.partitions):
        raise ValueError(f"trees must be in 1..{len(root.partitions)}, got {trees}")
    top = dataclasses.replace(root, partitions=root.partitions[:trees],
                              elementwise=tuple(p for p in root.elementwise if p < trees))
    regions = [top if r.name == circuit.root else dataclasses.replace(r, k=k)
               for r in circuit.regions]
    resized = dataclasses.replace(circuit, regions=tuple(regions), comments=(), source=None)
    reached = resized.reachable()
    kept = tuple(r for r in resized.regions if r.name in reached)
    note = Comment(f"# capacity: K={k}, {trees} tree{'s' if trees > 1 else ''} "
                   f"(of {len(root.partitions)}), chosen on validation by pcc train", 0)
    return dataclasses.replace(resized, regions=kept, comments=(note,))


def is_resizable(circuit: Circuit) -> bool:
    """Whether `resize` applies: a latent forest whose root is a sum of one unit."""
    from .latent_forest import find_latent_forest
    root = circuit.region(circuit.root)
    return isinstance(root, Sum) and root.k == 1 and find_latent_forest(circuit) is not None
