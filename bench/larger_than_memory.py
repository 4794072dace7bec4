"""Training and evaluating on a data file several times larger than the memory the process may
use: `pcc train` and `pcc eval` run under an address-space limit (RLIMIT_AS, what `ulimit -v`
sets: it counts every byte the process maps, so not even a memory map of the file would fit)
on a generated .npy file (and a text file) of random binary rows, --ratio times the limit.

    python bench/larger_than_memory.py [--limit-gib 1.5] [--ratio 4] [--vars 1000] [--folder F]

Prints, per command: the file size, the limit, its exit status, its peak resident memory and
address space (VmHWM, VmPeak) and its time, and the last line it printed. The data are written
in pieces (never held whole) and removed at the end unless --keep. Needs about (1 + ratio x
limit) x 2 GiB of disk for both files (the text file's cache is as large as the file).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

GIB = 1 << 30
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_npy(path: str, rows: int, num_vars: int, seed: int) -> None:
    """Random binary rows (each variable on with its own probability) as int8, in pieces."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.1, 0.9, num_vars)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.int8, shape=(rows, num_vars))
    step = max(1, (64 << 20) // num_vars)
    for start in range(0, rows, step):
        n = min(step, rows - start)
        out[start: start + n] = rng.random((n, num_vars)) < p
    out.flush()
    del out


def write_text(path: str, rows: int, num_vars: int, seed: int) -> None:
    """The same kind of rows as comma-separated 0/1 text (debd), in pieces."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.1, 0.9, num_vars)
    step = max(1, (32 << 20) // (2 * num_vars))
    with open(path, "wb") as f:
        for start in range(0, rows, step):
            n = min(step, rows - start)
            cells = np.full((n, 2 * num_vars), ord(","), dtype=np.uint8)
            cells[:, 0::2] = ord("0") + (rng.random((n, num_vars)) < p)
            cells[:, -1] = ord("\n")
            f.write(cells.tobytes())


def limited(limit: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def run(argv: list[str], limit: int) -> tuple[int, float, dict, str]:
    """(status, seconds, peak memory, last line) of `pcc ARGV` under the address-space limit."""
    probe = ("import atexit, runpy, sys\n"
             "def peak():\n"
             "    lines = [l for l in open('/proc/self/status') if l.startswith(('VmHWM', "
             "'VmPeak'))]\n"
             "    print('PEAK ' + ' '.join(l.split()[0] + l.split()[1] for l in lines), "
             "file=sys.stderr)\n"
             "atexit.register(peak)\n"
             "sys.argv = ['pcc'] + sys.argv[1:]\n"
             "runpy.run_module('pcc', run_name='__main__')\n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True,
                          env=env, cwd=REPO, preexec_fn=limited(limit))
    seconds = time.perf_counter() - started
    peak = {}
    for line in done.stderr.splitlines():
        if line.startswith("PEAK "):
            peak = {k: int(v) * 1024 for k, v in (p.split(":") for p in line.split()[1:])}
    lines = [line for line in (done.stdout + done.stderr).splitlines()
             if line.strip() and not line.startswith("PEAK ")]
    return done.returncode, seconds, peak, lines[-1] if lines else ""


def show(name: str, size: int, limit: int, result) -> None:
    status, seconds, peak, last = result
    print(f"{name:<34} file {size / GIB:5.2f} GiB = {size / limit:4.1f} x limit; exit {status}; "
          f"peak RSS {peak.get('VmHWM', 0) / GIB:4.2f} GiB, address space "
          f"{peak.get('VmPeak', 0) / GIB:4.2f} GiB; {seconds:6.1f} s")
    print(f"{'':<34} {last}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit-gib", type=float, default=1.5,
                        help="address-space limit of each command (GiB)")
    parser.add_argument("--ratio", type=float, default=4.0, help="data file size / limit")
    parser.add_argument("--vars", type=int, default=1000)
    parser.add_argument("--folder", help="where to write the data (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the data files")
    args = parser.parse_args()
    limit = int(args.limit_gib * GIB)
    folder = args.folder or tempfile.mkdtemp(prefix="pcc-big-")
    os.makedirs(folder, exist_ok=True)
    circuit, model = os.path.join(folder, "rat.pc"), os.path.join(folder, "m.pt")
    paths = {"npy": os.path.join(folder, "big.npy"), "text": os.path.join(folder, "big.data"),
             "valid": os.path.join(folder, "valid.npy")}
    npy_rows = int(args.ratio * limit) // args.vars
    text_rows = int(args.ratio * limit) // (2 * args.vars)
    print(f"limit (RLIMIT_AS, ulimit -v): {limit / GIB:.2f} GiB; {args.vars} binary variables; "
          f".npy {npy_rows:,} rows, text {text_rows:,} rows; in {folder}")
    try:
        started = time.perf_counter()
        write_npy(paths["npy"], npy_rows, args.vars, 0)
        write_npy(paths["valid"], 20_000, args.vars, 0)
        write_text(paths["text"], text_rows, args.vars, 0)
        print(f"wrote the data in {time.perf_counter() - started:.0f} s")
        subprocess.run([sys.executable, "-m", "pcc", "structure", "rat", "--vars",
                        str(args.vars), "--depth", "1", "--replicas", "1", "-k", "2", "-o",
                        circuit], check=True, cwd=REPO, capture_output=True)
        train = ["train", circuit, "--valid", paths["valid"], "--epochs", "1", "--polish", "1",
                 "--batch-size", "1000", "--members", "1", "--quiet", "-o", model]
        for name, path in (("npy", paths["npy"]), ("text", paths["text"])):
            size = os.path.getsize(path)
            show(f"pcc train ({name})", size, limit, run(train[:2] + ["--train", path] +
                                                         train[2:], limit))
            show(f"pcc eval ({name})", size, limit,
                 run(["eval", model, "--data", path], limit))
        size = os.path.getsize(paths["npy"])
        show("without pcc.rows: np.load (npy)", size, limit,
             run_load(paths["npy"], limit))
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def run_load(path: str, limit: int):
    """The control: reading the whole file into memory under the same limit fails."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", f"import numpy; numpy.load({path!r})"],
                          capture_output=True, text=True, preexec_fn=limited(limit))
    last = (done.stderr.strip().splitlines() or [""])[-1]
    return done.returncode, time.perf_counter() - started, {}, last


if __name__ == "__main__":
    main()
