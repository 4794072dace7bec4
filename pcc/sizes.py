"""How large a circuit is, checked before anything is allocated: absurd sizes are a `SizeError`,
not an allocator failure minutes (or 800 GB) later.

    parameters                 sum weights + leaf parameters (`region_graph.parameter_count`)
    arena values per sample    sum over arenas of rows * K (`Plan.arena_rows`): every node value

Limits: at most MAX_ELEMENTS (2^31) parameters or arena values per sample (beyond that, tensor
indices overflow int32 kernels and no machine pcc runs on holds them), and, when building a model
here, its parameters (with the copies EM keeps) must fit in the memory available.
"""
from __future__ import annotations

import os

from .errors import SizeError
from .ir import Circuit
from .region_graph import parameter_count

MAX_ELEMENTS = 2 ** 31
PARAMETER_COPIES = 4  # the parameters, their gradients (EM's counts), EM's running statistics, a best-epoch copy


def check_circuit_size(circuit: Circuit, where: str | None = None) -> int:
    """The number of parameters of `circuit`, or a SizeError if it exceeds MAX_ELEMENTS."""
    count = parameter_count(circuit)
    if count > MAX_ELEMENTS:
        raise SizeError(f"{_prefix(where, circuit)}too large to build: {count:,} parameters "
                        f"(at most 2^31 = {MAX_ELEMENTS:,}); use smaller K or fewer regions")
    return count


def check_build_size(circuit: Circuit, plan, bytes_per_value: int = 4,
                     where: str | None = None) -> None:
    """SizeError unless `circuit` (with its `plan`) can be built here: parameters within
    MAX_ELEMENTS and the memory available, arena values per sample within MAX_ELEMENTS."""
    count = check_circuit_size(circuit, where)
    per_sample = sum(rows * k for k, rows in plan.arena_rows.items())
    if per_sample > MAX_ELEMENTS:
        raise SizeError(f"{_prefix(where, circuit)}too large to evaluate: {per_sample:,} node "
                        f"values per sample (at most 2^31 = {MAX_ELEMENTS:,})")
    needed = count * bytes_per_value * PARAMETER_COPIES
    available = available_memory()
    if available is not None and needed > available:
        raise SizeError(f"{_prefix(where, circuit)}too large for this machine: {count:,} "
                        f"parameters need about {_bytes(needed)} (with EM's copies) but "
                        f"{_bytes(available)} of memory is available")


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux: MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _prefix(where: str | None, circuit: Circuit) -> str:
    name = where or circuit.path
    return f"{name}: " if name else "the circuit is "


def _bytes(n: float) -> str:
    units = ("B", "KB", "MB", "GB", "TB", "PB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n, i = n / 1000, i + 1
    return f"{n:,.1f} {units[i]}"
