"""Hidden Markov models as circuits (`pcc structure hmm`): likelihoods, EM, posterior marginals,
MPE and sampling against a float64 forward-backward and Viterbi written here, and brute force on
tiny chains; missing tokens; the command line."""
from __future__ import annotations

import itertools
from pathlib import Path
import math

import numpy as np
import pytest
import torch

import pcc
from pcc.train import TrainConfig, evaluate, fit
from pcc.cli.main import main
from pcc.latent_forest import find_latent_forest
from pcc.latent_tree import initialize
from pcc.region_graph import parameter_count
from pcc.structures import hidden_markov_model
from query_helpers import chi_square_p

NAN = math.nan


# ------------------------------------------------------------------ the float64 reference

def hmm_params(model, length: int):
    """(pi [H], A_t [H, H] per step t = 1..T-1, B_t [H, V] per position) of a compiled HMM, in
    float64, read through the IR (a tied region reads its tie owner's values)."""
    given = {(p.region, p.field): torch.tensor(p.values, dtype=torch.float64).reshape(p.shape)
             for p in model.ir_params()}
    owner = model.circuit.tie_owner
    pi = given[("start", "weights")][0]
    steps = [given[(owner.get(f"step{t}", f"step{t}"), "weights")] for t in range(1, length)]
    emits = [given[(owner.get(f"emit{t}", f"emit{t}"), "probs")][:, 0] for t in range(length)]
    return pi, steps, emits


