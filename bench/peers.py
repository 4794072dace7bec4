"""pcc side by side with SPFlow 1.1.0 and deeprob-kit 1.1.0 on the same RAT-SPN, in one run.

Runs from pcc's venv. The peers live in a venv of their own, given with --peers; its
site-packages is put at the end of sys.path, so torch and numpy are pcc's and only what pcc's
venv lacks comes from there. Make it with the same CPU torch:

    python3 -m venv PEERS && PEERS/bin/pip install torch==2.13.0 && PEERS/bin/pip install spflow==1.1.0
    PEERS/bin/pip install --no-deps deeprob-kit==1.1.0      # it requires torchvision, never imported
    PEERS/bin/pip install joblib scikit-learn tqdm networkx pydot matplotlib   # deeprob's init

(Not a pyproject extra: deeprob-kit's requirement of torchvision makes pip replace the CPU torch
with a CUDA build. Never a test dependency.)

Circuit: a RAT-SPN over N = 784 binary variables (Bernoulli leaves), depth D = 4, R replicas, K
units per region, one root unit; batch 100 of random binary rows, float32, one torch thread.
  SPFlow:   RatSPN(Bernoulli(out_channels=K, num_repetitions=R, validate_args=False),
            n_root_nodes=1, n_region_nodes=K, num_repetitions=R, depth=D, outer_product=True)
  deeprob:  BernoulliRatSpn(N, rg_depth=D, rg_repetitions=R, rg_batch=K, rg_sum=K): its root is
            one flat sum over the R*K*K top products (R parameters fewer than a per-replica sum
            plus a mixture; the same family of densities)
  pcc:      the circuit read off each peer's model (structure and parameters), compiled with the
            torch backend.

1. Same log-likelihoods: pcc's circuit read off each peer computes log p(x) on a batch with and
   without missing values (NaN, every peer's marker too) in float64; the largest difference is
   printed, with the parameter counts of all.
2. Time, interleaved (medians of alternating rounds, wall clock and CPU time), each peer against
   pcc on the circuit read off SPFlow's model (deeprob's has the same shapes): forward (no
   autograd); an EM step (pcc: `pcc.EM.step`, online; SPFlow: `expectation_maximization(model,
   x, max_steps=1)`, its full-batch closed-form step); an Adam step (forward, backward of the
   mean negative log-likelihood, `Adam.step`) for all three. Before every timed step (untimed),
   each model's parameters are restored, so that SPFlow's EM, which has no prior, never walks
   to probabilities of 0 or 1 and NaN on the repeated batch.

    python bench/peers.py --peers /path/to/peer-venv [--sizes 10x10 20x10] [--batch 100]
                          [--repeats 7] [--json out.json]
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
from dataclasses import asdict, replace

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import pcc  # noqa: E402
from pcc.em import EM  # noqa: E402
from pcc.ir import Family, Param  # noqa: E402
from pcc.structures.builder import CircuitBuilder  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sidebyside import dump_json, interleaved_medians, machine  # noqa: E402

torch.set_num_threads(1)

NUM_VARS, DEPTH, SEED = 784, 4, 0


def add_peers(venv: str) -> dict[str, str]:
    """Append the peers' site-packages to sys.path; return their versions."""
    found = glob.glob(os.path.join(venv, "lib", "python*", "site-packages"))
    if not found:
        sys.exit(f"peers.py: {venv}: no lib/python*/site-packages (is it a venv?)")
    sys.path.append(found[0])
    try:
        import deeprob  # noqa: F401
        import spflow
    except ImportError as e:
        sys.exit(f"peers.py: {venv}: {e} (see the docstring for what it needs)")
    from importlib.metadata import PathDistribution
    from pathlib import Path
    versions = {}
    for name in ("spflow", "deeprob_kit"):
        meta = glob.glob(os.path.join(found[0], f"{name}-*.dist-info"))
        versions[name] = PathDistribution(Path(meta[0])).version if meta else "unknown"
    versions["spflow"] = getattr(spflow, "__version__", versions["spflow"])
    return versions


