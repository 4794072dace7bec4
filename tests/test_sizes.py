"""Circuits too large to build are refused before anything is allocated, by every entry point:
pcc.compile, pcc check, pcc compile (--explain still sizes them from the plan), pcc structure."""
import time

import pytest

import pcc
from pcc import sizes
from pcc.cli.main import main
from pcc.errors import SizeError
from pcc.runtime.module import CompiledCircuit

HUGE_K = """pc 1
vars 2
leaf bernoulli
input a {x0} k=99999999999
input b {x1} k=3
sum top k=1 = a * b
root top
"""


@pytest.fixture
def no_build(monkeypatch):
    """Fail if a model is built at all."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was built")
    monkeypatch.setattr(CompiledCircuit, "__init__", refuse)


def test_compile_refuses_before_building(no_build):
    start = time.perf_counter()
    with pytest.raises(SizeError, match=r"too large to build: 399,999,999,999 parameters "
                                        r"\(at most 2\^31 = 2,147,483,648\)"):
        pcc.compile(HUGE_K)
    assert time.perf_counter() - start < 5  # sized, not allocated


def test_compile_refuses_what_this_machine_cannot_hold(no_build, monkeypatch):
    monkeypatch.setattr(sizes, "available_memory", lambda: 500)
    with pytest.raises(SizeError, match=r"ir_examples/pd2x2.pc: too large for this machine: "
                                        r"\d+ parameters need about [\d.]+ [KB]+ \(with EM's "
                                        r"copies\) but 500.0 B of memory is available"):
        pcc.compile("ir_examples/pd2x2.pc")


def test_explain_sizes_from_the_plan_then_refuses(tmp_path, capsys, no_build):
    path = tmp_path / "huge.pc"
    path.write_text(HUGE_K)
    assert main(["compile", str(path), "--explain"]) == 1
    out, err = capsys.readouterr()
    assert "total: 399,999,999,999 parameters (100,000,000,002 in leaves)" in out
    assert err.strip() == (f"{path}: too large to build: 399,999,999,999 parameters (at most "
                           "2^31 = 2,147,483,648); use smaller K or fewer regions")
    assert main(["check", str(path)]) == 1
    assert "too large to build" in capsys.readouterr().err


def test_the_limit_is_on_the_parameter_count():
    small = pcc.parse(HUGE_K.replace("99999999999", "1"))
    assert sizes.check_circuit_size(small) == 1 + 3 + 3  # leaves a and b, weights 1 x 1 x 3
    over = pcc.parse(HUGE_K.replace("k=99999999999", f"k={2 ** 31 // 4}"))
    with pytest.raises(SizeError):
        sizes.check_circuit_size(over)
