"""What real files contain is tolerated (and means the same circuit); malformed and invalid files
are errors that point at FILE:LINE:COL, from the Python API and from the CLI."""
import hashlib
import re
import warnings

import pytest

from interchange_helpers import assert_same_circuit, example_text, import_text
from pcc.cli.main import main
from pcc.errors import PcCheckError, PcSyntaxError, SourceError
from pcc.frontend.diagnostics import PcWarning
from pcc.interchange import load_circuit, read_circuit, sniff_format
from pcc.interchange.source import Source

PSDD = example_text("little.psdd")
JPC = example_text("little.jpc")


def node_lines(text: str) -> list[str]:
    return [line for line in text.splitlines()
            if line.strip() and not line.startswith("c") and not line.startswith(("psdd", "jpc"))]


def renumbered(text: str, fmt: str, order) -> str:
    """The node lines with ids i -> 7 i + 3 (sparse), in the order `order` gives them."""
    new = {}
    lines = node_lines(text)
    for line in lines:
        new[line.split()[1]] = str(7 * int(line.split()[1]) + 3)
    out = []
    for line in lines:
        t = line.split()
        t[1] = new[t[1]]
        refs = {"D": [i for j in range(int(t[3])) for i in (4 + 3 * j, 5 + 3 * j)],
                "P": range(4, len(t)), "S": range(4, len(t), 2)}.get(t[0], ())
        for i in refs:
            t[i] = new[t[i]]
        out.append(" ".join(t))
    return f"{fmt} 99\n" + "\n".join(order(out)) + "\n"


def e_notation(text: str) -> str:
    """Every decimal number with a fraction written with an E exponent, exactly."""
    def as_e(m):
        mantissa, exponent = f"{float(m.group()):.17e}".split("e")
        return f"{mantissa}E{int(exponent)}"
    return re.sub(r"-?\d+\.\d+(?![\deE])", as_e, text)


TOLERATED = {
    "crlf": lambda t, f: t.replace("\n", "\r\n"),
    "no final newline": lambda t, f: t.rstrip("\n"),
    "trailing spaces": lambda t, f: t.replace("\n", " \t \n"),
    "E exponents": lambda t, f: e_notation(t),
    "header count wrong": lambda t, f: re.sub(rf"^{f} \d+", f"{f} 12345", t, flags=re.M),
    "no header": lambda t, f: re.sub(rf"^{f} \d+\n", "", t, flags=re.M),
    "sparse unsorted ids": lambda t, f: renumbered(t, f, lambda lines: sorted(lines[:-1]) + lines[-1:]),
    "children after parents": lambda t, f: renumbered(t, f, lambda lines: lines[::-1]),
    "duplicate nodes": lambda t, f: renumbered(t, f, lambda lines: [x for line in lines for x in (line, line)]),
    "unreachable nodes": lambda t, f: renumbered(t, f, lambda lines: lines[:1] + [
        lines[0].replace(lines[0].split()[1], "1000", 1)] + lines[1:]),
}


@pytest.mark.parametrize("case", sorted(TOLERATED))
@pytest.mark.parametrize("text, fmt", [(PSDD, "psdd"), (JPC, "jpc")])
def test_tolerated_variants_mean_the_same_circuit(case, text, fmt):
    original = import_text(text, fmt)
    assert_same_circuit(original, import_text(TOLERATED[case](text, fmt), fmt))


def test_unreachable_nodes_are_left_out_with_a_warning():
    text = TOLERATED["unreachable nodes"](PSDD, "psdd")
    with pytest.warns(PcWarning, match="1 node not reachable from the root"):
        read_circuit(Source(text, "u.psdd"), "psdd")


def test_spflow_whitespace_and_exponents():
    text = example_text("little.spflow")
    squeezed = re.sub(r"\s+", "", text)
    spread = text.replace("*", " * ").replace("(", "( ").replace("|", " | ").replace("\n", "\r\n")
    original = import_text(text, "spflow")
    for variant in (squeezed, spread, e_notation(text)):
        assert_same_circuit(original, import_text(variant, "spflow"))


def test_format_sniffed_from_the_first_line():
    assert sniff_format(PSDD) == "psdd"
    assert sniff_format(JPC) == "jpc"
    assert sniff_format(example_text("little.spn")) == "spn"
    assert sniff_format(example_text("little.spflow")) == "spflow"
    assert sniff_format(example_text("little_rg.json")) == "cirkit"
    assert sniff_format("pc 1\nvars 2\n") is None


# ------------------------------------------------------------------ errors with places