# ----------------------------------------------------------------------------- the models
def build_spflow(k: int, replicas: int):
    from spflow.meta.data.scope import Scope
    from spflow.modules.leaves import Bernoulli
    from spflow.zoo.rat import RatSPN
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    leaf = Bernoulli(scope=Scope(list(range(NUM_VARS))), out_channels=k, num_repetitions=replicas,
                     validate_args=False)
    return RatSPN([leaf], n_root_nodes=1, n_region_nodes=k, num_repetitions=replicas,
                  depth=DEPTH, outer_product=True)


def build_deeprob(k: int, replicas: int):
    from deeprob.spn.models.ratspn import BernoulliRatSpn
    torch.manual_seed(SEED)
    return BernoulliRatSpn(NUM_VARS, rg_depth=DEPTH, rg_repetitions=replicas, rg_batch=k,
                           rg_sum=k, random_state=SEED)


def spflow_log_p(model, x):
    return model.log_likelihood(x).reshape(-1)


def deeprob_log_p(model, x):
    return model(x).reshape(-1)


# ----------------------------------------------------------------------------- read off as .pc
def _weights(w: torch.Tensor) -> tuple[float, ...]:
    return tuple(w.double().reshape(-1).tolist())


class _Reader:
    """Collects regions and probability-space parameters for a pcc circuit."""

    def __init__(self, k: int):
        self.k = k
        self.builder = CircuitBuilder(NUM_VARS, k, Family("bernoulli"))
        self.params: list[Param] = []

    def leaf(self, name: str, scope, probs: torch.Tensor) -> str:
        """An input region; probs [K, |scope|] for the variables of `scope` in that order."""
        order = np.argsort(np.asarray(scope))
        values = probs[:, torch.as_tensor(order)]
        self.params.append(Param(name, "p", None, tuple(values.shape), _weights(values)))
        return self.builder.input(name, scope)

    def sum(self, name: str, children: tuple[str, str], w: torch.Tensor) -> str:
        """A region with one partition; w [Ko, K_left, K_right]."""
        self.params.append(Param(name, "weights", 0, tuple(w.shape), _weights(w)))
        return self.builder.sum(name, [children])

    def root(self, partitions: list[tuple[str, str]], w: torch.Tensor, mixing: torch.Tensor):
        """The root: one partition per replica, w [R, K_left, K_right], mixing [R]."""
        for p, wp in enumerate(w):
            self.params.append(Param("top", "weights", p, (1, *wp.shape), _weights(wp)))
        self.params.append(Param("top", "mixing", None, (1, len(mixing)), _weights(mixing)))
        self.builder.sum("top", partitions)
        return replace(self.builder.build("top"), params=tuple(self.params))


def circuit_from_spflow(model, k: int, replicas: int):
    """SPFlow's RatSPN as a pcc circuit: Factorize's groups are the input regions; a Sum at level
    l pairs feature i with feature i + F_l of the level below (consecutive split), its channel c
    being the units `unraveled_channel_indices[c]` of the two."""
    sums, node = [], model.root_node  # RepetitionMixingLayer
    mixing = node.weights.detach().reshape(replicas)
    node = node.inputs
    while type(node).__name__ == "Sum":
        outer = node.inputs
        sums.append((node, outer.unraveled_channel_indices))
        node = outer.inputs[0].inputs  # OuterProduct <- SplitConsecutive <- level below
    factorize = node
    leaf = factorize.inputs[0]
    probs = leaf.probs.detach()  # [N, K, R]
    groups = factorize.indices  # [N, 2^D, R]
    sums.reverse()  # bottom up
    reader = _Reader(k)
    top_partitions, top_weights = [], []
    for r in range(replicas):
        names = []
        for o in range(groups.shape[1]):
            scope = torch.nonzero(groups[:, o, r]).reshape(-1).tolist()
            names.append(reader.leaf(f"r{r}_0_{o}", scope, probs[scope, :, r].t()))
        for level, (sum_node, channels) in enumerate(sums, start=1):
            w = sum_node.weights.detach()[..., r]  # [F, K*K, Ko]
            half = w.shape[0]
            dense = torch.zeros(half, w.shape[2], k, k, dtype=w.dtype)
            dense[:, :, channels[:, 0], channels[:, 1]] = w.transpose(1, 2)
            pairs = [(names[i], names[i + half]) for i in range(half)]
            if level == len(sums):
                top_partitions.append(pairs[0])
                top_weights.append(dense[0, 0])
            else:
                names = [reader.sum(f"r{r}_{level}_{i}", pair, dense[i])
                         for i, pair in enumerate(pairs)]
    return reader.root(top_partitions, torch.stack(top_weights), mixing)


