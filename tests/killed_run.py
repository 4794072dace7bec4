"""`python tests/killed_run.py WHEN N PCC-ARGS...`: `pcc PCC-ARGS` that kills itself with SIGKILL
(as an out-of-memory killer, a lost node or a power cut would: nothing runs after it) at a point of
its training:

    step N           before the N-th online EM step
    update N         before the N-th update of a full-batch EM (its statistics accumulated)
    snapshot STAGE   right after the first snapshot of that stage is written ("next member")

Under torchrun only rank 1 of the first attempt dies (TORCHELASTIC_RESTART_COUNT 0): torchrun's
restart of the group then runs without a kill.
"""
from __future__ import annotations

import os
import signal
import sys

from pcc.cli.main import main
from pcc.em import EM
from pcc.snapshot import Snapshots


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def before_call(cls, name: str, n: int, counts=lambda obj: True) -> None:
    """Kill before the n-th call of cls.name on an object for which `counts` holds."""
    original, calls = getattr(cls, name), [0]

    def wrapper(self, *args, **kwargs):
        if counts(self):
            calls[0] += 1
            if calls[0] == n:
                die()
        return original(self, *args, **kwargs)
    setattr(cls, name, wrapper)


def after_snapshot(stage: str) -> None:
    original = Snapshots.save

    def save(self, where, state):
        original(self, where, state)
        if where["stage"] == stage:
            die()
    Snapshots.save = save


def dies() -> bool:
    """Whether this process is the one to kill: one process, or rank 1 of torchrun's first try."""
    return (os.environ.get("RANK", "1") == "1"
            and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0")


if __name__ == "__main__":
    when, what, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    if not dies():
        pass
    elif when == "step":
        before_call(EM, "step", int(what))
    elif when == "update":
        before_call(EM, "update", int(what), counts=lambda em: em.step_size == 1.0)
    else:
        after_snapshot(what)
    sys.exit(main(argv))
