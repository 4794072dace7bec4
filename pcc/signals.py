"""Signal handlers for the length of a block (main thread only: Python's rule for handlers)."""
from __future__ import annotations

import contextlib
import signal
from typing import Callable, Iterator


@contextlib.contextmanager
def handled(handler: Callable, *signals: int) -> Iterator[None]:
    """Within the block, `handler(signum, frame)` handles `signals`; the previous handlers after."""
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


# Signals that `interrupting` turned into a KeyboardInterrupt not yet taken by the code that stops
# on it: such an exception is lost where Python ignores exceptions (a finalizer that the garbage
# collector runs between two bytecodes), so long loops also call `raise_pending`.
_pending: list[int] = []


def interrupting(signum: int, frame) -> None:
    """A handler that interrupts like Ctrl-C does (KeyboardInterrupt), remembered until `taken`."""
    _pending.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def raise_pending() -> None:
    """Raise the KeyboardInterrupt of a signal whose first one was lost (see `_pending`)."""
    if _pending:
        raise KeyboardInterrupt(f"signal {_pending[-1]}")


def taken() -> None:
    """The code that stops on an interrupt has seen it."""
    _pending.clear()