def circuit_from_deeprob(model, k: int):
    """deeprob's BernoulliRatSpn as a pcc circuit: its layer lists of regions (leaves first),
    partition p of a layer pairs regions 2p and 2p+1 of the layer below; the flat root over the
    R*K*K top products V becomes per-replica weights V_r / sum V_r mixed by sum V_r."""
    layers = model.rg_layers  # regions, partitions, regions, ..., partitions, [root]
    probs = torch.sigmoid(model.base_layer.logits.detach())  # [regions, K, region size]
    reader = _Reader(k)
    names = [reader.leaf(f"d0_{i}", list(region), probs[i])
             for i, region in enumerate(layers[0])]
    sum_layers = [m for m in model.layers if type(m).__name__ == "SumLayer"]
    for level, layer in enumerate(sum_layers, start=1):
        w = torch.softmax(layer.weight.detach(), 2)  # [regions, Ko, K*K]
        names = [reader.sum(f"d{level}_{i}", (names[2 * i], names[2 * i + 1]),
                            w[i].reshape(-1, k, k)) for i in range(len(w))]
    v = torch.softmax(model.root_layer.weight.detach()[0], 0).reshape(-1, k, k)  # [R, K, K]
    mass = v.sum((1, 2))
    pairs = [(names[2 * r], names[2 * r + 1]) for r in range(len(v))]
    return reader.root(pairs, v / mass.reshape(-1, 1, 1), mass)


def pcc_parameters(model) -> int:
    mixing = sum(int(getattr(model, f"mix_mask_{i}").sum()) * p.shape[-1]
                 for i, p in enumerate(model.mix_logits))
    return (sum(p.numel() for p in model.sum_logits) + mixing
            + sum(p.numel() for p in model.leaf_params.parameters()))


def largest_difference(circuit, peer, log_p, x: torch.Tensor) -> float:
    """max |log p_pcc - log p_peer| over x, in float64 (the peer converted for it)."""
    ours = pcc.compile(circuit, backend="torch", dtype=torch.float64)
    with torch.no_grad():
        return float((ours(x.double()) - log_p(peer, x.double())).abs().max())


# ----------------------------------------------------------------------------- steps
def batch(n: int, missing: float = 0.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(n, NUM_VARS, generator=gen) < 0.3).float()
    if missing:
        x[torch.rand(x.shape, generator=gen) < missing] = float("nan")
    return x


class Restored:
    """Runs `step` after restoring the model's parameters (the restoring is not timed: it is
    `before`)."""

    def __init__(self, model):
        self.model = model
        self.saved = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def before(self):
        with torch.no_grad():
            for k, v in self.model.state_dict().items():
                v.copy_(self.saved[k])


def adam_step(model, log_p, x):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        (-log_p(model, x).mean()).backward()
        opt.step()
    return step


def no_grad(log_p, model, x):
    def step():
        with torch.no_grad():
            log_p(model, x)
    return step


def spflow_em(model, x):
    from spflow.learn import expectation_maximization
    return lambda: expectation_maximization(model, x, max_steps=1)


def pcc_log_p(model, x):
    return model(x)


