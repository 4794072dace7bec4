"""The argument types every pcc command shares: each kind of value is checked here, once.

An argparse `type` turns the text of an option into its value or raises ArgumentTypeError; the
`Parser` then prints one line, `pcc COMMAND: error: argument --OPTION: why`, and exits 2, before
any work starts. Types run only for the command being parsed, so the ones that need torch
(`device`) import it when called, never when the module is imported.
"""
from __future__ import annotations

import argparse
import math
import os
import re

Invalid = argparse.ArgumentTypeError
MAX_SCALE = 64  # pixels per image pixel in pictures: a 64x64 image at 64 is 4096 pixels wide


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (no usage block), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise Invalid(f"expected a whole number, got '{text}'") from None


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise Invalid(f"expected a number, got '{text}'") from None
    if not math.isfinite(value):
        raise Invalid(f"expected a finite number, got '{text}'")
    return value


def _checked(parse, ok, requirement: str, doc: str):
    """An argparse type: `parse(text)`, then `ok(value)` or the error `requirement, got TEXT`."""
    def check(text: str):
        value = parse(text)
        if not ok(value):
            raise Invalid(f"{requirement}, got {text.strip()}")
        return value
    check.__doc__ = doc
    return check


positive_int = _checked(_integer, lambda v: v >= 1, "must be at least 1",
                        "An integer >= 1 (counts, sizes).")
at_least_two = _checked(_integer, lambda v: v >= 2, "must be at least 2",
                        "An integer >= 2 (the values of a categorical variable).")
non_negative_int = _checked(_integer, lambda v: v >= 0, "must be at least 0",
                            "An integer >= 0 (patience, iterations, seeds, unit indices).")
probability = _checked(_finite, lambda v: 0 < v <= 1, "must be in (0, 1]",
                       "A number in (0, 1] (step sizes).")
non_negative_float = _checked(_finite, lambda v: v >= 0, "must be at least 0",
                              "A finite number >= 0 (pseudocounts, temperatures, smoothing).")
positive_float = _checked(_finite, lambda v: v > 0, "must be more than 0",
                          "A finite number > 0 (seconds).")
scale = _checked(_integer, lambda v: 1 <= v <= MAX_SCALE, f"must be in 1..{MAX_SCALE}",
                 "Pixels per image pixel in a picture: 1..MAX_SCALE.")


def device(text: str) -> str:
    """auto (CUDA when present, else the CPU), cpu, cuda or cuda:N; CUDA must be present."""
    name = text.strip().lower()
    match = re.fullmatch(r"auto|cpu|cuda(?::(\d+))?", name)
    if not match:
        raise Invalid(f"expected auto, cpu, cuda or cuda:N, got '{text}'")
    if name == "cpu":
        return name
    import torch
    available = torch.cuda.is_available()
    if name == "auto":
        return "cuda" if available else "cpu"
    if not available:
        raise Invalid(f"'{text}': CUDA is not available on this machine (torch "
                      f"{torch.__version__}); use cpu or auto")
    count = torch.cuda.device_count()
    if int(match[1] or 0) >= count:
        raise Invalid(f"'{text}': this machine has {count} CUDA device{'s' if count > 1 else ''} "
                      f"(cuda:0..cuda:{count - 1})")
    return name


def output_file(text: str) -> str:
    """A file this process can create or replace: its folder exists and is writable, and it is not
    a folder itself (checked before any work, so a long run never ends unable to save)."""
    if not text:
        raise Invalid("expected a file name")
    path = os.path.abspath(text)
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        raise Invalid(f"cannot write {text}: it is a folder")
    if not os.path.isdir(folder):
        raise Invalid(f"cannot write {text}: no folder {os.path.dirname(text) or folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise Invalid(f"cannot write {text}: folder {os.path.dirname(text) or folder} is not "
                      "writable")
    return text


def npy_file(text: str) -> str:
    """An `output_file` named `.npy` (for arrays of more than two axes)."""
    if not text.endswith(".npy"):
        raise Invalid(f"expected a .npy file name, got '{text}'")
    return output_file(text)


def output_or_stdout(text: str) -> str:
    """`-` (standard output) or an `output_file`."""
    return text if text == "-" else output_file(text)


def column(text: str) -> "str | int":
    """A data column: its position counted from 1, or its name in the header."""
    return positive_int(text) if text.strip().lstrip("+-").isdigit() else text


def image_shape(text: str) -> str:
    """HxW or HxWxC with C = 1 or 3 (checked against the model's variables later)."""
    from ..queries.images import ImageShape
    return _library_check(ImageShape.from_text, text)


def mask(text: str) -> str:
    """What `pcc inpaint` hides: left-half, right-half, top-half, bottom-half or random:P."""
    from ..queries.images import hidden_probability
    return _library_check(hidden_probability, text)


def _library_check(check, text: str) -> str:
    """`text`, after `check(text)` accepted it (its PcError becomes this option's error)."""
    from ..errors import PcError
    try:
        check(text)
    except PcError as e:
        raise Invalid(str(e)) from None
    return text


def add_device(parser: argparse.ArgumentParser) -> None:
    """--device and --threads: where the command computes, and with how many CPU threads."""
    parser.add_argument("--device", type=device, default="auto", metavar="DEVICE",
                        help="auto (CUDA when present, else the CPU; default), cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="CPU threads torch computes with (default: torch's choice, one per "
                             "core, or OMP_NUM_THREADS); on a machine shared with other jobs, "
                             "fewer threads than cores can be much faster")


def add_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=positive_float, default=600.0, metavar="SECONDS",
                        help="under torchrun: how long a rank waits for the others at a step "
                             "before every rank stops with an error (default 600)")


def metrics_file(text: str) -> str:
    """Where `pcc train --log` writes per-epoch metrics: a .csv or .json output file."""
    if not text.lower().endswith((".csv", ".json")):
        raise Invalid(f"expected a .csv or .json file name, got '{text}'")
    return output_file(text)


def plot_file(text: str) -> str:
    """Where `pcc train --plot` draws the learning curve: a .png output file; needs matplotlib."""
    import importlib.util
    if not text.lower().endswith(".png"):
        raise Invalid(f"expected a .png file name, got '{text}'")
    if importlib.util.find_spec("matplotlib") is None:
        raise Invalid("drawing a learning curve needs matplotlib: pip install 'pcc[images]'")
    return output_file(text)
