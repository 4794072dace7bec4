"""The checker: every diagnostic kind, its message and place; all of them at once; hand-built IR."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from pcc.errors import PcCheckError, PcSyntaxError, SourceError
from pcc.frontend import PcWarning, check_source, load, parse, validate
from pcc.ir import Circuit, Family, Input, Param, Sum, default_var_names

ROOT = Path(__file__).resolve().parent.parent
HEAD = "pc 1\nvars 4\nleaf bernoulli\n"
PAIR = HEAD + "input a {x0, x1} k=2\ninput b {x2, x3} k=2\n"


def problems(text: str) -> list[tuple[str, str, int | None]]:
    """(kind, message, line) of every diagnostic."""
    _, diagnostics = check_source(text)
    return [(d.kind, d.message, d.span.line if d.span else None) for d in diagnostics]


def only(text: str) -> tuple[str, str, int | None]:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("text, kind, message, line", [
    ("vars 2\nleaf bernoulli\ninput a {x0, x1} k=1\nroot a\n", "missing-header",
     "missing header: a .pc file must begin with `pc 1`", 1),
    ("vars 2\npc 1\nleaf bernoulli\ninput a {x0, x1} k=1\nroot a\n", "header-not-first",
     "the `pc` header must be the first statement", 2),
    ("pc 3\nvars 2\nleaf bernoulli\ninput a {x0, x1} k=1\nroot a\n", "unsupported-version",
     "unsupported format version 3; this pcc reads version 1 (`pc 1`)", 1),
    ("pc 1\nvars 2\nleaf bernoulli\nleaf normal\ninput a {x0, x1} k=1\nroot a\n", "duplicate-statement",
     "duplicate `leaf` statement (first on line 3)", 4),
    ("pc 1\npc 1\nvars 2\nleaf bernoulli\ninput a {x0, x1} k=1\nroot a\n", "duplicate-statement",
     "duplicate `pc` statement (first on line 1)", 2),
    ("pc 1\nleaf bernoulli\ninput a {0} k=1\nroot a\n", "missing-vars",
     "no `vars` statement: declare the variables, e.g. `vars 4` or `vars age sex income`", None),
    ("pc 1\nvars 1000001\nleaf bernoulli\ninput a {0} k=1\nroot a\n", "too-many-vars",
     "1000001 variables are more than pcc supports (1000000)", 2),
    ("pc 1\nvars 0\nleaf bernoulli\ninput a {0} k=1\nroot a\n", "no-vars", "the circuit has no variables", 2),
    ("pc 1\nvars a b a\nleaf bernoulli\ninput i {a, b} k=1\nroot i\n", "duplicate-var",
     "variable 'a' is declared twice (positions 0 and 2)", 2),
    (HEAD + "input a {x0, x1, y} k=1\ninput b {x2, x3} k=1\nsum s k=1 = a * b\nroot s\n", "unknown-var",
     "unknown variable 'y' (the variables are x0..x3)", 4),
    (HEAD + "input a {x0..x3, 4} k=1\nroot a\n", "var-out-of-range",
     "variable 4 in the scope of input 'a' is out of range: the circuit has 4 variables (0..3)", 4),
    (HEAD + "input a {0..4} k=1\nroot a\n", "var-out-of-range",
     "variable 4 in the scope of input 'a' is out of range: the circuit has 4 variables (0..3)", 4),
    (HEAD + "input a {x0, x3..x1} k=1\nroot a\n", "bad-range", "range x3..x1 runs backwards; write x1..x3", 4),
    (HEAD + "input a {x0..x3} k=1\ninput e {} k=1\nsum s k=1 = a | a * e\nroot s\n", "empty-scope",
     "input 'e' has an empty scope", 5),
    (HEAD + "input a {x0..x3, x2} k=1\nroot a\n", "duplicate-scope-var",
     "variable x2 appears twice in the scope of input 'a'", 4),
    (PAIR + "input a {x0} k=1\nsum s k=1 = a * b\nroot s\n", "duplicate-region",
     "region 'a' is defined twice (first on line 4)", 6),
    (PAIR + "sum s k=1 = a * bb\nroot s\n", "unknown-region",
     "sum 's' uses unknown region 'bb'; did you mean 'b'?", 6),
    (PAIR + "sum s k=1 = a * b\nroot t\n", "unknown-region", "the root 't' is not a region", 7),
    (PAIR + "sum s k=1 = a * b\nroot s\nparam z.weights = [[0.5, 0.5]]\n", "unknown-region",
     "param z.weights names unknown region 'z'", 8),
    (PAIR + "sum s k=1 = a * t\nsum t k=2 = b | s\nroot s\n", "cycle",
     "cycle in the region graph: s -> t -> s", 7),
    (PAIR + "input c {x1} k=2\nsum s k=1 = a * b | a * c * b\nroot s\n", "not-decomposable",
     "product a * c * b in sum 's' is not decomposable: 'a' and 'c' share x1", 7),
    (PAIR + "input c {x0, x1, x2} k=2\nsum s k=1 = a * b | c\nroot s\n", "not-smooth",
     "sum 's' is not smooth: partitions a * b and c cover different variables (only a * b has x3)", 7),
    (PAIR + "input c {x0..x3} k=2\nsum s k=-1 = a * b | c\nroot s\n", "bad-k",
     "k of sum 's' must be at least 1, got -1", 7),
    (PAIR + "sum s k=1e3 = a * b\nroot s\n", "bad-k", "k of sum 's' must be a whole number, got 1000.0", 6),
    (PAIR + "sum s = a * b\nroot s\n", "missing-k", "sum 's' needs k, its number of units, e.g. k=4", 6),
    (PAIR + "sum s k = a * b\nroot s\n", "missing-k", "k needs a value, e.g. k=4", 6),
    (PAIR + "sum s k=1 size=2 = a * b\nroot s\n", "unknown-option", "unknown option 'size' for sum 's'", 6),
    (PAIR + "sum s k=1 bernoulli = a * b\nroot s\n", "unknown-option",
     "a sum takes no leaf family: remove 'bernoulli' from sum 's'", 6),
    (PAIR + "sum s k=1 k=2 = a * b\nroot s\n", "duplicate-option", "k is given twice for sum 's'", 6),
    (HEAD + "input a {x0..x3} k=1 normal bernoulli\nroot a\n", "duplicate-option",
     "input 'a' has a second leaf family 'bernoulli'", 4),
    ("pc 1\nvars 1\nleaf gaussian\ninput a {x0} k=1\nroot a\n", "unknown-family",
     "unknown leaf family 'gaussian' for the `leaf` default (known: bernoulli, categorical, binomial, normal, mvnormal)", 3),
    ("pc 1\nvars 1\ninput a {x0} k=1 categorical(n=1)\nroot a\n", "bad-family-args",
     "n of categorical must be a whole number >= 2, got 1 (in input 'a')", 3),
    ("pc 1\nvars 1\ninput a {x0} k=1 binomial(n=2.5)\nroot a\n", "bad-family-args",
     "n of binomial must be a whole number >= 1, got 2.5 (in input 'a')", 3),
    ("pc 1\nvars 1\ninput a {x0} k=1 normal(n=2)\nroot a\n", "bad-family-args",
     "unknown argument 'n' for normal; it takes no arguments (in input 'a')", 3),
    ("pc 1\nvars 1\ninput a {x0} k=1 binomial(n=2, n=3)\nroot a\n", "bad-family-args",
     "argument n of binomial is given twice (in input 'a')", 3),
    ("pc 1\nvars 1\ninput a {x0} k=1\nroot a\n", "missing-family",
     "input 'a' has no leaf family: name one after its k (e.g. `k=4 bernoulli`) or set a default with `leaf`", 3),
    (PAIR + "input c {x0, x1} k=2 binomial(n=3)\nsum s k=1 = a * b | c * b\nroot s\n", "family-conflict",
     "variables x0, x1 are binomial(n=3) in input 'c' but bernoulli in input 'a'", 6),
    (PAIR + "sum s k=1 = a * b\n", "missing-root",
     "no `root` statement; add `root s` (the only region without a parent)", None),
    (PAIR, "missing-root", "no `root` statement; regions without a parent: a, b", None),
    ("pc 1\nvars 1\n", "missing-root", "no `root` statement and no regions", None),
    (PAIR + "sum s k=1 = a * b\nroot s\nroot a\n", "multiple-roots",
     "more than one `root` statement (first on line 7)", 8),
    (HEAD + "input a {x0, x1} k=2\nsum s k=1 = a\nroot s\n", "root-scope",
     "root 's' does not cover x2, x3: its scope must hold every variable", 6),
    (HEAD + "input a {x0..x3} k=1\nroot a\nparam a.p = [[0.5, 0.5], [0.5]]\n", "param-ragged",
     "param a.p is not a rectangular array: the lists at depth 2 differ in length", 6),
    (HEAD + "input a {x0..x3} k=1\nroot a\nparam a.p = [[0.5, 0.5, [0.5], 0.5]]\n", "param-ragged",
     "param a.p is not a rectangular array: the lists at depth 2 hold both numbers and lists", 6),
    (HEAD + "input a {x0..x3} k=1\nroot a\nparam a.mean = [[0.0, 0.0, 0.0, 0.0]]\n", "param-unknown-field",
     "'mean' is not a parameter of bernoulli input 'a'; its parameters: p", 6),
    (PAIR + "sum s k=1 = a * b\nroot s\nparam s.mixing = [[1.0]]\n", "param-unknown-field",
     "sum 's' has one partition, so no mixing weights", 8),
    (PAIR + "sum s k=1 = a * b\nroot s\nparam s.weight = [[1.0]]\n", "param-unknown-field",
     "'weight' is not a parameter of sum 's'; its parameters: weights; did you mean 'weights'?", 8),
    (PAIR + "sum s k=1 = a * b\nroot s\nparam s.weights[1] = [[[0.25, 0.25], [0.25, 0.25]]]\n", "param-index",
     "partition index 1 of param s.weights[1] is out of range: sum 's' has 1 partition", 8),
    (PAIR + "input c {x0..x3} k=1\nsum s k=1 = a * b | c\nroot s\nparam s.weights = [[1.0]]\n", "param-index",
     "param s.weights needs a partition index: sum 's' has 2 partitions, s.weights[0] .. s.weights[1]", 9),
    (PAIR + "sum s k=1 = a * b\nroot s\nparam a.p[0] = [[0.5, 0.5], [0.5, 0.5]]\n", "param-index",
     "param a.p[0] takes no index", 8),
    (PAIR + "sum s k=1 = a * b\nroot s\nparam s.weights = [[0.25, 0.25, 0.25, 0.25]]\n", "param-shape",
     "param s.weights has shape [1, 4], expected [1, 2, 2]", 8),
    (PAIR + "input c {x0..x3} k=1\nsum s k=1 = a * b | c\nroot s\nparam s.mixing = [[0.5, 0.5, 0.0]]\n",
     "param-shape", "param s.mixing has shape [1, 3], expected [1, 2]", 9),
    (HEAD + "input a {x0..x3} k=1 categorical(n=3)\nroot a\nparam a.probs = [[0.5, 0.5, 0.5, 0.5]]\n",
     "param-shape", "param a.probs has shape [1, 4], expected [1, 4, 3]", 6),
    ("pc 1\nvars 1\ninput a {x0} k=2 normal\nroot a\nparam a.std = [[1.0], [0.0]]\n", "param-value",
     "param a.std: 0.0 at [1, 0] is not positive and finite", 5),
    ("pc 1\nvars 1\ninput a {x0} k=1 normal\nroot a\nparam a.mean = [[1e999]]\n", "param-value",
     "param a.mean: inf at [0, 0] is not finite", 5),
    (PAIR + "sum s k=1 = a * b\nroot s\nparam s.weights = [[[1.5, -0.5], [0.0, 0.0]]]\n", "param-value",
     "param s.weights: -0.5 at [0, 0, 1] is negative or not finite", 8),
    (PAIR + "sum s k=2 = a * b\nroot s\nparam s.weights = [[[0.5, 0.5], [0.0, 0.0]], [[0.5, 0.25], [0.0, 0.0]]]\n",
     "param-not-normalized", "param s.weights: row [1] sums to 0.75, not 1", 8),
    ("pc 1\nvars 2\ninput a {x0, x1} k=1 categorical(n=2)\nroot a\nparam a.probs = [[[0.5, 0.5], [0.5, 0.4]]]\n",
     "param-not-normalized", "param a.probs: row [0, 1] sums to 0.9, not 1", 5),
    (PAIR + "sum s k=1 = a * b\nroot s\n" + "param a.p = [[0.5, 0.5], [0.5, 0.5]]\n" * 2, "duplicate-param",
     "param a.p is given twice (first on line 8)", 9),
])
def test_each_problem_is_one_precise_diagnostic(text, kind, message, line):
    assert only(text) == (kind, message, line)


def test_unreachable_regions_are_warned_about_not_rejected():
    text = PAIR + "input spare {x0} k=3\nsum s k=1 = a * b\nroot s\n"
    circuit, diagnostics = check_source(text)
    assert circuit is not None
    assert [(d.severity, d.kind, d.message) for d in diagnostics] == [
        ("warning", "unreachable", "region 'spare' is not reachable from the root 's'")]
    with pytest.warns(PcWarning, match="region 'spare' is not reachable"):
        parse(text)


def test_rows_may_miss_1_by_the_tolerance_but_not_more():
    head = PAIR + "sum s k=1 = a * b\nroot s\nparam s.weights = "
    assert only(head + "[[[0.25, 0.25], [0.25, 0.250002]]]\n")[0] == "param-not-normalized"
    assert problems(head + "[[[0.25, 0.25], [0.25, 0.2500009]]]\n") == []
    assert problems(head + "[[[0.25, 0.25], [0.25, 0.2499991]]]\n") == []


def test_names_and_ranges_of_named_variables_resolve_in_declaration_order():
    text = "pc 1\nvars age sex income\nleaf bernoulli\ninput a {age..sex} k=1\ninput b {income} k=1\n" \
           "sum s k=1 = a * b\nroot s\n"
    assert parse(text).region("a").scope == (0, 1)
    assert only(text.replace("{income}", "{incme}")) == (
        "unknown-var", "unknown variable 'incme'; did you mean 'income'?", 5)


def test_hints_in_a_big_circuit_look_one_edit_away():
    inputs = "".join(f"input leaf_{i} {{x0}} k=1\n" for i in range(600))
    _, diagnostics = check_source(f"pc 1\nvars 1\nleaf bernoulli\n{inputs}sum s k=1 = leaf_17 | laef_18\nroot s\n")
    assert [d.message for d in diagnostics if d.severity == "error"] == [
        "sum 's' uses unknown region 'laef_18'; did you mean 'leaf_18'?"]


def test_use_before_definition_is_allowed_and_root_may_be_an_input():
    assert parse(HEAD + "sum s k=3 = a * b\nroot s\ninput a {x0, x1} k=2\ninput b {x2, x3} k=2\n")
    assert parse(HEAD + "input a {x0..x3} k=5\nroot a\n").root == "a"


def test_a_cycle_is_reported_once_with_its_path():
    found = problems(HEAD + "input a {x0..x3} k=1\nsum s k=1 = t | a\nsum t k=1 = u\nsum u k=1 = s\nroot s\n")
    assert found == [("cycle", "cycle in the region graph: s -> t -> u -> s", 7)]


def test_every_problem_in_one_file_is_reported_at_once():
    text = """pc 2
