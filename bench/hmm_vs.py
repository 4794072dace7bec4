"""pcc beside pomegranate 1.1.2 and hmmlearn 0.3.3 on homogeneous hidden Markov models: the same
parameters loaded into each, the same log-likelihoods first, then the time and memory of one
Baum-Welch (EM) iteration over the same sequences, one thread, float32 (hmmlearn: float64, its
only precision).

    python bench/hmm_vs.py [--sizes 32,64,32 128,256,64 512,1024,64[,N]] [--sequences 2000]
                           [--batch 1000] [--json out.json]

Run it with a Python that has pcc, pomegranate==1.1.2 and hmmlearn==0.3.3 (optional benchmark
extras, never test dependencies), e.g. a venv made with

    python3 -m venv HMM && HMM/bin/pip install torch==2.13.0 && \\
        HMM/bin/pip install pomegranate==1.1.2 hmmlearn==0.3.3 lark networkx tqdm && \\
        HMM/bin/pip install --no-deps -e .

Per size (H hidden states, V token values, T tokens per sequence): random parameters (Dirichlet
rows) and N sequences sampled from them, written to a temporary .npz; each system then runs in a
process of its own (so that its peak memory is its own), with OMP/MKL/OpenBLAS at one thread:

  pcc          `pcc structure hmm` (tied transitions and emissions), the parameters loaded with
               `load_ir_params`, torch backend, float32; an iteration is `EM.accumulate` over
               batches of --batch sequences, then `EM.update` (pseudocount 0)
  pomegranate  `DenseHMM` of `Categorical` emissions with edges, starts and ends = 1 (no end
               state, as in pcc), float32; an iteration is `summarize` over batches, then
               `from_summaries` (its `fit` loop); the batch is as large as keeps its
               [n, T-1, H, H] transition tensor within 256 MiB
  hmmlearn     `CategoricalHMM(init_params="", n_iter=1)` with implementation "log" (its
               default) and "scaling", `fit(X, lengths)`: its compiled forward-backward, one
               sequence at a time

Agreement: log p(x) of the first 200 sequences from every system against a float64 forward
algorithm written here (numpy, scaled); the largest relative difference must be under 1e-5.
Time: the best of up to 3 iterations (a single one when it takes over 20 s), wall clock and
the process's CPU time (the machine is shared: ratios of CPU times are the steadier). Memory: the peak
resident set of the process during the iterations, less its size before them. The FLOP floor
is that of the H x H transitions of one forward-backward: 6 N (T-1) H^2 (the forward and backward
messages and the expected transition counts, one [H, H] product each per step); the script
prints it, each system's rate on it, and the time it would take at this machine's one-thread
matrix-product rate.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402

AGREE_ROWS = 200
TOLERANCE = 1e-5
POMEGRANATE_BYTES = 1 << 28  # of its [n, T-1, H, H] transition tensor per batch
SYSTEMS = ("pcc", "pomegranate", "hmmlearn-log", "hmmlearn-scaling")


# ------------------------------------------------------------------ the data (parent process)

def make_hmm(hidden: int, vocab: int, length: int, sequences: int, seed: int = 0):
    """Random parameters (float64) and sequences [N, T] sampled from them."""
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(hidden))
    a = rng.dirichlet(np.full(hidden, 0.5), size=hidden)
    b = rng.dirichlet(np.full(vocab, 0.5), size=hidden)
    x = np.empty((sequences, length), dtype=np.int64)
    z = _draw(np.cumsum(pi)[None].repeat(sequences, 0), rng)
    b_cum, a_cum = np.cumsum(b, 1), np.cumsum(a, 1)
    for t in range(length):
        x[:, t] = _draw(b_cum[z], rng)
        z = _draw(a_cum[z], rng)
    return pi, a, b, x


def _draw(cumulative: np.ndarray, rng) -> np.ndarray:
    """One index per row of cumulative probabilities [N, C]."""
    u = rng.random((len(cumulative), 1)) * cumulative[:, -1:]
    return np.minimum((cumulative < u).sum(1), cumulative.shape[1] - 1)


def forward_log_likelihood(pi, a, b, x) -> np.ndarray:
    """log p(x) [N] by the scaled forward algorithm in float64."""
    alpha = pi * b[:, x[:, 0]].T
    total = np.zeros(len(x))
    for t in range(x.shape[1]):
        if t:
            alpha = (alpha @ a) * b[:, x[:, t]].T
        scale = alpha.sum(1, keepdims=True)
        total += np.log(scale[:, 0])
        alpha /= scale
    return total


def matmul_rate(hidden: int) -> float:
    """One-thread float32 GFLOP/s of a [1000, H] x [H, H] product on this machine."""
    import torch
    torch.set_num_threads(1)
    x, w = torch.randn(1000, hidden), torch.randn(hidden, hidden)
    out = torch.empty(1000, hidden)
    for _ in range(3):
        torch.mm(x, w, out=out)
    runs = max(3, int(2e9 / (2 * 1000 * hidden * hidden)))
    start = time.perf_counter()
    for _ in range(runs):
        torch.mm(x, w, out=out)
    return 2 * 1000 * hidden * hidden * runs / (time.perf_counter() - start) / 1e9


# ------------------------------------------------------------------ one system (worker process)

def worker(system: str, path: str, batch: int) -> dict:
    """Load the HMM of `path` into `system`; its log-likelihoods of the first sequences and the
    times and memory of EM iterations."""
    data = np.load(path)
    pi, a, b, x = data["pi"], data["a"], data["b"], data["x"]
    setup = {"pcc": _pcc, "pomegranate": _pomegranate}.get(system, _hmmlearn)
    ll, iterate, note = setup(pi, a, b, x, batch, system)
    base = _rss()
    seconds, cpu = [], []
    while len(seconds) < 3 and sum(seconds) < 20:
        start, start_cpu = time.perf_counter(), time.process_time()
        iterate()
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"ll": [float(v) for v in ll], "seconds": seconds, "cpu": cpu,
            "memory": _rss() - base, "note": note}


def _rss() -> int:
    """Peak resident set of this process, bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _pcc(pi, a, b, x, batch, _):
    import torch

    import pcc
    from pcc.ir import Param
    from pcc.structures import hidden_markov_model
    torch.set_num_threads(1)
    hidden, vocab = b.shape
    model = pcc.compile(hidden_markov_model(x.shape[1], hidden, vocab), backend="torch")
    model.load_ir_params((
        Param("start", "weights", 0, (1, hidden), tuple(pi.tolist())),
        Param("step1", "weights", 0, a.shape, tuple(a.reshape(-1).tolist())),
        Param("emit0", "probs", None, (hidden, 1, vocab), tuple(b.reshape(-1).tolist()))))
    xt = torch.from_numpy(x).float()
    with torch.no_grad():
        ll = model(xt[:AGREE_ROWS]).double().numpy()
    em = pcc.EM(model, step_size=1.0, pseudocount=0.0)

    def iterate():
        for start in range(0, len(xt), batch):
            em.accumulate(xt[start: start + batch])
        em.update()
    return ll, iterate, f"batches of {batch}"


