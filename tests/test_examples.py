"""Every valid example checks; every invalid example gives exactly its expected diagnostics."""
from __future__ import annotations

from pathlib import Path

import pytest

from pcc.errors import SourceError
from pcc.frontend import check_source, load, parse, read_source, to_text

EXAMPLES = Path(__file__).resolve().parent.parent / "ir_examples"
VALID = sorted(EXAMPLES.glob("*.pc"))
INVALID = sorted((EXAMPLES / "invalid").glob("*.pc"))
HAND_WRITTEN = ["mixture2.pc", "pd2x2.pc", "gmm.pc", "categorical_named.pc", "params_inline.pc"]


def test_the_hand_written_examples_exist():
    assert set(HAND_WRITTEN) <= {p.name for p in VALID}


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_example_checks_without_diagnostics(path):
    circuit, diagnostics = check_source(read_source(path), str(path))
    assert circuit is not None and diagnostics == [], [d.render() for d in diagnostics]
    assert parse(to_text(circuit)) == circuit


def test_params_inline_has_every_param():
    circuit = load(EXAMPLES / "params_inline.pc")
    given = {(p.region, p.field, p.index) for p in circuit.params}
    wanted = {(r.name, "p", None) for r in circuit.inputs}
    wanted |= {("top", "weights", 0), ("top", "weights", 1), ("top", "mixing", None)}
    assert given == wanted


def _rendered(name: str) -> str:
    try:
        _, diagnostics = check_source(read_source(name), name)
    except SourceError as e:
        diagnostics = e.diagnostics
    return "\n".join(d.render() for d in diagnostics) + "\n"


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_example_gives_its_expected_message(path, monkeypatch):
    monkeypatch.chdir(path.parent)
    expected = path.with_suffix(".expected").read_text(encoding="utf-8")
    assert _rendered(path.name) == expected


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_example_shows_the_kind_it_is_named_for(path, monkeypatch):
    monkeypatch.chdir(path.parent)
    try:
        _, diagnostics = check_source(read_source(path.name), path.name)
    except SourceError as e:
        diagnostics = e.diagnostics
    kinds = {d.kind for d in diagnostics}
    named = path.stem
    if named == "reserved-word":
        assert kinds == {"syntax-error"}
    else:
        assert any(named == kind or named.startswith(kind + "-") for kind in kinds), kinds
