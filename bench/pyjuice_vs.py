"""pcc beside PyJuice 2.6.3 on the same circuits: seconds per epoch of forward + backward + EM over
60,000 rows of 784 binary variables (PyJuice's README benchmark), and peak GPU memory.

Structures (each at several sizes K, the hidden-state / latent count):
  HCLT  a hidden Chow-Liu tree on the Chow-Liu tree of the data (pcc.structures.chow_liu), built
        by PyJuice's own `BayesianTreeToHiddenRegionGraph` from that tree;
  PD    PyJuice's `structures.PD` on 28 x 28 (split interval 4, its default block sizes and its
        4-connection block sparsity).
Both are PyJuice node graphs; `to_pcc` writes the same circuit as a pcc Circuit: an input node is
an input region, a sum node a sum region whose partitions are its product children, element-wise
(`.*`, as PyJuice's products pair units one to one), with the weights split as pcc stores them
(per partition W_p[o,i] = V[o,p,i] / M[o,p] and mixing M[o,p] = sum_i V[o,p,i]; PyJuice's
block-sparse connections become zero weights, so pcc runs them dense). Parameters are copied
from PyJuice into pcc, and on the smallest size of each structure both must give the same
log-likelihoods (max relative difference <= 1e-5) before anything is timed.

Timing: one epoch = ceil(rows / batch) steps of: PyJuice `lls = pc(x); lls.mean().backward();
MiniBatchEM.step()`; pcc `EM(model, cuda_graph=True).step(x)` (Triton backend, default
precision). A few warm-up steps first (compilation, autotuning, graph capture); wall time with
torch.cuda.synchronize; peak = torch.cuda.max_memory_allocated over the epoch. Both in this
process, same device, batch, data and float32.

    python bench/pyjuice_vs.py [--sizes hclt:32,128 pd:16,32] [--batch 512] [--rows 60000]
                               [--data X.npy] [--json PATH] [--markdown PATH] [--budget S]
    python bench/pyjuice_vs.py --smoke       # pcc side only, tiny, on the CPU (no PyJuice)

PyJuice is imported from wherever it is installed (bench/gpu_session.sh installs the wheel from a
path); its optional CUTLASS kernels are disabled (they need nvcc and CUTLASS headers; its Triton
kernels run) unless --pyjuice-cuda-kernels.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types
from dataclasses import asdict, dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

NUM_VARS, SIDE = 784, 28


@dataclass
class Run:
    structure: str
    k: int
    batch: int
    system: str
    params: int = 0
    epoch_s: float | None = None
    peak_mib: float | None = None
    mean_ll: float | None = None
    error: str | None = None


@dataclass
class Agreement:
    structure: str
    k: int
    max_abs_diff: float
    max_rel_diff: float
    mean_ll: float


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["hclt:32,128", "pd:16,32"],
                        help="structure:K,K,... (structures hclt, pd)")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--rows", type=int, default=60000)
    parser.add_argument("--data", help="a .npy array [rows, 784] of 0/1 (default: synthetic)")
    parser.add_argument("--step-size", type=float, default=0.1)
    parser.add_argument("--pseudocount", type=float, default=0.1)
    parser.add_argument("--warmup", type=int, default=3, help="warm-up steps before timing")
    parser.add_argument("--budget", type=float, default=300.0,
                        help="seconds after which remaining runs are skipped")
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    parser.add_argument("--pyjuice-cuda-kernels", action="store_true",
                        help="let PyJuice JIT-compile its optional CUTLASS kernels")
    parser.add_argument("--smoke", action="store_true",
                        help="pcc side only, tiny sizes, on the CPU (checks the conversion code)")
    return parser.parse_args()


# ------------------------------------------------------------------------------ data
def synthetic_digits(rows: int, seed: int = 0):
    """[rows, 784] uint8 0/1 images with MNIST-like structure: smooth blobs thresholded, so
    neighbouring pixels are correlated (the Chow-Liu tree has something to find)."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, rows, 10000):
        n = min(10000, rows - start)
        noise = torch.rand(n, 1, 7, 7, generator=gen)
        smooth = torch.nn.functional.interpolate(noise, size=(SIDE, SIDE), mode="bilinear",
                                                 align_corners=False)
        jitter = torch.rand(n, 1, SIDE, SIDE, generator=gen) * 0.3
        out.append(((smooth + jitter) > 0.75).reshape(n, NUM_VARS).to(torch.uint8))
    return torch.cat(out)


