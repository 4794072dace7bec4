"""Hints for the usual slips: misspelt statement keywords (reported at the word, whatever came
before) and values written as other languages write them. A test per message, and a fuzz run
of keyword typos over the valid examples."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcc.errors import PcSyntaxError
from pcc.frontend import check_source, parse
from pcc.frontend.naming import RESERVED_WORDS

EXAMPLES = {p.name: p.read_text() for p in sorted(
    (Path(__file__).resolve().parent.parent / "ir_examples").glob("*.pc"))}
HEAD = "pc 1\nvars 4\nleaf bernoulli\n"
PAIR = HEAD + "input a {x0, x1} k=2\ninput b {x2, x3} k=2\n"


def diagnostics(text: str) -> list[str]:
    """`LINE:COL severity kind: message` of every diagnostic."""
    _, found = check_source(text)
    return [f"{d.span.line}:{d.span.col} {d.severity} {d.kind}: {d.message}" if d.span else
            f"{d.severity} {d.kind}: {d.message}" for d in found]


# ---------------------------------------------------------------------------- unknown statements

@pytest.mark.parametrize("before", [
    "",  # after an input
    "sum s k=1 = a * b\n",  # after a partition, where a name would go on the product
    "leaf bernoulli\n",  # after a family, where '(' could follow
    "root s\n",
    "param a.p = [[0.5, 0.5], [0.5, 0.5]]\n",
])
def test_a_misspelt_sum_is_reported_at_its_first_column_whatever_came_before(before):
    found = diagnostics(PAIR + before + "summ top k=1 = a * b\nroot top\n")
    line = 6 + before.count("\n")
    assert found[0] == f"{line}:1 error unknown-statement: unknown statement 'summ'; did you mean 'sum'?"


def test_an_unknown_statement_is_a_syntax_error():
    with pytest.raises(PcSyntaxError):
        parse(PAIR + "imput c {x0} k=2\n")


def test_a_misspelt_keyword_that_parses_as_input_options_is_reported_as_a_statement():
    """`rooot top` after an input reads as two leaf families; it is reported as a statement."""
    found = diagnostics(PAIR + "sum top k=1 = a * b\ninput c {x0} k=2\nrooot top\n")
    assert found[0] == "8:1 error unknown-statement: unknown statement 'rooot'; did you mean 'root'?"
    assert not any("leaf family" in f for f in found)


def test_the_lines_of_an_unknown_statement_go_with_it_and_the_next_one_is_reported_too():
    text = HEAD + "imput a {x0, x1}\n   k=2\ninput b {x2, x3} k=2\nsumm top k=1 = a * b\nroot top\n"
    assert diagnostics(text) == [
        "4:1 error unknown-statement: unknown statement 'imput'; did you mean 'input'?",
        "7:1 error unknown-statement: unknown statement 'summ'; did you mean 'sum'?",
    ]


def test_a_misspelt_keyword_read_as_variable_names_is_a_warning_beside_the_errors():
    text = "pc 1\nvars a b\nrooot top\nleaf bernoulli\ninput x {a} k=2\ninput y {b} k=2\nsum t k=1 = x * y\n"
    found = diagnostics(text)
    assert found[0] == ("3:1 warning unknown-statement: unknown statement 'rooot'; did you mean "
                        "'root'? (read as a variable of the `vars` statement on line 2)")
    assert any("no `root` statement" in f for f in found)


def test_names_that_start_a_line_in_a_valid_file_draw_nothing():
    """A variable list may go on over lines; a name like a keyword there is just a name."""
    text = ("pc 1\nvars inputs\n  sums roots\nleaf bernoulli\ninput a {inputs} k=1\n"
            "input b {sums} k=1\ninput c {roots} k=1\nsum t k=1 = a *\n  b * c\nroot t\n")
    assert diagnostics(text) == []


@pytest.mark.parametrize("text, error", [
    # a continuation of the statement before, not a statement: the old message stays
    (PAIR + "sum t k=1 = a\n  b * c\n", "7:3 syntax-error: expected '.*', '*', '|' or a new statement, found name 'b'"),
    ("hello 1", "1:1 syntax-error: expected a statement (pc, vars, leaf, input, sum, root, param, tie), found name 'hello'"),
    # `pc` is only suggested where the header may come
    ("pcc 1\nvars 2\n", "1:1 unknown-statement: unknown statement 'pcc'; did you mean 'pc'?"),
    ("pc 1\nvars 2\npcc 1\n", "3:1 syntax-error: expected a statement (pc, vars, leaf, input, sum, root, "
     "param, tie), found name 'pcc'"),
])
def test_only_words_that_begin_a_statement_are_read_as_one(text, error):
    assert diagnostics(text)[0] == error.replace(" ", " error ", 1)


# ---------------------------------------------------------------------------- values

@pytest.mark.parametrize("text, error", [
    (HEAD + "input a {x0} k=2 categorical(3)",
     "4:30 expected an argument name or ')', found number 3; did you mean 'categorical(n=3)'?"),
    (HEAD + "input a {x0} k=2 binomial(255)",
     "4:27 expected an argument name or ')', found number 255; did you mean 'binomial(n=255)'?"),
    ("pc 1 vars 1 param a.p = [[.5]]", "1:27 expected a number, '[' or ']', found '.5'; did you mean '0.5'?"),
    ("pc 1 vars 1 param a.p = .25e1", "1:25 expected a number or '[', found '.25e1'; did you mean '0.25e1'?"),
    ("pc 1 vars 1 input a {x0} k=-.5", "1:28 expected a number, found '-.5'; did you mean '-0.5'?"),
    ("pc 1 vars 1 param a.p = [[1.]]", "1:28 expected ',' or ']', found '.'; did you mean '1.0'?"),
    ("pc 1 vars 1 input a {x0} k: 4",
     "1:27 expected an option such as k=4, a leaf family, '=', '(' or a new statement, found character ':'; "
     "did you mean 'k=4'?"),
    ("pc 1 vars 4 input a {x0-x3} k=1", "1:24 expected ',', '}' or '..', found character '-'; did you mean 'x0..x3'?"),
    ("pc 1 vars 4 input a {0-3} k=1", "1:23 expected ',', '}' or '..', found number -3; did you mean '0..3'?"),
    ("pc 1 vars 1 param a.std = [[nan]]",
     "1:29 expected a number, '[' or ']', found name 'nan'; numbers in .pc files are finite (no inf or nan)"),
])
def test_values_written_as_other_languages_write_them_get_a_hint(text, error):
    with pytest.raises(PcSyntaxError) as info:
        parse(text)
    assert [f"{d.span.line}:{d.span.col} {d.message}" for d in info.value.diagnostics] == [error]


def test_the_caret_spans_the_whole_slip():
    with pytest.raises(PcSyntaxError) as info:
        parse("pc 1 vars 1 param a.p = -.5")
    span = info.value.diagnostics[0].span
    assert (span.col, span.end_col) == (25, 28)


def test_k_written_without_its_equals_sign():
    assert diagnostics(HEAD + "input a {x0} k4\nroot a\n")[0] == \
        "4:14 error missing-k: 'k4' is not an option; did you mean 'k=4'?"


def test_spaces_around_the_equals_sign_are_accepted():
    assert parse(HEAD.replace("4", "1") + "input a {x0} k = 3\nroot a\n").region("a").k == 3


# ---------------------------------------------------------------------------- fuzz: keyword typos

STATEMENT_LINE = re.compile(r"^([ \t]*)(" + "|".join(RESERVED_WORDS) + r")\b", re.MULTILINE)
LETTERS = "abcdefghijklmnopqrstuvwxyz"


@st.composite
def keyword_typo(draw):
    """(example text with one statement keyword misspelt by one edit, line, column, typo, keyword)."""
    name = draw(st.sampled_from(sorted(n for n, t in EXAMPLES.items() if len(t) < 20_000)))
    text = EXAMPLES[name]
    m = draw(st.sampled_from(list(STATEMENT_LINE.finditer(text))))
    keyword = m.group(2)
    i = draw(st.integers(0, len(keyword)))
    letter = draw(st.sampled_from(LETTERS))
    ops = ["insert"] if keyword == "pc" else ["insert", "delete", "replace", "swap", "capital"]
    op = draw(st.sampled_from(ops))
    j = min(i, len(keyword) - 1)
    typo = {"insert": keyword[:i] + letter + keyword[i:],
            "delete": keyword[:j] + keyword[j + 1:],
            "replace": keyword[:j] + letter + keyword[j + 1:],
            "swap": keyword[:j] + keyword[j + 1:j + 2] + keyword[j:j + 1] + keyword[j + 2:],
            "capital": keyword.capitalize()}[op]
    from hypothesis import assume
    assume(typo not in RESERVED_WORDS and len(typo) >= 2)
    line = text.count("\n", 0, m.start()) + 1
    return text[:m.start(2)] + typo + text[m.end(2):], line, len(m.group(1)) + 1, typo, keyword


@settings(max_examples=300, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(keyword_typo())
def test_a_misspelt_keyword_is_reported_at_the_word_with_the_keyword_meant(case):
    text, line, col, typo, keyword = case
    _, found = check_source(text)
    at_word = [d for d in found if d.span is not None and (d.span.line, d.span.col) == (line, col)]
    assert at_word, [d.render() for d in found]
    assert at_word[0].kind == "unknown-statement", at_word[0].render()
    assert at_word[0].message.startswith(f"unknown statement '{typo}'; did you mean '{keyword}'?")
    assert at_word[0].span.end_col == col + len(typo)
