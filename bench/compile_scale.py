"""Compile cost against circuit size: time and peak RSS of each stage, each case in a fresh process.

    PYTHONPATH=. python bench/compile_scale.py [CASE ...] [--before DIR] [--workdir DIR] [--keep]

Cases (`pcc structure pd` circuits, Bernoulli leaves; `--list` shows them): PD H x W (x C) with
delta H/8 and K=4, from 64 x 64 to 512 x 512 and 3 x 256 x 256 (the same 1,296 regions over more
variables; channels factorized at the leaves, or split); 256 x 256 and 3 x 512 x 512 with 12 x 12
and 16 x 16 cells (more regions); 64 x 64 with larger K, up to 1.0 billion parameters; and
28 x 28 with every parameter written inline (a 12 MB `.pc` file of numbers).

Each case's `.pc` file is written by one child process; a second one, started fresh, measures:
  parse   .pc text -> IR (`pcc.frontend.fast`, else the full parser)
  check   the checker (`pcc.frontend.checks`)
  plan    region graph, layers, groups, plan (`pcc.compiler.plan`)
  build   `CompiledCircuit` (parameters initialized), after importing torch (reported apart)
  save    `pcc.checkpoint.save` to a temp file
with the CPU seconds of each and the process's peak RSS during it (VmHWM, reset before each stage
through /proc/self/clear_refs). `explain` runs `python -m pcc compile FILE --explain` as a third
process: wall seconds and peak RSS (wait4) of the whole command, as a user sees them. Parse speed
is the file's MB over parse + check seconds; parse memory the peak RSS growth of reading the file,
parse and check over the file's size. `--before DIR` also runs `--explain` with pcc imported from
DIR (e.g. an older checkout), in the same run, for a before/after ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import site
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


@dataclass(frozen=True)
class Case:
    height: int
    width: int
    channels: int = 1
    delta: float | None = None  # default: height / 8
    k: int = 4
    channel_split: bool = False
    inline_params: bool = False

    @property
    def deltas(self) -> float:
        return self.delta or self.height // 8


CASES = {
    "pd64": Case(64, 64),
    "pd128": Case(128, 128),
    "pd256": Case(256, 256),
    "pd512": Case(512, 512),
    "rgb256": Case(256, 256, channels=3),
    "rgb256-split": Case(256, 256, channels=3, channel_split=True),
    "pd256-12x12": Case(256, 256, delta=256 / 12),
    "pd256-16x16": Case(256, 256, delta=16),
    "rgb512-16x16": Case(512, 512, channels=3, delta=32),
    "pd64-k16": Case(64, 64, k=16),
    "pd64-k32": Case(64, 64, k=32),
    "pd64-k55": Case(64, 64, k=55),  # 1.0 billion parameters
    "pd28-params": Case(28, 28, delta=7, k=14, inline_params=True),
}


def write_case(case: Case, path: str) -> None:
    """The case's `.pc` file (child process)."""
    import dataclasses

    from pcc.files import write_text
    from pcc.frontend import to_text
    from pcc.structures import poon_domingos
    circuit = poon_domingos(case.height, case.width, case.deltas, channels=case.channels,
                            channel_split=case.channel_split, k=case.k)
    if case.inline_params:
        import pcc
        circuit = dataclasses.replace(circuit, params=pcc.compile(circuit, backend="torch").ir_params())
    write_text(path, to_text(circuit))


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1)) / 1024


