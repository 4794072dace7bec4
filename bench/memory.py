"""Peak memory of one piece of work, measured the same way for every system a benchmark compares.

Two measures, both as growth over the moment the work starts (Linux, glibc):
  malloc  bytes held in malloc'd blocks (glibc `mallinfo2`: in use + mmapped), sampled every
          0.2 ms by a thread: what the work allocates, whatever the allocator keeps afterwards;
  rss     the process's resident set (`VmHWM` of /proc/self/status, whose high-water mark is
          reset through /proc/self/clear_refs before the work, after `malloc_trim` has given
          freed memory back): also counts freed memory the allocator keeps during the work, and
          code and data pages touched for the first time.
Run each measurement in a fresh process, after a warm-up that loads the code the work runs.
"""
from __future__ import annotations

import ctypes
import re
import threading
import time
from typing import Callable


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


_LIBC = ctypes.CDLL("libc.so.6")
_LIBC.mallinfo2.restype = _MallInfo2


def live_bytes() -> int:
    """Bytes the process holds in malloc'd blocks right now (glibc: in use + mmapped)."""
    info = _LIBC.mallinfo2()
    return info.uordblks + info.hblkhd


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024


class _Sampler(threading.Thread):
    """Samples `live_bytes` until stopped; `peak` is the largest value seen."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.running = live_bytes(), True

    def run(self):
        while self.running:
            self.peak = max(self.peak, live_bytes())
            time.sleep(2e-4)


def peak_growth(work: Callable[[], object]) -> dict[str, int]:
    """Run `work()` once; return {'malloc': bytes, 'rss': bytes}, the peak growth of each."""
    _LIBC.malloc_trim(0)  # give freed memory back first, so that RSS starts from what is live
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    rss_before, malloc_before = _status_bytes("VmRSS"), live_bytes()
    sampler = _Sampler()
    sampler.start()
    work()
    sampler.running = False
    sampler.join()
    malloc_peak = max(sampler.peak, live_bytes())
    return {"malloc": max(0, malloc_peak - malloc_before),
            "rss": max(0, _status_bytes("VmHWM") - rss_before)}
