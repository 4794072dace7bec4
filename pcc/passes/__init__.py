"""Compiler passes over the region graph: layerize -> group by shape -> plan.

Each pass is a pure function: it reads the region graph (and the previous pass's result) and
returns a new value; nothing is mutated.
"""
from .group import EinsumGroup, HadamardGroup, MixGroup, group_by_shape
from .layerize import Layering, layerize
from .plan import EinsumOp, HadamardOp, LeafGroup, MixedLeaves, MixOp, Op, Plan, make_plan

__all__ = ["Layering", "layerize", "EinsumGroup", "HadamardGroup", "MixGroup", "group_by_shape",
           "Plan", "LeafGroup", "MixedLeaves", "EinsumOp", "HadamardOp", "MixOp", "Op", "make_plan"]
