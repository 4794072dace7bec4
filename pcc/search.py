"""Choosing a latent tree's capacity and regularization on validation, within a time budget.

`pcc train` (and `pcc.fit`) on a latent tree trained from the data (`pcc.train.recipe_for`)
chooses every setting of this table that the user left open, each on the validation split:

    setting                               tried                open unless
    K, hidden states per variable         K_CHOICES            the file fixes it (`pcc.capacity`)
    trees mixed at the root               TREE_CHOICES         the file fixes them
    pseudocount                           PSEUDOCOUNTS         --pseudocount is given
    entropy regularization of the sums    ENTROPIES            --entropy is given
    leaf smoothing toward the marginals   SOFTENINGS           --soften is given
    (both: `pcc.regularize`)

A *candidate* (one value of each) is trained by the recipe itself, data initialization, online
EM and full-batch EM with early stopping on validation, except that full-batch EM stops after
SCREEN_POLISH iterations if it has not converged by then; its score is its best validation
log-likelihood. (Scores after the online epochs alone rank badly: on 1,600 rows of pumsb-star
full-batch EM still gains 1.3 nats, and more for the regularized candidates.) The search runs in
phases, coordinate by coordinate: every (K, trees) pair (cheapest first) with the first value of
the others, then the other pseudocounts for the candidate chosen so far, then the other entropy
strengths for the one chosen then, then the other smoothings. The chosen candidate is not trained
again: it goes on where it stopped, with the rest of full-batch EM and the plain Chow-Liu tree
floor (`pcc.train`).

Capacity is chosen by the one-standard-error rule: of the (K, trees) candidates, the cheapest
(fewest FLOPs) whose validation log-likelihood is within CAPACITY_TOLERANCE standard errors of
the best one's. The gap of candidate c to the best b and its standard error are paired over the
validation rows x_1..x_N, with d_n = log p_b(x_n) - log p_c(x_n):

    gap = mean(d),   se = std(d) / sqrt(N)

so a larger circuit must win by more than the noise of the validation split to be kept (on
nltcs, K=8 with 8 trees beat 4 trees by 0.0013 nats, inside its standard error). The search
keeps the parameters of the candidates still within reach of the best so far, and drops the
others. Regularization (pseudocount, entropy, smoothing) is then chosen by the plain maximum,
from the chosen capacity.

The budget (`TrainConfig.budget`, seconds of training) is planned: the search may use
SEARCH_SHARE of it, and a candidate is skipped (and said) when its predicted time, from the
seconds per circuit FLOP of the largest candidate trained before it, would take the search past
that share; the chosen one's full-batch EM then gets as many iterations as the rest of the
budget holds. Every decision is recorded in the run's state (`pcc.progress.Run.search`), so a
run resumed from a snapshot (`pcc.snapshot`) makes the same ones and ends at the same parameters.
"""
from __future__ import annotations

import copy
import itertools
import math
import sys
from dataclasses import dataclass, replace

import torch
from tqdm.auto import tqdm

from .capacity import Capacity, is_resizable, open_dimensions, resize, tree_count
from .compiler import compile as compile_circuit
from .compiler import plan
from .passes.explain import op_cost
from .progress import Progress
from .rows import Rows, as_rows
from .structures.defaults import HCLT_K_CHOICES as K_CHOICES
from .structures.defaults import HCLT_TREE_CHOICES as TREE_CHOICES
from .train import LATENT_TREE_RECIPE, _fit, recipe_for

PSEUDOCOUNTS = (0.1, 1.0)
ENTROPIES = (0.0, 0.05)
SOFTENINGS = (0.0, 0.01)
SCREEN_POLISH = 20  # full-batch EM iterations of a candidate, at most, before the choice
CAPACITY_TOLERANCE = 1.0  # standard errors a cheaper capacity may lie below the best one's
SEARCH_SHARE = 0.7  # of the budget, for the candidates (the chosen one often converges sooner)
FIELDS = ("k", "trees", "pseudocount", "entropy", "soften")  # a candidate's, in phase order