MALFORMED = [
    # (format, text, line:col, message)
    ("psdd", "psdd 1\nX 0 0 1\n", "2:1", "unknown PSDD line 'X'"),
    ("psdd", "psdd 1\nL 0 0 x\n", "2:7", "expected a literal, a whole number, found 'x'"),
    ("psdd", "L 0 0 1\nL 1 0 -1\nD 2 0 2 0 1 -0.5\n", "3:17", "has 7 fields, expected 10"),
    ("psdd", "L 0 0 1\nL 1 0 -1\nD 2 0 1 0 1 -0.5 9\n", "3:18", "unexpected field '9'"),
    ("psdd", "T 0 0 0 -0.5\n", "1:7", "variables are numbered from 1"),
    ("psdd", "L 0 0 1\nT 1 0 2 -0.5\nD 2 0 1 0 1 nan\n", "3:13", "log(theta) is NaN"),
    ("psdd", "c only comments\n", None, "no PSDD nodes"),
    ("jpc", "jpc 2\nL 0 0 1\nS 1 0 2 0 -0.5 0\n", "3:17", "has 7 fields, expected 8"),
    ("jpc", "jpc 2\nL 0 0 1\nQ 1 0 1 0\n", "3:1", "unknown jpc line 'Q'"),
    ("jpc", "jpc 1\nC 0 0 1\n", "2:8", "expected 5"),
    ("spn", "v 0 1\n", "1:1", "expected the domain line"),
    ("spn", "(2 1)\nv 0 1\n", "1:1", "domain size '1'"),
    ("spn", "(2)\nv 0 1\nv 0 0\n+ 0 -0.5 1\n", "4:11", "pairs `child log(w)`"),
    ("spn", "(2)\nv 3 1\n", "2:3", "variable 3 is not declared"),
    ("spflow", "(0.3*(Bernoulli(V0|p=0.2)) + 0.7*(Bernoulli(V0|q=0.4)))", "1:48",
     "Bernoulli has parameters p, not 'q'"),
    ("spflow", "Poisson(V0|mean=1.0)", "1:1", "SPFlow leaf 'Poisson' is not supported"),
    ("spflow", "(0.3*(Bernoulli(V0|p=0.2)) + 0.7*(Bernoulli(V0|p=0.4))", "1:55",
     "expected + or ')', found the end of the text"),
    ("spflow", "(Bernoulli(V0|p=0.2) *\n Bernoulli(Age|p=0.4))", "2:12", "feature name V0, V1"),
    ("spflow", "(0.5*(Bernoulli(V0|p=0.2)) + 0.5*(Bernoulli(V0|p=0.4)))\n$", "2:1",
     "unexpected character '$'"),
    ("cirkit", '{"regions": {"0": [0]},\n "roots": ["0"],\n "graph": [}', "3:12", "not JSON"),
    ("cirkit", '{"regions": {"0": [0, 1], "1": [0], "2": [1]},\n "roots": ["0"],\n'
               ' "graph": [{"output": 0, "inputs": [1, 7]}]}', "3:40", "7 is not a region id"),
    ("cirkit", '{"regions": {"0": [0, 1],\n  "1": []},\n "roots": ["0"], "graph": []}', "2:3",
     "region 1: the scope must be a non-empty list"),
]

INVALID = [
    # structure: (format, text, line:col, message)
    ("psdd", "L 0 0 1\nL 1 0 2\nL 2 0 -1\nD 3 0 2 0 1 -0.5 2 0 -0.9\n", "4:20", "not smooth"),
    ("psdd", "L 0 0 1\nL 1 0 -1\nD 2 0 1 0 1 0\n", "3:11", "not decomposable"),
    ("psdd", "L 0 0 1\nL 1 0 2\nD 2 0 1 0 7 0\n", "3:11", "refers to node 7, which the file does not"),
    ("jpc", "jpc 3\nL 0 0 1\nP 1 0 2 0 2\nP 2 0 1 1\nL 3 0 2\nP 4 0 2 2 3\n", "3:11", "cycle"),
    ("jpc", "jpc 2\nL 0 0 1\nL 0 0 -1\n", "3:1", "node 0 is defined twice, differently"),
    ("jpc", "jpc 3\nL 0 0 1\nG 1 0 1 0.0 1.0\nS 2 0 2 0 -0.5 1 -0.9\n", "2:1",
     "normal leaf (line 3) and a discrete one"),
    ("jpc", "jpc 2\nL 0 0 1\nL 1 0 3\nP 2 0 2 0 1\n", "4:1", "v2 never appears"),
    ("jpc", "jpc 2\nL 0 0 1\nS 1 0 1 0 -inf\n", "3:1", "total weight 0"),
    ("jpc", "jpc 2\nG 0 0 1 0.0 -1.0\n", "2:1", "std > 0"),
    ("spn", "(2 2)\nv 0 1\nv 1 1\nv 0 0\n* 0 1\n* 0 2\n+ 3 -0.6 4 -0.8\n", "6:1",
     "product node 4 is not decomposable"),
    ("cirkit", '{"regions": {"0": [0, 1], "1": [0, 1], "2": [1]},\n "roots": ["0"],\n'
               ' "graph": [{"output": 0, "inputs": [1, 2]}]}', None, "is not decomposable"),
]


