"""pcc side by side with the EinsumNetworks reference code, in one run on this machine.

The reference is https://github.com/cambridge-mlg/EinsumNetworks, run from a checkout whose path
you give (its code is not part of pcc; it needs numpy, networkx and pillow, which pcc's dev
install has). networkx >= 3 no longer has `read_gpickle`/`write_gpickle`, which the reference
imports but never calls here; they are stubbed when missing.

Circuit: Poon-Domingos 28x28 with delta 7 (cut points 7, 14, 21 on both axes: the reference's
MNIST demo with `pd_num_pieces = [4]`), K units per region, 1 at the root, Bernoulli leaves
(the reference's BinomialArray with N = 1), float32, one torch thread, batch 100 of random
binary images.

1. Same circuit: counts regions, partitions, leaves and parameters of both; maps every product
   of the reference to a partition of pcc's circuit by the scopes of its children (a bijection,
   or the script stops); writes pcc's parameters into the reference and compares log p(x) on one
   batch in float64 and float32.
2. Time, interleaved (medians, alternating order): forward (no autograd), and a training step
   = forward + backward + EM update (pcc: `pcc.EM.step`, online EM with step 0.05; reference:
   forward, backward of the summed log-likelihood, `em_process_batch` with online EM frequency 1
   and step 0.05, as in its demo).
3. Peak memory of two such steps (see bench/memory.py: malloc'd bytes and RSS, as growth), each
   system in a fresh process, after a warm-up on a K=2 model of the same kind.

    python bench/einet_ref.py /path/to/EinsumNetworks [--k 40 10] [--batch 100] [--repeats 9]
                              [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from memory import peak_growth  # noqa: E402
from sidebyside import dump_json, interleaved_medians, machine  # noqa: E402

torch.set_num_threads(1)

SIDE, DELTA, EM_STEP = 28, 7, 0.05


# ----------------------------------------------------------------------------- the two systems
def load_reference(checkout: str):
    """The reference's `Graph` and `EinsumNetwork` modules from a checkout (repo root or src/)."""
    src = os.path.join(checkout, "src")
    src = src if os.path.isdir(os.path.join(src, "EinsumNetwork")) else checkout
    if not os.path.isdir(os.path.join(src, "EinsumNetwork")):
        sys.exit(f"einet_ref.py: {checkout}: no EinsumNetwork package (in it or in its src/)")
    import networkx
    for name in ("read_gpickle", "write_gpickle"):  # removed in networkx 3; unused here
        if not hasattr(networkx, name):
            setattr(networkx, name, None)
    sys.path.insert(0, src)
    from EinsumNetwork import EinsumNetwork, Graph
    return Graph, EinsumNetwork


def build_reference(ref, k: int):
    graph_mod, einet_mod = ref
    graph = graph_mod.poon_domingos_structure(shape=(SIDE, SIDE), delta=[DELTA])
    args = einet_mod.Args(num_var=SIDE * SIDE, num_dims=1, num_classes=1, num_sums=k,
                          num_input_distributions=k, exponential_family=einet_mod.BinomialArray,
                          exponential_family_args={"N": 1}, online_em_frequency=1,
                          online_em_stepsize=EM_STEP)
    einet = einet_mod.EinsumNetwork(graph, args)
    einet.initialize()
    return einet


def _input_class():
    from pcc.ir import Input
    return Input


def build_pcc(k: int, dtype: torch.dtype = torch.float32):
    import pcc  # imported here: the whole-process memory measure counts it (see `whole_child`)
    from pcc.structures import poon_domingos
    return pcc.compile(poon_domingos(SIDE, SIDE, [DELTA], k=k), backend="torch", dtype=dtype)


def batch(n: int) -> torch.Tensor:
    return (torch.rand(n, SIDE * SIDE, generator=torch.Generator().manual_seed(0)) < 0.3).float()


