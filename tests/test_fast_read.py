"""The frontend's fast path: whatever it reads equals what the full parser builds (statement spans
included), and it never reads text the full parser rejects."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcc.frontend import check_source, parse, to_text
from pcc.frontend.builder import build
from pcc.frontend.diagnostics import Reporter
from pcc.frontend.fast import read_fast
from pcc.frontend.syntax import parse_statements
from pcc.structures import poon_domingos
from random_circuits import random_circuit
from test_fuzz_frontend import EXAMPLES, SETTINGS, mutate

FOLDER = Path(__file__).resolve().parent.parent / "ir_examples"
HEAD = "pc 1\nvars 4\nleaf bernoulli\n"


def read_full(text: str):
    """(circuit, diagnostics) as the full parser reads `text` (circuit None on a syntax error)."""
    report = Reporter(None, text)
    statements = parse_statements(text, report)
    circuit = None if statements is None else build(statements, report)[0]
    return circuit, report.diagnostics


def assert_same(text: str):
    fast = read_fast(text)
    assert fast is not None, "the fast path doubted a well-formed text"
    full, diagnostics = read_full(text)
    assert not diagnostics and fast == full
    assert [r.span for r in fast.regions] == [r.span for r in full.regions]
    assert [p.span for p in fast.params] == [p.span for p in full.params]


@pytest.mark.parametrize("path", sorted(FOLDER.glob("*.pc")), ids=lambda p: p.name)
def test_every_example_reads_the_same_both_ways(path):
    assert_same(path.read_text())


@pytest.mark.parametrize("seed", range(12))
def test_random_circuits_read_the_same_both_ways(seed):
    circuit = random_circuit(seed, num_vars=6, families=("bernoulli", "categorical", "normal"))
    assert_same(to_text(circuit))


def test_a_pd_with_channels_reads_the_same_both_ways():
    assert_same(to_text(poon_domingos(6, 8, [4, 2], channels=3, k=3)))


@pytest.mark.parametrize("text", [
    HEAD + "input a {x0..x3}k=4bernoulli\nsum s k=1 = a\nroot s\n",  # tokens need no spaces
    HEAD + "input a { 3 , 0..2 } k = +4 categorical ( n = 3 )\nsum s k=1 = a\nroot s\n",
    HEAD + "input a\n  {x0, x1}\n  k=2\ninput b {x2..x3} k=2\nsum s k=1 = a*b | a .* b\nroot s\n"
    "param s.weights[1] = [\n  [0.5, 0.5]\n]\nparam s.mixing = [[0.25,\n0.75]]\n",
    "pc 1\nvars u v w\nleaf normal\ninput a {v, u} k=1\ninput b {w} k=1\nsum s k=1 = a * b\nroot s\n"
    "param a.mean = [[1e3, -2.5]]\nparam a.std = [[+1, 2.0E-1]]\n",
    "  pc 1 # header\n\tvars 2 # two\nleaf bernoulli\ninput a {x0..x1} k=1 # a\nsum s k=1 = a\nroot s\n"
    "param a.p = [[0.5, 1]]\nparam s.weights = 1\n",
])
def test_odd_but_valid_layouts_read_the_same_both_ways(text):
    assert_same(text)


TIED = HEAD + "input a {x0..x1} k=2\ninput b {x2..x3} k=2\nsum s k=1 = a .* b\nroot s\n"


@pytest.mark.parametrize("text", [
    TIED + "tie a b\n",
    TIED + "tie a\n  b # across lines\n",
    TIED + "tie a b\nparam a.p = [[0.5, 0.25], [0.5, 0.75]]\n",
])
def test_ties_read_the_same_both_ways(text):
    assert_same(text)
    assert read_fast(text).ties[0].regions == ("a", "b")


@pytest.mark.parametrize("text", [
    TIED + "tie a b\nrot s\n",  # a misspelt keyword after a tie
    TIED + "tie a c\n",  # no region c
    TIED + "tie a, b\n",
])
def test_doubtful_ties_are_left_to_the_full_parser(text):
    assert read_fast(text) is None
    assert read_full_and_check(text)


@pytest.mark.parametrize("text", [
    HEAD + "input a {x0..x3} k=4\nsum s k=1 = a\nroot s\nroot s\n",  # a second root
    HEAD + "input a {x0..x3} k=4\nsum s k=1 = a * sum\nroot s\n",  # a keyword as a name
    HEAD + "input a {x0..x3} k=2sum\nsum s k=1 = a\nroot s\n",
    HEAD + "input a {x0..x3} k=4\nsum s k=1 = a * b .* c\nroot s\n",  # mixed products
    HEAD + "input a {x0..x3} k=4\nsum s k=1 = a\nroot s\nparam a.p = [[0.5 0.5]]\n",
    HEAD + "input a {x0..x3} k=4\nsum s k=1 = a\nroot s\nparam a.p = [[0.5], [0.5, 0.5]]\n",
    HEAD + "input a {x0..x3} k=4\nsum s k=1 = a\nroot s\nparam a.p = [[.5]]\n",
    HEAD + "input a {x0..x3} k=1.5\nsum s k=1 = a\nroot s\n",
    HEAD + "input a {x3..x0} k=1\nsum s k=1 = a\nroot s\n",
    HEAD + "input a {x0..x4} k=1\nsum s k=1 = a\nroot s\n",
    HEAD + "input a {y0} k=1\nsum s k=1 = a\nroot s\n",
    HEAD + "input a {x0..x3} k=1\x0b\nsum s k=1 = a\nroot s\n",  # a vertical tab is no whitespace
    "vars 4\npc 1\nleaf bernoulli\ninput a {x0..x3} k=1\nsum s k=1 = a\nroot s\n",
])
def test_what_the_full_parser_reports_is_left_to_it(text):
    assert read_fast(text) is None
    assert read_full(text)[1]


def test_text_the_fast_path_doubts_is_still_read():
    text = HEAD + "input a {x0..x3} k=4 sum s k=1 = a\nroot s\n"  # two statements on a line
    assert read_fast(text) is None
    assert parse(text) == read_full(text)[0] and not read_full(text)[1]


@settings(parent=SETTINGS, max_examples=120)
@given(st.sampled_from(sorted(EXAMPLES)), st.data())
def test_the_fast_path_reads_nothing_the_full_parser_rejects(name, data):
    text = mutate(EXAMPLES[name], data)
    fast = read_fast(text)
    if fast is not None:
        full, diagnostics = read_full(text)
        assert full == fast and not [d for d in diagnostics if d.kind == "syntax-error"]
    assert check_source(text)[1] == read_full_and_check(text)  # whichever path ran


def read_full_and_check(text: str):
    """The diagnostics of `check_source` as the full path alone gives them."""
    from pcc.frontend.checks import check
    text = text[1:] if text.startswith("\ufeff") else text
    report = Reporter(None, text)
    statements = parse_statements(text, report)
    if statements is None:
        return report.sorted()
    circuit, info = build(statements, report)
    check(circuit, report, info)
    return report.sorted()


def test_parse_takes_the_fast_path_only_when_nothing_is_to_be_said():
    unreachable = HEAD + "input a {x0..x3} k=1\ninput b {x0..x3} k=1\nsum s k=1 = a\nroot s\n"
    assert read_fast(unreachable) is not None
    circuit, diagnostics = check_source(unreachable)
    assert [d.kind for d in diagnostics] == ["unreachable"]
    assert circuit.region("a").scope_spans is not None  # read the full way, every span there
    assert parse(HEAD + "input a {x0..x3} k=1\nsum s k=1 = a\nroot s\n").region("a").scope_spans is None