def load_data(path: str | None, rows: int):
    import numpy as np
    import torch
    if path is None:
        return synthetic_digits(rows)
    x = torch.from_numpy(np.load(path)).to(torch.uint8)[:rows]
    if x.dim() != 2 or x.shape[1] != NUM_VARS or int(x.max()) > 1:
        raise SystemExit(f"{path}: expected [rows, {NUM_VARS}] of 0/1, got {list(x.shape)}")
    return x


# ------------------------------------------------------------------------------ PyJuice side
def import_pyjuice(cuda_kernels: bool):
    """import pyjuice; its visualization module needs matplotlib, which the benchmark does not:
    a stand-in module is provided if matplotlib is missing."""
    if not cuda_kernels:
        os.environ.setdefault("PYJUICE_DISABLE_CUDA_KERNELS", "1")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        stub = types.ModuleType("matplotlib")
        stub.pyplot = types.ModuleType("matplotlib.pyplot")
        sys.modules["matplotlib"], sys.modules["matplotlib.pyplot"] = stub, stub.pyplot
    import pyjuice
    return pyjuice


def chow_liu_tree(x, rows: int = 20000):
    """The Chow-Liu tree of the data's first rows (pcc's implementation): (networkx tree, root)."""
    import networkx as nx
    from pcc.structures import defaults
    from pcc.structures.chow_liu import chow_liu
    tree = chow_liu(x[:rows].numpy().astype("int64"), defaults.HCLT_SMOOTHING)
    graph = nx.Graph()
    graph.add_nodes_from(range(x.shape[1]))
    graph.add_edges_from(tree.edges())
    return graph, tree.root


def pyjuice_hclt(juice, tree, root: int, k: int):
    from pyjuice.structures.compilation import BayesianTreeToHiddenRegionGraph
    return BayesianTreeToHiddenRegionGraph(tree, root, k, juice.distributions.Categorical,
                                           {"num_cats": 2})


def pyjuice_pd(juice, k: int):
    return juice.structures.PD(data_shape=(SIDE, SIDE), num_latents=k, split_intervals=(4, 4),
                               input_node_type=juice.distributions.Categorical,
                               input_node_params={"num_cats": 2})


def build_pyjuice(juice, structure: str, k: int, tree, device):
    """(root nodes, compiled TensorCircuit on device) with PyJuice's random initialization."""
    root = pyjuice_hclt(juice, *tree, k) if structure == "hclt" else pyjuice_pd(juice, k)
    root.init_parameters()
    pc = juice.compile(root)
    pc.to(device)
    return root, pc


