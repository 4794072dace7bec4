"""Printing and parsing are inverse on valid circuits: `parse(to_text(c)) == c` for random valid IR
(named variables, several partitions, arity 1..3, shared regions, every family, inline params),
and the canonical text is a fixed point, comments included."""
from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcc.frontend import parse, to_text, validate
from pcc.frontend.naming import RESERVED_WORDS
from pcc.ir import Circuit, Family, Input, Param, Sum, default_var_names

SETTINGS = settings(max_examples=60, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

FAMILIES = st.one_of(
    st.just(Family("bernoulli")),
    st.just(Family("normal")),
    st.builds(lambda n: Family("categorical", (("n", n),)), st.integers(2, 4)),
    st.builds(lambda n: Family("binomial", (("n", n),)), st.integers(1, 5)),
)
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True).filter(lambda s: s not in RESERVED_WORDS)
UNIT = st.floats(min_value=0.001, max_value=1.0)


def normalized(draw, n: int) -> list[float]:
    raw = draw(st.lists(UNIT, min_size=n, max_size=n))
    total = math.fsum(raw)
    return [v / total for v in raw]


def leaf_values(draw, field: str, family: Family, size: int) -> list[float]:
    if field == "probs":
        n = family.arg("n")
        return [v for _ in range(size // n) for v in normalized(draw, n)]
    if field == "mean":
        return draw(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=size, max_size=size))
    if field == "std":
        return draw(st.lists(st.floats(min_value=1e-3, max_value=1e6), min_size=size, max_size=size))
    return draw(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=size, max_size=size))


LEAF_FIELDS = {"bernoulli": ("p",), "binomial": ("p",), "categorical": ("probs",), "normal": ("mean", "std")}


@st.composite
def circuits(draw) -> Circuit:
    num_vars = draw(st.integers(1, 6))
    names = tuple(draw(st.lists(NAMES, min_size=num_vars, max_size=num_vars, unique=True))) \
        if draw(st.booleans()) else default_var_names(num_vars)
    var_family = [draw(FAMILIES) for _ in range(num_vars)]
    leaf = draw(st.one_of(st.none(), st.sampled_from(var_family)))
    prefix = draw(st.sampled_from(["r", "_n", "Reg_", "x"]))
    regions: list = []
    by_scope: dict[frozenset, list[str]] = {}
    k_of: dict[str, int] = {}

    def build(scope: frozenset, depth: int) -> str:
        if scope in by_scope and draw(st.booleans()):
            return draw(st.sampled_from(by_scope[scope]))  # a shared region: the graph is a DAG
        families = {var_family[v] for v in scope}
        k = draw(st.integers(1, 3))
        if len(families) == 1 and (len(scope) == 1 or depth == 0 or draw(st.booleans())):
            family = families.pop()
            own = None if family == leaf and draw(st.booleans()) else family
            region = Input(f"{prefix}{len(regions)}", tuple(draw(st.permutations(sorted(scope)))), k, own)
        else:
            parts = []
            for _ in range(draw(st.integers(1, 3))):
                if depth == 0 or len(scope) == 1:
                    pieces = [frozenset({v}) for v in scope] if len(scope) > 1 else [scope]
                else:
                    items = draw(st.permutations(sorted(scope)))
                    arity = draw(st.integers(1, min(3, len(items))))
                    cuts = sorted(draw(st.sets(st.integers(1, len(items) - 1), min_size=arity - 1,
                                               max_size=arity - 1))) if arity > 1 else []
                    bounds = [0, *cuts, len(items)]
                    pieces = [frozenset(items[a:b]) for a, b in zip(bounds, bounds[1:])]
                parts.append(tuple(build(p, depth - 1) for p in pieces))
            same_k = [p for p, part in enumerate(parts)
                      if len(part) > 1 and len({k_of[c] for c in part}) == 1]
            elementwise = tuple(p for p in same_k if draw(st.booleans()))  # `a .* b`
            region = Sum(f"{prefix}{len(regions)}", k, tuple(parts), elementwise=elementwise)
        k_of[region.name] = region.k
        regions.append(region)
        by_scope.setdefault(scope, []).append(region.name)
        return region.name

    root = build(frozenset(range(num_vars)), draw(st.integers(0, 3)))
    ir = Circuit(names, tuple(regions), root, leaf)
    return Circuit(names, tuple(regions), root, leaf, tuple(draw(params(ir))))


@st.composite
def params(draw, ir: Circuit) -> list[Param]:
    out = []
    for r in ir.regions:
        if not draw(st.booleans()):
            continue
        if isinstance(r, Sum):
            for p, part in enumerate(r.partitions):
                shape = (r.k, *(ir.region(c).k for c in part[:1 if r.is_elementwise(p) else None]))
                row = math.prod(shape[1:])
                values = [v for _ in range(r.k) for v in normalized(draw, row)]
                out.append(Param(r.name, "weights", p, shape, tuple(values)))
            if len(r.partitions) > 1:
                values = [v for _ in range(r.k) for v in normalized(draw, len(r.partitions))]
                out.append(Param(r.name, "mixing", None, (r.k, len(r.partitions)), tuple(values)))
        else:
            family = ir.family_of(r)
            for field in LEAF_FIELDS[family.name]:
                extra = (family.arg("n"),) if field == "probs" else ()
                shape = (r.k, len(r.scope), *extra)
                out.append(Param(r.name, field, None, shape, tuple(leaf_values(draw, field, family,
                                                                               math.prod(shape)))))
    return draw(st.permutations(out))


@SETTINGS
@given(circuits())
def test_random_circuits_are_valid(ir):
    assert [d.render() for d in validate(ir)] == []


@SETTINGS
@given(circuits())
def test_parse_inverts_to_text(ir):
    text = to_text(ir)
    back = parse(text)
    assert back == ir
    assert to_text(back) == text


@SETTINGS
@given(circuits(), st.data())
def test_comments_stay_above_the_statement_they_preceded(ir, data):
    lines = to_text(ir).split("\n")
    starts = [i for i, line in enumerate(lines) if line.split(" ", 1)[0] in RESERVED_WORDS]
    chosen = sorted(data.draw(st.sets(st.sampled_from(starts), max_size=4)))
    commented = list(lines)
    for n, i in enumerate(reversed(chosen)):
        commented.insert(i, f"# note {len(chosen) - n}")
    out = to_text(parse("\n".join(commented)))
    out_lines = out.split("\n")
    for n, i in enumerate(chosen, 1):
        at = out_lines.index(f"# note {n}")
        assert out_lines[at + 1] == lines[i]
    assert to_text(parse(out)) == out
