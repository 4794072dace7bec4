"""pcc beside cirkit (libcirkit 0.3.1) on the same circuits, in one run: forward, EM step, Adam
step, peak memory of each step, and the plain-`bmm` floor of the same multiply-adds.

cirkit is an optional benchmark extra (`pip install -e '.[bench]'`), never a test dependency.
One process, one torch thread, float32, the same rows for every system; the systems are timed
in alternating rounds and compared by their medians (bench/sidebyside.py).

Circuits (K units per region, 1 at the root; binary data, so Bernoulli leaves in pcc and
Categorical(2) input layers in cirkit):
  hclt      pcc's HCLT of a debd set (`pcc.structures.hidden_chow_liu_tree`, one tree), against
            (a) the same circuit written with cirkit's symbolic layers (`to_cirkit`): per variable
                a Categorical input layer; per tree node a Hadamard layer over its leaf and its
                children's edge sums, then a dense K x K sum layer; pcc's parameters copied in;
            (b) cirkit's own HCLT template, a different circuit: its ChowLiuTree region graph of
                the training rows built with sum_product="cp" exactly as
                `templates.data_modalities.tabular_data(region_graph="chow-liu-tree")` does (the
                same two calls, made here only to pass `chunk_size`: tabular_data's mutual
                information allocates vars^2 * rows * 8 bytes, 15 GB on bbc); cirkit's own
                initialization; its parameter count is printed.
  rbt-cp    cirkit's `RandomBinaryTree(vars, seed)` region graph with sum_product="cp" (a dense
            K x K sum on each child of a region, then a Hadamard product; cirkit's usual layer).
  rbt-cpt   the same region graph with sum_product="cp-t" (a Hadamard product, then one dense sum).
  pd        cirkit's `PoonDomingos((1, side, side), delta)` with sum_product="tucker" (Kronecker
            products, then dense sums; mixing layers over a region's partitions), on random binary
            images.
For the last three the region graph is dumped to cirkit's JSON and read by pcc's cirkit import
(`pcc.interchange.load_circuit`), which makes Kronecker (`*`) products and no sums over the
inputs: for cp-t every partition is made element-wise (`.*`), for cp also a one-child K x K sum
region is put over every input region. cirkit's side is that pcc circuit written with cirkit's
layers, checked to be the same layer graph (layer kinds, units, arities, scopes, wiring) as
cirkit's own `RegionGraph.build_circuit` of the region graph, with pcc's parameters copied in.

Agreement first, wherever the circuits are the same: log-likelihoods of pcc and cirkit on the
largest batch, in float64 (cirkit built with float64 parameters) and float32; the run stops unless
they agree to 1e-10 (float64) and 1e-5 (float32) relative. cirkit clamps every log-value at
LOG_CLAMP_MIN = -708.40 (backend/torch/utils.py): where pcc's initialization gives rows below it
(bbc), cirkit returns that constant; this is printed, and the parameters are then warm-started
by full-batch pcc EM steps on the rows until every row is above it (time per step does not depend
on the values). cirkit's template keeps its own initialization; where it returns the clamp for
every row, its EM and Adam steps are not compared (its gradients are zero there).

Steps, each timed on the same rows:
  forward    log p(x) without autograd, as inference: each system's forward has a model of its
             own whose parameters stay fixed between calls (pcc makes its weights once per change
             of its parameters, cirkit computes its parameters within every call; the cost of
             pcc's making them after a change is inside its EM and Adam steps); cirkit: a circuit
             with plain probability parameters
  EM step    pcc: `pcc.EM(model, step_size, pseudocount).step(x)`; cirkit: its EM optimizer
             (`cirkit.backend.torch.em_optimizer.EM`, lr = step_size) on a circuit with
             unnormalized, convex-initialized parameters (activation "none"), as it requires:
             zero_grad, log p(x).sum().backward(), step
  Adam step  forward, backward of the mean negative log-likelihood, Adam.step (cirkit: softmax
             parameterization, as its notebooks train)
Before every timed EM and Adam step the model's parameters are restored (not timed).
The floor: one `torch.bmm` per weighted op of pcc's plan with that op's shapes (einsum op
[N, B, K1*..*Ka] x [N, K1*..*Ka, K]; Hadamard op [N, B, K] x [N, K, K]; mix op as [N*K, B, P] x
[N*K, P, 1]), on preallocated float32 tensors, no transcendental functions; the EM and Adam
floor adds the backward's two bmm per op (input and weight gradients). Leaves are not counted.
Peak memory: each (system, step) in a fresh process (bench/memory.py: malloc'd bytes and RSS as
growth), after one warm-up step on 4 rows, over two steps at the largest batch.

    python bench/cirkit_vs.py /work/shared/data/debd/accidents [more debd dirs] \\
        [--cases hclt rbt-cp rbt-cpt pd] [--batch 100 512] [--repeats 15] [--k 32] [--pd-k 40]
        [--no-memory] [--json out.json] [--markdown out.md]
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import pcc  # noqa: E402
from pcc.data import load_data, load_debd  # noqa: E402
from pcc.em import EM  # noqa: E402
from pcc.errors import PcError  # noqa: E402
from pcc.interchange import load_circuit  # noqa: E402
from pcc.ir import Circuit, Family, Input, Sum  # noqa: E402
from pcc.passes.plan import EinsumOp, HadamardOp, MixOp, Plan  # noqa: E402
from pcc.structures import hidden_chow_liu_tree  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from memory import peak_growth  # noqa: E402
from sidebyside import dump_json, interleaved_medians, machine  # noqa: E402

torch.set_num_threads(1)

CASES = ("hclt", "rbt-cp", "rbt-cpt", "pd")
STEPS = ("forward", "EM step", "Adam step")
EM_STEP, PSEUDOCOUNT, ADAM_LR = 0.1, 0.01, 1e-3
TOL64, TOL32 = 1e-10, 1e-5
RBT_SEED = 42
SYNTHETIC_DENSITY = 0.3  # P(pixel = 1) of the random images the PD runs on
MI_BYTES = 2 ** 27  # memory for one chunk of cirkit's Chow-Liu mutual information


def import_cirkit() -> str:
    """cirkit's version; one line and exit 1 when it is missing."""
    try:
        import cirkit  # noqa: F401
        from importlib.metadata import version
        return version("libcirkit")
    except ImportError as e:
        sys.exit(f"cirkit_vs.py: cirkit is not installed ({e}); install the benchmark extra: "
                 "pip install -e '.[bench]' (libcirkit==0.3.1)")


