"""Leaf families as the language knows them: their arguments, their parameter fields, their support.

This is the frontend's view (what a `.pc` file may say); the densities themselves live in
`pcc.runtime.leaves`. An input region with K units over S variables has, per field, an array of
shape [K, S, *extra] in probability space (e.g. `categorical(n=3)` has `probs` of shape [K, S, 3]).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class FieldSpec:
    name: str
    extra: Callable[[dict], tuple[int, ...]]  # trailing dims from the family args
    check: str  # 'prob' (in [0,1]), 'simplex' (last dim sums to 1), 'real', 'positive',
    #             'covariance' (finite; each unit's [d, d] matrix symmetric positive definite)


@dataclass(frozen=True)
class FamilySpec:
    name: str
    int_args: tuple[str, ...]  # required integer arguments, each >= its minimum
    arg_min: int
    fields: tuple[FieldSpec, ...]
    discrete: bool
    doc: str
    joint: str | None = None  # the argument that is the dimension of a joint (not per-variable) density

    def joint_size(self, args: dict) -> int | None:
        """How many variables one density of this family covers jointly (None: one each)."""
        return None if self.joint is None else int(args[self.joint])

    def support_size(self, args: dict) -> int | None:
        """Number of values a variable can take (None for continuous)."""
        if self.name == "bernoulli":
            return 2
        if self.name == "categorical":
            return int(args["n"])
        if self.name == "binomial":
            return int(args["n"]) + 1
        return None


def _none(args: dict) -> tuple[int, ...]:
    return ()


FAMILIES: dict[str, FamilySpec] = {
    "bernoulli": FamilySpec(
        "bernoulli", (), 0, (FieldSpec("p", _none, "prob"),), True,
        "x in {0, 1}; p(x=1) = p"),
    "categorical": FamilySpec(
        "categorical", ("n",), 2, (FieldSpec("probs", lambda a: (int(a["n"]),), "simplex"),), True,
        "x in {0, ..., n-1}; p(x=c) = probs[c]"),
    "binomial": FamilySpec(
        "binomial", ("n",), 1, (FieldSpec("p", _none, "prob"),), True,
        "x in {0, ..., n}; p(x) = C(n, x) p^x (1-p)^(n-x)"),
    "normal": FamilySpec(
        "normal", (), 0, (FieldSpec("mean", _none, "real"), FieldSpec("std", _none, "positive")),
        False, "x real; N(x; mean, std^2)"),
    "mvnormal": FamilySpec(
        "mvnormal", ("d",), 2,
        (FieldSpec("mean", _none, "real"), FieldSpec("cov", lambda a: (int(a["d"]),), "covariance")),
        False, "x in R^d, the d variables of an input's scope jointly; N(x; mean, cov)", joint="d"),
}


def family_spec(name: str) -> FamilySpec | None:
    return FAMILIES.get(name)
