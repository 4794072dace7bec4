"""`pcc check` and `pcc fmt`: exit codes, where output goes, no traceback whatever the input."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pcc.cli.main import main
from pcc.frontend import load, to_text

EXAMPLES = Path(__file__).resolve().parent.parent / "ir_examples"
VALID = "pc 1\nvars 2\nleaf bernoulli\n\ninput a {x0, x1} k=2\nsum s k=1 = a\n\nroot s\n"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_check_summarizes_a_valid_file(capsys):
    code, out, err = run(capsys, "check", str(EXAMPLES / "pd2x2.pc"))
    assert (code, err) == (0, "")
    assert out.startswith(f"{EXAMPLES / 'pd2x2.pc'}: ok\n")
    assert "regions     5 (4 inputs, 1 sum, 2 partitions)" in out and "parameters  66" in out
    assert "root        top (k=1): the model returns log p(x), [B]" in out


def test_check_notes_a_root_with_several_units_and_what_the_model_returns(capsys, tmp_path):
    path = tmp_path / "classes.pc"
    path.write_text("pc 1\nvars 2\nleaf bernoulli\ninput a {x0} k=2\ninput b {x1} k=2\n"
                    "sum top k=3 = a * b\nroot top\n")
    code, out, _ = run(capsys, "check", str(path))
    assert code == 0
    assert ("root        top (k=3): the model returns one log-density per root unit, [B, 3] (e.g. one "
            "per class; a single density needs k=1)") in out
    assert "1 sum," in out and "depth 1 sum layer," in out and "max 1 partition per sum" in out


def test_check_reports_every_file_and_fails_if_one_is_wrong(capsys, tmp_path):
    bad = tmp_path / "bad.pc"
    bad.write_text("pc 1\nvars 2\nleaf bernoulli\ninput a {x0, x1} k=0\nsum s k=1 = b\nroot s\n")
    code, out, err = run(capsys, "check", str(EXAMPLES / "gmm.pc"), str(bad))
    assert code == 1
    assert "gmm.pc: ok" in out and "bad.pc" not in out
    assert f"{bad}:4:18: error: k of input 'a' must be at least 1, got 0" in err
    assert f"{bad}:5:13: error: sum 's' uses unknown region 'b'" in err
    assert err.rstrip().endswith(f"{bad}: 2 errors")


def test_check_quiet_prints_no_summary(capsys):
    assert run(capsys, "check", "-q", str(EXAMPLES / "gmm.pc")) == (0, "", "")


@pytest.mark.parametrize("content", [None, b"", b"\x00\xff\xfe garbage", b"\xff\xfe", "pc 1 vars 2 ]".encode()])
def test_check_never_shows_a_traceback(capsys, tmp_path, content):
    path = tmp_path / "input.pc"
    if content is not None:
        path.write_bytes(content)
    code, _, err = run(capsys, "check", str(path))
    assert code == 1 and f"{path}" in err and "error:" in err


def test_check_a_directory_is_an_error_not_a_crash(capsys, tmp_path):
    code, _, err = run(capsys, "check", str(tmp_path))
    assert code == 1 and "is a directory" in err


def test_fmt_prints_the_canonical_text(capsys, tmp_path):
    path = tmp_path / "m.pc"
    path.write_text("pc 1 vars 2 leaf bernoulli\n# leaves\ninput a {x0,x1} k=2\nsum s k=1=a root s")
    code, out, err = run(capsys, "fmt", str(path))
    assert (code, err) == (0, "")
    assert out == "pc 1\nvars 2\nleaf bernoulli\n\n# leaves\ninput a {x0, x1} k=2\nsum s k=1 = a\n\nroot s\n"


def test_fmt_check_names_files_that_are_not_canonical(capsys, tmp_path):
    canonical, messy = tmp_path / "c.pc", tmp_path / "m.pc"
    canonical.write_text(VALID)
    messy.write_text(VALID.replace("\n\n", "\n"))
    assert run(capsys, "fmt", "--check", str(canonical)) == (0, "", "")
    code, _, err = run(capsys, "fmt", "--check", str(canonical), str(messy))
    assert code == 1 and str(messy) in err and f"{canonical}:" not in err
    assert messy.read_text() == VALID.replace("\n\n", "\n")  # --check writes nothing


def test_fmt_in_place_rewrites_atomically_and_keeps_the_mode(capsys, tmp_path):
    path = tmp_path / "m.pc"
    path.write_text(VALID.replace("\n\n", "\n"))
    os.chmod(path, 0o640)
    code, out, err = run(capsys, "fmt", "-i", str(path))
    assert (code, out) == (0, "") and "reformatted" in err
    assert path.read_text() == VALID
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pc"]  # no temp file left behind
    assert run(capsys, "fmt", "-i", str(path)) == (0, "", "")  # already canonical: untouched


def test_fmt_refuses_an_invalid_file_with_its_diagnostics(capsys, tmp_path):
    path = tmp_path / "bad.pc"
    path.write_text("pc 1\nvars 2\ninput a {x0, x1} k=2\nroot a\n")
    code, out, err = run(capsys, "fmt", "-i", str(path))
    assert (code, out) == (1, "")
    assert "error: input 'a' has no leaf family" in err
    assert path.read_text() == "pc 1\nvars 2\ninput a {x0, x1} k=2\nroot a\n"


def test_fmt_prints_one_file_only_without_check_or_in_place(capsys):
    code, _, err = run(capsys, "fmt", str(EXAMPLES / "gmm.pc"), str(EXAMPLES / "mixture2.pc"))
    assert code == 1 and "--check or --in-place" in err


@pytest.mark.parametrize("name", ["gmm.pc", "mixture2.pc", "params_inline.pc", "categorical_named.pc"])
def test_the_hand_written_examples_are_canonical(capsys, name):
    path = EXAMPLES / name
    assert run(capsys, "fmt", "--check", str(path)) == (0, "", "")
    assert to_text(load(path)) == path.read_text()