def steps(system: str, model, x: torch.Tensor, ref=None) -> dict:
    """{'forward': fn, 'train': fn} for one system."""
    if system == "pcc":
        from pcc.em import EM
        em = EM(model, step_size=EM_STEP)
        return {"forward": lambda: _no_grad(model, x), "train": lambda: em.step(x)}

    def train():
        ref[1].log_likelihoods(model(x)).sum().backward()
        model.em_process_batch()
    return {"forward": lambda: _no_grad(model, x), "train": train}


def _no_grad(model, x):
    with torch.no_grad():
        model(x)


# ----------------------------------------------------------------------------- same circuit
@dataclass
class Structure:
    sum_regions: int
    input_regions: int
    partitions: int
    sum_weights: int
    mixing_weights: int
    leaf_params: int

    @property
    def parameters(self) -> int:
        return self.sum_weights + self.mixing_weights + self.leaf_params


def pcc_structure(model) -> Structure:
    c = model.circuit
    sums = [r for r in c.regions if not isinstance(r, _input_class())]
    mixing = sum(int(getattr(model, f"mix_mask_{i}").sum()) * p.shape[-1]
                 for i, p in enumerate(model.mix_logits))
    return Structure(len(sums), len(c.regions) - len(sums), sum(len(r.partitions) for r in sums),
                     sum(p.numel() for p in model.sum_logits), mixing,
                     sum(p.numel() for p in model.leaf_params.parameters()))


def reference_structure(ref, einet) -> Structure:
    graph_mod, einet_mod = ref
    g = einet.graph
    einsums = [l for l in einet.einet_layers if isinstance(l, einet_mod.EinsumLayer)]
    mixings = [l for l in einet.einet_layers if isinstance(l, einet_mod.EinsumMixingLayer)]
    return Structure(len(graph_mod.get_sums(g)), len(graph_mod.get_leaves(g)),
                     len(graph_mod.get_products(g)), sum(l.params.numel() for l in einsums),
                     sum(int(l.params_mask.sum()) for l in mixings),
                     einet.einet_layers[0].ef_array.params.numel())


def region_scopes(circuit) -> dict[str, tuple[int, ...]]:
    scopes: dict[str, tuple[int, ...]] = {}
    for r in circuit.regions:  # children first
        scopes[r.name] = tuple(sorted(r.scope)) if isinstance(r, _input_class()) else tuple(sorted(
            v for child in r.partitions[0] for v in scopes[child]))
    return scopes


def copy_parameters(ref, model, einet) -> None:
    """Write pcc's parameters into the reference, matching its products to pcc's partitions by
    the scopes of their children; stop unless the match is one to one."""
    _, einet_mod = ref
    circuit = model.circuit
    scopes = region_scopes(circuit)
    by_scope = {s: name for name, s in scopes.items()}
    regions = {r.name: r for r in circuit.regions}
    params = {(p.region, p.field, p.index or 0): torch.tensor(p.values, dtype=torch.float64)
              .reshape(p.shape) for p in model.ir_params()}

    def partition_of(product) -> tuple[str, int, bool]:
        """(pcc region, partition index, whether its children come in the other order)."""
        left, right = sorted(einet.graph.successors(product))
        name = by_scope[next(iter(einet.graph.predecessors(product))).scope]
        for p, (a, b) in enumerate(regions[name].partitions):
            if {scopes[a], scopes[b]} == {left.scope, right.scope}:
                return name, p, scopes[a] != left.scope
        sys.exit(f"einet_ref.py: the reference's product of {len(left.scope)} | "
                 f"{len(right.scope)} variables under {name} is no partition in pcc's circuit")

    init, used, products_seen = {}, set(), 0
    for layer in einet.einet_layers[1:]:
        values = torch.zeros(layer.params_shape, dtype=torch.float64)
        if isinstance(layer, einet_mod.EinsumLayer):
            for c, product in enumerate(layer.products):
                name, p, flipped = partition_of(product)
                used.add((name, p))
                products_seen += 1
                w = params[(name, "weights", p)]  # [Ko, Ka, Kb] -> the reference's [Kl, Kr, Ko]
                values[..., c] = w.permute(2, 1, 0) if flipped else w.permute(1, 2, 0)
        else:
            products = layer.layers[0].products
            for c, node in enumerate(layer.nodes):
                for j, comp in enumerate(layer.mixing_component_idx[node]):
                    name, p, _ = partition_of(products[comp])
                    values[:, c, j] = params[(name, "mixing", 0)][:, p]
        init[layer] = values
    partitions = sum(len(r.partitions) for r in regions.values() if not isinstance(r, _input_class()))
    if not products_seen == len(used) == partitions:
        sys.exit("einet_ref.py: the reference's products and pcc's partitions do not match one "
                 "to one")
    leaves = einet.einet_layers[0]
    phi = torch.zeros(leaves.ef_array.params_shape, dtype=torch.float64)
    for node in leaves.nodes:
        name = by_scope[node.scope]
        for s, v in enumerate(regions[name].scope):
            phi[v, :, node.einet_address.replica_idx, 0] = params[(name, "p", 0)][:, s]
    init[leaves] = phi
    einet.initialize(init)


