"""Imported circuits compute exactly what the files say: for every state, the compiled model's
log-likelihood equals a brute-force evaluation written here from the format's description (not
from pcc's reader), and the naive backend agrees."""
import math
import re

import pytest
import torch

from interchange_helpers import all_states, example_text, import_text, log_likelihoods

# ------------------------------------------------------------------ independent evaluators


def node_lines(text: str) -> list[list[str]]:
    """Token lists of the node lines: no blank lines, no `c` comments, no header."""
    lines = [line.split() for line in text.splitlines()]
    return [t for t in lines if t and not t[0].startswith("c") and t[0] not in ("psdd", "jpc")]


def psdd_probability(text: str, x: list[int]) -> float:
    nodes = {int(t[1]): t for t in node_lines(text)}
    root = int(node_lines(text)[-1][1])

    def value(i: int) -> float:
        t = nodes[i]
        if t[0] == "L":
            literal = int(t[3])
            return float(x[abs(literal) - 1] == (literal > 0))
        if t[0] == "T":
            p = math.exp(float(t[4]))
            return p if x[int(t[3]) - 1] else 1 - p
        return sum(value(int(t[4 + 3 * j])) * value(int(t[5 + 3 * j])) * math.exp(float(t[6 + 3 * j]))
                   for j in range(int(t[3])))
    return value(root)


def jpc_probability(text: str, x: list[int]) -> float:
    nodes = {int(t[1]): t for t in node_lines(text)}
    children = {int(c) for t in nodes.values() if t[0] == "P" for c in t[4:]}
    children |= {int(c) for t in nodes.values() if t[0] == "S" for c in t[4::2]}
    root = [i for i in nodes if i not in children][-1]

    def value(i: int) -> float:
        t = nodes[i]
        kind = t[0]
        if kind == "L":
            literal = int(t[3])
            return float(x[abs(literal) - 1] == (literal > 0))
        xv = x[int(t[3]) - 1]
        if kind == "I":
            return float(xv == int(t[4]))
        if kind == "C":
            return math.exp(float(t[4 + xv]))
        if kind == "B":
            n, p = int(t[4]), math.exp(float(t[5]))
            return math.comb(n, xv) * p ** xv * (1 - p) ** (n - xv)
        if kind == "P":
            return math.prod(value(int(c)) for c in t[4:])
        return sum(value(int(c)) * math.exp(float(w)) for c, w in zip(t[4::2], t[5::2]))
    return value(root)


def spn_probability(text: str, x: list[int]) -> float:
    lines = node_lines(text)[1:]  # after the domain line
    lines = lines[:lines.index(["EOF"])] if ["EOF"] in lines else lines

    def value(i: int) -> float:
        t = lines[i]
        if t[0] == "v":
            return float(x[int(t[1])] == int(t[2]))
        if t[0] == "*":
            return math.prod(value(int(c)) for c in t[1:])
        return sum(value(int(c)) * math.exp(float(w)) for c, w in zip(t[1::2], t[2::2]))
    return value(len(lines) - 1)


