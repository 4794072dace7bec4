"""Mutation fuzzing of the valid examples: whatever the text, the frontend only ever raises the
documented `SourceError`s (never a crash), `check_source` never raises, and whatever it accepts
prints and parses back to itself."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcc.errors import PcCheckError, PcSyntaxError, SourceError
from pcc.frontend import check_source, load, parse, to_text

FOLDER = Path(__file__).resolve().parent.parent / "ir_examples"
EXAMPLES = {p.name: p.read_text() for p in sorted(FOLDER.glob("*.pc")) if p.stat().st_size < 20_000}
TOKEN = re.compile(r"\w+|[^\w\s]|\s+")
VOCABULARY = ["pc", "vars", "leaf", "input", "sum", "root", "param", "k", "=", "*", "|", "{", "}", ",", "..",
              ".", "(", ")", "[", "]", "#", "0", "1", "-1", "2.5", "1e999", "-0.0", "1000001", "x0", "x99", "a",
              "bernoulli", "categorical", "binomial(n=3)", "normal", "weights", "mixing", "p", "probs", "mean",
              "std", "n=0", "\n", "\t", "\r\n", "\x00", "\ufeff", "é", "@"]
SETTINGS = settings(max_examples=300, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def mutate(text: str, data) -> str:
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["line", "token", "insert", "truncate"]))
        if kind == "line":
            lines = text.split("\n")
            i, j = data.draw(st.integers(0, len(lines) - 1)), data.draw(st.integers(0, len(lines) - 1))
            op = data.draw(st.sampled_from(["delete", "duplicate", "swap"]))
            if op == "delete":
                del lines[i]
            elif op == "duplicate":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        elif kind == "token":
            tokens = TOKEN.findall(text) or [""]
            i, j = data.draw(st.integers(0, len(tokens) - 1)), data.draw(st.integers(0, len(tokens) - 1))
            op = data.draw(st.sampled_from(["delete", "duplicate", "swap", "replace"]))
            if op == "delete":
                del tokens[i]
            elif op == "duplicate":
                tokens.insert(j, tokens[i])
            elif op == "swap":
                tokens[i], tokens[j] = tokens[j], tokens[i]
            else:
                tokens[i] = data.draw(st.sampled_from(VOCABULARY))
            text = "".join(tokens)
        elif kind == "insert":
            at = data.draw(st.integers(0, len(text)))
            junk = data.draw(st.text(max_size=8) | st.sampled_from(VOCABULARY))
            text = text[:at] + junk + text[at:]
        else:
            text = text[:data.draw(st.integers(0, len(text)))]
    return text


def assert_only_documented_errors(text: str) -> None:
    circuit, diagnostics = check_source(text, "fuzz.pc")
    for d in diagnostics:
        d.render()
    try:
        parsed = parse(text, "fuzz.pc")
    except (PcSyntaxError, PcCheckError) as e:
        assert circuit is None and e.errors
        return
    assert circuit == parsed
    assert parse(to_text(parsed)) == parsed


@SETTINGS
@given(st.sampled_from(sorted(EXAMPLES)), st.data())
def test_mutated_examples_raise_only_documented_errors(name, data):
    assert_only_documented_errors(mutate(EXAMPLES[name], data))


@SETTINGS
@given(st.text(max_size=200))
def test_random_text_raises_only_documented_errors(text):
    assert_only_documented_errors(text)


@settings(max_examples=100, derandomize=True, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_in_a_file_raise_only_documented_errors(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "bytes.pc"
    path.write_bytes(data)
    try:
        load(path)
    except SourceError as e:
        assert isinstance(e, (PcSyntaxError, PcCheckError)) and e.errors


@pytest.mark.parametrize("text", [
    "", "\n\n", "#", "pc", "pc 1", "pc 1 vars", "pc 1 vars 0 root r", "pc 1 vars 1 input a {} k=1 root a",
    "[" * 5000, "pc 1 vars 1 param a.p = " + "[" * 3000 + "]" * 3000, "pc 1 vars 1000000 root r",
    "pc 1 vars 2 input a {0..999999999999999999} k=1 root a", "pc 1 vars 2 leaf bernoulli input a {x0, x1} "
    "k=999999999999999999 sum s k=1 = a root s param s.weights = [[1.0]]",
])
def test_edge_cases_raise_only_documented_errors(text):
    assert_only_documented_errors(text)