@dataclass(frozen=True)
class Space:
    """The values each setting may take (one value: fixed)."""

    k: tuple[int, ...]
    trees: tuple[int, ...]
    pseudocount: tuple[float, ...]
    entropy: tuple[float, ...]
    soften: tuple[float, ...]

    def phases(self) -> list[tuple[str, ...]]:
        """The settings each phase varies, in order (only those with a choice)."""
        out = [tuple(f for f in ("k", "trees") if len(getattr(self, f)) > 1)]
        out += [(f,) for f in FIELDS[2:] if len(getattr(self, f)) > 1]
        return [phase for phase in out if phase]


def search_space(circuit, config) -> Space | None:
    """What a run of `config` (not resolved yet: None = not given) on `circuit` may choose, or
    None when it chooses nothing (fixed settings, not a latent tree trained from the data)."""
    if recipe_for(circuit) != LATENT_TREE_RECIPE or config.init not in (None, "data"):
        return None  # not a latent tree, or one that starts from its own parameters
    open_ = open_dimensions(circuit) if is_resizable(circuit) else ()
    forest_k = circuit.inputs[0].k
    trees = tree_count(circuit)
    space = Space(k=K_CHOICES if "k" in open_ else (forest_k,),
                  trees=tree_choices(trees) if "trees" in open_ else (trees,),
                  pseudocount=PSEUDOCOUNTS if config.pseudocount is None
                  else (config.pseudocount,),
                  entropy=ENTROPIES if config.entropy is None else (config.entropy,),
                  soften=SOFTENINGS if config.soften is None else (config.soften,))
    return space if space.phases() else None


def tree_choices(trees: int) -> tuple[int, ...]:
    """The numbers of trees the search tries of a file holding `trees`: TREE_CHOICES up to it,
    and all of them."""
    return tuple(sorted({t for t in TREE_CHOICES if t < trees} | {trees}))


def label(candidate: dict) -> str:
    """`K=16, 4 trees, pseudocount 0.1, entropy 0.05, soften 0.002`."""
    return (f"{Capacity(candidate['k'], candidate['trees'], candidate['pseudocount'])}, "
            f"entropy {candidate['entropy']:g}, soften {candidate['soften']:g}")