def clamp_min() -> float:
    from cirkit.backend.torch.utils import LOG_CLAMP_MIN
    return float(LOG_CLAMP_MIN)


# ----------------------------------------------------------------------------- data
def load_rows(path: str) -> tuple[str, np.ndarray]:
    """(name, training rows) of a debd directory (NAME/NAME.train.data) or a data file."""
    path = os.path.normpath(path)
    try:
        if os.path.isdir(path):
            name = os.path.basename(path)
            return name, load_debd(name, os.path.dirname(path)).train.astype(np.int64)
        return os.path.splitext(os.path.basename(path))[0], load_data(path).astype(np.int64)
    except (OSError, PcError) as e:
        sys.exit(f"cirkit_vs.py: {path}: {e}")


def images(rows: int, side: int) -> np.ndarray:
    gen = torch.Generator().manual_seed(0)
    return (torch.rand(rows, side * side, generator=gen) < SYNTHETIC_DENSITY).long().numpy()


# ----------------------------------------------------------------------------- pcc circuits
def leaf_family(rows: np.ndarray) -> Family:
    """Bernoulli for 0/1 data, else categorical over 0 .. the largest value."""
    n = int(rows.max()) + 1
    return Family("bernoulli") if n <= 2 else Family("categorical", (("n", n),))


def categories(family: Family) -> int:
    return 2 if family.name == "bernoulli" else int(family.arg("n"))


def from_region_graph(path: str, k: int, sum_product: str, leaf: Family) -> Circuit:
    """pcc's import of a cirkit region-graph JSON, made the circuit cirkit builds with
    `sum_product` (see the module doc): tucker as imported, cp-t element-wise, cp element-wise
    with a one-child sum over every input region."""
    circuit = load_circuit(path, k=k, leaf=leaf)
    if sum_product == "tucker":
        return circuit
    regions = []
    for r in circuit.regions:
        if isinstance(r, Sum):
            regions.append(dataclasses.replace(r, elementwise=tuple(range(len(r.partitions)))))
        elif sum_product == "cp":
            leaf = f"{r.name}_in"
            regions += [dataclasses.replace(r, name=leaf), Sum(r.name, r.k, ((leaf,),))]
        else:
            regions.append(r)
    return dataclasses.replace(circuit, regions=tuple(regions))


# ----------------------------------------------------------------------------- cirkit circuits
def cirkit_parameter(values: np.ndarray | None, shape: tuple[int, ...], kind: str):
    """A symbolic parameter: `kind` 'probs' holds the values as they are (what cirkit's EM
    updates), 'softmax' their logarithms under a softmax over the last axis. Without values,
    cirkit's own initializers (Dirichlet, resp. standard normal)."""
    from cirkit.symbolic.initializers import (ConstantTensorInitializer, DirichletInitializer,
                                              NormalInitializer)
    from cirkit.symbolic.parameters import Parameter, SoftmaxParameter, TensorParameter
    if values is None:
        init = DirichletInitializer() if kind == "probs" else NormalInitializer()
    else:
        values = np.ascontiguousarray(values, dtype=np.float64).reshape(shape)
        init = ConstantTensorInitializer(values if kind == "probs" else np.log(values))
    tensor = TensorParameter(*shape, initializer=init)
    if kind == "probs":
        return Parameter.from_input(tensor)
    return Parameter.from_unary(SoftmaxParameter(shape), tensor)


