"""`pcc structure`: files it writes parse back to the generators' circuits; bad input is one line
and a non-zero exit (2 for a bad option, 1 for what the generators refuse)."""
from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
import torch

import pcc
from pcc.cli.main import main
from pcc.latent_forest import find_latent_forest
from pcc.latent_tree import initialize
from pcc.train import LATENT_TREE_RECIPE
from pcc.frontend import load, parse, to_text
from pcc.ir import Family
from pcc.structures import hidden_chow_liu_tree, poon_domingos, random_binary_trees


def write_data(path, data):
    """`data` as a debd file at `path`; the path."""
    path.write_text("".join(",".join(map(str, row)) + "\n" for row in data))
    return path


def test_pd_writes_a_file_that_loads_back(tmp_path, capsys):
    out = tmp_path / "pd.pc"
    assert main(["structure", "pd", "--height", "8", "--width", "6", "--delta", "4,2", "--delta-w", "3,1",
                 "-k", "3", "--leaf", "binomial(n=255)", "-o", str(out)]) == 0
    expected = poon_domingos(8, 6, [4, 2], deltas_w=[3, 1], k=3, leaf=Family("binomial", (("n", 255),)))
    assert load(str(out)) == expected
    assert "wrote" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pd.pc"]  # no temporary file left


def test_pd_with_channels_split_to_stdout(capsys):
    assert main(["structure", "pd", "--height", "4", "--width", "4", "--delta", "2", "--channels", "3",
                 "--channel-split", "-k", "2"]) == 0
    assert parse(capsys.readouterr().out) == poon_domingos(4, 4, 2, channels=3, channel_split=True, k=2)


def test_rat_to_stdout(capsys):
    assert main(["structure", "rat", "--vars", "9", "--depth", "2", "--replicas", "3", "--seed", "4"]) == 0
    text = capsys.readouterr().out
    assert parse(text) == random_binary_trees(9, 2, 3, seed=4)
    head, body = text.split("pc 1\n", 1)
    assert "pc 1\n" + body == to_text(random_binary_trees(9, 2, 3, seed=4))
    assert head.splitlines() == [
        "# written by: pcc structure rat --vars 9 --depth 2 --replicas 3 --seed 4",
        "# starting values: none in this file; `pcc compile` and `pcc train` draw random ones (seeded by",
        "# their --seed)"]


def test_hclt_from_a_data_file(tmp_path):
    data = np.random.default_rng(0).integers(0, 3, (50, 5))
    path = write_data(tmp_path / "toy.train.data", data)
    out = tmp_path / "hclt.pc"
    assert main(["structure", "hclt", "--data", str(path), "-k", "2", "--trees", "2", "-o", str(out)]) == 0
    assert load(str(out)) == hidden_chow_liu_tree(data, k=2, trees=2)


def test_a_generated_tree_file_says_where_it_came_from(tmp_path):
    """The command, the data file with its rows and sha256, every tree's root and edges (as the
    circuit holds them), and that the file has no starting values (and who computes them)."""
    data = np.random.default_rng(1).integers(0, 2, (60, 6))
    path = write_data(tmp_path / "toy.data", data)
    out = tmp_path / "h.pc"
    assert main(["structure", "hclt", "--data", str(path), "-k", "2", "--trees", "2", "-o", str(out)]) == 0
    text = out.read_text()
    lines = [c.text for c in load(out).comments]
    assert lines[0] == f"# written by: pcc structure hclt --data {path} -k 2 --trees 2 -o {out}"
    assert lines[1] == f"# data: {path} (60 rows, 6 variables), sha256 {hashlib.sha256(path.read_bytes()).hexdigest()}"
    forest = find_latent_forest(load(out))
    trees = " ".join(lines[2:]).split("# tree ")[1:]
    assert len(trees) == 2
    for t, (text_of_tree, root) in enumerate(zip(trees, forest.roots)):
        assert text_of_tree.startswith(f"{t}: root x{forest.nodes[root].var}; edges (parent child):")
        listed = re.findall(r"x(\d+) x(\d+)", text_of_tree.replace("#  ", ""))
        edges = {(n.var, forest.nodes[c].var) for n in forest.nodes for c in n.children
                 if _tree_of(forest, n) == t}
        assert {(int(a), int(b)) for a, b in listed} == edges and len(listed) == 5
    assert "starting values: none in this file. `pcc train` computes them from its training" in text
    assert "param" not in text.split("pc 1\n", 1)[1]