def compare_log_likelihoods(ref, k: int, x: torch.Tensor) -> dict[str, float]:
    """Max |log p_pcc - log p_ref| over a batch with shared parameters (pcc's, made in float64),
    computed in float64 and in float32."""
    model = build_pcc(k, torch.float64)
    einet = build_reference(ref, k)
    copy_parameters(ref, model, einet)
    out = {}
    for dtype in (torch.float64, torch.float32):
        m, e = model.to(dtype), einet.to(dtype)
        with torch.no_grad():
            ours, theirs = m(x.to(dtype)), e(x.to(dtype))[:, 0]
        out[str(dtype).removeprefix("torch.")] = float((ours - theirs).abs().max())
        out["log_p_mean"] = float(ours.mean())
    return out


# ----------------------------------------------------------------------------- memory child
def child(checkout: str, system: str, k: int, what: str, batch_size: int) -> None:
    """In a fresh process: warm up on K=2, then print the peak growth of two steps as JSON."""
    ref = load_reference(checkout) if system == "reference" else None
    build = (lambda kk: build_reference(ref, kk)) if ref else build_pcc
    for warm in ("forward", "train"):
        steps(system, build(2), batch(4), ref)[warm]()
    fn = steps(system, build(k), batch(batch_size), ref)[what]
    print(json.dumps(peak_growth(lambda: (fn(), fn()))))


def whole_child(checkout: str, system: str, k: int, batch_size: int) -> None:
    """In a fresh process that has imported torch (and this script's helpers) only: the peak
    RSS growth of importing the system, building its K model and two training steps, as JSON."""
    def work():
        ref = load_reference(checkout) if system == "reference" else None
        model = build_reference(ref, k) if ref else build_pcc(k)
        fn = steps(system, model, batch(batch_size), ref)["train"]
        fn()
        fn()
    print(json.dumps(peak_growth(work)))