def emission(b: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """p(x_t | z_t = i) [N, H] of tokens [N] (NaN = missing: 1)."""
    seen = ~torch.isnan(tokens)
    out = torch.ones(len(tokens), b.shape[0], dtype=torch.float64)
    out[seen] = b[:, tokens[seen].long()].t()
    return out


def forward_backward(pi, steps, emits, x):
    """(log p(x) [N], gamma [N, T, H] = p(z_t | x), xi [T-1 of N, H, H] = p(z_t, z_t+1 | x)),
    scaled forward-backward in float64."""
    alphas, scales = [], []
    alpha = pi * emission(emits[0], x[:, 0])
    for t in range(x.shape[1]):
        if t:
            alpha = (alpha @ steps[t - 1]) * emission(emits[t], x[:, t])
        scale = alpha.sum(1, keepdim=True)
        alpha = alpha / scale
        alphas.append(alpha)
        scales.append(scale)
    betas = [torch.ones_like(alpha)]
    for t in reversed(range(x.shape[1] - 1)):
        after = betas[0] * emission(emits[t + 1], x[:, t + 1])
        betas.insert(0, after @ steps[t].t() / scales[t + 1])
    gamma = torch.stack([a * b for a, b in zip(alphas, betas)], 1)
    xi = [alphas[t].unsqueeze(2) * steps[t] * (emission(emits[t + 1], x[:, t + 1])
                                                * betas[t + 1]).unsqueeze(1) / scales[t + 1].unsqueeze(2)
          for t in range(x.shape[1] - 1)]
    return torch.cat(scales, 1).log().sum(1), gamma, xi


def viterbi(pi, steps, emits, x):
    """(max over hidden paths and missing tokens of log p(z, x), the completed rows): a missing
    token emits its most probable value."""
    def emit_log(t):
        out = emission(emits[t], x[:, t]).log()
        missing = torch.isnan(x[:, t])
        out[missing] = emits[t].max(1).values.log()
        return out
    score, back = pi.log() + emit_log(0), []
    for t in range(1, x.shape[1]):
        cand = score.unsqueeze(2) + steps[t - 1].log()
        back.append(cand.argmax(1))
        score = cand.max(1).values + emit_log(t)
    z = [score.argmax(1)]
    for pointers in reversed(back):
        z.insert(0, pointers.gather(1, z[0].unsqueeze(1)).squeeze(1))
    completed = x.clone()
    for t, state in enumerate(z):
        missing = torch.isnan(x[:, t])
        completed[missing, t] = emits[t][state[missing]].argmax(1).double()
    return score.max(1).values, completed


def brute_force_joint(pi, steps, emits, vocab: int) -> torch.Tensor:
    """p(x) of every complete sequence (row-major over x_0..x_T-1) by summing over all paths."""
    length, hidden = len(emits), len(pi)
    table = torch.zeros(vocab ** length, dtype=torch.float64)
    for i, xs in enumerate(itertools.product(range(vocab), repeat=length)):
        for zs in itertools.product(range(hidden), repeat=length):
            p = pi[zs[0]] * emits[0][zs[0], xs[0]]
            for t in range(1, length):
                p = p * steps[t - 1][zs[t - 1], zs[t]] * emits[t][zs[t], xs[t]]
            table[i] += p
    return table


def hmm(length=6, hidden=3, vocab=4, tied=True, seed=1, dtype=torch.float64):
    return pcc.compile(hidden_markov_model(length, hidden, vocab, tied=tied), backend="torch",
                       seed=seed, dtype=dtype)


def tokens(rows, length, vocab, missing=0.3, seed=0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab, (rows, length), generator=gen).double()
    x[torch.rand(rows, length, generator=gen) < missing] = NAN
    return x


# ------------------------------------------------------------------ the structure

def test_the_homogeneous_hmm_ties_every_transition_and_emission():
    c = hidden_markov_model(5, 3, 4)
    assert [t.regions for t in c.ties] == [tuple(f"emit{t}" for t in range(5)),
                                           tuple(f"step{t}" for t in range(1, 5))]
    assert parameter_count(c) == 3 * 4 + 3 * 3 + 3  # B, A, pi
    untied = hidden_markov_model(5, 3, 4, tied=False)
    assert untied.ties == () and parameter_count(untied) == 5 * 12 + 4 * 9 + 3
    model = hmm(5, 3, 4)
    assert sum(p.numel() for p in model.parameters()) == 3 * 4 + 3 * 3 + 3


def test_one_token_and_two_token_chains():
    for length in (1, 2):
        model = hmm(length, 2, 3)
        x = torch.tensor(list(itertools.product(range(3), repeat=length)), dtype=torch.float64)
        assert torch.allclose(model(x).exp().sum(), torch.tensor(1.0, dtype=torch.float64))


# ------------------------------------------------------------------ likelihoods

@pytest.mark.parametrize("tied", [True, False])
def test_log_likelihoods_match_the_forward_algorithm_in_float32(tied):
    model = hmm(7, 4, 5, tied=tied, dtype=torch.float32)
    x = tokens(60, 7, 5)
    ll, _, _ = forward_backward(*hmm_params(model, 7), x)
    assert torch.allclose(model(x.float()).double(), ll, rtol=1e-5, atol=1e-5)


def test_trailing_missing_tokens_give_the_likelihood_of_the_shorter_sequence():
    long, short = hmm(8, 3, 4), hmm(5, 3, 4)
    short.load_state_dict(long.state_dict())  # the same tied parameters, fewer positions
    x = tokens(40, 5, 4, missing=0.0)
    padded = torch.cat([x, torch.full((40, 3), NAN, dtype=torch.float64)], 1)
    assert torch.allclose(long(padded), short(x), rtol=0, atol=1e-12)
    ll, _, _ = forward_backward(*hmm_params(short, 5), x)
    assert torch.allclose(long(padded), ll, atol=1e-12)
    ragged = padded.clone()  # sequences of lengths 1..8 in one batch
    for i in range(40):
        ragged[i, 1 + i % 8:] = NAN
    ll, _, _ = forward_backward(*hmm_params(long, 8), ragged)
    assert torch.allclose(long(ragged), ll, atol=1e-12)


def test_a_tiny_chain_is_its_brute_force_joint():
    model = hmm(3, 2, 3, seed=4)
    x = torch.tensor(list(itertools.product(range(3), repeat=3)), dtype=torch.float64)
    joint = brute_force_joint(*hmm_params(model, 3), 3)
    assert torch.allclose(model(x).exp(), joint, atol=1e-14)
    assert torch.allclose(joint.sum(), torch.tensor(1.0, dtype=torch.float64))


# ------------------------------------------------------------------ EM

@pytest.mark.parametrize("tied", [True, False])
def test_one_full_batch_em_step_is_baum_welch(tied):
    length, hidden, vocab = 6, 3, 4
    model = hmm(length, hidden, vocab, tied=tied, seed=2)
    x = tokens(80, length, vocab)
    pi, steps, emits = hmm_params(model, length)
    _, gamma, xi = forward_backward(pi, steps, emits, x)
    em = pcc.EM(model, step_size=1.0, pseudocount=0.0, min_prob=0.0)
    em.accumulate(x[:50])
    em.accumulate(x[50:])
    em.update()
    new_pi, new_steps, new_emits = hmm_params(model, length)

    def normalized(counts):
        return counts / counts.sum(-1, keepdim=True)
    counts = torch.zeros(length, hidden, vocab, dtype=torch.float64)
    for t in range(length):
        seen = ~torch.isnan(x[:, t])
        counts[t].index_add_(1, x[seen, t].long(), gamma[seen, t].t())
    assert torch.allclose(new_pi, gamma[:, 0].mean(0), atol=1e-12)
    if tied:  # the expected counts of every position summed before one M-step
        assert torch.allclose(new_steps[0], normalized(sum(x_.sum(0) for x_ in xi)), atol=1e-12)
        assert torch.allclose(new_emits[0], normalized(counts.sum(0)), atol=1e-12)
    else:
        for t in range(length - 1):
            assert torch.allclose(new_steps[t], normalized(xi[t].sum(0)), atol=1e-12)
        for t in range(length):
            assert torch.allclose(new_emits[t], normalized(counts[t]), atol=1e-12)


def test_training_leaves_the_symmetric_fixed_point():
    """Data of a sticky two-state chain: a model whose states are all alike (the fixed point EM
    cannot leave) scores the unigram likelihood; the trained HMM must do clearly better."""
    truth = hmm(12, 2, 3, seed=0)
    with torch.no_grad():
        truth.sum_logits[0].copy_(torch.tensor([[[0.95, 0.05], [0.05, 0.95]]]).log())
        truth.leaf_params[0].logits.copy_(torch.tensor([[[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]]]).log())
    data = truth.sample(600, generator=torch.Generator().manual_seed(0)).float()
    model = pcc.compile(hidden_markov_model(12, 2, 3), seed=3)
    config = TrainConfig(epochs=5, polish=20)
    assert config.resolved(model.circuit).init == "data"
    initialize(model, data[:500], find_latent_forest(model.circuit), 0.1)
    emitted = model.leaf_params[0].logits.softmax(-1)[0]
    assert (emitted[0] - emitted[1]).abs().max() > 0.3  # the states start apart
    fit(model, data[:500], data[500:], config, progress=False)
    unigram = torch.bincount(data.long().view(-1), minlength=3).double() / data.numel()
    unigram_ll = float(unigram[data[500:].long()].log().sum(1).mean())
    true_ll = float(truth(data[500:]).mean().detach())
    trained_ll = evaluate(model, data[500:]).mean
    assert trained_ll > unigram_ll + 0.3 * (true_ll - unigram_ll)


# ------------------------------------------------------------------ queries

@pytest.mark.parametrize("tied", [True, False])
def test_posterior_marginals_are_forward_backward(tied):
    model = hmm(7, 3, 4, tied=tied, seed=5, dtype=torch.float32)
    x = tokens(30, 7, 4, missing=0.4)
    _, gamma, _ = forward_backward(*hmm_params(model, 7), x)
    _, _, emits = hmm_params(model, 7)
    expected = torch.einsum("nth,thv->ntv", gamma, torch.stack(emits))
    seen = ~torch.isnan(x)
    expected[seen] = torch.nn.functional.one_hot(x[seen].long(), 4).double()
    got = model.posterior_marginals(x.float())
    assert got.shape == (30, 7, 4)
    assert torch.allclose(got.double(), expected, atol=1e-5)


@pytest.mark.parametrize("tied", [True, False])
def test_mpe_is_viterbi_over_hidden_paths_and_missing_tokens(tied):
    model = hmm(8, 3, 5, tied=tied, seed=6)
    x = tokens(40, 8, 5, missing=0.35, seed=3)
    best, completed = viterbi(*hmm_params(model, 8), x)
    states, log_prob = model.mpe(x)
    assert torch.equal(states, completed)
    ll, _, _ = forward_backward(*hmm_params(model, 8), completed)
    assert torch.allclose(log_prob, ll, atol=1e-10)
    arenas = model.upward(x, "max")  # the max-product value is Viterbi's
    k, row = model.plan.region_row["start"]
    assert torch.allclose(arenas[k][row][:, 0], best, atol=1e-10)


def test_mpe_of_a_tiny_chain_is_the_brute_force_best_joint_completion():
    model = hmm(3, 2, 3, seed=7)
    pi, steps, emits = hmm_params(model, 3)
    x = torch.tensor([[0, NAN, NAN], [NAN, 2, NAN], [1, NAN, 0]], dtype=torch.float64)
    states, _ = model.mpe(x)
    for row, done in zip(x, states):
        best, arg = -1.0, None
        for zs in itertools.product(range(2), repeat=3):
            for xs in itertools.product(range(3), repeat=3):
                if any(not math.isnan(o) and o != v for o, v in zip(row.tolist(), xs)):
                    continue
                p = pi[zs[0]] * emits[0][zs[0], xs[0]]
                for t in (1, 2):
                    p = p * steps[t - 1][zs[t - 1], zs[t]] * emits[t][zs[t], xs[t]]
                if p > best:
                    best, arg = float(p), xs
        assert tuple(done.long().tolist()) == arg


def test_free_and_infilled_samples_follow_the_brute_force_distribution():
    model = hmm(3, 2, 3, seed=8)
    joint = brute_force_joint(*hmm_params(model, 3), 3)
    gen = torch.Generator().manual_seed(0)
    free = model.sample(6000, generator=gen)
    assert chi_square_p(free, joint, [3, 3, 3]) > 1e-3
    evidence = torch.tensor([[NAN, 2, NAN]], dtype=torch.float64)
    filled = model.sample(4000, evidence, generator=gen)
    assert (filled[:, 1] == 2).all()
    states = torch.tensor(list(itertools.product(range(3), repeat=3)))
    conditional = torch.where(states[:, 1] == 2, joint, torch.zeros_like(joint))
    assert chi_square_p(filled, conditional / conditional.sum(), [3, 3, 3]) > 1e-3


# ------------------------------------------------------------------ the command line

def test_the_command_line_trains_evaluates_samples_and_completes(tmp_path, capsys):
    truth = hmm(6, 2, 3, seed=0)
    rows = truth.sample(300, generator=torch.Generator().manual_seed(1)).numpy()
    lines = [",".join(str(int(v)) for v in row[: 2 + i % 5]) + "," * (4 - i % 5)  # ragged
             for i, row in enumerate(rows)]
    (tmp_path / "train.csv").write_text("\n".join(lines[:250]) + "\n")
    (tmp_path / "valid.csv").write_text("\n".join(lines[250:]) + "\n")
    (tmp_path / "holes.csv").write_text("0,,1,,,\n2,1,,,0,\n")
    pc, pt = str(tmp_path / "hmm.pc"), str(tmp_path / "hmm.pt")
    assert main(["structure", "hmm", "--length", "6", "--hidden", "2", "--vocab", "3", "-o", pc]) == 0
    assert main(["train", pc, "--train", str(tmp_path / "train.csv"), "--valid",
                 str(tmp_path / "valid.csv"), "--epochs", "2", "--polish", "2", "-o", pt]) == 0
    capsys.readouterr()
    assert main(["eval", pt, "--data", str(tmp_path / "valid.csv")]) == 0
    assert "mean log-likelihood" in capsys.readouterr().out
    assert main(["sample", pt, "-n", "4", "--evidence", str(tmp_path / "holes.csv")]) == 0
    filled = np.loadtxt(capsys.readouterr().out.splitlines(), delimiter=",")
    assert filled.shape == (8, 6) and (filled[:4, [0, 2]] == [0, 1]).all()
    marginals = str(tmp_path / "marginals.npy")
    assert main(["mpe", pt, "--data", str(tmp_path / "holes.csv"), "--marginals", marginals]) == 0
    completed = np.loadtxt(capsys.readouterr().out.splitlines(), delimiter=",")
    assert completed.shape == (2, 6) and completed[1, 4] == 0
    posterior = np.load(marginals)
    assert posterior.shape == (2, 6, 3) and np.allclose(posterior.sum(-1), 1, atol=1e-5)
    assert posterior[0, 0, 0] == 1 and posterior[0, 1].max() < 1


def test_the_text_example_runs_and_beats_the_unigram(tmp_path, capsys):
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    import text_hmm
    rng = np.random.default_rng(0)
    words = ["the cat", "a dog", "sat on", "the mat", "ran to", "a tree"]
    text = ". ".join(" ".join(rng.choice(words, 3)) for _ in range(400))
    (tmp_path / "t.txt").write_text(text)
    assert text_hmm.main([str(tmp_path / "t.txt"), "--hidden", "8", "--length", "16",
                          "--epochs", "2", "--polish", "3"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("test bits per character"))
    hmm_bits, bigram, unigram = (float(w.rstrip(",")) for w in line.split()
                                 if w.rstrip(",").replace(".", "").isdigit() and "." in w)
    assert hmm_bits < unigram and bigram < unigram
    assert "generated" in out and "MPE" in out
