"""Exporting region graphs with K > 1 (outer and element-wise products, mixing) to jpc and SPFlow:
the files hold exactly the model's distribution, their node counts follow the formula of
`pcc.interchange.unroll`, oversized circuits and roots with K > 1 are refused with the reason."""
import dataclasses

import numpy as np
import pytest
import torch

import pcc
from interchange_helpers import all_states, compiled, import_text, log_likelihoods
from pcc import checkpoint
from pcc.cli.main import main
from pcc.frontend import parse
from pcc.interchange import load_circuit
from pcc.interchange.export import ExportError, export_text
from pcc.interchange.unroll import MAX_EDGES, unrolled_size
from pcc.ir import Input
from random_circuits import SUPPORT, random_circuit

FAMILIES = {"jpc": ("bernoulli", "categorical", "binomial", "normal"),
            "spflow": ("bernoulli", "categorical", "normal")}
SEEDS = range(10)


def with_model_params(circuit):
    """The circuit with the random parameters of its compiled float64 model, and the model."""
    model = pcc.compile(circuit, backend="torch").double()
    return dataclasses.replace(model.circuit, params=model.ir_params()), model


def states_of(circuit, n: int = 64) -> torch.Tensor:
    """Every state when all variables are discrete, else `n` random rows."""
    support = [None] * circuit.num_vars
    for region in circuit.inputs:
        for v in region.scope:
            support[v] = SUPPORT[circuit.family_of(region).name]
    if None not in support:
        return all_states(support)
    g = torch.Generator().manual_seed(0)
    return torch.stack([torch.randn(n, generator=g, dtype=torch.float64) if s is None else
                        torch.randint(0, s, (n,), generator=g).double() for s in support], 1)


def jpc_counts(text: str) -> tuple[int, int, int, int]:
    """(leaves, products, sums, edges) of a .jpc file, read from its lines."""
    lines = [t.split() for t in text.splitlines() if t and t[0] in "LICBGPS"]
    kinds = [t[0] for t in lines]
    edges = sum(int(t[3]) for t in lines if t[0] in "PS")
    return len(kinds) - kinds.count("P") - kinds.count("S"), kinds.count("P"), kinds.count("S"), edges


@pytest.mark.parametrize("fmt", ["jpc", "spflow"])
@pytest.mark.parametrize("seed", SEEDS)
def test_unrolled_export_keeps_log_p(fmt, seed):
    circuit, model = with_model_params(random_circuit(
        300 + seed, num_vars=4, families=FAMILIES[fmt], max_k=4, elementwise=0.3))
    text = export_text(circuit, fmt)[""]
    again = import_text(text, fmt)
    assert all(r.k == 1 for r in again.regions)
    x = states_of(circuit)
    with torch.no_grad():
        expected = model(x)
    assert torch.allclose(log_likelihoods(again, x), expected, atol=1e-9, rtol=0)
    if fmt == "jpc":
        size = unrolled_size(circuit)
        assert jpc_counts(text) == (size.leaves, size.products, size.sums, size.edges)


def test_the_random_circuits_cover_what_unrolling_must_handle():
    """The seeds above hold regions with K > 1, element-wise and outer products of children with
    K > 1, and sums with K > 1 mixing several partitions, in both formats' families."""
    seen = set()
    for fmt in FAMILIES:
        for seed in SEEDS:
            c = random_circuit(300 + seed, num_vars=4, families=FAMILIES[fmt], max_k=4)
            for s in c.sums:
                for p, part in enumerate(s.partitions):
                    ks = [c.region(child).k for child in part]
                    if len(part) > 1 and max(ks) > 1:
                        seen.add(f"{fmt} elementwise" if s.is_elementwise(p) else f"{fmt} outer")
                if s.k > 1 and len(s.partitions) > 1:
                    seen.add(f"{fmt} mixing")
            seen |= {f"{fmt} {c.family_of(r).name}" for r in c.inputs if r.k > 1}
    assert seen >= {f"{fmt} {what}" for fmt in FAMILIES for what in
                    ("elementwise", "outer", "mixing", *FAMILIES[fmt])}


COUNTED = """pc 1
vars 3
leaf bernoulli
input a {x0} k=2
input b {x1} k=3
input c {x2} k=3
input d {x0, x1} k=2
sum e k=3 = b .* c
sum top k=1 = a * e | d * c | a * b * c
root top
"""


def test_node_counts_follow_the_formula():
    """leaves 2 + 3 + 3 + 2*2; products: d's 2 units, b .* c 3, a * e 2*3, d * c 2*3, a * b * c
    2*3*3; sums: e's 3 and top; edges 4 + 6 + 3*3 + (12 + 12 + 54) + 30."""
    circuit, model = with_model_params(parse(COUNTED))
    text = export_text(circuit, "jpc")[""]
    assert jpc_counts(text) == (12, 35, 4, 127)
    size = unrolled_size(circuit)
    assert (size.leaves, size.products, size.sums, size.edges, size.nodes) == (12, 35, 4, 127, 51)
    x = all_states([2, 2, 2])
    with torch.no_grad():
        assert torch.allclose(log_likelihoods(import_text(text, "jpc"), x), model(x), atol=1e-9)