def spflow_probability(text: str, x: list[float]) -> float:
    """SPFlow's text is an arithmetic expression: turn the leaves into calls and evaluate it."""
    def bernoulli(v, p):
        return p if x[v] == 1 else 1 - p

    def categorical(v, probs):
        return probs[int(x[v])]

    def gaussian(v, mean, std):
        return math.exp(-0.5 * ((x[v] - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))

    expr = re.sub(r"Bernoulli\(V(\d+)\|p=([^)]*)\)", r"bernoulli(\1, \2)", text)
    expr = re.sub(r"Categorical\(V(\d+)\|p=(\[[^\]]*\])\)", r"categorical(\1, \2)", expr)
    expr = re.sub(r"Gaussian\(V(\d+)\|mean=([^;]*);stdev=([^)]*)\)", r"gaussian(\1, \2, \3)", expr)
    return eval(expr, {"bernoulli": bernoulli, "categorical": categorical, "gaussian": gaussian})


# ------------------------------------------------------------------ the checks


def check_against(circuit, states: torch.Tensor, probability) -> None:
    expected = torch.tensor([math.log(p) if p > 0 else -math.inf
                             for p in (probability([int(v) if v == int(v) else float(v) for v in row])
                                       for row in states.tolist())], dtype=torch.float64)
    for backend in ("torch", "naive"):
        got = log_likelihoods(circuit, states, backend)
        assert torch.equal(torch.isinf(got), torch.isinf(expected)), backend
        finite = torch.isfinite(expected)
        assert torch.allclose(got[finite], expected[finite], atol=1e-12, rtol=0), backend


def test_psdd_every_state():
    text = example_text("little.psdd")
    circuit = import_text(text, "psdd")
    states = all_states([2, 2, 2])
    check_against(circuit, states, lambda x: psdd_probability(text, x))
    assert abs(torch.logsumexp(log_likelihoods(circuit, states), 0).item()) < 1e-12


def test_jpc_every_state():
    text = example_text("little.jpc")
    circuit = import_text(text, "jpc")
    assert [str(circuit.family_of(r)) for r in circuit.inputs][:3] == \
        ["bernoulli", "categorical(n=3)", "binomial(n=2)"]
    states = all_states([2, 3, 3, 2])
    check_against(circuit, states, lambda x: jpc_probability(text, x))
    assert abs(torch.logsumexp(log_likelihoods(circuit, states), 0).item()) < 1e-12


def test_spn_every_state():
    text = example_text("little.spn")
    circuit = import_text(text, "spn")
    states = all_states([2, 2, 2])
    check_against(circuit, states, lambda x: spn_probability(text, x))


def test_spn_wider_domains_become_categorical():
    text = "(2 3)\nv 0 1\nv 0 0\nv 1 2\nv 1 0\nv 1 1\n* 0 2\n* 1 3\n* 1 4\n" \
           "+ 5 -1.2039728043259361 6 -1.2039728043259361 7 -0.916290731874155\nEOF\n"
    circuit = import_text(text, "spn")
    assert {str(circuit.family_of(r)) for r in circuit.inputs} == {"bernoulli", "categorical(n=3)"}
    check_against(circuit, all_states([2, 3]), lambda x: spn_probability(text, x))


def test_spflow_states_and_densities():
    text = example_text("little.spflow")
    circuit = import_text(text, "spflow")
    discrete = all_states([2, 3])
    points = torch.tensor([-2.0, -0.7, 0.3, 1.7], dtype=torch.float64)
    states = torch.cat([torch.cat([discrete, torch.full((len(discrete), 1), float(v))], 1)
                        for v in points])
    check_against(circuit, states, lambda x: spflow_probability(text, x))


@pytest.mark.parametrize("name, fmt", [("little.psdd", "psdd"), ("little.jpc", "jpc"),
                                       ("little.spn", "spn"), ("little.spflow", "spflow")])
def test_examples_map_to_k1_regions(name, fmt):
    circuit = import_text(example_text(name), fmt)
    assert {r.k for r in circuit.regions} == {1}
    assert all(len(r.scope) == 1 for r in circuit.inputs)
    leaves = [(r.scope, str(circuit.family_of(r)), tuple(p.values for p in circuit.params
                                                         if p.region == r.name))
              for r in circuit.inputs]
    assert len(leaves) == len(set(leaves)), "identical leaves share one input region"


def test_literal_is_bernoulli_with_p_exactly_0_or_1():
    circuit = import_text(example_text("little.psdd"), "psdd")
    values = {p.values[0] for p in circuit.params if p.field == "p"}
    assert {0.0, 1.0} <= values


def test_cirkit_structure_with_k_and_leaf():
    from pcc.ir import Family
    circuit = import_text(example_text("little_rg.json"), "cirkit", k=3,
                          leaf=Family("categorical", (("n", 3),)))
    assert circuit.region(circuit.root).k == 1
    assert {r.k for r in circuit.regions if r.name != circuit.root} == {3}
    assert len(circuit.region(circuit.root).partitions) == 2
    states = all_states([3, 3, 3, 3])
    for backend in ("torch", "naive"):
        total = torch.logsumexp(log_likelihoods(circuit, states, backend), 0)
        assert abs(total.item()) < 1e-10


def test_unnormalized_weights_import_as_p_over_z_with_a_warning():
    """An inner sum with weights 2 and 1 (mass 3) under an outer sum with weights 0.5 and 0.5: the
    file's function has total mass Z = 2; pcc imports p(x) / Z exactly and says so."""
    from pcc.frontend.diagnostics import PcWarning
    from pcc.interchange import read_circuit
    from pcc.interchange.source import Source
    text = ("(2 2)\nv 0 1\nv 0 0\nv 1 1\nv 1 0\n"
            f"+ 2 {math.log(2)!r} 3 0.0\n"                      # 4: mass 3
            f"+ 2 {math.log(0.25)!r} 3 {math.log(0.75)!r}\n"     # 5: normalized
            "* 0 4\n* 1 5\n"
            f"+ 6 {math.log(0.5)!r} 7 {math.log(0.5)!r}\nEOF\n")
    with pytest.warns(PcWarning, match="do not sum to 1"):
        circuit = read_circuit(Source(text, "z.spn"), "spn")
    states = all_states([2, 2])
    f = [spn_probability(text, [int(v) for v in row]) for row in states.tolist()]
    assert math.isclose(sum(f), 2.0)
    expected = torch.tensor([math.log(v / sum(f)) for v in f], dtype=torch.float64)
    assert torch.allclose(log_likelihoods(circuit, states), expected, atol=1e-12)