def _pomegranate(pi, a, b, x, _, __):
    import torch
    from pomegranate.distributions import Categorical
    from pomegranate.hmm import DenseHMM
    torch.set_num_threads(1)
    hidden, length = len(pi), x.shape[1]
    f32 = lambda v: torch.tensor(v, dtype=torch.float32)  # noqa: E731
    model = DenseHMM([Categorical(f32(b[i:i + 1])) for i in range(hidden)], edges=f32(a),
                     starts=f32(pi), ends=torch.ones(hidden), check_data=False)
    xt = torch.from_numpy(x).unsqueeze(-1)
    with torch.no_grad():
        ll = model.log_probability(xt[:AGREE_ROWS]).double().numpy()
    batch = max(1, min(len(x), POMEGRANATE_BYTES // (4 * max(1, length - 1) * hidden * hidden)))

    def iterate():
        with torch.no_grad():
            for start in range(0, len(xt), batch):
                model.summarize(xt[start: start + batch])
            model.from_summaries()
    return ll, iterate, f"batches of {batch}"


def _hmmlearn(pi, a, b, x, _, system):
    from hmmlearn.hmm import CategoricalHMM
    hidden, vocab = b.shape
    implementation = system.split("-")[1]
    model = CategoricalHMM(n_components=hidden, n_features=vocab, init_params="", params="ste",
                           n_iter=1, implementation=implementation)
    model.startprob_, model.transmat_, model.emissionprob_ = pi.copy(), a.copy(), b.copy()
    ll = np.array([model.score(seq.reshape(-1, 1)) for seq in x[:AGREE_ROWS]])
    column, lengths = x.reshape(-1, 1), np.full(len(x), x.shape[1])

    def iterate():
        model.fit(column, lengths)
    return ll, iterate, f"implementation={implementation}, float64"


def run_worker(system: str, path: str, batch: int) -> dict:
    result = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", system,
                             "--data", path, "--batch", str(batch)],
                            capture_output=True, text=True)
    if result.returncode:
        return {"error": (result.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ the report

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["32,64,32", "128,256,64", "512,1024,64"],
                   metavar="H,V,T[,N]", help="hidden states, token values, tokens per sequence "
                                            "(and sequences, instead of --sequences)")
    p.add_argument("--sequences", type=int, default=2000, help="sequences per size (default 2000)")
    p.add_argument("--batch", type=int, default=1000, help="pcc's batch (default 1000)")
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.data, args.batch)))
        return 0
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from sidebyside import machine
    print(f"machine: {machine()}; one thread")
    results = {}
    failed = False
    for size in args.sizes:
        hidden, vocab, length, sequences = ([int(v) for v in size.split(",")] + [args.sequences])[:4]
        pi, a, b, x = make_hmm(hidden, vocab, length, sequences)
        reference = forward_log_likelihood(pi, a, b, x[:AGREE_ROWS])
        floor = 6 * sequences * (length - 1) * hidden * hidden
        rate = matmul_rate(hidden)
        print(f"\nH={hidden} V={vocab} T={length}, N={sequences} sequences: FLOP floor of the transitions "
              f"{floor / 1e9:.1f} GFLOP = {floor / rate / 1e9:.2f} s at this machine's "
              f"{rate:.0f} GFLOP/s (one-thread float32 [1000, H] x [H, H])")
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "hmm.npz")
            np.savez(path, pi=pi, a=a, b=b, x=x)
            found = {s: run_worker(s, path, args.batch) for s in args.systems}
        for system, r in found.items():
            if "error" in r:
                print(f"  {system:17s} failed: {r['error']}")
                continue
            r["relative_error"] = float(np.max(np.abs(np.array(r["ll"]) - reference)
                                               / np.abs(reference)))
            failed |= r["relative_error"] > TOLERANCE
        print(f"  {'system':17s} {'max rel. diff':>13s} {'s / EM iter':>11s} {'CPU s':>9s} "
              f"{'GFLOP/s':>8s} {'memory':>9s}  {'/ pcc':>7s} {'CPU / pcc':>9s}  notes")
        best = {s: min(r["seconds"]) for s, r in found.items() if "seconds" in r}
        cpu = {s: min(r["cpu"]) for s, r in found.items() if "cpu" in r}
        for system, r in found.items():
            if "error" in r:
                continue
            ratio = best[system] / best["pcc"] if "pcc" in best else float("nan")
            cpu_ratio = cpu[system] / cpu["pcc"] if "pcc" in cpu else float("nan")
            print(f"  {system:17s} {r['relative_error']:13.1e} {best[system]:11.3f} "
                  f"{cpu[system]:9.3f} {floor / best[system] / 1e9:8.1f} "
                  f"{r['memory'] / 2**20:5.0f} MiB  {ratio:6.1f}x {cpu_ratio:8.1f}x  {r['note']}")
        results[size] = {"floor_flops": floor, "matmul_gflops": rate,
                         "systems": {s: {k: v for k, v in r.items() if k != "ll"}
                                     for s, r in found.items()}}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if failed:
        print(f"\nsome system disagrees with the float64 forward algorithm by more than "
              f"{TOLERANCE:g} (relative)")
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
