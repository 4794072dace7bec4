"""import -> export -> import gives the same circuit (up to region names and float rounding), the
exported files mean the same distribution, and circuits a format cannot hold are refused with
the reason."""
import dataclasses

import pytest
import torch

from interchange_helpers import (all_states, assert_same_circuit, compiled, example_text,
                                 import_text, log_likelihoods)
from pcc.frontend import parse, to_text
from pcc.interchange.export import ExportError, export_text
from pcc.ir import Family, Input, Param, Sum


@pytest.mark.parametrize("name, fmt", [("little.psdd", "psdd"), ("little.jpc", "jpc"),
                                       ("little.spflow", "spflow")])
def test_round_trip_in_the_same_format(name, fmt):
    original = import_text(example_text(name), fmt)
    again = import_text(export_text(original, fmt)[""], fmt)
    assert_same_circuit(original, again)


@pytest.mark.parametrize("name, fmt", [("little.psdd", "psdd"), ("little.spn", "spn"),
                                       ("little.jpc", "jpc"), ("little.spflow", "spflow")])
def test_every_node_level_circuit_round_trips_through_jpc(name, fmt):
    original = import_text(example_text(name), fmt)
    assert_same_circuit(original, import_text(export_text(original, "jpc")[""], "jpc"))


def test_pc_text_round_trip_is_exact():
    """`pcc import` writes .pc text that parses back to the very same circuit."""
    for name, fmt in (("little.psdd", "psdd"), ("little.jpc", "jpc"), ("little.spflow", "spflow")):
        circuit = import_text(example_text(name), fmt)
        assert parse(to_text(circuit)) == circuit


def test_shared_psdd_through_spflow_tree_keeps_the_distribution():
    """SPFlow text is a tree: the shared node is written twice, the distribution is unchanged."""
    psdd = import_text(example_text("little.psdd"), "psdd")
    text = export_text(psdd, "spflow")[""]
    assert text.count("Bernoulli(V1|p=0.3)") == 2
    tree = import_text(text, "spflow")
    states = all_states([2, 2, 2])
    assert torch.allclose(log_likelihoods(psdd, states), log_likelihoods(tree, states), atol=1e-12)


def test_psdd_export_writes_the_vtree_the_circuit_follows():
    files = export_text(import_text(example_text("little.psdd"), "psdd"), "psdd")
    assert vtree_shape(files[".vtree"]) == vtree_shape(example_text("little.vtree"))


def vtree_shape(text: str):
    """The vtree as nested pairs of variables."""
    nodes, last = {}, None
    for t in (line.split() for line in text.splitlines()):
        if t and t[0] in ("L", "I"):
            nodes[t[1]] = int(t[2]) if t[0] == "L" else (nodes[t[2]], nodes[t[3]])
            last = t[1]
    return nodes[last]


def test_export_of_a_trained_model_uses_its_parameters():
    """Parameters come from the model (`ir_params`), not from the file."""
    circuit = import_text(example_text("little.jpc"), "jpc")
    model = compiled(circuit)
    with torch.no_grad():
        model.mix_logits[0].copy_(torch.log_softmax(torch.tensor([[[1.0], [3.0]]]), 1))
    exported = dataclasses.replace(model.circuit, params=model.ir_params())
    again = import_text(export_text(exported, "jpc")[""], "jpc")
    states = all_states([2, 3, 3, 2])
    with torch.no_grad():
        assert torch.allclose(model(states), log_likelihoods(again, states), atol=1e-6)


def test_psdd_refusals_say_why():
    spflow = import_text(example_text("little.spflow"), "spflow")
    with pytest.raises(ExportError, match="PSDD leaves are literals and Bernoulli"):
        export_text(spflow, "psdd")
    spn = import_text(example_text("little.spn"), "spn")
    with pytest.raises(ExportError, match="partition of 1 children"):
        export_text(spn, "psdd")
    crossed = import_text(example_text("little_rg.json"), "cirkit", k=1)
    params = tuple(Param(r.name, "p", None, (1, 1), (0.5,)) for r in crossed.inputs) + \
        (Param(crossed.root, "mixing", None, (1, 2), (0.5, 0.5)),)
    with pytest.raises(ExportError, match="not structured-decomposable"):
        export_text(dataclasses.replace(crossed, params=params), "psdd")


def test_spflow_refuses_binomial_leaves():
    jpc = import_text(example_text("little.jpc"), "jpc")
    with pytest.raises(ExportError, match="binomial leaf"):
        export_text(jpc, "spflow")


def test_missing_parameters_are_named():
    circuit = import_text(example_text("little.psdd"), "psdd")
    with pytest.raises(ExportError, match="has no p parameters"):
        export_text(dataclasses.replace(circuit, params=()), "jpc")


def test_multi_variable_inputs_become_products_in_jpc():
    circuit = parse("pc 1\nvars 2\nleaf bernoulli\ninput a {x0, x1} k=1\ninput b {x0, x1} k=1\n"
                    "sum top k=1 = a | b\nroot top\nparam a.p = [[0.1, 0.2]]\n"
                    "param b.p = [[0.7, 0.6]]\nparam top.mixing = [[0.3, 0.7]]\n")
    again = import_text(export_text(circuit, "jpc")[""], "jpc")
    assert all(isinstance(r, Input) and len(r.scope) == 1 for r in again.inputs)
    assert any(isinstance(r, Sum) and len(r.partitions[0]) == 2 for r in again.sums)
    states = all_states([2, 2])
    assert torch.allclose(log_likelihoods(circuit, states), log_likelihoods(again, states),
                          atol=1e-12)
    assert again.leaf == Family("bernoulli")