class Search:
    """The search of one run (see the module doc): `run(...)` returns the chosen model, in
    training (its candidate's training done), and the config to finish it with."""

    def __init__(self, space: Space, circuit, backend: str, dtype, device):
        self.space, self.circuit = space, circuit
        self.backend, self.dtype, self.device = backend, dtype, device
        self._flops: dict[tuple[int, int], float] = {}

    # ------------------------------------------------------------------ the search's state
    def _start(self) -> dict:
        first = {f: getattr(self.space, f)[-1 if f in ("k", "trees") else 0] for f in FIELDS}
        phase = self.space.phases()[0]
        return {"phase": 0, "candidates": self._vary(first, phase), "results": [],
                "records": [], "best": None, "best_parameters": None, "best_progress": None,
                "kept": [], "top": None, "pick": None, "polish": None, "began": 0.0}

    def _vary(self, base: dict, fields: tuple[str, ...]) -> list[dict]:
        """`base` with `fields` set to every combination of their values, cheapest first."""
        values = [getattr(self.space, f) for f in fields]
        out = [{**base, **dict(zip(fields, combo))} for combo in itertools.product(*values)]
        return sorted(out, key=lambda c: self.flops(c))

    def flops(self, candidate: dict) -> float:
        """Forward FLOPs per row of the candidate's circuit (`pcc compile --explain`'s count)."""
        key = (candidate["k"], candidate["trees"])
        if key not in self._flops:
            self._flops[key] = float(max(1, sum(op_cost(op).flops
                                                for op in plan(self._circuit(candidate)).ops)))
        return self._flops[key]

    def _circuit(self, candidate: dict):
        if (candidate["k"], candidate["trees"]) == (self.circuit.inputs[0].k,
                                                      tree_count(self.circuit)):
            return self.circuit
        return resize(self.circuit, candidate["k"], candidate["trees"])

    def _model(self, candidate: dict, seed: int):
        return compile_circuit(self._circuit(candidate), backend=self.backend, seed=seed,
                               dtype=self.dtype).to(self.device)

    # ------------------------------------------------------------------------ the search
    def run(self, data, valid, config, run, progress: bool, on_epoch):
        """Train the candidates (from where `run`'s state stands), then return (the best
        candidate's model with `run.progress` at its full-batch EM stage, the config to finish
        it with, None). After an interrupt: (the best model so far, config, its History, which
        says `interrupted`)."""
        if run.search is None:
            run.search = self._start()
        s = run.search
        say = (lambda line: tqdm.write(line, file=sys.stderr)) if progress else (lambda line: None)
        while s["phase"] is not None:
            i = len(s["results"])
            if i == len(s["candidates"]):
                self._next_phase(s)
                run.safe_point()
                continue
            candidate = s["candidates"][i]
            if run.progress is None:  # not begun: plan it
                reason = self._over_budget(s, candidate, config, data, run)
                if not _agreed(data, 1.0 if reason else 0.0):  # the ranks decide as one
                    reason = None
                elif not reason:
                    reason = "past the budget, as the first rank predicts it"
                if reason:
                    s["results"].append({"valid": None, "skipped": reason})
                    say(f"capacity search: {label(candidate)}: skipped ({reason})")
                    continue
                s["began"] = run.seconds()
            cfg = replace(self._settings(config, candidate), members=1,
                          polish=min(config.polish, SCREEN_POLISH))
            model = self._model(candidate, config.seed)
            history = _fit(model, data, valid, cfg, progress, on_epoch, run,
                           label=label(candidate), screening=True)
            if history.interrupted:
                return self._interrupted(s, model, history, config)
            seconds = run.seconds() - s["began"]
            s["results"].append({"valid": history.best_valid, "seconds": seconds,
                                 "passes": len(history.epochs)})
            s["records"] += history.epochs
            say(f"capacity search: {label(candidate)}: valid {history.best_valid:.4f} "
                f"({seconds:.1f} s)")
            if self._choosing_capacity(s):
                self._one_standard_error(s, i, model, valid, run, config.seed)
            elif s["best"] is None or history.best_valid > s["results"][s["best"]]["valid"]:
                s["best"] = i
                s["best_parameters"] = copy.deepcopy(model.state_dict())
                s["best_progress"] = run.progress.state_dict()
            run.progress = None
            run.safe_point()
        return (*self._chosen(s, config, data, run, say), None)

    def _interrupted(self, s: dict, model, history, config):
        """The better of the interrupted candidate (at its best epoch) and the best finished
        one, with its History marked interrupted."""
        best = s["best"]
        if best is not None and s["results"][best]["valid"] >= history.best_valid:
            model = self._model(s["candidates"][best], config.seed)
            model.load_state_dict(s["best_parameters"])
            history = Progress.from_state_dict(copy.deepcopy(s["best_progress"])).history
            history.interrupted = True
        return model, config, history

    def _choosing_capacity(self, s: dict) -> bool:
        return s["phase"] == 0 and bool({"k", "trees"} & set(self.space.phases()[0]))

    def _one_standard_error(self, s: dict, i: int, model, valid, run, seed: int) -> None:
        """Candidate `i` (`model`, trained) joins the kept capacity candidates; those more than
        CAPACITY_TOLERANCE standard errors below the best are dropped (their gap and standard
        error recorded in their results), and the cheapest left becomes `s["best"]`."""
        results, candidates = s["results"], s["candidates"]
        kept = s["kept"] + [{"index": i, "parameters": copy.deepcopy(model.state_dict()),
                             "progress": run.progress.state_dict()}]
        top = max(kept, key=lambda entry: (results[entry["index"]]["valid"], -entry["index"]))
        models = {i: model}

        def model_of(entry):
            if entry["index"] not in models:
                other = self._model(candidates[entry["index"]], seed)
                other.load_state_dict(entry["parameters"])
                models[entry["index"]] = other
            return models[entry["index"]]
        for entry in kept:
            j = entry["index"]
            if entry is top:
                results[j].update(gap=0.0, se=0.0)
            elif top["index"] == i or j == i:  # a new best, or a new candidate: measured now
                gap, se = paired_gap(model_of(top), model_of(entry), valid)
                results[j].update(gap=gap, se=se)
        s["kept"] = [entry for entry in kept
                     if results[entry["index"]]["gap"]
                     <= CAPACITY_TOLERANCE * results[entry["index"]]["se"]]
        chosen = min(s["kept"], key=lambda entry: (self.flops(candidates[entry["index"]]),
                                                   entry["index"]))
        s["best"] = s["pick"] = chosen["index"]
        s["top"] = top["index"]
        s["best_parameters"], s["best_progress"] = chosen["parameters"], chosen["progress"]

    def _next_phase(self, s: dict) -> None:
        phases = self.space.phases()
        s["kept"] = []  # the capacity is chosen: only the best's parameters are needed now
        s["phase"] += 1
        if s["phase"] >= len(phases) or s["best"] is None:
            s["phase"] = None
            return
        base = s["candidates"][s["best"]]
        s["candidates"] += [c for c in self._vary(base, phases[s["phase"]]) if c != base]

    def _over_budget(self, s: dict, candidate: dict, config, data, run) -> str | None:
        """Why `candidate` is skipped (its predicted time would take the search past its share
        of the budget), or None; the first candidate always runs."""
        if not math.isfinite(config.budget):
            return None
        per_pass = self._seconds_per_pass(s, candidate)
        if per_pass is None:
            return None
        predicted = per_pass * (config.epochs + min(config.polish, SCREEN_POLISH))
        if run.seconds() + predicted <= SEARCH_SHARE * config.budget:
            return None
        return (f"about {predicted:.0f} s more, past the search's {SEARCH_SHARE:.0%} of the "
                f"{config.budget:g} s budget")

    def _seconds_per_pass(self, s: dict, candidate: dict) -> float | None:
        """Predicted seconds of one pass (an epoch or a full-batch iteration) of `candidate`:
        the seconds per FLOP of the largest candidate trained so far (the smaller ones spend
        more of their time outside the circuit), times the candidate's FLOPs; None before any."""
        done = [(self.flops(c), r) for c, r in zip(s["candidates"], s["results"])
                if r.get("seconds")]
        if not done:
            return None
        flops, result = max(done, key=lambda d: d[0])
        return result["seconds"] / max(result["passes"], 1) / flops * self.flops(candidate)

    def _chosen(self, s: dict, config, data, run, say):
        """The best candidate's model, `run.progress` at its full-batch stage, and its config
        (its pseudocount and smoothing; full-batch EM bounded by the rest of the budget)."""
        best = s["candidates"][s["best"]]
        model = self._model(best, config.seed)
        model.load_state_dict(s["best_parameters"])
        if s["polish"] is None:  # the choice is made now: said once, recorded
            s["polish"] = int(_agreed(data, float(self._polish_cap(s, best, config, run))))
            tried = sum(1 for r in s["results"] if r["valid"] is not None)
            say(f"chose {label(best)} on validation ({s['results'][s['best']]['valid']:.4f}; "
                f"{tried} candidate{'s' if tried > 1 else ''} tried){_rule(s)}")
            progress = Progress.from_state_dict(copy.deepcopy(s["best_progress"]))
            progress.history = replace(progress.history, epochs=[])  # in the search's records
            run.progress = progress
            run.safe_point(model)
        return model, replace(self._settings(config, best), polish=s["polish"])

    @staticmethod
    def _settings(config, candidate: dict):
        return replace(config, **{f: candidate[f] for f in FIELDS[2:]})

    def _polish_cap(self, s: dict, best: dict, config, run) -> int:
        """Full-batch EM iterations in all for the chosen candidate: those it did, and as many
        more as the rest of the budget holds."""
        done = Progress.from_state_dict(s["best_progress"]).polished
        if not math.isfinite(config.budget):
            return config.polish
        per_pass = self._seconds_per_pass(s, best)
        more = int(max(0.0, config.budget - run.seconds()) / max(per_pass, 1e-9))
        return max(done, min(config.polish, done + more))


