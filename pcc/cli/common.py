"""What the commands that use a model share: loading it (a checkpoint or a .pc circuit) on a
device, and reading data rows for it (columns matched to its variables, labels split off): in
memory (`load_rows`), or streamed and shared out among the ranks of a torchrun launch
(`open_rows`, for `pcc train` and `pcc eval`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PcError


def load_model(path: str, seed: int = 0, backend: str = "auto", device: str = "cpu"):
    """A checkpoint (.pt) or a .pc circuit compiled with fresh parameters, on `device`."""
    from .. import checkpoint
    from ..compiler import compile as compile_circuit
    if is_checkpoint(path):
        model = checkpoint.load(path, backend=backend)[0]
    else:
        model = compile_circuit(path, backend=backend, seed=seed)
    return model.to(device)


def is_checkpoint(path: str) -> bool:
    """Whether `path` names a checkpoint (by its extension) rather than a circuit file."""
    from ..files import is_checkpoint_path
    return is_checkpoint_path(path)


@dataclass(frozen=True)
class Rows:
    """Data for a model: x [N, V] float64 in its variables' order (NaN = missing); labels [N]
    int64 (root units) when a label column was given."""

    x: np.ndarray
    labels: np.ndarray | None = None


def load_rows(path: str, model, label: "str | int | None" = None) -> Rows:
    """The rows of a data file for `model`: columns matched to its variables by the header's
    names (or by position), values checked against the leaf supports, labels against the root."""
    import torch
    from ..data import check_labels, check_support, read_table, select_columns
    check_label_column(model, label)
    table, labels = select_columns(read_table(path), model.plan.var_names, label)
    if len(table.values) == 0:
        raise table.error("has no rows")
    check_support(torch.from_numpy(table.values), model.var_max.cpu(), model.var_discrete.cpu(),
                  model.plan.var_names, path=path, lines=table.lines)
    if labels is not None:
        labels = check_labels(labels, model.root_k, path, table.lines)
    return Rows(table.values, labels)


def open_rows(path: str, model, label: "str | int | None" = None, group=None):
    """The rows of a data file for `model` as `load_rows` checks them, read in pieces
    (`pcc.rows.open_data`: an .npy file in place, a text file through a binary cache): for one
    process, FileRows; under torchrun (`group`), this rank's Shard of them, every rank having
    checked its share. Close it when done (a text file's cache is deleted)."""
    from ..rows import Share, Shard, open_data
    check_label_column(model, label)
    if group is None:
        return open_data(path, model, label)
    return Shard(open_data(path, model, label, Share(group.rank, group.size)), group)


def check_label_column(model, label: "str | int | None") -> None:
    """A PcError if --label-column is given for a circuit whose root has one unit."""
    if label is not None and model.root_k == 1:
        raise PcError("--label-column needs a circuit whose root has one unit per class (K > 1), "
                      "e.g. from `pcc structure ... --classes C`; this one has 1")


def check_root_unit(model, unit: int | None) -> None:
    """A PcError unless `unit` (from --root-unit) is None or one of the root's units."""
    k = model.root_k
    if unit is not None and not 0 <= unit < k:
        raise PcError(f"--root-unit must be in 0..{k - 1} (the root has {k} unit"
                      f"{'s' if k > 1 else ''}), got {unit}")
