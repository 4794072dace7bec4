"""Compile cost stays linear in the circuit: parsing, checking and planning an image 16 times
larger with the same regions must not take 16 times the memory (as it did when every region and
partition held its scope as a set of variables). Measured in fresh processes (tracemalloc peak of
parse + check + plan, the `.pc` text made before), so earlier tests leave nothing behind."""
from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SCRIPT = """
import sys, tracemalloc
from pcc.compiler import plan
from pcc.frontend import parse, to_text
from pcc.structures import poon_domingos
side = int(sys.argv[1])
text = to_text(poon_domingos(side, side, side // 8, k=2))  # 8 x 8 cells: 1,296 regions at any size
tracemalloc.start()
plan(parse(text))
print(tracemalloc.get_traced_memory()[1])
"""


def planning_peak(side: int) -> int:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(side)], capture_output=True, text=True,
                         env=env, check=True).stdout
    return int(out)


def test_planning_memory_does_not_grow_with_variables_times_regions():
    small, large = planning_peak(32), planning_peak(128)  # 1,024 and 16,384 variables
    assert large < 2 * small, f"{large:,} bytes for 16x the variables, {small:,} for the smaller image"
