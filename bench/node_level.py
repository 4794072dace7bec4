"""Node-level circuits through pcc: import, compile, fused ops, forward speed against naive.

Generates a random PSDD-like circuit (smooth, decomposable, normalized; primes are not made
deterministic, which evaluation does not need) over a random vtree: about `--nodes` nodes, each
decision node with a skewed number of elements (most 1 to 4, about 1 in 200 with hundreds),
writes it as a .psdd file, then reports

    import      seconds to read the file into the IR (pcc.interchange.load_circuit)
    compile     seconds for validation + passes (layerize, group, plan) + lowering to a module
    ops         fused ops (and layers) of the plan, against the number of sum nodes
    forward     seconds per batch (for each --batch size) of the compiled module (torch backend)
                and of the naive backend, and their ratio (one run each after a warm-up run;
                one torch thread)

and the import time of a second file of about `--mb` megabytes.

    OMP_NUM_THREADS=1 python bench/node_level.py [--nodes 50000] [--vars 128] [--batch 1 16 64 256]
"""
from __future__ import annotations

import argparse
import math
import os
import random
import tempfile
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from pcc.compiler import as_circuit, plan  # noqa: E402
from pcc.interchange import load_circuit  # noqa: E402
from pcc.runtime.module import CompiledCircuit  # noqa: E402


def skewed_elements(rng: random.Random) -> int:
    """Elements of a decision node: mostly 1..4, about 1 in 200 has 100..500."""
    if rng.random() < 0.005:
        return rng.randint(100, 500)
    return rng.choices((1, 2, 3, 4), weights=(35, 30, 20, 15))[0]


def random_vtree(rng: random.Random, variables: list[int]):
    """A vtree as nested pairs (leaves are variables), split at random points."""
    if len(variables) == 1:
        return variables[0]
    cut = rng.randint(1, len(variables) - 1)
    return (random_vtree(rng, variables[:cut]), random_vtree(rng, variables[cut:]))


def psdd_text(num_nodes: int, num_vars: int, seed: int = 0) -> str:
    """A random PSDD-like circuit with `num_nodes` nodes, within 1% (see the module doc)."""
    per_node = num_nodes / (2 * num_vars - 1)  # nodes per vtree node; fewer at the top
    while True:
        lines = _psdd_lines(random.Random(seed), num_vars, max(2, round(per_node)))
        if abs(len(lines) - num_nodes) <= 0.01 * num_nodes or per_node < 2:
            return f"psdd {len(lines)}\n" + "\n".join(lines) + "\n"
        per_node *= num_nodes / len(lines)


def _psdd_lines(rng: random.Random, num_vars: int, per_node: int) -> list[str]:
    order = list(range(1, num_vars + 1))
    rng.shuffle(order)
    vtree = random_vtree(rng, order)
    lines: list[str] = []

    def build(v, count: int) -> list[int]:
        """`count` nodes normalized for vtree node v (children written first); their ids."""
        if isinstance(v, int):
            for i in range(count):
                lines.append(f"L {len(lines)} 0 {v}" if i == 0 else f"L {len(lines)} 0 {-v}"
                             if i == 1 else
                             f"T {len(lines)} 0 {v} {math.log(rng.uniform(0.05, 0.95))!r}")
            return list(range(len(lines) - count, len(lines)))
        sizes = [skewed_elements(rng) for _ in range(count)]
        left = build(v[0], min(per_node, sum(sizes)))
        right = build(v[1], min(per_node, sum(sizes)))
        primes, subs = _cycled(rng, left, sum(sizes)), _cycled(rng, right, sum(sizes))
        for size in sizes:
            weights = [rng.random() + 0.05 for _ in range(size)]
            total = sum(weights)
            elements = " ".join(f"{primes.pop()} {subs.pop()} {math.log(w / total)!r}"
                                for w in weights)
            lines.append(f"D {len(lines)} 0 {size} {elements}")
        return list(range(len(lines) - count, len(lines)))

    build(vtree, 1)
    return lines


def _cycled(rng: random.Random, pool: list[int], n: int) -> list[int]:
    """n picks from `pool` that use every member when n >= len(pool)."""
    picks = []
    while len(picks) < n:
        block = list(pool)
        rng.shuffle(block)
        picks += block
    return picks[:n]


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def forward_seconds(model, x: torch.Tensor) -> float:
    """One timed forward after one warm-up run on the same batch."""
    with torch.no_grad():
        model(x)
        start = time.perf_counter()
        model(x)
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=50_000)
    ap.add_argument("--vars", type=int, default=128)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16, 64, 256],
                    help="batch sizes to time")
    ap.add_argument("--mb", type=float, default=3.0, help="size of the second PSDD file")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "bench.psdd")
        text = psdd_text(args.nodes, args.vars, args.seed)
        nodes = text.count("\n") - 1
        with open(path, "w") as f:
            f.write(text)
        size_mb = os.path.getsize(path) / 1e6
        circuit, t_import = timed(load_circuit, path)

        big = os.path.join(folder, "size.psdd")
        scale = args.nodes * args.mb / size_mb
        with open(big, "w") as f:
            f.write(psdd_text(int(scale), args.vars, args.seed + 1))
        big_mb = os.path.getsize(big) / 1e6
        _, t_big = timed(load_circuit, big)

    _, t_validate = timed(as_circuit, circuit)
    p, t_passes = timed(plan, circuit)
    model, t_lower = timed(lambda: CompiledCircuit(circuit, p, backend="torch"))
    naive = CompiledCircuit(circuit, p, backend="naive")
    naive.load_state_dict(model.state_dict())

    sums = len(circuit.sums)
    partitions = sum(len(s.partitions) for s in circuit.sums)
    x = torch.randint(0, 2, (max(args.batch), circuit.num_vars)).float()
    with torch.no_grad():
        assert torch.allclose(model(x[:8]), naive(x[:8]), atol=1e-3)
    speed = {b: (forward_seconds(model, x[:b]), forward_seconds(naive, x[:b]))
             for b in sorted(set(args.batch))}

    print(f"circuit      {nodes:,} nodes: {len(circuit.regions):,} regions "
          f"({len(circuit.inputs):,} inputs, {sums:,} sums, {partitions:,} partitions), "
          f"{circuit.num_vars} variables, max {max(len(s.partitions) for s in circuit.sums)} "
          "partitions per sum")
    print(f"import       {t_import:.2f} s ({size_mb:.1f} MB PSDD); "
          f"{t_big:.2f} s for a {big_mb:.1f} MB PSDD")
    print(f"compile      {t_validate + t_passes + t_lower:.2f} s (validate {t_validate:.2f}, passes "
          f"{t_passes:.2f}, lowering {t_lower:.2f})")
    print(f"fused ops    {len(p.ops)} in {p.depth} layers, for {sums:,} sum nodes")
    for b, (t_fast, t_naive) in speed.items():
        print(f"forward      batch {b}: compiled {t_fast * 1e3:.1f} ms, naive {t_naive * 1e3:.0f} ms, "
              f"speedup {t_naive / t_fast:.0f}x (one torch thread)")


if __name__ == "__main__":
    main()