def to_cirkit(circuit: Circuit, params, kind: str):
    """`circuit` written with cirkit's symbolic layers: an input region is one Categorical layer
    per variable (a Hadamard layer over them when it has several); a sum region's partition is
    a Hadamard (`.*`) or Kronecker (`*`) layer over its children (nothing for one child), then a
    dense sum layer; several partitions are mixed by a sum layer with mixing weights. `params`:
    pcc's `ir_params()` (probability space), or None for cirkit's own initializers."""
    from cirkit.symbolic.circuit import Circuit as CirkitCircuit
    from cirkit.symbolic.layers import CategoricalLayer, HadamardLayer, KroneckerLayer, SumLayer
    from cirkit.symbolic.parameters import MixingWeightParameter, Parameter
    from cirkit.utils.scope import Scope
    values = {} if params is None else {
        (p.region, p.field, p.index): np.asarray(p.values).reshape(p.shape) for p in params}
    layers, inputs, out = [], {}, {}

    def add(layer, children=()):
        layers.append(layer)
        inputs[layer] = list(children)
        return layer

    for name in circuit.topological_order():
        r = circuit.region(name)
        if isinstance(r, Input):
            family = circuit.family_of(r)
            units = []
            for s, v in enumerate(r.scope):
                if family.name == "bernoulli":
                    n, p = 2, values.get((name, "p", None))
                    probs = None if p is None else np.stack([1 - p[:, s], p[:, s]], -1)
                elif family.name == "categorical":
                    n, p = int(family.arg("n")), values.get((name, "probs", None))
                    probs = None if p is None else p[:, s]
                else:
                    sys.exit(f"cirkit_vs.py: leaf family {family} has no cirkit layer here")
                units.append(add(CategoricalLayer(Scope([v]), r.k, num_categories=n, probs=(
                    cirkit_parameter(probs, (r.k, n), kind)))))
            out[name] = units[0] if len(units) == 1 else add(HadamardLayer(r.k, len(units)), units)
            continue
        parts = []
        for p, children in enumerate(r.partitions):
            below = [out[c] for c in children]
            if len(below) == 1:
                product = below[0]
            else:
                units = {b.num_output_units for b in below}
                if len(units) > 1:
                    sys.exit(f"cirkit_vs.py: region {name}: children of different K have no cirkit "
                             "product layer")
                layer = HadamardLayer if r.is_elementwise(p) else KroneckerLayer
                product = add(layer(units.pop(), len(below)), below)
            w = values.get((name, "weights", p))
            parts.append(add(SumLayer(product.num_output_units, r.k, weight=cirkit_parameter(
                w, (r.k, product.num_output_units), kind)), [product]))
        if len(parts) == 1:
            out[name] = parts[0]
            continue
        m = values.get((name, "mixing", None))  # [K, P]
        weight = Parameter.from_unary(MixingWeightParameter((r.k, len(parts))),
                                      cirkit_parameter(m, (r.k, len(parts)), kind))
        out[name] = add(SumLayer(r.k, r.k, arity=len(parts), weight=weight), parts)
    return CirkitCircuit(layers, inputs, [out[circuit.root]])


def cirkit_factories(kind: str, num_categories: int):
    """(input factory, sum weight factory, mixing weight factory) as cirkit's templates make
    them: 'probs' plain parameters initialized on the simplex (Dirichlet), for its EM; 'softmax'
    its templates' default (softmax of standard normals)."""
    import functools
    from cirkit.symbolic.parameters import mixing_weight_factory
    from cirkit.templates.utils import (Parameterization, name_to_input_layer_factory,
                                        parameterization_to_factory)
    setting = (Parameterization(activation="none", initialization="dirichlet") if kind == "probs"
               else Parameterization(activation="softmax", initialization="normal"))
    weights = parameterization_to_factory(setting)
    args = {"num_categories": num_categories}
    if kind == "probs":
        args["probs_factory"] = weights
    return (name_to_input_layer_factory("categorical", **args), weights,
            functools.partial(mixing_weight_factory, param_factory=weights))


def cirkit_build(region_graph, sum_product: str, k: int, kind: str, num_categories: int):
    """cirkit's own circuit of a region graph (the call its templates make)."""
    input_factory, weights, mixing = cirkit_factories(kind, num_categories)
    return region_graph.build_circuit(
        input_factory=input_factory, sum_product=sum_product, sum_weight_factory=weights,
        nary_sum_weight_factory=mixing, num_input_units=k, num_sum_units=k, num_classes=1,
        factorize_multivariate=True)


def layer_graph_digest(sc) -> tuple[str, int]:
    """(digest of the layer graph up to the order of a layer's inputs, number of layers): layer
    kind, units, arity and scope (input layers), each layer with its inputs' digests."""
    memo: dict[int, str] = {}
    for layer in sc.topological_ordering():
        below = sorted(memo[id(c)] for c in sc.layer_inputs(layer))
        scope = tuple(layer.scope) if not below else ()
        text = (f"{type(layer).__name__}/{layer.num_input_units}/{layer.num_output_units}/"
                f"{layer.arity}/{scope}/{','.join(below)}")
        memo[id(layer)] = hashlib.sha1(text.encode()).hexdigest()
    (root,) = sc.outputs
    return memo[id(root)], len(memo)


def compile_cirkit(sc, dtype: torch.dtype = torch.float32, optimize: bool = True):
    """cirkit's default pipeline (torch backend, lse-sum semiring, folding and layer
    optimizations on), with parameters made in `dtype`."""
    from cirkit.pipeline import PipelineContext
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return PipelineContext(backend="torch", semiring="lse-sum", fold=True,
                               optimize=optimize).compile(sc)
    finally:
        torch.set_default_dtype(previous)


def without_em(model) -> list[str]:
    """The kinds of layer in a compiled cirkit circuit that have parameters but no EM step."""
    from cirkit.backend.torch.layers.base import TorchLayer
    return sorted({type(layer).__name__ for layer in model.layers
                   if type(layer).em_step is TorchLayer.em_step and layer.params})


