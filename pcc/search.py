"""Choosing a latent tree's capacity and regularization on validation, within a time budget.

`pcc train` (and `pcc.fit`) on a latent tree trained from the data (`pcc.train.recipe_for`)
chooses every setting of this table that the user left open, each on the validation split:

    K, hidden states per variable    K_CHOICES               open when the file says so (`pcc.capacity`)
    trees mixed at the root          1 or all of the file's  open when the file says so
    pseudocount                      PSEUDOCOUNTS            open unless --pseudocount is given
    leaf smoothing (`pcc.regularize`) SOFTENINGS              open unless --soften is given

A *candidate* is trained by the first stage of the recipe: data initialization, then online EM
with early stopping on validation; its score is its best validation log-likelihood. The search
runs in phases: first every (K, trees) pair (cheapest first) with the first pseudocount and
smoothing, then the other pseudocounts for the best candidate so far, then the other
smoothings for the best so far. The best candidate of all is not trained again: it goes on
where its first stage left it, with full-batch EM and the plain Chow-Liu tree floor
(`pcc.train`), so the search costs the first stages of the losing candidates.

The budget (`TrainConfig.budget`, seconds of training) is planned: the search may use
SEARCH_SHARE of it, and a candidate is skipped (and said) when its predicted time, from the
seconds per circuit FLOP measured on the candidates before it, would take the search past that
share; full-batch EM then gets as many iterations as the rest of the budget holds. Every
decision is recorded in the run's state (`pcc.progress.Run.search`), so a run resumed from a
snapshot (`pcc.snapshot`) makes the same ones and ends at the same parameters.
"""
from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass, replace

from tqdm.auto import tqdm

from .capacity import Capacity, is_resizable, open_dimensions, resize, tree_count
from .progress import Progress
from .structures.defaults import HCLT_K_CHOICES as K_CHOICES

PSEUDOCOUNTS = (0.1, 1.0)
SOFTENINGS = (0.0, 0.01)
SEARCH_SHARE = 0.5  # of the budget, for the first stages of the candidates
DEFAULT_BUDGET = 900.0  # seconds: pcc train's default --budget


@dataclass(frozen=True)
class Space:
    """The values each setting may take (one value: fixed)."""

    k: tuple[int, ...]
    trees: tuple[int, ...]
    pseudocount: tuple[float, ...]
    soften: tuple[float, ...]

    def phases(self) -> list[tuple[str, ...]]:
        """The settings each phase varies, in order (only those with a choice)."""
        out = [tuple(f for f in ("k", "trees") if len(getattr(self, f)) > 1)]
        out += [(f,) for f in ("pseudocount", "soften") if len(getattr(self, f)) > 1]
        return [phase for phase in out if phase]


def search_space(circuit, config) -> Space | None:
    """What a run of `config` (not resolved yet: None = not given) on `circuit` may choose, or
    None when it chooses nothing (fixed settings, not a latent tree trained from the data)."""
    from .train import LATENT_TREE_RECIPE, recipe_for
    if recipe_for(circuit) != LATENT_TREE_RECIPE or config.init not in (None, "data"):
        return None  # not a latent tree, or one that starts from its own parameters
    open_ = open_dimensions(circuit) if is_resizable(circuit) else ()
    forest_k = circuit.inputs[0].k
    trees = tree_count(circuit)
    space = Space(k=K_CHOICES if "k" in open_ else (forest_k,),
                  trees=(1, trees) if "trees" in open_ and trees > 1 else (trees,),
                  pseudocount=PSEUDOCOUNTS if config.pseudocount is None
                  else (config.pseudocount,),
                  soften=SOFTENINGS if config.soften is None else (config.soften,))
    return space if space.phases() else None


def label(candidate: dict) -> str:
    """`K=16, 4 trees, pseudocount 0.1, soften 0.01`."""
    return f"{Capacity(candidate['k'], candidate['trees'], candidate['pseudocount'])}, " \
           f"soften {candidate['soften']:g}"


