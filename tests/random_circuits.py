"""Random small valid circuits for runtime tests: DAG region graphs with shared regions, K in 1..5,
arity 1..3, several partitions per region, outer and element-wise products, every leaf family,
and inputs that mix families."""
from __future__ import annotations

import random

from pcc.ir import Circuit, Family, Input, LeafScope, Sum, default_var_names

FAMILIES = {
    "bernoulli": Family("bernoulli"),
    "categorical": Family("categorical", (("n", 3),)),
    "binomial": Family("binomial", (("n", 2),)),
    "normal": Family("normal"),
}
SUPPORT = {"bernoulli": 2, "categorical": 3, "binomial": 3, "normal": None}


def random_circuit(seed: int, num_vars: int = 4, families=("bernoulli",), max_k: int = 5,
                   max_parts: int = 3, max_arity: int = 3, root_k: int = 1,
                   elementwise: float = 0.3, mixed: float = 0.0) -> Circuit:
    """A random valid circuit; each variable gets one family from `families`; a partition of
    two or more children is element-wise with probability `elementwise`. With `mixed` > 0 the
    families are declared per variable (`leaf F {vars}`) and a scope whose variables have
    several families becomes a mixed input with that probability."""
    rng = random.Random(seed)
    var_family = [rng.choice(families) for _ in range(num_vars)]
    regions: list = []
    by_scope: dict[frozenset, list[str]] = {}
    k_of: dict[str, int] = {}

    def new_name(prefix: str) -> str:
        return f"{prefix}{len(regions)}"

    def build(scope: frozenset, k: int, exact_k: bool = False) -> str:
        same_family = len({var_family[v] for v in scope}) == 1
        shared = [r for r in by_scope.get(scope, ()) if not exact_k or k_of[r] == k]
        if shared and rng.random() < 0.4:
            return rng.choice(shared)  # share a region: the graph becomes a DAG
        if same_family and (len(scope) == 1 or rng.random() < 0.25):
            name = new_name("in")
            fam = FAMILIES[var_family[next(iter(scope))]]
            regions.append(Input(name, tuple(sorted(scope)), k, fam))
        elif not same_family and mixed > 0 and rng.random() < mixed:
            name = new_name("mixed")
            scope_order = sorted(scope)
            rng.shuffle(scope_order)
            regions.append(Input(name, tuple(scope_order), k))
        else:
            parts = {}  # partition -> element-wise; a partition listed twice is still one
            for _ in range(rng.randint(1, max_parts)):
                arity = rng.randint(1 if len(parts) else 2, min(max_arity, len(scope)))
                if arity > 1 and rng.random() < elementwise:
                    child_k = rng.randint(1, max_k)
                    part = tuple(build(s, child_k, True) for s in _split(rng, scope, arity))
                    parts.setdefault(part, True)
                else:
                    part = tuple(build(s, rng.randint(1, max_k)) for s in _split(rng, scope, arity))
                    parts.setdefault(part, False)
            name = new_name("s")
            regions.append(Sum(name, k, tuple(parts),
                               elementwise=tuple(p for p, ew in enumerate(parts.values()) if ew)))
        by_scope.setdefault(scope, []).append(name)
        k_of[name] = k
        return name

    root = build(frozenset(range(num_vars)), root_k)
    leaf = FAMILIES[families[0]]
    scopes = ()
    if mixed > 0:
        scopes = tuple(LeafScope(FAMILIES[f], tuple(v for v in range(num_vars) if var_family[v] == f))
                       for f in families if f in var_family)
    return Circuit(default_var_names(num_vars), tuple(regions), root, leaf, leaf_scopes=scopes)


def _split(rng: random.Random, scope: frozenset, arity: int) -> list[frozenset]:
    """`scope` cut into `arity` non-empty parts (arity 1: the scope itself)."""
    items = sorted(scope)
    rng.shuffle(items)
    cuts = sorted(rng.sample(range(1, len(items)), arity - 1)) if arity > 1 else []
    bounds = [0, *cuts, len(items)]
    return [frozenset(items[a:b]) for a, b in zip(bounds, bounds[1:])]