vars 4
vars 5
leaf bernouli
input a {x0, x1, x1} k=0
input b {x2, x9} k=2 normal
input c {x0, x2} k=2 categorical(n=1)
input c {x3} k=2
input d {x1, x3}
sum top k=1 = a * b | c * d | a * e
sum loop k=2 = loop
root top
root a
param top.weights[7] = [[1.0]]
param b.p = [[1.5, 0.5]]
param b.mean = [[0.0, 0.0], [0.0, 0.0]]
param b.mean = [[0.0, 0.0], [0.0, 0.0]]
"""
    with pytest.raises(PcCheckError) as info:
        parse(text, path="all.pc")
    kinds = [d.kind for d in info.value.diagnostics]
    assert kinds == [
        "unsupported-version", "duplicate-statement", "unknown-family", "duplicate-scope-var", "bad-k",
        "unknown-var", "bad-family-args", "duplicate-region", "missing-k", "unknown-region",
        "cycle", "multiple-roots", "param-index", "param-unknown-field", "duplicate-param"]
    assert str(info.value).startswith("all.pc:1:4: error: unsupported format version 2")
    assert str(info.value).endswith(f"\n{len(kinds)} errors")


def test_check_source_never_raises_and_parse_raises_the_documented_types():
    assert check_source("pc 1 @")[0] is None
    assert check_source("pc 1 vars 2")[0] is None
    with pytest.raises(PcSyntaxError):
        parse("pc 1 @")
    with pytest.raises(PcCheckError):
        parse("pc 1 vars 2")


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.pc", "cannot read {}: no such file"),
    (lambda p: p, "cannot read {}: it is a directory, not a .pc file"),
])
def test_load_turns_unreadable_paths_into_syntax_errors(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(PcSyntaxError) as info:
        load(path)
    assert [d.message for d in info.value.diagnostics] == [message.format(path)]


def test_load_rejects_binary_and_non_utf8_files(tmp_path):
    (tmp_path / "bin.pc").write_bytes(b"pc 1\x00\x01")
    (tmp_path / "latin.pc").write_bytes("pc 1\nvars 2 # é\n".encode("latin-1"))
    for name, kind_message in [("bin.pc", "it is a binary file"), ("latin.pc", "not UTF-8 text (byte 0xe9)")]:
        with pytest.raises(SourceError) as info:
            load(tmp_path / name)
        assert kind_message in str(info.value)
    with pytest.raises(SourceError) as info:
        load(tmp_path / "latin.pc")
    assert info.value.diagnostics[0].span.line == 2


# ---------------------------------------------------------------------------- hand-built IR


def circuit(regions, root="s", vars=default_var_names(2), leaf=Family("bernoulli"), params=()):
    return Circuit(tuple(vars), tuple(regions), root, leaf, tuple(params))


GOOD = [Input("a", (0,), 2), Input("b", (1,), 2), Sum("s", 1, (("a", "b"),))]


def test_hand_built_valid_ir_has_no_diagnostics():
    assert validate(circuit(GOOD)) == []


@pytest.mark.parametrize("ir, kind, message", [
    (circuit(GOOD + [Sum("e", 1, ())], root="s"), "empty-partition", "sum 'e' has no partitions"),
    (circuit([Input("a", (0, 1), 2), Sum("s", 1, (("a",), ()))]), "empty-partition",
     "sum 's' has an empty partition (index 1)"),
    (circuit([Input("a b", (0, 1), 2)], root="a b"), "bad-name",
     "region name 'a b' is not a name: use letters, digits and '_', not starting with a digit"),
    (circuit([Input("a", (0, 1), 2)], root="a", vars=("x", "2y")), "bad-name",
     "variable name '2y' is not a name: use letters, digits and '_', not starting with a digit"),
    (circuit([Input("sum", (0, 1), 2)], root="sum"), "reserved-word",
     "'sum' is a reserved word and cannot name a region"),
    (circuit([Input("a", (0, 1), 2)], root="a", vars=("x", "root")), "reserved-word",
     "'root' is a reserved word and cannot name a variable"),
    (circuit([Input("a", (0, "x1"), 2)], root="a"), "var-out-of-range",
     "the scope of input 'a' holds 'x1', which is not a variable index"),
    (circuit([Input("a", (0, 1), 0)], root="a"), "bad-k", "k of input 'a' must be at least 1, got 0"),
    (circuit([Input("a", (0, 1), 2.0)], root="a"), "bad-k", "k of input 'a' must be a whole number, got 2.0"),
    (circuit(GOOD, root=""), "missing-root",
     "no `root` statement; add `root s` (the only region without a parent)"),
    (circuit(GOOD, params=[Param("s", "weights", None, (1, 2, 2), (0.25,) * 4)]), "param-index",
     "param s.weights needs a partition index: sum 's' has 1 partitions, s.weights[0] .. s.weights[0]"),
    (circuit(GOOD, params=[Param("s", "weights", 0, (1, 2, 2), (0.25,) * 3)]), "param-shape",
     "param s.weights has 3 values for shape [1, 2, 2]"),
    (circuit(GOOD, leaf=Family("categorical")), "bad-family-args",
     "categorical needs n, e.g. categorical(n=4) (in the `leaf` default)"),
    (circuit([Input("a", (0,), 2), Input("b", (1,), 2), Sum("s", 1, (("a", "b"),), elementwise=(1,))]),
     "bad-elementwise", "sum 's' marks partition 1 as element-wise but has 1 partition"),
    (circuit([Input("a", (0,), 2), Input("b", (1,), 3), Sum("s", 1, (("a", "b"),), elementwise=(0,))]),
     "elementwise-k", "element-wise product a .* b in sum 's' needs children with the same k: "
     "'a' has k=2, 'b' has k=3"),
    (circuit([Input("a", (0,), 2), Input("b", (1,), 2), Sum("s", 1, (("a", "b"),), elementwise=(0,))],
             params=[Param("s", "weights", 0, (1, 2, 2), (0.25,) * 4)]), "param-shape",
     "param s.weights has shape [1, 2, 2], expected [1, 2]"),
])
def test_hand_built_ir_gets_messages_that_name_the_region(ir, kind, message):
    found = [(d.kind, d.message, d.span) for d in validate(ir) if d.severity == "error"]
    assert found == [(kind, message, None)]


def test_elementwise_marks_of_one_child_partitions_are_dropped():
    """A partition of one child is the same product either way: the IR keeps one spelling."""
    a = Sum("s", 2, (("a",), ("b", "c")), elementwise=(1, 0, 1))
    assert a.elementwise == (1,) and a == Sum("s", 2, (("a",), ("b", "c")), elementwise=(1,))
    assert a.partition_text(0) == "a" and a.partition_text(1) == "b .* c"


def test_hand_built_diagnostics_render_without_a_place():
    [d] = validate(circuit([Input("a", (0,), 2)], root="a"))
    assert d.render() == "<input>: error: root 'a' does not cover x1: its scope must hold every variable"


def test_every_diagnostic_kind_is_documented_and_exercised():
    source = "\n".join(p.read_text() for p in (ROOT / "pcc" / "frontend").glob("*.py"))
    kinds = set(re.findall(r'(?:error|warning)\(\s*"([a-z-]+)"', source))
    kinds |= set(re.findall(r'Diagnostic\("error", "([a-z-]+)"', source))
    docs = (ROOT / "docs" / "ir.md").read_text()
    assert {k for k in kinds if f"`{k}`" not in docs} == set()
    examples = {p.stem for p in (ROOT / "ir_examples" / "invalid").glob("*.pc")}
    tested_here = Path(__file__).read_text()
    assert {k for k in kinds if k not in examples and f'"{k}"' not in tested_here} == set()
    assert len(kinds) >= 40


def test_warnings_are_python_warnings_of_their_own_class():
    assert issubclass(PcWarning, UserWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse(PAIR + "sum s k=1 = a * b\nroot s\n")  # no warning for a clean circuit