# ------------------------------------------------------------------------------ conversion
def walk(root):
    """Every node of a PyJuice node graph reachable from root, children before parents."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in node.chs)
    return order


def to_pcc(root, num_vars: int):
    """(Circuit, params by (region, field, index) in probability space) for a PyJuice graph of
    single-variable Categorical(2) inputs, element-wise products and sums (see module doc)."""
    import torch
    from pcc.ir import Circuit, Family, Input, Sum, default_var_names
    names, regions, values = {}, [], {}
    for node in walk(root):
        if node.is_prod():
            continue
        name = f"r{len(names)}"
        names[id(node)] = name
        if node.is_input():
            scope = node.scope.to_list()
            assert len(scope) == 1, "inputs over one variable"
            probs = node.get_params().detach().double().reshape(node.num_nodes, -1)
            regions.append(Input(name, (scope[0],), node.num_nodes, Family("bernoulli")))
            values[(name, "p", None)] = probs[:, 1:2]  # [K, 1]: p(x = 1) per unit
            continue
        parts, sizes = [], []
        for child in node.chs:
            members = child.chs if child.is_prod() else [child]
            for m in members:
                assert m.num_nodes == child.num_nodes, "element-wise products only"
            parts.append(tuple(names[id(m)] for m in members))
            sizes.append(child.num_nodes)
        regions.append(Sum(name, node.num_nodes, tuple(parts),
                           elementwise=tuple(p for p, part in enumerate(parts) if len(part) > 1)))
        v = node.get_params(as_matrix=True).detach().double()  # [K_out, sum of child units]
        blocks = torch.split(v, sizes, dim=1)
        mass = torch.stack([b.sum(1) for b in blocks], 1)  # M[o, p]
        for p, block in enumerate(blocks):
            w = block / mass[:, p:p + 1].clamp_min(1e-300)
            w = torch.where(mass[:, p:p + 1] > 0, w, torch.full_like(w, 1.0 / w.shape[1]))
            values[(name, "weights", p)] = w
        if len(blocks) > 1:
            values[(name, "mixing", None)] = mass / mass.sum(1, keepdim=True)
    circuit = Circuit(default_var_names(num_vars), tuple(regions), names[id(root)],
                      Family("bernoulli"))
    return circuit, values


def load_params(model, values: dict) -> None:
    """Set a compiled model's parameters from probability-space values keyed like its own
    `ir_params()` (shapes taken from there)."""
    from pcc.ir import Param
    params = []
    for prm in model.ir_params():
        v = values[(prm.region, prm.field, prm.index)].reshape(prm.shape)
        params.append(Param(prm.region, prm.field, prm.index, prm.shape,
                            tuple(float(a) for a in v.reshape(-1).tolist())))
    model.load_ir_params(tuple(params))


def agreement(juice_pc, model, x, structure: str, k: int) -> Agreement:
    """log p(x) of both systems on the same rows (PyJuice takes category codes)."""
    import torch
    with torch.no_grad():
        ours = model(x.float()).double()
        theirs = juice_pc(x.long()).reshape(-1).double()
    diff = (ours - theirs).abs()
    return Agreement(structure, k, float(diff.max()),
                     float((diff / theirs.abs().clamp_min(1)).max()), float(theirs.mean()))


# ------------------------------------------------------------------------------ timing
def epoch(step, x, batch: int, warmup: int, device) -> tuple[float, float | None, float]:
    """(seconds for one epoch of `step` over x in batches, peak MiB, mean log-likelihood)."""
    import torch
    for i in range(warmup):
        step(x[i * batch:(i + 1) * batch].to(device))
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    total = 0.0
    for s in range(0, len(x), batch):
        xb = x[s:s + batch].to(device, non_blocking=True)
        total += step(xb) * len(xb)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda" else None
    return seconds, peak, total / len(x)


def pyjuice_step(juice, pc, step_size: float, pseudocount: float):
    optimizer = juice.optim.MiniBatchEM(pc, step_size=step_size, pseudocount=pseudocount)

    def step(xb) -> float:
        lls = pc(xb.long())
        lls.mean().backward()
        optimizer.step()
        return float(lls.mean())
    return step


def pcc_step(model, step_size: float, pseudocount: float, device):
    import pcc
    em = pcc.EM(model, step_size=step_size, pseudocount=pseudocount,
                cuda_graph=device.type == "cuda")
    return lambda xb: em.step(xb.float())


# ------------------------------------------------------------------------------ main
def markdown(info: dict, checks: list, runs: list) -> str:
    lines = [f"**{info['device']}**, torch {info['torch']}, triton {info['triton']}, PyJuice "
             f"{info['pyjuice']}; {info['rows']} rows x 784 binary variables, batch "
             f"{info['batch']}, float32 (`python bench/pyjuice_vs.py`, {info['date']}).", ""]
    for c in checks:
        lines.append(f"Same circuit, same parameters ({c.structure} K={c.k}): log-likelihoods "
                     f"differ by at most {c.max_abs_diff:.2g} ({c.max_rel_diff:.2g} relative; "
                     f"mean {c.mean_ll:.2f}).")
    lines += ["", "| structure | K | parameters | system | epoch s | peak MiB | pcc speedup | "
              "pcc memory |", "|---|---:|---:|---|---:|---:|---:|---:|"]
    by_key = {(r.structure, r.k, r.system): r for r in runs}
    for r in runs:
        other = by_key.get((r.structure, r.k, "pyjuice"))
        speed = mem = "-"
        if r.system == "pcc" and other and r.epoch_s and other.epoch_s:
            speed = f"{other.epoch_s / r.epoch_s:.2f}x"
            if r.peak_mib and other.peak_mib:
                mem = f"{r.peak_mib / other.peak_mib:.2f}x"
        cells = (f"{r.epoch_s:.2f} | {r.peak_mib or 0:.0f}" if not r.error else f"{r.error} | -")
        lines.append(f"| {r.structure} | {r.k} | {r.params:,} | {r.system} | {cells} | {speed} "
                     f"| {mem} |")
    lines += ["", "(pcc speedup = PyJuice epoch time / pcc's; pcc memory = pcc peak / PyJuice "
              "peak. Targets: speedup >= 1.5, memory <= 1.)"]
    return "\n".join(lines) + "\n"


def sizes_of(specs) -> list[tuple[str, int]]:
    out = []
    for spec in specs:
        structure, ks = spec.split(":")
        if structure not in ("hclt", "pd"):
            raise SystemExit(f"--sizes: unknown structure {structure!r} (hclt, pd)")
        out += [(structure, int(k)) for k in ks.split(",")]
    return out


def smoke() -> int:
    """The pcc side of the conversion on a tiny PyJuice-like graph, on the CPU."""
    import torch
    import pcc
    x = synthetic_digits(300)
    tree, root = chow_liu_tree(x)
    root_node = FakeNode.hclt(tree, root, k=3)
    circuit, values = to_pcc(root_node, NUM_VARS)
    model = pcc.compile(circuit, backend="torch", dtype=torch.float64)
    load_params(model, values)
    with torch.no_grad():
        ll = model(x[:16].double())
    exact = root_node.log_likelihood(x[:16])
    diff = float((ll - exact).abs().max())
    print(f"smoke: {len(circuit.regions)} regions; max |pcc - direct| = {diff:.3g} "
          f"(log p about {float(exact.mean()):.1f})")
    return 0 if diff < 1e-8 else 1


class FakeNode:
    """A stand-in for PyJuice's node objects (is_input / is_prod / is_sum, chs, scope,
    num_nodes, get_params) with a direct float64 evaluation, for --smoke and the tests."""

    def __init__(self, kind, chs=(), num_nodes=1, scope=None, params=None):
        self.kind, self.chs, self.num_nodes = kind, list(chs), num_nodes
        self.scope = types.SimpleNamespace(to_list=lambda: list(scope or []))
        self.params = params

    def is_input(self):
        return self.kind == "input"

    def is_prod(self):
        return self.kind == "prod"

    def is_sum(self):
        return self.kind == "sum"

    def get_params(self, as_matrix: bool = False):
        return self.params

    @classmethod
    def hclt(cls, tree, root: int, k: int, seed: int = 0):
        """PyJuice's HCLT layout (`BayesianTreeToHiddenRegionGraph`): a tree leaf is its input;
        an inner variable sums the element-wise product of its children and its input."""
        import networkx as nx
        import torch
        gen = torch.Generator().manual_seed(seed)
        bfs = nx.bfs_tree(tree, root)
        made = {}
        for v in nx.dfs_postorder_nodes(tree, root):
            p1 = torch.rand(k, generator=gen, dtype=torch.float64) * 0.8 + 0.1
            leaf = cls("input", num_nodes=k, scope=[v],
                       params=torch.stack([1 - p1, p1], 1).reshape(-1))
            chs = list(bfs.successors(v))
            if not chs:
                made[v] = leaf
                continue
            prod = cls("prod", [made[c] for c in chs] + [leaf], num_nodes=k)
            k_out = 1 if v == root else k
            w = torch.rand(k_out, k, generator=gen, dtype=torch.float64) + 0.05
            made[v] = cls("sum", [prod], num_nodes=k_out, params=w / w.sum(1, keepdim=True))
        return made[root]

    def log_likelihood(self, x):
        """log of this node's values [B, num_nodes] (float64), directly."""
        import torch
        if self.is_input():
            p1 = self.params.reshape(self.num_nodes, 2)[:, 1]
            xv = x[:, self.scope.to_list()[0]].double().unsqueeze(1)
            out = torch.log(torch.where(xv > 0.5, p1, 1 - p1))
        elif self.is_prod():
            out = sum(c.log_likelihood(x) for c in self.chs)
        else:
            child = torch.cat([c.log_likelihood(x) for c in self.chs], 1)
            out = torch.logsumexp(child.unsqueeze(1) + torch.log(self.params).unsqueeze(0), -1)
        return out.squeeze(1) if out.shape[1] == 1 and self.is_sum() else out


