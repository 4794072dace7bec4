"""Running code on several gloo ranks of this machine for the data-parallel tests: `on_ranks`
(functions, through torch.multiprocessing and a FileStore: no ports) and `launch` (the `pcc`
command, with the environment torchrun gives each rank)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

REPO = Path(__file__).resolve().parent.parent


def on_ranks(fn, size: int, *args, timeout: float = 120.0) -> list:
    """[fn(group, *args) on rank r for r in 0..size-1], each run in its own process (gloo, one
    torch thread). Fails the test if a rank raises or the ranks take longer than `timeout`."""
    with tempfile.TemporaryDirectory() as folder:
        context = mp.start_processes(_entry, args=(size, folder, fn, args), nprocs=size,
                                     join=False, start_method="spawn")
        deadline = time.monotonic() + timeout
        while not context.join(timeout=max(deadline - time.monotonic(), 0.1)):
            if time.monotonic() > deadline:
                for p in context.processes:
                    p.kill()
                raise AssertionError(f"the {size} ranks did not finish within {timeout} s")
        return [torch.load(os.path.join(folder, f"rank{r}.pt"), weights_only=False)
                for r in range(size)]


def _entry(rank: int, size: int, folder: str, fn, args) -> None:
    from pcc.distributed import Group
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank,
                            world_size=size)
    try:
        result = fn(Group(rank, size, torch.device("cpu"), timeout=60.0), *args)
    finally:
        dist.destroy_process_group()
    torch.save(result, os.path.join(folder, f"rank{rank}.pt"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(argv: list[str], size: int = 2, **popen) -> list[subprocess.Popen]:
    """`python -m pcc *argv` as ranks 0..size-1 of one group on this machine (the environment
    torchrun would give them), stdout and stderr piped as text."""
    port = free_port()
    ranks = []
    for rank in range(size):
        env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                   WORLD_SIZE=str(size))
        ranks.append(subprocess.Popen([sys.executable, "-m", "pcc", *map(str, argv)], env=env,
                                      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, **popen))
    return ranks


def finish(ranks: list[subprocess.Popen], timeout: float = 120.0) -> list[tuple[int, str, str]]:
    """(exit status, stdout, stderr) of every rank; kills them all past `timeout`."""
    deadline = time.monotonic() + timeout
    out = []
    for p in ranks:
        try:
            stdout, stderr = p.communicate(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            for q in ranks:
                q.kill()
            raise AssertionError(f"the ranks did not finish within {timeout} s (a hang)")
        out.append((p.returncode, stdout, stderr))
    return out