def sum_layers(sc) -> int:
    from cirkit.symbolic.layers import SumLayer
    return sum(isinstance(layer, SumLayer) for layer in sc.layers)


def cirkit_log_p(model, x: torch.Tensor) -> torch.Tensor:
    return model(x).reshape(-1)


# ----------------------------------------------------------------------------- cases
@dataclass
class Case:
    """One comparison: pcc's circuit, how cirkit builds the same one (None: only a different
    circuit), and optionally cirkit's own different circuit (its HCLT template)."""

    name: str
    label: str
    rows: np.ndarray
    circuit: Circuit
    same: Callable[[object, str], object] | None  # (params, kind) -> symbolic cirkit circuit
    other: Callable[[str], object] | None = None  # kind -> symbolic cirkit circuit
    other_label: str = ""
    notes: list[str] = field(default_factory=list)


def hclt_case(name: str, rows: np.ndarray, k: int, workdir: str) -> Case:
    circuit = hidden_chow_liu_tree(rows, k=k, trees=1)
    rg_path = os.path.join(workdir, f"clt_{name}.json")
    if not os.path.exists(rg_path):
        from cirkit.templates.region_graph import ChowLiuTree
        x = torch.from_numpy(rows)
        chunk = max(1, MI_BYTES // (8 * x.shape[1] ** 2))
        ChowLiuTree(x, input_type="categorical", num_categories=categories(leaf_family(rows)),
                    chunk_size=chunk,
                    as_region_graph=True).dump(rg_path)

    def template(kind: str):
        from cirkit.templates.region_graph import RegionGraph
        return cirkit_build(RegionGraph.load(rg_path), "cp", k, kind,
                            categories(leaf_family(rows)))
    notes = ["pcc: hidden_chow_liu_tree(trees=1); cirkit (a): that circuit written with cirkit's "
             "layers (a Categorical layer per variable, per tree node a Hadamard layer over its "
             "leaf and its children's edge sums, then a dense sum), pcc's parameters copied in",
             "cirkit (b) 'template': its ChowLiuTree region graph of the training rows, "
             "build_circuit(sum_product='cp') as tabular_data does, its own initialization: a "
             "different circuit (cp puts a dense sum on every input of a product, so the leaf of "
             "every inner tree node gets one too)"]
    return Case("hclt", f"HCLT {name} ({rows.shape[1]} vars, K={k})", rows, circuit,
                same=lambda params, kind: to_cirkit(circuit, params, kind), other=template,
                other_label=f"HCLT {name}: cirkit's template (cp), a different circuit",
                notes=notes)


def region_graph_case(case: str, rows: np.ndarray, region_graph, k: int, label: str,
                      workdir: str) -> Case:
    """A case whose circuit is a cirkit region graph: dumped to JSON, read by pcc's import; the
    cirkit side must be the layer graph cirkit's own build_circuit makes (or the run stops)."""
    sum_product = {"rbt-cp": "cp", "rbt-cpt": "cp-t", "pd": "tucker"}[case]
    path = os.path.join(workdir, f"{case}_{rows.shape[1]}.json")
    region_graph.dump(path)
    leaf = leaf_family(rows)
    circuit = from_region_graph(path, k, sum_product, leaf)
    same = lambda params, kind: to_cirkit(circuit, params, kind)  # noqa: E731
    ours = layer_graph_digest(same(None, "probs"))
    theirs = layer_graph_digest(cirkit_build(region_graph, sum_product, k, "probs",
                                             categories(leaf)))
    if ours != theirs:
        sys.exit(f"cirkit_vs.py: {label}: pcc's circuit written with cirkit's layers ({ours[1]} "
                 f"layers) is not the layer graph cirkit builds ({theirs[1]} layers)")
    note = (f"cirkit: build_circuit(sum_product='{sum_product}') of the region graph; pcc: its "
            f"JSON through pcc.interchange; same layer graph ({ours[1]} cirkit layers)")
    return Case(case, label, rows, circuit, same=same, notes=[note])


def make_case(case: str, data: str | None, args, workdir: str) -> Case:
    if case == "pd":
        from cirkit.templates.region_graph import PoonDomingos
        side = args.pd_side
        rows = images(max(args.batch), side)
        label = f"PD {side}x{side} delta {args.pd_delta} (K={args.pd_k}, random binary images)"
        return region_graph_case(case, rows, PoonDomingos((1, side, side), delta=args.pd_delta),
                                 args.pd_k, label, workdir)
    name, rows = load_rows(data)
    if case == "hclt":
        return hclt_case(name, rows, args.k, workdir)
    from cirkit.templates.region_graph import RandomBinaryTree
    layer = {"rbt-cp": "cp", "rbt-cpt": "cp-t"}[case]
    return region_graph_case(case, rows, RandomBinaryTree(rows.shape[1], seed=RBT_SEED), args.k,
                             f"random binary tree, {layer}, {name} ({rows.shape[1]} vars, "
                             f"K={args.k})", workdir)


# ----------------------------------------------------------------------------- the systems
class Restore:
    """Puts modules' parameters back as they were when made (run untimed before each step)."""

    def __init__(self, *modules):
        self.saved = [(m, {k: v.detach().clone() for k, v in m.state_dict().items()})
                      for m in modules]

    def __call__(self) -> None:
        with torch.no_grad():
            for m, saved in self.saved:
                for k, v in m.state_dict().items():
                    v.copy_(saved[k])


Steps = dict[str, tuple[Callable[[], object], Callable[[], None]]]  # step -> (call, restore)


class PccSide:
    """Three compiled copies of one circuit: one for the forward, one for `pcc.EM`, one for
    Adam."""

    def __init__(self, circuit: Circuit, params):
        circuit = dataclasses.replace(circuit, params=tuple(params)) if params else circuit
        self.inference = pcc.compile(circuit, backend="torch")
        self.model = pcc.compile(circuit, backend="torch")
        self.trained = pcc.compile(circuit, backend="torch")
        self.em = EM(self.model, step_size=EM_STEP, pseudocount=PSEUDOCOUNT)
        self.adam = torch.optim.Adam(self.trained.parameters(), lr=ADAM_LR)
        self.restore_em, self.restore_adam = Restore(self.model), Restore(self.trained)

    def steps(self, x: torch.Tensor) -> Steps:
        return {"forward": (forward_call(self.inference, x), _nothing),
                "EM step": (lambda: self.em.step(x), self.restore_em),
                "Adam step": (adam_call(self.trained, self.adam, x), self.restore_adam)}


class CirkitSide:
    """Three compiled copies of one circuit: plain probabilities for the forward, the same with
    its EM optimizer, softmax parameters for Adam. `build(kind)` makes the symbolic circuit."""

    def __init__(self, build: Callable[[str], object], skip: tuple[str, ...] = ()):
        from cirkit.backend.torch.em_optimizer import EM as CirkitEM
        torch.manual_seed(0)
        self.plain = compile_cirkit(build("probs"))
        self.em_model = compile_cirkit(build("probs"))
        self.note = ""
        missing = without_em(self.em_model)
        if missing:  # e.g. the Tucker layer its optimizer fuses Kronecker + dense sum into
            self.em_model = compile_cirkit(build("probs"), optimize=False)
            self.note = (f"cirkit's EM optimizer has no EM step for {', '.join(missing)} (layers "
                         "its default compilation makes): its EM model is compiled with "
                         "optimize=False (its forward and Adam models with the defaults)")
        else:
            self.em_model.load_state_dict(self.plain.state_dict())
        self.em = CirkitEM(self.em_model, lr=EM_STEP, pseudocount=PSEUDOCOUNT)
        self.trained = compile_cirkit(build("softmax"))
        self.adam = torch.optim.Adam(self.trained.parameters(), lr=ADAM_LR)
        self.restore_em, self.restore_adam = Restore(self.em_model), Restore(self.trained)
        self.skip = skip

    def parameters(self) -> int:
        return sum(p.numel() for p in self.plain.parameters())

    def steps(self, x: torch.Tensor) -> Steps:
        def em_step():
            self.em.zero_grad()
            self.em_model(x).sum().backward()
            self.em.step()
        steps = {"forward": (forward_call(self.plain, x), _nothing),
                 "EM step": (em_step, self.restore_em),
                 "Adam step": (adam_call(self.trained, self.adam, x), self.restore_adam)}
        return {s: v for s, v in steps.items() if s not in self.skip}


def forward_call(model, x: torch.Tensor) -> Callable[[], None]:
    def forward():
        with torch.no_grad():
            model(x)
    return forward


def adam_call(model, adam: torch.optim.Optimizer, x: torch.Tensor) -> Callable[[], None]:
    """forward, backward of the mean negative log-likelihood, Adam step (either system: the
    model's output holds one log-likelihood per row)."""
    def step():
        adam.zero_grad()
        (-model(x).mean()).backward()
        adam.step()
    return step


def _nothing() -> None:
    pass


# ----------------------------------------------------------------------------- the floor
def floor_shapes(plan: Plan) -> list[tuple[int, int, int]]:
    """(batch of matrices, inner, outer) of one bmm per weighted op of the plan."""
    shapes = []
    for op in plan.ops:
        if isinstance(op, EinsumOp) and op.has_weights:
            shapes.append((len(op.members), op.width, op.k_out))
        elif isinstance(op, HadamardOp):
            shapes.append((len(op.members), op.k_in, op.k_out))
        elif isinstance(op, MixOp):
            shapes.append((len(op.members) * op.k, op.part_rows.shape[1], 1))
    return shapes


class BmmFloor:
    """The plain-bmm floor of a plan's multiply-adds at one batch size (see the module doc)."""

    def __init__(self, plan: Plan, batch: int):
        gen = torch.Generator().manual_seed(0)
        self.mats = []
        for n, i, o in floor_shapes(plan):
            x, w = torch.rand(n, batch, i, generator=gen), torch.rand(n, i, o, generator=gen)
            grad = torch.rand(n, batch, o, generator=gen)
            self.mats.append((x, w, torch.empty(n, batch, o), grad, torch.empty_like(x),
                              torch.empty_like(w)))
        self.macs = sum(n * batch * i * o for n, i, o in floor_shapes(plan))
        self.bmms = len(self.mats)

    def forward(self) -> None:
        for x, w, y, *_ in self.mats:
            torch.bmm(x, w, out=y)

    def train(self) -> None:
        self.forward()
        for x, w, _, gy, gx, gw in self.mats:
            torch.bmm(gy, w.transpose(1, 2), out=gx)
            torch.bmm(x.transpose(1, 2), gy, out=gw)

    def steps(self) -> Steps:
        return {"forward": (self.forward, _nothing), "EM step": (self.train, _nothing),
                "Adam step": (self.train, _nothing)}


# ----------------------------------------------------------------------------- agreement
def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """max over rows of |a - b| / |b| (b the reference), in float64."""
    a, b = a.double(), b.double()
    return float(((a - b).abs() / b.abs().clamp_min(1e-300)).max())


def initial_parameters(case: Case, x: torch.Tensor, clamp: float):
    """pcc's initialization of the case's circuit, as probability-space params; where rows fall
    below cirkit's clamp, warm-started by full-batch pcc EM steps on x (noted in case.notes)."""
    model = pcc.compile(case.circuit, backend="torch")
    with torch.no_grad():
        ll = model(x)
    below = int((ll < clamp).sum())
    if not below:
        return model.ir_params()
    theirs = cirkit_log_p(compile_cirkit(case.same(model.ir_params(), "probs")), x.long())
    at_clamp = int((theirs <= clamp + 1e-3).sum())
    case.notes.append(
        f"at pcc's random initialization {below} of {len(x)} rows have log p below cirkit's "
        f"LOG_CLAMP_MIN {clamp:.2f} (lowest {float(ll.min()):.1f}); cirkit returns {clamp:.2f} for "
        f"{at_clamp} of the {len(x)} rows (every log-value is clamped there), so training it from "
        "this initialization is meaningless")
    em, steps = EM(model, step_size=1.0, pseudocount=PSEUDOCOUNT), 0
    while below and steps < 20:
        em.step(x)
        steps += 1
        with torch.no_grad():
            ll = model(x)
        below = int((ll < clamp).sum())
    if below:
        sys.exit(f"cirkit_vs.py: {case.label}: {below} rows still below cirkit's clamp after "
                 f"{steps} EM steps")
    case.notes.append(f"both systems therefore start from pcc's parameters after {steps} "
                      "full-batch pcc EM step(s) on the rows (lowest log p "
                      f"{float(ll.min()):.1f}); time per step does not depend on the values")
    return model.ir_params()


def agreement(case: Case, params, x: torch.Tensor) -> dict[str, float]:
    """Max relative differences of log p(x) between pcc and the same circuit in cirkit (both
    parameterizations), in float64 and float32, and of each float32 result from float64 pcc."""
    circuit = dataclasses.replace(case.circuit, params=tuple(params))
    xl = x.long()
    with torch.no_grad():
        ref = pcc.compile(circuit, backend="torch", dtype=torch.float64)(x.double())
        ours32 = pcc.compile(circuit, backend="torch")(x)
        out = {"pcc float32 vs float64": relative(ours32, ref)}
        for kind in ("probs", "softmax"):
            sc = case.same(params, kind)
            theirs64 = cirkit_log_p(compile_cirkit(sc, torch.float64), xl)
            theirs32 = cirkit_log_p(compile_cirkit(sc), xl)
            out[f"float64 {kind}"] = relative(theirs64, ref)
            out[f"float32 {kind}"] = relative(theirs32, ours32)
            out[f"cirkit float32 {kind} vs float64"] = relative(theirs32, ref)
    out["log p mean"] = float(ref.mean())
    return out


def check_agreement(case: Case, agree: dict[str, float]) -> None:
    bad = [f"{key} {agree[key]:.1e}" for key in agree if key.startswith("float")
           and agree[key] > (TOL64 if key.startswith("float64") else TOL32)]
    if bad:
        sys.exit(f"cirkit_vs.py: {case.label}: pcc and cirkit disagree on the same circuit "
                 f"(max relative difference {', '.join(bad)}); nothing timed")


def clamped_steps(side: CirkitSide, x: torch.Tensor, clamp: float) -> tuple[list[str], str]:
    """The training steps whose numbers are meaningless (every row at cirkit's clamp), and a
    note on how many rows its models return at the clamp."""
    with torch.no_grad():
        em = int((cirkit_log_p(side.em_model, x) <= clamp + 1e-3).sum())
        adam = int((cirkit_log_p(side.trained, x) <= clamp + 1e-3).sum())
    skip = ([] if em < len(x) else ["EM step"]) + ([] if adam < len(x) else ["Adam step"])
    if not em and not adam:
        return [], ""
    note = (f"at its own initialization cirkit's template returns LOG_CLAMP_MIN {clamp:.2f} for "
            f"{em} (probabilities, for EM) and {adam} (softmax, for Adam) of {len(x)} rows")
    if skip:
        note += f"; its {' and '.join(skip)} not compared (its gradients are zero there)"
    return skip, note


# ----------------------------------------------------------------------------- memory
def child(args) -> None:
    """In a fresh process: one system's step on one case; prints its peak growth as JSON."""
    case_name, system, step = args.child
    case = make_case(case_name, args.child_data or None, args, args.workdir)
    if system == "pcc":
        side = PccSide(case.circuit, None)
        convert = lambda rows: torch.from_numpy(rows).float()  # noqa: E731
    else:
        build = (lambda kind: case.same(None, kind)) if system == "cirkit" else case.other
        side = CirkitSide(build)
        convert = lambda rows: torch.from_numpy(rows)  # noqa: E731
    side.steps(convert(case.rows[:4]))[step][0]()
    fn = side.steps(convert(case.rows[:args.batch[0]]))[step][0]
    print(json.dumps(peak_growth(lambda: (fn(), fn()))))


def peak_memory(args, case: str, data: str | None, system: str, step: str, batch: int) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--child", case, system, step,
               "--child-data", data or "", "--batch", str(batch), "--workdir", args.workdir,
               "--k", str(args.k), "--pd-k", str(args.pd_k), "--pd-side", str(args.pd_side),
               "--pd-delta", str(args.pd_delta)]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"cirkit_vs.py: the memory measurement of {system} ({case}, {step}) failed:\n"
                 f"{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- one case