def measure(size: tuple[int, int], batch_size: int, repeats: int) -> dict:
    k, replicas = size
    x, x_missing = batch(batch_size), batch(batch_size, 0.2)
    # read off in float64 (the float32 parameters convert exactly, and back)
    spflow_model = build_spflow(k, replicas).double()
    deeprob_model = build_deeprob(k, replicas).double()
    from_spflow = circuit_from_spflow(spflow_model, k, replicas)
    from_deeprob = circuit_from_deeprob(deeprob_model, k)
    agreement = {}
    for name, circuit, peer, log_p in (("spflow", from_spflow, spflow_model, spflow_log_p),
                                       ("deeprob", from_deeprob, deeprob_model, deeprob_log_p)):
        agreement[name] = {label: largest_difference(circuit, peer, log_p, data)
                           for label, data in (("observed", x), ("20% missing", x_missing))}
        peer.float()
    ours = pcc.compile(from_spflow, backend="torch")
    counts = {"pcc": pcc_parameters(ours),
              "pcc (read off deeprob)": pcc_parameters(pcc.compile(from_deeprob, backend="torch")),
              "spflow": sum(p.numel() for p in spflow_model.parameters()),
              "deeprob": sum(p.numel() for p in deeprob_model.parameters())}
    models = {"pcc": ours, "spflow": spflow_model, "deeprob": deeprob_model}
    log_ps = {"pcc": pcc_log_p, "spflow": spflow_log_p, "deeprob": deeprob_log_p}
    restore = {name: Restored(m) for name, m in models.items()}
    em = EM(ours, step_size=0.1)
    kinds = {
        "forward": {n: no_grad(log_ps[n], models[n], x) for n in models},
        "EM step": {"pcc": lambda: em.step(x), "spflow": spflow_em(spflow_model, x)},
        "Adam step": {n: adam_step(models[n], log_ps[n], x) for n in models},
    }
    times = {}
    for kind, steps in kinds.items():
        t = interleaved_medians(steps, repeats, before={n: restore[n].before for n in steps})
        times[kind] = {n: asdict(v) for n, v in t.items()}
    return {"k": k, "replicas": replicas, "parameters": counts, "agreement": agreement,
            "times": times}


def report(run: dict, repeats: int) -> None:
    k, r = run["k"], run["replicas"]
    print(f"\n## RAT-SPN N={NUM_VARS} D={DEPTH} R={r} K={k}")
    print("parameters: " + ", ".join(f"{n} {c:,}" for n, c in run["parameters"].items()))
    for peer, diffs in run["agreement"].items():
        print(f"same log-likelihoods, pcc vs {peer} on shared parameters (float64): max |diff| "
              + ", ".join(f"{d:.1e} ({label})" for label, d in diffs.items()))
    print(f"medians of {repeats} interleaved rounds; ratio = peer time / pcc time")
    print(f"{'step':>10} {'pcc ms':>9} {'spflow ms':>10} {'ratio':>7} {'deeprob ms':>11} "
          f"{'ratio':>7} | {'cpu: pcc':>9} {'spflow':>9} {'ratio':>7} {'deeprob':>9} {'ratio':>7}")
    for kind, t in run["times"].items():
        cells = []
        for clock in ("wall", "cpu"):
            ours = t["pcc"][clock]
            row = f"{ours * 1e3:9.1f}"
            for peer, width in (("spflow", 10 if clock == "wall" else 9),
                                ("deeprob", 11 if clock == "wall" else 9)):
                if peer in t:
                    row += f" {t[peer][clock] * 1e3:{width}.1f} {t[peer][clock] / ours:6.1f}x"
                else:
                    row += f" {'-':>{width}} {'-':>7}"
            cells.append(row)
        print(f"{kind:>10} {cells[0]} | {cells[1]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", required=True, help="the peers' venv (see the docstring)")
    ap.add_argument("--sizes", nargs="+", default=["10x10", "20x10"],
                    help="KxR: units per region x replicas (default: 10x10 20x10)")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=7, help="timed rounds per step")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    sizes = []
    for s in args.sizes:
        try:
            k, r = (int(v) for v in s.lower().split("x"))
        except ValueError:
            sys.exit(f"peers.py: --sizes: '{s}' is not KxR, e.g. 10x10")
        sizes.append((k, r))
    versions = add_peers(args.peers)
    results = {"machine": machine(), "versions": versions, "batch": args.batch, "runs": []}
    print(f"# {results['machine']}")
    print(f"# pcc {pcc.__version__ if hasattr(pcc, '__version__') else ''} (torch backend), "
          f"SPFlow {versions['spflow']}, deeprob-kit {versions['deeprob_kit']}; batch "
          f"{args.batch}, float32")
    for size in sizes:
        run = measure(size, args.batch, args.repeats)
        report(run, args.repeats)
        results["runs"].append(run)
    if args.json:
        dump_json(args.json, results)


if __name__ == "__main__":
    main()
