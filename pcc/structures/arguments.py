"""Checked arguments of the structure generators: counts, sizes and leaf families.

Every check raises `StructureError` (a `PcError`), so the CLI prints one line and exits 1.
"""
from __future__ import annotations

import re

from ..errors import StructureError
from ..families import FAMILIES
from ..ir import Family


def require_at_least(name: str, value: int, minimum: int) -> int:
    """`value` as an int, if it is an integer >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise StructureError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


_FAMILY_TEXT = re.compile(r"\s*([A-Za-z_]\w*)\s*(?:\((.*)\))?\s*$")
_ARG_TEXT = re.compile(r"\s*([A-Za-z_]\w*)\s*=\s*([-+]?[0-9.eE+-]+)\s*$")


def parse_family(text: str) -> Family:
    """A family as the language writes it: `bernoulli`, `categorical(n=4)`, `binomial(n=255)`.

    Checked against `pcc.families.FAMILIES` (see `check_family`)."""
    match = _FAMILY_TEXT.match(text)
    if match is None:
        raise StructureError(f"bad leaf family {text!r}: expected NAME or NAME(arg=VALUE, ...)")
    name, arg_text = match.groups()
    args = []
    for item in (arg_text.split(",") if arg_text and arg_text.strip() else ()):
        arg = _ARG_TEXT.match(item)
        if arg is None:
            raise StructureError(f"bad leaf family argument {item.strip()!r} in {text!r}: expected KEY=NUMBER")
        key, number = arg.groups()
        try:
            value = int(number)
        except ValueError:
            try:
                value = float(number)
            except ValueError:
                raise StructureError(f"bad number {number!r} in leaf family {text!r}") from None
        args.append((key, value))
    return check_family(Family(name, tuple(args)))


def check_family(family: Family) -> Family:
    """`family` if pcc knows it and its arguments are the ones it requires, each >= its minimum."""
    spec = FAMILIES.get(family.name)
    if spec is None:
        raise StructureError(
            f"unknown leaf family '{family.name}' (known: {', '.join(sorted(FAMILIES))})")
    given = dict(family.args)
    unknown = sorted(set(given) - set(spec.int_args))
    if unknown:
        raise StructureError(f"leaf family '{family.name}' takes no argument '{unknown[0]}'")
    for key in spec.int_args:
        value = given.get(key)
        if value is None:
            raise StructureError(f"leaf family '{family.name}' needs {key}=INT, e.g. {family.name}({key}=4)")
        if not isinstance(value, int) or value < spec.arg_min:
            raise StructureError(
                f"leaf family '{family.name}': {key} must be an integer >= {spec.arg_min}, got {value!r}")
    return family