def place_and_message(fmt, text):
    with pytest.raises(SourceError) as info:
        import_text(text, fmt)
    d = info.value.diagnostics[0]
    return d, info.value


@pytest.mark.parametrize("fmt, text, where, message", MALFORMED)
def test_malformed_files_give_syntax_errors_with_line_and_column(fmt, text, where, message):
    d, error = place_and_message(fmt, text)
    assert isinstance(error, PcSyntaxError)
    assert message in d.message
    assert (f"{d.span.line}:{d.span.col}" if d.span else None) == where
    assert str(error).startswith(f"test.{fmt}:{where}: error:" if where else f"test.{fmt}: error:")


@pytest.mark.parametrize("fmt, text, where, message", INVALID)
def test_invalid_circuits_give_check_errors_with_line_and_column(fmt, text, where, message):
    d, error = place_and_message(fmt, text)
    assert isinstance(error, PcCheckError)
    assert message in str(error)
    if where:
        assert f"{d.span.line}:{d.span.col}" == where
    else:
        assert d.span is not None and d.span.line >= 1


def test_many_errors_are_reported_at_once():
    text = "L 0 0 1\n" + "".join(f"D {i} 0 1 0 9{i} 0\n" for i in range(1, 6))
    root = "D 9 0 5 " + " ".join(f"{i} {i} -1.6094379124341003" for i in range(1, 6))
    _, error = place_and_message("psdd", text + root + "\n")
    assert len(error.errors) >= 5


# ------------------------------------------------------------------ the CLI


def test_cli_import_writes_a_pc_that_loads(tmp_path, capsys):
    out = tmp_path / "little.pc"
    assert main(["import", "ir_examples/interchange/little.psdd", "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().err
    from pcc.frontend import load
    assert_same_circuit(load(out), import_text(PSDD, "psdd"))
    source = "ir_examples/interchange/little.psdd"
    digest = hashlib.sha256(open(source, "rb").read()).hexdigest()
    assert out.read_text().startswith(f"# written by: pcc import {source} -o {out}\n"
                                      f"# source: {source}, sha256 {digest}\n# parameters: the param blocks below")


def test_cli_errors_are_file_line_col_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.psdd"
    bad.write_text("psdd 2\nL 0 0 1\nD 1 0 1 0 5 0\n")
    assert main(["import", str(bad), "-o", str(tmp_path / "x.pc")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}:3:11: error: node 1 refers to node 5")
    assert "Traceback" not in err
    assert not (tmp_path / "x.pc").exists()


def test_cli_prints_warnings_and_cirkit_takes_k(tmp_path, capsys):
    out = tmp_path / "rg.pc"
    assert main(["import", "ir_examples/interchange/little_rg.json", "-k", "4", "--leaf",
                 "categorical(n=3)", "-o", str(out)]) == 0
    text = out.read_text()
    assert "k=4 categorical(n=3)" in text or "leaf categorical(n=3)" in text
    assert "input r3 {x0} k=4" in text


def test_cli_export_formats_and_refusals(tmp_path, capsys):
    pc = tmp_path / "little.pc"
    main(["import", "ir_examples/interchange/little.psdd", "-o", str(pc)])
    for suffix in (".psdd", ".jpc", ".spflow"):
        assert main(["export", str(pc), "-o", str(tmp_path / f"out{suffix}")]) == 0
    assert (tmp_path / "out.vtree").exists()
    again = load_circuit(tmp_path / "out.psdd")
    assert_same_circuit(again, import_text(PSDD, "psdd"))
    capsys.readouterr()
    assert main(["export", "ir_examples/mixture2.pc", "-o", str(tmp_path / "m.jpc")]) == 0
    assert main(["export", "ir_examples/mixture2.pc", "-o", str(tmp_path / "m.psdd")]) == 1
    err = capsys.readouterr().err
    assert "region 'components' has K=2" in err and "Traceback" not in err
    assert main(["export", "ir_examples/mixture2.pc", "-o", str(tmp_path / "m.jpc"),
                 "--root-unit", "1"]) == 1
    assert "--root-unit 1 is out of range" in capsys.readouterr().err


def test_compile_accepts_imported_formats(capsys):
    import pcc
    model = pcc.compiler.compile("ir_examples/interchange/little.psdd", backend="torch")
    assert model.num_vars == 3
    assert main(["compile", "ir_examples/interchange/little.jpc", "--explain"]) == 0
    assert "fused ops" in capsys.readouterr().out


def test_no_warning_for_normalized_examples():
    for name in ("little.psdd", "little.jpc", "little.spn", "little.spflow"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            load_circuit(f"ir_examples/interchange/{name}")
