"""`pcc train --log FILE.csv|FILE.json --plot FILE.png`: the per-epoch metrics of a run.

`EpochLog` is the `on_epoch` callback of `pcc.members.fit_members`: it keeps every record (the
checkpoint's meta holds them), rewrites the --log file after each epoch (atomically, so the file
is whole whenever it is read, even mid-run), and draws the learning curve at the end.

    CSV:  member,epoch,train_ll,valid_ll,seconds,candidate   (polishing steps: epoch "polish 1",
    JSON: [{"member": 1, "epoch": 1, "train_ll": ..., "valid_ll": ...}, ...]   ...; an empty cell:
    not measured; candidate: the capacity search's, `pcc.search`)
"""
from __future__ import annotations

import csv
import io
import json

from ..files import write_atomically, write_text

FIELDS = ("member", "epoch", "train_ll", "valid_ll", "seconds", "candidate")


class EpochLog:
    def __init__(self, path: str | None = None, plot: str | None = None):
        self.path, self.plot_path = path, plot
        self.records: list[dict] = []

    def __call__(self, record: dict) -> None:
        self.records.append(dict(record))
        if self.path:
            write_text(self.path, self.text())

    def text(self) -> str:
        """The records as the --log file holds them (CSV or JSON, by its extension)."""
        if self.path and self.path.lower().endswith(".json"):
            return json.dumps(self.records, indent=1) + "\n"
        out = io.StringIO()
        writer = csv.DictWriter(out, FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in FIELDS} for r in self.records)
        return out.getvalue()

    def draw(self) -> None:
        """The learning curve (validation solid, training dashed, one colour per member) as a PNG
        at the --plot path; nothing without one or without records."""
        if not self.plot_path or not self.records:
            return
        from matplotlib.figure import Figure  # the `images` extra; checked when parsing --plot
        figure = Figure(figsize=(7, 4.5), dpi=100)
        axes = figure.subplots()
        for member in sorted({r.get("member", 1) for r in self.records}):
            rows = [r for r in self.records if r.get("member", 1) == member]
            colour = f"C{(member - 1) % 10}"
            for key, style, name in (("valid_ll", "-", "valid"), ("train_ll", "--", "train")):
                points = [(i + 1, r[key]) for i, r in enumerate(rows) if key in r]
                if points:
                    axes.plot(*zip(*points), style, color=colour, label=f"member {member} {name}")
        axes.set_xlabel("epoch (then full-batch EM steps)")
        axes.set_ylabel("mean log-likelihood (nats per row)")
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
        figure.tight_layout()
        write_atomically(self.plot_path, lambda f: figure.savefig(f, format="png"))