@torch.no_grad()
def paired_gap(better, other, rows, batch_size: int = 1000) -> tuple[float, float]:
    """(mean of d, its standard error std(d) / sqrt(N)) for d_n = log p_better(x_n) -
    log p_other(x_n) over the N rows (every process's share, totalled; of each row's unit for
    labeled rows)."""
    rows = rows if isinstance(rows, Rows) else as_rows(rows)
    device = next(better.parameters()).device

    def local() -> list[float]:
        n = total = squares = 0.0
        for x, target in rows.local_chunks(batch_size):
            x = x.to(device)
            d = (better(x).double() - other(x).double()).cpu().reshape(len(x), -1)
            if target is not None:
                d = d.gather(1, target.unsqueeze(1))
            n, total, squares = n + len(x), total + float(d.sum()), squares + float((d * d).sum())
        return [n, total, squares]
    n, total, squares = rows.total(rows.guard(local, [0.0, 0.0, 0.0]))
    mean = total / max(n, 1.0)
    variance = max(squares - total * mean, 0.0) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(variance / max(n, 1.0))


def _rule(s: dict) -> str:
    """How the capacity was chosen, when not simply the best: `; the cheapest capacity within 1
    standard error (0.0030) of the best, K=8, 8 trees (-5.9413, 0.0012 above on the same
    rows)`."""
    top, pick = s.get("top"), s.get("pick")
    if top == pick:
        return ""
    chosen = s["results"][pick]
    return (f"; the cheapest capacity within {CAPACITY_TOLERANCE:g} standard error "
            f"({chosen['se']:.4f}) of the best, {_capacity(s['candidates'][top])} "
            f"({s['results'][top]['valid']:.4f}, {chosen['gap']:.4f} above on the same rows)")


