"""The runtime of every leaf family the language knows, by name."""
from __future__ import annotations

from ..ir import Family
from .joint_normal import MultivariateNormal
from .leaves import Bernoulli, Binomial, Categorical, LeafFamily, Normal

LEAF_FAMILIES: dict[str, type[LeafFamily]] = {
    "bernoulli": Bernoulli, "binomial": Binomial, "categorical": Categorical, "normal": Normal,
    "mvnormal": MultivariateNormal,
}


def leaf_family(family: Family) -> LeafFamily:
    return LEAF_FAMILIES[family.name](family)