def _tree_of(forest, node) -> int:
    """The tree (index into forest.roots) a node belongs to."""
    parent = {c: i for i, n in enumerate(forest.nodes) for c in n.children}
    i = forest.nodes.index(node)
    while i in parent:
        i = parent[i]
    return forest.roots.index(i)


def test_init_data_writes_the_starting_values_pcc_train_computes(tmp_path):
    data = np.random.default_rng(2).integers(0, 3, (80, 4))
    path = write_data(tmp_path / "toy.data", data)
    out = tmp_path / "h.pc"
    argv = ["structure", "hclt", "--data", str(path), "-k", "3", "--trees", "1", "--seed", "5"]
    assert main([*argv, "--init", "data", "-o", str(out)]) == 0
    written = load(out)
    assert "# starting values: the param blocks below, computed from the data" in out.read_text()
    reference = pcc.compile(hidden_chow_liu_tree(data, k=3, trees=1, seed=5), seed=5, dtype=torch.float64)
    initialize(reference, data.astype(float), find_latent_forest(reference.circuit), LATENT_TREE_RECIPE.pseudocount,
               seed=5)
    model = pcc.compile(written, dtype=torch.float64)
    x = torch.tensor(data, dtype=torch.float64)
    assert torch.allclose(model(x), reference(x), atol=1e-6)
    assert {(p.region, p.field) for p in written.params} >= {(r.name, "probs") for r in written.inputs}


def test_the_help_says_what_happens_without_init(capsys):
    assert main(["structure", "hclt", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "without --init the file has no param blocks; `pcc train` then computes them from its" in text
    assert "`pcc compile` (or pcc.compile) of the file alone draws random ones" in text


def test_output_replaces_an_existing_file(tmp_path):
    out = tmp_path / "rat.pc"
    out.write_text("old")
    assert main(["structure", "rat", "--vars", "4", "-o", str(out)]) == 0
    assert load(str(out)) == random_binary_trees(4)


@pytest.mark.parametrize("argv,code,message", [
    (["pd", "--height", "0", "--width", "3", "--delta", "1"], 2, "argument --height: must be at least 1"),
    (["pd", "--height", "3", "--width", "3", "--delta", "1", "-k", "0"], 2, "argument -k: must be at least 1"),
    (["pd", "--height", "3", "--width", "3", "--delta", "a,b"], 1, "--delta wants numbers"),
    (["pd", "--height", "3", "--width", "3", "--delta", "0.5"], 1, "delta must be a number >= 1"),
    (["rat", "--vars", "4", "--leaf", "gamma"], 1, "unknown leaf family 'gamma'"),
    (["rat", "--vars", "4", "--replicas", "0"], 2, "argument --replicas: must be at least 1"),
    (["hclt", "--data", "/nonexistent/x.data"], 1, "/nonexistent/x.data: no such data file"),
    (["rat", "--vars", "4", "-o", "/nonexistent/dir/x.pc"], 2, "cannot write /nonexistent/dir/x.pc"),
    (["rat", "--vars", "16", "-k", "1000000000"], 1, "too large to build: its input regions alone"),
    (["pd", "--height", "100000", "--width", "100000", "--delta", "1"], 1, "too large to build"),
    (["rat", "--vars", "2", "--replicas", "1", "-k", "50000"], 1,
     "too large to build: 2,500,100,000 parameters"),
    (["hclt", "--data", "{data}", "-k", "100000"], 1, "too large to build"),
    (["hclt", "--data", "{data}", "--trees", "0"], 2, "argument --trees: must be at least 1"),
])
def test_bad_arguments_give_one_line(argv, code, message, capsys, tmp_path):
    data = tmp_path / "d.data"
    data.write_text("0,1,0\n1,1,0\n")
    assert main(["structure", *(a.format(data=data) for a in argv)]) == code
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_data_names_file_row_and_column(tmp_path, capsys):
    path = tmp_path / "bad.data"
    path.write_text("0,1,0\n1,1,0\n0,7,1\n")
    assert main(["structure", "hclt", "--data", str(path), "--leaf", "bernoulli"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"{path}, row 3, column 2: value 7 is outside the support {{0..1}} of bernoulli")
