"""Bad input to any command ends as one line on stderr naming the option, file, line or column,
and a non-zero exit (2: a bad option, 1: bad input files), never a traceback and never a
silently wrong answer. The table below is the contract, message for message."""
from __future__ import annotations

import math

import pytest
import torch

from pcc import checkpoint
from pcc.cli.main import main
from pcc.compiler import compile as compile_circuit

CIRCUIT = """pc 1
vars 4
leaf bernoulli
input a {x0, x1} k=3
input b {x2, x3} k=3
sum top k=1 = a * b
root top
"""
CLASSES = CIRCUIT.replace("sum top k=1", "sum top k=2")
HUGE = CIRCUIT.replace("input a {x0, x1} k=3", "input a {x0, x1} k=99999999999")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    (root / "c.pc").write_text(CIRCUIT)
    (root / "classes.pc").write_text(CLASSES)
    (root / "huge.pc").write_text(HUGE)
    (root / "d.data").write_text("0,1,1,0\n1,0,0,1\n0,0,1,1\n")
    (root / "missing_value.pc").write_text(CIRCUIT.replace("k=3\ninput b", "k=\ninput b"))
    checkpoint.save(compile_circuit(CIRCUIT), root / "m.pt")
    checkpoint.save(compile_circuit(CLASSES), root / "classes_model.pt")
    (root / "a_folder").mkdir()
    return root