def main() -> int:
    args = parse_args()
    if args.smoke:
        return smoke()
    import torch
    import triton
    import pcc
    if not torch.cuda.is_available():
        print("bench/pyjuice_vs.py needs a CUDA device (PyJuice is CUDA only); --smoke for the "
              "CPU check of the pcc side")
        return 2
    device = torch.device("cuda")
    juice = import_pyjuice(args.pyjuice_cuda_kernels)
    start = time.perf_counter()
    x = load_data(args.data, args.rows)
    tree = chow_liu_tree(x)
    info = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
            "triton": triton.__version__, "pyjuice": getattr(juice, "__version__", "2.6.3"),
            "rows": len(x), "batch": args.batch, "date": time.strftime("%Y-%m-%d")}
    print(" | ".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    checks, runs, skipped = [], [], []
    checked = set()
    for structure, k in sizes_of(args.sizes):
        if time.perf_counter() - start > args.budget:
            skipped.append(f"{structure} K={k}")
            continue
        try:
            root, pc = build_pyjuice(juice, structure, k, tree, device)
            pc.update_parameters()
            circuit, values = to_pcc(root, NUM_VARS)
            model = pcc.compile(circuit, backend="triton").to(device)
            load_params(model, values)
        except Exception as exc:
            runs.append(Run(structure, k, args.batch, "both", error=_short(exc)))
            print(f"  {structure} K={k}: {runs[-1].error}", flush=True)
            continue
        if structure not in checked:
            checks.append(agreement(pc, model, x[:256].to(device), structure, k))
            checked.add(structure)
            print(f"  check {asdict(checks[-1])}", flush=True)
            if not checks[-1].max_rel_diff <= 1e-5:
                print("  the two circuits differ: not timing them", flush=True)
                continue
        n_params = sum(p.numel() for p in model.parameters())
        for system, step in (("pyjuice", lambda: pyjuice_step(juice, pc, args.step_size,
                                                                 args.pseudocount)),
                             ("pcc", lambda: pcc_step(model, args.step_size, args.pseudocount,
                                                      device))):
            run = Run(structure, k, args.batch, system, n_params)
            try:
                run.epoch_s, run.peak_mib, run.mean_ll = epoch(step(), x, args.batch,
                                                               args.warmup, device)
            except Exception as exc:
                run.error = _short(exc)
            runs.append(run)
            print(f"  {asdict(run)}", flush=True)
        pc = model = None  # free this size's memory before the next
        torch.cuda.empty_cache()
    text = markdown(info, checks, runs)
    print(text)
    if skipped:
        print("skipped (time budget): " + ", ".join(skipped))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "checks": [asdict(c) for c in checks],
                       "runs": [asdict(r) for r in runs], "skipped": skipped}, f, indent=1)
    bad = any(r.error for r in runs) or any(not c.max_rel_diff <= 1e-5 for c in checks)
    return 1 if bad else 0


def _short(exc: Exception) -> str:
    lines = str(exc).strip().splitlines() or [""]
    return f"{type(exc).__name__}: {lines[0][:200]}"


if __name__ == "__main__":
    sys.exit(main())