def run_case(args, case_name: str, data: str | None, clamp: float) -> dict:
    case = make_case(case_name, data, args, args.workdir)
    print(f"\n## {case.label}", flush=True)
    largest = max(args.batch)
    x_all = torch.from_numpy(case.rows[:largest]).float()
    if len(x_all) < largest:
        sys.exit(f"cirkit_vs.py: {data}: {len(x_all)} rows, fewer than batch {largest}")
    params = initial_parameters(case, x_all, clamp)
    agree = agreement(case, params, x_all)
    ours = PccSide(case.circuit, params)
    sides = {"pcc": ours, "cirkit": CirkitSide(lambda kind: case.same(params, kind))}
    if sides["cirkit"].note:
        case.notes.append(sides["cirkit"].note)
    counts = {"pcc": sum(p.numel() for p in ours.model.parameters()),
              "cirkit": sides["cirkit"].parameters()}
    if case.other is not None:
        sides["template"] = CirkitSide(case.other)
        skip, note = clamped_steps(sides["template"], x_all.long(), clamp)
        sides["template"].skip = tuple(skip)
        case.notes += [note] if note else []
        counts["template"] = sides["template"].parameters()
        case.notes.append(f"sum layers: cirkit's template {sum_layers(case.other('probs'))}, pcc's "
                          f"circuit {len(case.circuit.sums)} sum regions")
    for line in case.notes:
        print(f"- {line}")
    print("parameters: " + ", ".join(f"{n} {c:,}" for n, c in counts.items())
          + " (cirkit's Categorical(2) layers store both probabilities of each Bernoulli leaf)")
    print(f"same log-likelihoods on {largest} rows, max relative difference pcc vs cirkit: float64 "
          f"{agree['float64 probs']:.1e} (probabilities) {agree['float64 softmax']:.1e} (softmax); "
          f"float32 {agree['float32 probs']:.1e} / {agree['float32 softmax']:.1e}; float32 vs "
          f"float64: pcc {agree['pcc float32 vs float64']:.1e}, cirkit "
          f"{agree['cirkit float32 probs vs float64']:.1e}; mean log p {agree['log p mean']:.2f}")
    check_agreement(case, agree)

    result = {"case": case_name, "data": data, "label": case.label,
              "other_label": case.other_label, "vars": int(case.rows.shape[1]),
              "k": case.circuit.regions[0].k, "parameters": counts, "notes": case.notes,
              "agreement": agree, "skipped": {"template": list(getattr(sides.get("template"),
                                                                       "skip", ()))},
              "batches": {}, "memory": {}}
    for batch in args.batch:
        x = x_all[:batch]
        floor = BmmFloor(ours.model.plan, batch)
        runs = {name: side.steps(x if name == "pcc" else x.long()) for name, side in sides.items()}
        runs["floor"] = floor.steps()
        times = {}
        for step in STEPS:
            steps = {n: r[step][0] for n, r in runs.items() if step in r}
            before = {n: r[step][1] for n, r in runs.items() if step in r}
            times[step] = {n: asdict(t) for n, t in
                           interleaved_medians(steps, args.repeats, before).items()}
        result["batches"][str(batch)] = {"times": times, "floor_macs": floor.macs,
                                         "floor_bmms": floor.bmms}
        print_times(result, batch, args.repeats)
        del floor
    if not args.no_memory:
        batch = largest
        memory = {}
        for step in STEPS:
            memory[step] = {s: peak_memory(args, case_name, data, s, step, batch)
                            for s in sides if step not in getattr(sides[s], "skip", ())}
        result["memory"] = {"batch": batch, "steps": memory}
        print_memory(result)
    return result