TRAIN = ["train", "{c}", "--train", "{d}", "-o", "{out}/x.pt", "--quiet"]
CASES = [
    # train options
    (TRAIN + ["--em-step", "0"], 2, "pcc train: error: argument --em-step: must be in (0, 1], got 0"),
    (TRAIN + ["--em-step", "5"], 2, "argument --em-step: must be in (0, 1], got 5"),
    (TRAIN + ["--em-step", "-1"], 2, "argument --em-step: must be in (0, 1], got -1"),
    (TRAIN + ["--em-step", "nan"], 2, "argument --em-step: expected a finite number, got 'nan'"),
    (TRAIN + ["--pseudocount", "-1"], 2, "argument --pseudocount: must be at least 0, got -1"),
    (TRAIN + ["--device", "gpu"], 2,
     "argument --device: expected auto, cpu, cuda or cuda:N, got 'gpu'"),
    (TRAIN + ["--epochs", "0"], 2, "argument --epochs: must be at least 1, got 0"),
    (TRAIN + ["--batch-size", "ten"], 2, "argument --batch-size: expected a whole number, got 'ten'"),
    (TRAIN + ["--patience", "0"], 2, "argument --patience: must be at least 1, got 0"),
    (TRAIN + ["--polish", "-1"], 2, "argument --polish: must be at least 0, got -1"),
    (TRAIN + ["--members", "0"], 2, "argument --members: must be at least 1, got 0"),
    (TRAIN + ["--seed", "-3"], 2, "argument --seed: must be at least 0, got -3"),
    (TRAIN + ["--label-column", "0"], 2, "argument --label-column: must be at least 1, got 0"),
    (TRAIN + ["--log", "{out}/log.txt"], 2, "argument --log: expected a .csv or .json file name"),
    (TRAIN + ["--plot", "{out}/curve.jpg"], 2, "argument --plot: expected a .png file name"),
    (["train", "{c}", "--train", "{out}/nothing.data", "-o", "/no/such/dir/m.pt"], 2,
     "argument -o/--output: cannot write /no/such/dir/m.pt: no folder /no/such/dir"),
    (["train", "{c}", "--train", "{d}", "-o", "{out}/a_folder"], 2, "it is a folder"),
    (TRAIN + ["--label-column", "1"], 1,
     "--label-column needs a circuit whose root has one unit per class (K > 1)"),
    (["train", "{classes}", "--train", "{d}", "-o", "{out}/x.pt", "--label-column", "x9"], 1,
     "has no header, so no column is called 'x9'"),
    (["train", "{classes}", "--train", "{d}", "-o", "{out}/x.pt", "--label-column", "2"], 1,
     "d.data: has 3 columns besides the label column but the circuit has 4 variables"),
    (["train", "{c}", "--train", "{out}/nothing.data", "-o", "{out}/x.pt"], 1,
     "nothing.data: no such data file"),
    # eval
    (["eval", "{m}", "--data", "{d}", "--batch-size", "0"], 2,
     "pcc eval: error: argument --batch-size: must be at least 1, got 0"),
    (["eval", "{m}", "--data", "{d}", "--batch-size", "-5"], 2,
     "argument --batch-size: must be at least 1, got -5"),
    (["eval", "{m}", "--data", "{d}", "--root-unit", "1"], 1,
     "--root-unit must be in 0..0 (the root has 1 unit), got 1"),
    (["eval", "{classes_model}", "--data", "{d}", "--root-unit", "0", "--label-column", "1"], 1,
     "give --root-unit or --label-column, not both"),
    (["eval", "{m}", "--data", "{d}", "--device", "cuda:x"], 2,
     "expected auto, cpu, cuda or cuda:N, got 'cuda:x'"),
    # sample, inpaint, mpe
    (["sample", "{m}", "--png", "{out}/x.png", "--scale", "-2"], 2,
     "pcc sample: error: argument --scale: must be in 1..64, got -2"),
    (["sample", "{m}", "--png", "{out}/x.png", "--scale", "0"], 2,
     "argument --scale: must be in 1..64, got 0"),
    (["sample", "{m}", "-n", "0"], 2, "argument -n: must be at least 1, got 0"),
    (["sample", "{m}", "--columns", "0", "--png", "{out}/x.png"], 2,
     "argument --columns: must be at least 1, got 0"),
    (["sample", "{m}", "--temperature", "inf"], 2,
     "argument --temperature: expected a finite number, got 'inf'"),
    (["sample", "{m}", "--image-shape", "0x4", "--png", "{out}/x.png"], 2,
     "argument --image-shape: expected HxW or HxWxC (e.g. 28x28, 32x32x3), got '0x4'"),
    (["sample", "{m}", "--image-shape", "2x2x2", "--png", "{out}/x.png"], 2,
     "argument --image-shape: images have 1 or 3 channels, got 2"),
    (["sample", "{m}", "--png", "/no/such/dir/x.png"], 2, "cannot write /no/such/dir/x.png"),
    (["inpaint", "{m}", "--data", "{d}", "--mask", "random:2", "-o", "{out}/x.png"], 2,
     "argument --mask: random:P wants a probability P in [0, 1], got '2'"),
    (["inpaint", "{m}", "--data", "{d}", "--mask", "left", "-o", "{out}/x.png"], 2,
     "argument --mask: unknown mask 'left'"),
    (["inpaint", "{m}", "--data", "{d}", "--mask", "left-half", "--rows", "0", "-o",
      "{out}/x.png"], 2, "argument --rows: must be at least 1, got 0"),
    (["mpe", "{m}", "--data", "{d}", "--batch-size", "0"], 2,
     "argument --batch-size: must be at least 1, got 0"),
    # structure, compile, check, import
    (["structure", "rat", "--vars", "16", "-k", "1000000000"], 1,
     "too large to build: its input regions alone would hold at least 320,000,000,000 parameters"),
    (["structure", "rat", "--vars", "0"], 2, "argument --vars: must be at least 1, got 0"),
    (["structure", "hclt", "--data", "{d}", "--smoothing", "-1"], 2,
     "argument --smoothing: must be at least 0, got -1"),
    (["check", "{huge}"], 1, "huge.pc: too large to build: 500,000,000,001 parameters"),
    (["compile", "{huge}", "-o", "{out}/h.pt"], 1,
     "huge.pc: too large to build: 500,000,000,001 parameters"),
    (["compile", "{c}", "-o", "/no/such/dir/c.pt"], 2, "cannot write /no/such/dir/c.pt"),
    (["compile", "{missing_value}"], 1,
     "missing_value.pc:4:20: error: expected a number, found the end of the line (line 5 starts "
     "a new 'input' statement)"),
    (["compile", "{m}"], 1, "m.pt is a checkpoint, not a circuit: load it with pcc.load("),
    (["import", "{c}", "-k", "0"], 2, "argument -k: must be at least 1, got 0"),
    # the command line itself
    (["frobnicate"], 2, "pcc: error: argument COMMAND: invalid choice: 'frobnicate'"),
    ([], 2, "pcc: error: the following arguments are required: COMMAND"),
    (["eval", "{m}", "--data", "{d}", "--bogus"], 2, "unrecognized arguments: --bogus"),
]