def peak_memory(checkout: str, system: str, k: int, what: str, batch_size: int) -> dict:
    """`child` (what = 'forward' or 'train') or `whole_child` (what = 'whole') in a fresh
    process."""
    flag = ["--whole", system, str(k)] if what == "whole" else ["--child", system, str(k), what]
    out = subprocess.run([sys.executable, __file__, checkout, *flag, "--batch", str(batch_size)],
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"einet_ref.py: the memory measurement of {system} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkout", help="path of an EinsumNetworks checkout (repo root or its src/)")
    ap.add_argument("--k", type=int, nargs="+", default=[40, 10], help="units per region")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=9, help="timed rounds per step")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--whole", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.checkout, args.child[0], int(args.child[1]), args.child[2], args.batch)
        return
    if args.whole:
        whole_child(args.checkout, args.whole[0], int(args.whole[1]), args.batch)
        return
    ref = load_reference(args.checkout)
    commit = subprocess.run(["git", "-C", args.checkout, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    results = {"machine": machine(), "reference_commit": commit, "batch": args.batch, "runs": []}
    print(f"# {results['machine']}")
    print(f"# EinsumNetworks reference at {commit}; PD {SIDE}x{SIDE} delta {DELTA}, Bernoulli "
          f"leaves, batch {args.batch}, float32")
    x = batch(args.batch)
    for k in args.k:
        ours, theirs = build_pcc(k), build_reference(ref, k)
        s_ours, s_theirs = pcc_structure(ours), reference_structure(ref, theirs)
        agree = compare_log_likelihoods(ref, k, x)
        print(f"\n## K={k}: structure (pcc | reference)")
        for field in ("sum_regions", "input_regions", "partitions", "sum_weights",
                      "mixing_weights", "leaf_params", "parameters"):
            a, b = getattr(s_ours, field), getattr(s_theirs, field)
            print(f"  {field:15s} {a:>12,} | {b:>12,}" + ("" if a == b else "   DIFFERENT"))
        print(f"  shared parameters: max |log p difference| {agree['float64']:.2e} (float64), "
              f"{agree['float32']:.2e} (float32); mean log p {agree['log_p_mean']:.2f}")

        runs = {}
        for what in ("forward", "train"):
            t = interleaved_medians({"pcc": steps("pcc", ours, x)[what],
                                     "reference": steps("reference", theirs, x, ref)[what]},
                                    args.repeats)
            runs[what] = {"pcc_time": asdict(t["pcc"]), "reference_time": asdict(t["reference"]),
                          **{f"{s}_peak": peak_memory(args.checkout, s, k, what, args.batch)
                             for s in ("pcc", "reference")}}
        print(f"\n## K={k}: time in ms, medians of {args.repeats} interleaved rounds")
        print(f"{'step':>8} {'pcc wall':>9} {'ref wall':>9} {'speedup':>7} | {'pcc CPU':>9} "
              f"{'ref CPU':>9} {'speedup':>7}")
        _rows(runs, "time", ("wall", "cpu"), 1e3, lambda ours, theirs: theirs / ours)
        runs["whole"] = {f"{s}_peak": peak_memory(args.checkout, s, k, "whole", args.batch)
                         for s in ("pcc", "reference")}
        print(f"\n## K={k}: peak memory growth in MiB, a fresh process each: over two steps "
              "(forward, train), and from after `import torch` to the end of two training "
              "steps, importing the system and building the model included (whole)")
        print(f"{'step':>8} {'pcc mall':>9} {'ref mall':>9} {'ratio':>7} | {'pcc RSS':>9} "
              f"{'ref RSS':>9} {'ratio':>7}")
        _rows(runs, "peak", ("malloc", "rss"), 2**-20, lambda ours, theirs: ours / theirs)
        results["runs"].append({"k": k, "pcc": asdict(s_ours), "reference": asdict(s_theirs),
                                "agreement": agree, "steps": runs})
    print("\n(train = forward + backward + EM update; speedup = reference time / pcc time; "
          "ratio = pcc peak / reference peak; mall = malloc'd bytes)")
    if args.json:
        dump_json(args.json, results)


def _rows(runs: dict, key: str, fields: tuple[str, str], scale: float, ratio) -> None:
    """One line per step: pcc, reference and ratio(pcc, reference) for each field."""
    for what, r in runs.items():
        ours, theirs = r[f"pcc_{key}"], r[f"reference_{key}"]
        print(f"{what:>8} " + " | ".join(
            f"{ours[f] * scale:9.1f} {theirs[f] * scale:9.1f} {ratio(ours[f], theirs[f]):6.2f}x"
            for f in fields))


if __name__ == "__main__":
    main()
