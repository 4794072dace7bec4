"""The grammar and the syntax layer: what parses, into what, where; syntax errors in words."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from lark import Lark
from lark.lexer import Token
from lark.parsers.lalr_analysis import LALR_Analyzer
from lark.tree import Tree

from pcc.errors import PcSyntaxError
from pcc.frontend import check_source, parse
from pcc.frontend.builder import build
from pcc.frontend.diagnostics import Reporter
from pcc.frontend.naming import RESERVED_WORDS
from pcc.frontend.syntax import GRAMMAR, _ToStatements, parse_statements
from pcc.ir import Family, Input, Span, Sum

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "ir_examples").glob("*.pc"))
HEAD = "pc 1\nvars 4\nleaf bernoulli\n"


def statements(text: str):
    report = Reporter(None, text)
    result = parse_statements(text, report)
    assert result is not None, [d.render() for d in report.diagnostics]
    return result


def syntax_errors(text: str) -> list[str]:
    """`LINE:COL message` of each syntax error."""
    with pytest.raises(PcSyntaxError) as info:
        parse(text)
    assert all(d.kind == "syntax-error" for d in info.value.diagnostics)
    return [f"{d.span.line}:{d.span.col} {d.message}" for d in info.value.diagnostics]


# ---------------------------------------------------------------------------- the grammar itself


def test_grammar_is_lalr1_without_conflicts():
    parser = Lark(GRAMMAR.read_text(), parser="lalr", lexer="basic", maybe_placeholders=True)
    LALR_Analyzer(parser.parser.parser_conf, strict=True).compute_lalr()  # raises on any conflict


def test_reserved_words_are_the_grammar_keywords():
    keywords = re.findall(r'^([A-Z]+): "([a-z]+)"$', GRAMMAR.read_text(), re.MULTILINE)
    assert keywords == [(word.upper(), word) for word in RESERVED_WORDS]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_fast_lexer_agrees_with_larks_contextual_lexer(path):
    text = path.read_text()
    reference = Lark(GRAMMAR.read_text(), parser="lalr", lexer="contextual", transformer=_ToStatements(),
                     maybe_placeholders=True)
    assert statements(text) == reference.parse(text)


def test_no_lark_object_leaves_the_frontend():
    text = Path(EXAMPLES[0]).read_text() if EXAMPLES else HEAD
    seen = []

    def walk(x):
        seen.append(type(x))
        if isinstance(x, (list, tuple)):
            for y in x:
                walk(y)
        elif hasattr(x, "__dataclass_fields__"):
            for name in x.__dataclass_fields__:
                walk(getattr(x, name))

    walk(statements(text))
    walk(parse(HEAD + "input a {x0..x3} k=2 categorical(n=2)\nsum s k=1 = a\nroot s\n"
               "param s.weights = [[0.5, 0.5]]\n"))
    assert not [t for t in seen if issubclass(t, (Token, Tree)) or t.__module__.startswith("lark")]


# ---------------------------------------------------------------------------- what parses, into what


def test_statements_may_share_lines_and_span_lines():
    one_line = parse("pc 1 vars 2 leaf bernoulli input a {x0, x1} k=2 sum s k=1 = a root s")
    spread = parse("pc\n1\nvars\n2 leaf\nbernoulli\ninput a\n{\nx0\n,\nx1\n}\nk\n=\n2\n"
                   "sum s k = 1 =\na\nroot\ns\n")
    assert one_line == spread
    assert one_line.region("a").scope == (0, 1)


def test_comments_are_kept_with_their_lines_and_ignored_by_equality():
    text = ("# top\npc 1 # header\nvars 2\nleaf bernoulli\n# before a\ninput a {x0, x1} k=2\nsum s k=1 = a\n"
            "root s #end\n")
    circuit = parse(text)
    assert [(c.text, c.line) for c in circuit.comments] == [
        ("# top", 1), ("# header", 2), ("# before a", 5), ("#end", 8)]
    assert circuit == parse(re.sub(r"#[^\n]*", "", text))


def test_options_come_in_any_order_and_families_take_arguments():
    c = parse("pc 1 vars 3\ninput a {x0} bernoulli k=2\ninput b {x1} k=2 categorical(n=3)\n"
              "input c {x2} binomial( n = 7 ) k=2\nsum s k=1 = a * b * c\nroot s\n")
    assert [(r.k, r.family) for r in c.inputs] == [
        (2, Family("bernoulli")), (2, Family("categorical", (("n", 3),))), (2, Family("binomial", (("n", 7),)))]


def test_scopes_take_names_indices_and_ranges_in_declaration_order():
    c = parse("pc 1 vars age sex income job leaf bernoulli\n"
              "input a {age..income} k=1\ninput b {3} k=1\ninput c {0..1, job} k=1\ninput d {income} k=1\n"
              "input e {sex, age} k=1\ninput f {income..job} k=1\nsum s k=1 = a * b | c * d | e * f\nroot s\n")
    assert [r.scope for r in c.inputs] == [(0, 1, 2), (3,), (0, 1, 3), (2,), (1, 0), (2, 3)]


def test_a_sum_has_partitions_of_one_or_more_children():
    c = parse(HEAD + "input a {x0..x3} k=2\ninput b {x0, x1} k=2\ninput c {x2} k=2\ninput d {x3} k=2\n"
              "sum s k=3 = a | b * c * d\nroot s\n")
    assert c.region("s") == Sum("s", 3, (("a",), ("b", "c", "d")))


def test_params_nest_span_lines_and_read_every_number_form():
    c = parse(HEAD + "input a {x0..x3} k=2\nsum s k=1 = a\nroot s\nparam a.p = [\n  [0.5, 1, 0, 1e-3],\n"
              "  [+0.25, 2.5E-1, 0.0, 1.0e0]\n]\nparam s.weights = [[0.5, 0.5]]\n")
    assert c.params[0].shape == (2, 4)
    assert c.params[0].values == (0.5, 1.0, 0.0, 0.001, 0.25, 0.25, 0.0, 1.0)
    assert c.params[1].index == 0  # `weights` of a one-partition sum is partition 0


def test_crlf_line_endings_tabs_and_a_byte_order_mark_are_accepted():
    text = HEAD + "input a {x0..x3}\tk=2\nsum s k=1 = a\nroot s\n"
    assert parse("\ufeff" + text.replace("\n", "\r\n")) == parse(text)


def test_an_empty_source_parses_to_no_statements():
    assert statements("") == [] and statements("  # only a comment\n\n") == []


# ---------------------------------------------------------------------------- spans


def read_full(text: str):
    """The circuit the full parser (statements, then the builder) reads; diagnostics come from it."""
    circuit, _ = build(statements(text), Reporter(None, text))
    return circuit


def test_spans_point_at_the_tokens():
    text = "pc 1\nvars 4\nleaf bernoulli\ninput a {x0, x1..x3} k=4 categorical(n=2)\nsum top k=1 = a\nroot top\n" \
           "param top.weights = [[0.25, 0.25, 0.25, 0.25]]\n"
    c = read_full(text)
    a, top = c.region("a"), c.region("top")
    assert a.span == Span(4, 7, 4, 8)
    assert a.scope_spans == (Span(4, 10, 4, 12), Span(4, 14, 4, 20))
    assert a.k_span == Span(4, 22, 4, 25)
    assert a.family.span == Span(4, 26, 4, 42)
    assert top.span == Span(5, 5, 5, 8) and top.child_spans == ((Span(5, 15, 5, 16),),)
    assert c.params[0].span == Span(7, 7, 7, 18)
    assert c.leaf.span == Span(3, 6, 3, 15)
    fast, _ = check_source(text)  # the fast path keeps each statement's own span
    assert fast == c and [r.span for r in fast.regions] == [a.span, top.span]
    assert fast.params[0].span == c.params[0].span


def test_spans_of_an_indexed_param_include_the_index():
    c = parse(HEAD + "input a {x0..x3} k=1\nsum s k=1 = a | a\nroot s\nparam s.weights[1] = [[1]]\n")
    assert c.params[0].span == Span(7, 7, 7, 19)


# ---------------------------------------------------------------------------- syntax errors


@pytest.mark.parametrize("text, error", [
    (HEAD + "sum top k=1 = a * b |", "4:22 expected a region name, found end of file"),
    (HEAD + "sum top k=1 = a b", "4:17 expected '.*', '*', '|' or a new statement, found name 'b'"),
    (HEAD + "sum top k=1 a * b", "4:15 expected an option such as k=4 or '=', found '*'"),
    (HEAD + "input a {x0 x1} k=2", "4:13 expected ',', '}' or '..', found name 'x1'"),
    (HEAD + "input a {x0,} k=2", "4:13 expected a variable, found '}'"),
    (HEAD + "input a x0 k=2", "4:9 expected '{', found name 'x0'"),
    (HEAD + "input a {x0} k=", "4:16 expected a number, found end of file"),
    (HEAD + "input a {x0} k=2 = 3",
     "4:18 expected an option such as k=4, a leaf family or a new statement, found '='"),
    (HEAD + "input a {x0} k=2 categorical(3)", "4:30 expected an argument name or ')', found number 3; did you mean "
     "'categorical(n=3)'?"),
    ("pc", "1:3 expected the format version (an integer), found end of file"),
    ("pc 1 vars", "1:10 expected the number of variables or their names, found end of file"),
    ("pc 1 vars 2 leaf", "1:17 expected a leaf family, found end of file"),
    ("pc 1 vars 2 root", "1:17 expected a region name, found end of file"),
    ("pc 1 vars 2 param s weights", "1:21 expected '.', found name 'weights'"),
    ("pc 1 vars 2 param s.", "1:21 expected a field name, found end of file"),
    ("pc 1 vars 2 param s.weights[] = 1", "1:29 expected a partition index, found ']'"),
    ("pc 1 vars 2 param s.weights = [1 2]", "1:34 expected ',' or ']', found number 2"),
    ("pc 1 vars 2 param s.weights = [1,]", "1:34 expected a number or '[', found ']'"),
    ("hello", "1:1 expected a statement (pc, vars, leaf, input, sum, root, param, tie), found name 'hello'"),
    ("pc 1 @", "1:6 expected a statement (pc, vars, leaf, input, sum, root, param, tie), found character '@'"),
    ("pc 1 vars a\x00", "1:12 expected a variable name or a new statement, found character U+0000"),
    ("pc 1 vars 1234567890123456789",
     "1:11 expected the number of variables or their names, found a number with more than 18 digits"),
    ("pc 1\ninput sum {x0} k=1", "2:7 expected a region name, found keyword 'sum'"),
])
def test_syntax_errors_say_what_was_expected(text, error):
    assert syntax_errors(text) == [error]


def test_every_syntax_error_is_reported_once_per_statement():
    text = (HEAD + "input a {x0 x1} k=2\ninput b {x2, x3} k=2\nsum top k=1 = a *\n"
            "root top\nparam a.p = [[0.5, 0.5], [0.5 0.5]]\ninput c {x0} k=2 @\n")
    assert syntax_errors(text) == [
        "4:13 expected ',', '}' or '..', found name 'x1'",
        "6:18 expected a region name, found the end of the line (line 7 starts a new 'root' "
        "statement)",
        "8:31 expected ',' or ']', found number 0.5",
        "9:18 expected an option such as k=4, a leaf family or a new statement, found character '@'",
    ]


def test_syntax_errors_come_with_the_source_line_and_a_caret():
    with pytest.raises(PcSyntaxError) as info:
        parse(HEAD + "sum top k=1 = a b\n", path="model.pc")
    assert str(info.value) == (
        "model.pc:4:17: error: expected '.*', '*', '|' or a new statement, found name 'b'\n"
        "    sum top k=1 = a b\n"
        "                    ^")


def test_input_after_the_recovery_point_is_still_checked_for_syntax():
    text = "pc 1 vars 2 input a {x0} k=2 sum\n" + "input b {x1} k=2\n" * 3 + "sum s k=1 = a *\n"
    assert syntax_errors(text) == [
        "1:33 expected a region name, found the end of the line (line 2 starts a new 'input' "
        "statement)",
        "5:16 expected a region name, found end of file",
    ]


@pytest.mark.parametrize("text, error", [
    (HEAD + "input b {x1} k=\ninput a {x0} k=3\n",
     "4:16 expected a number, found the end of the line (line 5 starts a new 'input' statement)"),
    (HEAD + "input b {x1} k=  # no value\n\n# next\nroot b\n",
     "4:16 expected a number, found the end of the line (line 7 starts a new 'root' statement)"),
    (HEAD + "sum s k=1 = a *\nparam a.p = 0.5\n",
     "4:16 expected a region name, found the end of the line (line 5 starts a new 'param' "
     "statement)"),
])
def test_a_value_missing_at_the_end_of_a_line_is_reported_there(text, error):
    """Not at the next statement's keyword: the caret goes where the value should be."""
    assert syntax_errors(text) == [error]


def test_reports_the_whole_file_error_when_no_chunk_fails_alone():
    # A statement keyword that is not at the start of a line leaves no chunk boundary there.
    assert syntax_errors("pc 1 vars 2 root") == ["1:17 expected a region name, found end of file"]


@pytest.mark.parametrize("bad", ["input", "input a", "sum", "leaf categorical(", "param a.p = [[", "vars 2 3"])
def test_truncated_statements_are_syntax_errors_not_crashes(bad):
    assert len(syntax_errors("pc 1\n" + bad)) == 1


def test_parse_builds_the_same_ir_as_a_hand_built_circuit():
    c = parse(HEAD + "input a {x0, x1} k=4\ninput b {x2, x3} k=4\nsum top k=1 = a * b\nroot top\n")
    assert c.regions == (Input("a", (0, 1), 4), Input("b", (2, 3), 4), Sum("top", 1, (("a", "b"),)))