def test_zero_weights_drop_their_products():
    """With the mixing weight of a * b * c at 0, its 18 products and their 54 + 18 edges are left
    out, and the distribution is unchanged."""
    circuit, model = with_model_params(parse(COUNTED))
    params = tuple(dataclasses.replace(p, values=(0.25, 0.75, 0.0)) if p.field == "mixing" else p
                   for p in circuit.params)
    circuit = dataclasses.replace(circuit, params=params)
    model.load_ir_params(params)
    text = export_text(circuit, "jpc")[""]
    assert jpc_counts(text) == (12, 17, 4, 55)
    x = all_states([2, 2, 2])
    with torch.no_grad():
        assert torch.allclose(log_likelihoods(import_text(text, "jpc"), x), model(x), atol=1e-9)


def test_oversized_unrolling_is_refused_before_building():
    """a * b * c with K = 300 each: 27,000,000 products; refused from the structure alone (no
    parameters are needed to say so)."""
    circuit = parse("pc 1\nvars 3\nleaf bernoulli\ninput a {x0} k=300\ninput b {x1} k=300\n"
                    "input c {x2} k=300\nsum top k=1 = a * b * c\nroot top\n")
    size = unrolled_size(circuit)
    assert size.edges == 4 * 300 ** 3 > MAX_EDGES
    for fmt in ("jpc", "spflow"):
        with pytest.raises(ExportError, match="27,000,901 nodes and 108,000,000 edges"):
            export_text(circuit, fmt)


@pytest.mark.parametrize("seed", [2, 7])  # root: a sum mixing 3 partitions, one element-wise; an input
def test_root_with_k_above_1_needs_a_root_unit(seed):
    circuit, model = with_model_params(random_circuit(seed, num_vars=4, max_k=4, root_k=3))
    with pytest.raises(ExportError, match="root '.*' has K=3.*--root-unit \\(0..2\\)"):
        export_text(circuit, "jpc")
    with pytest.raises(ExportError, match="--root-unit 3 is out of range"):
        export_text(circuit, "jpc", root_unit=3)
    x = all_states([2, 2, 2, 2])
    with torch.no_grad():
        expected = model(x)
    got = torch.stack([log_likelihoods(import_text(export_text(circuit, "jpc", root_unit=u)[""],
                                                   "jpc"), x) for u in range(3)], 1)
    assert torch.allclose(got, expected, atol=1e-9, rtol=0)


def test_psdd_refuses_k_above_1_with_the_reason():
    circuit, _ = with_model_params(parse(COUNTED))
    with pytest.raises(ExportError, match="region '.' has K=.: .*not be deterministic"):
        export_text(circuit, "psdd")


def test_multi_variable_input_units_are_products_of_their_own_leaves():
    """Unit k of an input over {x0, x1} reads the parameters at [k, 0] and [k, 1]."""
    circuit = parse("pc 1\nvars 2\nleaf bernoulli\ninput a {x0, x1} k=2\nsum top k=1 = a\n"
                    "root top\nparam a.p = [[0.1, 0.2], [0.7, 0.6]]\nparam top.weights = [[0.3, 0.7]]\n")
    again = import_text(export_text(circuit, "spflow")[""], "spflow")
    assert sorted(p.values[0] for p in again.params if p.field == "p") == [0.1, 0.2, 0.6, 0.7]
    x = all_states([2, 2])
    expected = torch.log(torch.tensor([0.3 * 0.9 * 0.8 + 0.7 * 0.3 * 0.4, 0.3 * 0.9 * 0.2 + 0.7 * 0.3 * 0.6,
                                       0.3 * 0.1 * 0.8 + 0.7 * 0.7 * 0.4, 0.3 * 0.1 * 0.2 + 0.7 * 0.7 * 0.6],
                                      dtype=torch.float64))
    assert torch.allclose(log_likelihoods(again, x), expected, atol=1e-12)
    assert all(isinstance(r, Input) and r.k == 1 for r in again.inputs)


def test_cli_exports_a_trained_hclt_and_reads_it_back(tmp_path, capsys):
    """structure hclt -k 4 -> train one epoch -> export .jpc -> the file's test log-likelihood is
    the checkpoint's."""
    rng = np.random.default_rng(0)
    z = rng.integers(0, 2, (300, 1))
    data = (rng.random((300, 6)) < np.where(z == 1, 0.8, 0.25)).astype(int)
    for split, rows in (("train", data[:200]), ("valid", data[200:250]), ("test", data[250:])):
        (tmp_path / f"toy.{split}.data").write_text("".join(",".join(map(str, r)) + "\n" for r in rows))
    pc, pt, jpc = tmp_path / "h.pc", tmp_path / "h.pt", tmp_path / "h.jpc"
    assert main(["structure", "hclt", "--data", str(tmp_path / "toy.train.data"), "-k", "4",
                 "-o", str(pc)]) == 0
    assert main(["train", str(pc), "--train", str(tmp_path / "toy.train.data"), "--valid",
                 str(tmp_path / "toy.valid.data"), "--members", "1", "--epochs", "1", "--quiet",
                 "-o", str(pt)]) == 0
    assert main(["export", str(pt), "-o", str(jpc)]) == 0
    assert main(["export", str(pt), "-o", str(tmp_path / "h.psdd")]) == 1
    err = capsys.readouterr().err
    assert "not be deterministic" in err and "Traceback" not in err
    test = torch.tensor(data[250:], dtype=torch.float64)
    model = checkpoint.load(str(pt), backend="torch")[0].double()
    assert any(r.k == 4 for r in model.circuit.regions)
    assert any(s.elementwise for s in model.circuit.sums)
    with torch.no_grad():
        expected = model(test)
    got = compiled(load_circuit(jpc))(test).detach()
    assert torch.allclose(got, expected, atol=1e-9, rtol=0)
    assert abs(got.mean().item() - expected.mean().item()) < 1e-9