class Search:
    """The capacity search of one run (see the module doc): `run(...)` returns the chosen
    model, in training (its first stage done), and the config to finish it with."""

    def __init__(self, space: Space, circuit, backend: str, dtype, device):
        self.space, self.circuit = space, circuit
        self.backend, self.dtype, self.device = backend, dtype, device
        self._flops: dict[tuple[int, int], float] = {}

    # ------------------------------------------------------------------ the search's state
    def _start(self, config) -> dict:
        first = {"k": self.space.k[-1], "trees": self.space.trees[-1],
                 "pseudocount": self.space.pseudocount[0], "soften": self.space.soften[0]}
        phase = self.space.phases()[0]
        return {"phase": 0, "candidates": self._vary(first, phase), "results": [],
                "records": [], "best": None, "best_parameters": None, "best_progress": None,
                "polish": None, "began": 0.0}

    def _vary(self, base: dict, fields: tuple[str, ...]) -> list[dict]:
        """Candidates that differ from `base` in `fields` (every combination), cheapest first;
        `base` itself included only in the first phase (later, it has been trained)."""
        import itertools
        values = [getattr(self.space, f) for f in fields]
        out = [{**base, **dict(zip(fields, combo))} for combo in itertools.product(*values)]
        return sorted(out, key=lambda c: self.flops(c))

    def flops(self, candidate: dict) -> float:
        """Forward FLOPs per row of the candidate's circuit (`pcc compile --explain`'s count)."""
        key = (candidate["k"], candidate["trees"])
        if key not in self._flops:
            from .compiler import plan
            from .passes.explain import op_cost
            self._flops[key] = float(max(1, sum(op_cost(op).flops
                                                for op in plan(self._circuit(candidate)).ops)))
        return self._flops[key]

    def _circuit(self, candidate: dict):
        if (candidate["k"], candidate["trees"]) == (self.circuit.inputs[0].k,
                                                      tree_count(self.circuit)):
            return self.circuit
        return resize(self.circuit, candidate["k"], candidate["trees"])

    def _model(self, candidate: dict, seed: int):
        from .compiler import compile as compile_circuit
        return compile_circuit(self._circuit(candidate), backend=self.backend, seed=seed,
                               dtype=self.dtype).to(self.device)

    # ------------------------------------------------------------------------ the search
    def run(self, data, valid, config, run, progress: bool, on_epoch):
        """Train the candidates (from where `run`'s state stands), then return (the best
        candidate's model with `run.progress` at its full-batch EM stage, the config to finish
        it with, None). After an interrupt: (the best model so far, config, its History, which
        says `interrupted`)."""
        from .train import _fit
        if run.search is None:
            run.search = self._start(config)
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
                if reason:
                    s["results"].append({"valid": None, "skipped": reason})
                    say(f"capacity search: {label(candidate)}: skipped ({reason})")
                    continue
                s["began"] = run.seconds()
            cfg = replace(config, pseudocount=candidate["pseudocount"], soften=candidate["soften"],
                          members=1)
            model = self._model(candidate, config.seed)
            history = _fit(model, data, valid, cfg, progress, on_epoch, run,
                           label=label(candidate), first_stage_only=True)
            if history.interrupted:
                return self._interrupted(s, model, history, config)
            seconds = run.seconds() - s["began"]
            epochs = sum(isinstance(r["epoch"], int) for r in history.epochs)
            s["results"].append({"valid": history.best_valid, "seconds": seconds,
                                 "epochs": epochs})
            s["records"] += history.epochs
            say(f"capacity search: {label(candidate)}: valid {history.best_valid:.4f} "
                f"({seconds:.1f} s)")
            best = s["best"]
            if best is None or history.best_valid > s["results"][best]["valid"]:
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

    def _next_phase(self, s: dict) -> None:
        phases = self.space.phases()
        s["phase"] += 1
        if s["phase"] >= len(phases) or s["best"] is None:
            s["phase"] = None
            return
        base = s["candidates"][s["best"]]
        s["candidates"] += [c for c in self._vary(base, phases[s["phase"]]) if c != base]

    def _over_budget(self, s: dict, candidate: dict, config, data, run) -> str | None:
        """Why `candidate` is skipped (its predicted first stage would take the search past its
        share of the budget), or None; the first candidate always runs."""
        done = [(c, r) for c, r in zip(s["candidates"], s["results"]) if r.get("seconds")]
        if not done or not math.isfinite(config.budget):
            return None
        work = sum(self.flops(c) * r["epochs"] for c, r in done)
        rate = sum(r["seconds"] for _, r in done) / max(work, 1.0)
        predicted = rate * self.flops(candidate) * config.epochs
        if run.seconds() + predicted <= SEARCH_SHARE * config.budget:
            return None
        return f"about {predicted:.0f} s more, past half of the {config.budget:g} s budget"

    def _chosen(self, s: dict, config, data, run, say):
        """The best candidate's model, `run.progress` at its full-batch stage, and its config
        (its pseudocount and smoothing; full-batch EM bounded by the rest of the budget)."""
        best = s["candidates"][s["best"]]
        model = self._model(best, config.seed)
        model.load_state_dict(s["best_parameters"])
        if s["polish"] is None:  # the choice is made now: said once, recorded
            s["polish"] = self._polish_cap(s, best, config, run)
            tried = sum(1 for r in s["results"] if r["valid"] is not None)
            say(f"chose {label(best)} on validation ({s['results'][s['best']]['valid']:.4f}; "
                f"{tried} candidate{'s' if tried > 1 else ''} tried)")
            progress = Progress.from_state_dict(copy.deepcopy(s["best_progress"]))
            progress.history = replace(progress.history, epochs=[])  # in the search's records
            run.progress = progress
            run.safe_point(model)
        config = replace(config, pseudocount=best["pseudocount"], soften=best["soften"],
                         polish=min(config.polish, s["polish"]))
        return model, config

    def _polish_cap(self, s: dict, best: dict, config, run) -> int:
        """Full-batch EM iterations the rest of the budget holds (each costs about an epoch)."""
        if not math.isfinite(config.budget):
            return config.polish
        done = [(c, r) for c, r in zip(s["candidates"], s["results"]) if r.get("seconds")]
        work = sum(self.flops(c) * r["epochs"] for c, r in done)
        per_pass = sum(r["seconds"] for _, r in done) / max(work, 1.0) * self.flops(best)
        left = config.budget - run.seconds()
        return max(0, min(config.polish, int(left / max(per_pass, 1e-9))))


def summary(search: dict) -> dict:
    """What the checkpoint's meta records of a finished search: the choice and every candidate."""
    best = search["candidates"][search["best"]]
    return {**best, "valid": search["results"][search["best"]]["valid"],
            "candidates": [{**c, **r} for c, r in zip(search["candidates"], search["results"])]}