def _capacity(candidate: dict) -> str:
    """`K=8, 4 trees`."""
    trees = candidate["trees"]
    return f"K={candidate['k']}, {trees} tree{'s' if trees > 1 else ''}"


def capacity_rule(summary: dict) -> str:
    """`; the cheapest capacity within one standard error of K=8, 8 trees` for a search
    `summary` whose capacity is not the best one on validation; "" otherwise."""
    best = summary.get("best_capacity")
    return f"; the cheapest capacity within one standard error of {_capacity(best)}" if best else ""


def _agreed(rows, value: float) -> float:
    """The first rank's `value` on every rank of data-parallel training (decisions that read
    a clock must be the same everywhere); `value` itself in one process."""
    group = rows.group
    return rows.total([value if group is None or group.is_main else 0.0])[0]


def summary(search: dict) -> dict:
    """What the checkpoint's meta records of a finished search: the choice, the best capacity on
    validation when the one-standard-error rule chose a cheaper one, and every candidate (with
    its paired gap to the best capacity and the gap's standard error, for the capacity ones)."""
    best = search["candidates"][search["best"]]
    top = search.get("top")
    return {**best, "valid": search["results"][search["best"]]["valid"],
            "best_capacity": None if top == search.get("pick") else
            {f: search["candidates"][top][f] for f in ("k", "trees")},
            "candidates": [{**c, **r} for c, r in zip(search["candidates"], search["results"])]}

