"""Helpers for benchmarks that time several systems side by side in one process.

The machine is shared, so absolute times drift during a run; the systems are therefore timed in
alternating order, repetition by repetition, and compared by their medians.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Timing:
    """Median seconds per call: wall clock, and CPU time of this process (less sensitive to
    other processes on a shared machine)."""

    wall: float
    cpu: float


def interleaved_medians(steps: dict[str, Callable[[], object]], repeats: int,
                        before: dict[str, Callable[[], object]] | None = None
                        ) -> dict[str, Timing]:
    """Median time per call of each step: one warm-up call each, then `repeats` rounds that call
    every step once, in forward order on even rounds and reverse order on odd ones. `before[name]`,
    when given, runs (untimed) before every call of that step."""
    before = before or {}
    names = list(steps)
    for name in names:
        before.get(name, _nothing)()
        steps[name]()
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            before.get(name, _nothing)()
            start, start_cpu = time.perf_counter(), time.process_time()
            steps[name]()
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start)
    return {name: Timing(statistics.median(wall[name]), statistics.median(cpu[name]))
            for name in names}


def _nothing() -> None:
    pass


def machine() -> str:
    """The CPU model, core count, Python and torch versions and torch's thread count."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")


def dump_json(path: str, results: dict) -> None:
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