def _stage(record: dict, name: str, work):
    """Run work(), recording its CPU seconds and the peak RSS during it."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    start = time.process_time()
    result = work()
    record[name] = {"s": time.process_time() - start, "peak_mb": _status_mb("VmHWM")}
    return result


def measure(path: str) -> dict:
    """Every stage on the file at `path` (child process); prints one JSON line."""
    import gc
    import dataclasses

    from pcc.compiler import plan
    from pcc.frontend.builder import build
    from pcc.frontend.checks import check
    from pcc.frontend.diagnostics import Reporter
    from pcc.frontend.fast import read_fast
    from pcc.frontend.syntax import parse_statements
    from pcc.region_graph import counts, parameter_count
    gc.disable()  # as `pcc.frontend.check_source` and `pcc.compiler.plan` run
    record: dict = {"file_mb": os.path.getsize(path) / 1e6, "base_mb": _status_mb("VmRSS")}

    def parse():
        with open(path, encoding="utf-8") as f:
            text = f.read()
        circuit = read_fast(text)
        if circuit is None:
            report = Reporter(path, text)
            circuit = build(parse_statements(text, report), report)[0]
        return dataclasses.replace(circuit, source=text, path=path)

    circuit = _stage(record, "parse", parse)
    report = Reporter(path, circuit.source)
    _stage(record, "check", lambda: check(circuit, report))
    assert not report.diagnostics, [d.render() for d in report.diagnostics]
    n = counts(circuit)
    record.update(vars=circuit.num_vars, regions=n["regions"], partitions=n["partitions"],
                  parameters=parameter_count(circuit))
    circuit_plan = _stage(record, "plan", lambda: plan(circuit))
    gc.enable()
    start = time.process_time()
    import torch  # noqa: F401
    from pcc import checkpoint
    from pcc.runtime.module import CompiledCircuit
    record["torch_import"] = {"s": time.process_time() - start, "rss_mb": _status_mb("VmRSS")}
    model = _stage(record, "build", lambda: CompiledCircuit(circuit, circuit_plan, backend="torch"))
    with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as folder:
        _stage(record, "save", lambda: checkpoint.save(model, os.path.join(folder, "model.pt")))
    return record


def run_child(args: list[str], root: str | None = None) -> tuple[str, float, float]:
    """(stdout, wall seconds, peak RSS in MB) of `python args...`, with pcc imported from this
    checkout, or from the folder `root` (then without site's .pth files, so that an editable
    install of pcc does not win; site-packages stay on the path)."""
    if root is None:
        flags, path = [], [ROOT, os.environ.get("PYTHONPATH", "")]
    else:
        flags, path = ["-S"], [root, *site.getsitepackages()]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    start = time.perf_counter()
    with subprocess.Popen([sys.executable, *flags, *args], stdout=subprocess.PIPE, env=env, text=True,
                          cwd=root) as p:  # (`-m` puts the working folder first on the path)
        out = p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        sys.exit(f"compile_scale.py: {' '.join(args)} failed ({p.returncode})")
    return out, time.perf_counter() - start, usage.ru_maxrss / 1024


def machine() -> str:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    except (OSError, AttributeError):
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="*", help="cases to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--workdir", help="folder for the .pc files (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the .pc files")
    ap.add_argument("--before", metavar="DIR", help="also time --explain with pcc imported from DIR "
                    "(a folder holding the packages pcc and pcc_kernels)")
    ap.add_argument("--write", nargs=2, metavar=("CASE", "FILE"), help=argparse.SUPPRESS)
    ap.add_argument("--measure", metavar="FILE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.write:
        return write_case(CASES[args.write[0]], args.write[1])
    if args.measure:
        return print(json.dumps(measure(args.measure)))
    if args.list:
        for name, case in CASES.items():
            print(f"{name:12} {case}")
        return
    names = args.cases or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        sys.exit(f"compile_scale.py: unknown case {unknown[0]} (see --list)")
    workdir = os.path.abspath(args.workdir) if args.workdir else tempfile.mkdtemp(prefix="compile_scale-")
    print(f"# {machine()}; each case in fresh processes; times in CPU seconds, explain in wall seconds")
    print("| case | variables | regions | partitions | parameters | .pc MB | parse s | check s | plan s | "
          "build s | save s | peak RSS parse+check / plan / build / save MiB | explain s | explain MiB | "
          "parse+check MB/s | parse memory / file |" + (" explain before s | explain before MiB |" if args.before else ""))
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"
          + ("---:|---:|" if args.before else ""))
    for name in names:
        path = os.path.join(workdir, f"{name}.pc")
        run_child([__file__, "--write", name, path])
        out, _, _ = run_child([__file__, "--measure", path])
        r = json.loads(out)
        _, explain_s, explain_mb = run_child(["-m", "pcc", "compile", path, "--explain"])
        before = ""
        if args.before:
            _, before_s, before_mb = run_child(["-m", "pcc", "compile", path, "--explain"], os.path.abspath(args.before))
            before = f" {before_s:.2f} | {before_mb:,.0f} |"
        parse_s = r["parse"]["s"] + r["check"]["s"]
        parse_growth = max(r["parse"]["peak_mb"], r["check"]["peak_mb"]) - r["base_mb"]
        peaks = " / ".join(f"{r[s]['peak_mb']:,.0f}" for s in ("parse", "plan", "build", "save"))
        print(f"| {name} | {r['vars']:,} | {r['regions']:,} | {r['partitions']:,} | {r['parameters']:,} | "
              f"{r['file_mb']:.2f} | {r['parse']['s']:.2f} | {r['check']['s']:.2f} | {r['plan']['s']:.2f} | "
              f"{r['build']['s']:.2f} | {r['save']['s']:.2f} | {peaks} | {explain_s:.2f} | {explain_mb:,.0f} | "
              f"{r['file_mb'] / parse_s:.1f} | {parse_growth * 2**20 / (r['file_mb'] * 1e6):.1f}x |{before}", flush=True)
        if not args.keep:
            os.remove(path)
    print(f"(torch import before build: {r['torch_import']['s']:.2f} s CPU, RSS {r['torch_import']['rss_mb']:,.0f} MiB "
          "after it, in the last case)")
    if not args.keep and not args.workdir:
        os.rmdir(workdir)


if __name__ == "__main__":
    main()