def run(capsys, folder, argv):
    names = {p.stem: p for p in folder.iterdir()} | {"out": folder}
    status = main([a.format(**names) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("argv, code, message", CASES)
def test_bad_input_is_one_line_and_a_non_zero_exit(capsys, folder, argv, code, message):
    status, _, err = run(capsys, folder, argv)
    assert status == code, err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_cuda_is_one_line(capsys, folder, device):
    status, _, err = run(capsys, folder, TRAIN + ["--device", device])
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert f"argument --device: '{device}': CUDA is not available on this machine (torch " in err


def test_auto_device_is_the_default_and_runs_here(capsys, folder):
    status, out, err = run(capsys, folder, ["eval", "{m}", "--data", "{d}"])
    assert status == 0 and out.startswith("mean log-likelihood: "), err


def test_no_file_is_written_when_an_output_is_refused(capsys, folder):
    """The output is checked before the model or data are read: nothing happens at all."""
    status, out, err = run(capsys, folder, ["train", "{c}", "--train", "{out}/nothing.data",
                                            "-o", "{out}/no/m.pt"])
    assert status == 2 and "cannot write" in err and out == ""


@pytest.mark.parametrize("damage", ["bytes", "nan", "missing", "type", "checksum type"])
def test_a_damaged_or_crafted_checkpoint_is_one_line(capsys, folder, damage):
    path = folder / f"{damage.replace(' ', '_')}.pt"
    payload = torch.load(folder / "m.pt", weights_only=True)
    name = next(iter(payload["state_dict"]))
    if damage == "nan":  # a crafted file: NaN values with a matching checksum
        payload["state_dict"][name] = torch.full_like(payload["state_dict"][name], math.nan)
        payload["checksums"][name] = checkpoint.checksum(payload["state_dict"][name])
    elif damage == "missing":
        del payload["checksums"]
    elif damage == "type":
        payload["state_dict"][name] = [1.0, 2.0]
    elif damage == "checksum type":
        payload["checksums"][name] = 7
    torch.save(payload, path)
    if damage == "bytes":  # flip bits in the stored values: the zip still reads
        data = bytearray((folder / "m.pt").read_bytes())
        stored = payload["state_dict"][name].numpy().tobytes()
        at = bytes(data).index(stored)
        data[at: at + 4] = b"\x00\x00\xc0\x7f"  # a float32 NaN
        path.write_bytes(bytes(data))
    expected = {"bytes": f"{path}: damaged: parameter '{name}' does not match its checksum",
                "nan": f"{path}: refusing: parameter '{name}' has NaN values",
                "missing": f"{path}: not a valid pcc checkpoint: 'checksums' is missing",
                "type": f"{path}: not a valid pcc checkpoint: parameter '{name}' is a list, "
                        "expected a tensor",
                "checksum type": f"{path}: not a valid pcc checkpoint: the checksum of "
                                 f"'{name}' is a int, expected text"}[damage]
    for argv in (["eval", str(path), "--data", "{d}"], ["sample", str(path), "-n", "2"],
                 ["info", str(path)], TRAIN[:1] + [str(path)] + TRAIN[2:]):
        status, out, err = run(capsys, folder, argv)
        assert (status, err.strip()) == (1, expected) and "nan" not in out


@pytest.mark.parametrize("error, code, line", [
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                  "allocate memory: you tried to allocate 800000000000 bytes. Error code 12"), 1,
     "out of memory: could not allocate 800,000,000,000 bytes (ask for less: fewer rows, samples "
     "or units)"),
    (PermissionError(13, "Permission denied", "train.data"), 1, "train.data: Permission denied"),
    (KeyboardInterrupt(), 130, "interrupted"),
    (ValueError("a bug\nwith two lines"), 70,
     "internal error (please report it; PCC_TRACEBACK=1 shows where): ValueError: a bug"),
])
def test_every_other_error_is_one_line_too(capsys, error, code, line):
    from pcc.cli.main import report
    assert report(error) == code
    assert capsys.readouterr().err == line + "\n"
