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