def print_times(result: dict, batch: int, repeats: int) -> None:
    times = result["batches"][str(batch)]["times"]
    others = [s for s in ("cirkit", "template") if s in times["forward"]]
    print(f"batch {batch}: ms, medians of {repeats} interleaved rounds (wall; ratio = cirkit / "
          "pcc, CPU-time ratio in brackets; floor = plain bmm of the same multiply-adds)")
    head = f"{'step':>10} {'pcc':>9}" + "".join(
        f" {s:>9} {'ratio':>6} {'(cpu)':>7}" for s in others) + f" {'floor':>8} {'pcc/floor':>9}"
    print(head)
    for step, t in times.items():
        ours = t["pcc"]
        row = f"{step:>10} {ours['wall'] * 1e3:9.2f}"
        for s in others:
            if s in t:
                row += (f" {t[s]['wall'] * 1e3:9.2f} {t[s]['wall'] / ours['wall']:5.2f}x "
                        f"({t[s]['cpu'] / ours['cpu']:4.2f}x)")
            else:
                row += f" {'skipped':>9} {'-':>6} {'-':>7}"
        row += f" {t['floor']['wall'] * 1e3:8.2f} {ours['wall'] / t['floor']['wall']:8.1f}x"
        print(row)


def print_memory(result: dict) -> None:
    mem = result["memory"]
    print(f"peak memory growth, MiB, over two steps at batch {mem['batch']} (fresh process per "
          "system and step; malloc'd bytes / RSS)")
    for step, systems in mem["steps"].items():
        cells = [f"{s} {v['malloc'] / 2**20:.1f} / {v['rss'] / 2**20:.1f}"
                 for s, v in systems.items()]
        print(f"{step:>10}  " + ", ".join(cells))


# ----------------------------------------------------------------------------- markdown
def markdown(results: dict) -> str:
    """The results as a table for docs/benchmarks.md: one row per circuit, batch and step."""
    lines = [f"Machine: {results['machine']}; cirkit {results['cirkit']}; float32; medians of "
             f"{results['repeats']} interleaved rounds; ratio = cirkit time / pcc time, wall "
             "clock (CPU time in brackets); floor = one plain `torch.bmm` per op of pcc's plan "
             "(EM and Adam steps: plus the backward's two); MiB = peak malloc'd growth over two "
             f"steps at batch {max(results['batch'])}, a fresh process per system and step.", "",
             "| circuit | batch | step | pcc ms | cirkit ms | cirkit / pcc | floor ms "
             "| pcc / floor | pcc MiB | cirkit MiB |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["cases"]:
        for system, label in (("cirkit", r["label"]), ("template", r["other_label"])):
            if system not in r["parameters"]:
                continue
            label = (f"{label}; parameters: cirkit {r['parameters'][system]:,}, pcc "
                     f"{r['parameters']['pcc']:,}")
            memory = r["memory"].get("steps", {})
            for batch, b in r["batches"].items():
                for step, t in b["times"].items():
                    ours, floor = t["pcc"]["wall"], t["floor"]["wall"]
                    mem = memory.get(step, {}) if batch == str(r["memory"].get("batch")) else {}
                    peer = (f"{t[system]['wall'] * 1e3:.2f} | {t[system]['wall'] / ours:.2f}x "
                            f"({t[system]['cpu'] / t['pcc']['cpu']:.2f}x)" if system in t
                            else "not compared | -")
                    floor_cells = (f"{floor * 1e3:.2f} | {ours / floor:.1f}x" if system == "cirkit"
                                   else "- | -")
                    lines.append(f"| {label} | {batch} | {step} | {ours * 1e3:.2f} | {peer} | "
                                 f"{floor_cells} | {_mib(mem.get('pcc'))} | "
                                 f"{_mib(mem.get(system))} |")
                    label = ""
    return "\n".join(lines) + "\n"


def _mib(m: dict | None) -> str:
    return "-" if not m else f"{m['malloc'] / 2**20:.1f}"


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="*", help="debd data directories (NAME/NAME.train.data) or "
                    "data files; hclt, rbt-cp and rbt-cpt run on each")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    ap.add_argument("--batch", type=int, nargs="+", default=[100, 512])
    ap.add_argument("--repeats", type=int, default=15, help="timed rounds per step")
    ap.add_argument("--k", type=int, default=32, help="units per region (HCLT, random trees)")
    ap.add_argument("--pd-k", type=int, default=40, help="units per region of the PD")
    ap.add_argument("--pd-side", type=int, default=28)
    ap.add_argument("--pd-delta", type=int, default=7)
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--markdown", help="write a table for docs/benchmarks.md here")
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--child-data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    for name in ("batch", "repeats", "k", "pd_k", "pd_side", "pd_delta"):
        values = getattr(args, name)
        if min(values if isinstance(values, list) else [values]) < 1:
            sys.exit(f"cirkit_vs.py: --{name.replace('_', '-')} must be at least 1")
    version = import_cirkit()
    if args.child:
        child(args)
        return
    if any(c != "pd" for c in args.cases) and not args.data:
        sys.exit("cirkit_vs.py: hclt, rbt-cp and rbt-cpt need a data path (e.g. "
                 "/work/shared/data/debd/accidents); or run --cases pd")
    for data in args.data:
        if not os.path.exists(data):
            sys.exit(f"cirkit_vs.py: {data}: no such file or directory")
    with tempfile.TemporaryDirectory(prefix="cirkit_vs_") as workdir:
        args.workdir = workdir
        results = {"machine": machine(), "cirkit": version, "batch": args.batch,
                   "repeats": args.repeats, "command": " ".join(sys.argv), "cases": []}
        print(f"# {results['machine']}")
        print(f"# pcc {pcc.__version__} (torch backend) beside cirkit {version}; float32; "
              f"batches {args.batch}")
        clamp = clamp_min()
        for case in args.cases:
            for data in ([None] if case == "pd" else args.data):
                results["cases"].append(run_case(args, case, data, clamp))
    if args.json:
        dump_json(args.json, results)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(results))


if __name__ == "__main__":
    main()
