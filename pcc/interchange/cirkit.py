"""cirkit region-graph JSON (`RegionGraph.dump`): structure only, K chosen by the caller.

    {"regions": {"0": {"scope": [0, 1]}, "1": [0], ...},   a region's scope (dict or bare list)
     "roots": ["0"],
     "graph": [{"output": 0, "inputs": [1, 2]}, ...]}      one entry per partition

A region no partition points to is an input region over its scope; every other region is a sum
region with one partition per graph entry. Regions hold `k` units, the root 1; several roots
are mixed by one more sum region, `root`. Variables are 0-based (x0, x1, ...). Regions are
named r<id>; errors point at the region's or the partition's place in the file.
"""
from __future__ import annotations

import dataclasses
import json
import re
from collections import defaultdict

from ..errors import PcCheckError
from ..ir import Circuit, Family, Input, Span, Sum, default_var_names
from ..structures import defaults
from .source import Source

_JSON_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|([{}\[\],:])|([^\s{}\[\],:"]+))')


def read_cirkit(source: Source, k: int | None = None, leaf: Family | None = None) -> Circuit:
    """The region graph of a cirkit JSON file with `k` units per region (default
    `pcc.structures.defaults.K`) and leaf family `leaf` (default bernoulli)."""
    k = defaults.K if k is None else k
    try:
        data = json.loads(source.text)
    except json.JSONDecodeError as e:
        source.syntax_error(f"not JSON: {e.msg}", Span(e.lineno, e.colno, e.lineno, e.colno + 1))
    reader = _Reader(source, data)
    circuit = reader.circuit(k, leaf or defaults.LEAF)
    from ..frontend import validate
    errors = [d for d in validate(circuit) if d.severity == "error"]
    if errors:  # again, with every region placed in the file, for messages that point there
        placed = reader.place(circuit)
        raise PcCheckError([d for d in validate(placed) if d.severity == "error"])
    return circuit


class _Reader:
    def __init__(self, source: Source, data):
        self.source, self.data = source, data
        self._offsets: dict[tuple, int] | None = None
        self.keys: dict[str, str] = {}  # region id -> its key as written

    def fail(self, message: str, path: tuple = ()) -> None:
        self.source.syntax_error(message, self.span(path))

    def span(self, path: tuple) -> Span:
        """Where the value at `path` (keys and list indices) starts in the file."""
        if self._offsets is None:
            self._offsets = _value_offsets(self.source.text)
        start = self._offsets.get(path, 0)
        return self.source.offset_span(start, start + 1)

    def circuit(self, k: int, leaf: Family) -> Circuit:
        if not isinstance(self.data, dict):
            self.fail("expected a JSON object with keys regions, roots and graph")
        for key in ("regions", "roots", "graph"):
            if key not in self.data:
                self.fail(f"no '{key}' in the region graph (it needs regions, roots and graph)")
        scopes = self._scopes()
        partitions = self._partitions(scopes)
        roots = self._roots(scopes)
        num_vars = 1 + max(v for scope in scopes.values() for v in scope)
        regions = []
        for rid, scope in scopes.items():
            units = 1 if roots == [rid] else k
            if rid in partitions:
                regions.append(Sum(_name(rid), units, tuple(partitions[rid])))
            else:
                regions.append(Input(_name(rid), scope, units))
        root = _name(roots[0])
        if len(roots) > 1:
            root = "roots"
            regions.append(Sum(root, 1, tuple((_name(r),) for r in roots)))
        circuit = Circuit(default_var_names(num_vars), tuple(regions), root, leaf,
                          path=self.source.path, source=self.source.text)
        try:
            order = circuit.topological_order()
        except ValueError:
            return circuit  # validate reports the cycle
        return _reachable(circuit, order)

    def _scopes(self) -> dict[str, tuple[int, ...]]:
        regions = self.data["regions"]
        if not isinstance(regions, dict) or not regions:
            self.fail("'regions' must be a non-empty object {id: {\"scope\": [...]}}", ("regions",))
        scopes = {}
        for rid, entry in regions.items():
            path = ("regions", rid)
            if not rid.isdigit():
                self.fail(f"region id {rid!r} is not a whole number", path)
            scope = entry.get("scope") if isinstance(entry, dict) else entry
            if not (isinstance(scope, list) and scope and all(
                    type(v) is int and v >= 0 for v in scope) and len(set(scope)) == len(scope)):
                self.fail(f"region {rid}: the scope must be a non-empty list of distinct variable "
                          "indices >= 0", path)
            scopes[str(int(rid))] = tuple(scope)
            self.keys[str(int(rid))] = rid
        return scopes

    def _partitions(self, scopes) -> dict[str, list[tuple[str, ...]]]:
        graph = self.data["graph"]
        if not isinstance(graph, list):
            self.fail("'graph' must be a list of {\"output\": id, \"inputs\": [id, ...]}", ("graph",))
        out: dict[str, list[tuple[str, ...]]] = defaultdict(list)
        for i, entry in enumerate(graph):
            path = ("graph", i)
            if not (isinstance(entry, dict) and "output" in entry and isinstance(
                    entry.get("inputs"), list) and entry["inputs"]):
                self.fail("a partition needs \"output\": id and \"inputs\": [id, ...]", path)
            output = self._region_ref(entry["output"], scopes, path + ("output",))
            inputs = tuple(self._region_ref(r, scopes, path + ("inputs", j))
                           for j, r in enumerate(entry["inputs"]))
            union = {v for r in inputs for v in scopes[r]}
            if union != set(scopes[output]):
                self.fail(f"partition of region {output}: its inputs cover variables "
                          f"{sorted(union)}, the region's scope is {sorted(scopes[output])}", path)
            out[output].append(tuple(_name(r) for r in inputs))
        return out

    def _roots(self, scopes) -> list[str]:
        roots = self.data["roots"]
        if not isinstance(roots, list) or not roots:
            self.fail("'roots' must be a non-empty list of region ids", ("roots",))
        return [self._region_ref(r, scopes, ("roots", j)) for j, r in enumerate(roots)]

    def _region_ref(self, ref, scopes, path: tuple) -> str:
        rid = str(ref) if type(ref) is int or (isinstance(ref, str) and ref.isdigit()) else None
        if rid is None or str(int(rid)) not in scopes:
            self.fail(f"{ref!r} is not a region id", path)
        return str(int(rid))

    def place(self, circuit: Circuit) -> Circuit:
        """`circuit` with every region's span set to where the file defines it."""
        placed = []
        for r in circuit.regions:
            path = ("regions", self.keys[r.name[1:]]) if r.name != "roots" else ("roots",)
            span = self.span(path)
            placed.append(dataclasses.replace(r, span=span))
        return dataclasses.replace(circuit, regions=tuple(placed))


def _name(rid: str) -> str:
    return f"r{rid}"


def _reachable(circuit: Circuit, order: list[str]) -> Circuit:
    """The regions the root reaches, children first."""
    reached = circuit.reachable()
    return dataclasses.replace(circuit, regions=tuple(
        circuit.region(name) for name in order if name in reached))


def _value_offsets(text: str) -> dict[tuple, int]:
    """The start offset of every value in JSON `text`, by its path of keys and list indices
    (used only to place error messages, so it trusts the text to be valid JSON)."""
    offsets: dict[tuple, int] = {(): 0}
    stack: list[list] = []  # per open container: [path, "{" or "[", next key or index]
    key = None
    for m in _JSON_TOKEN.finditer(text):
        string, punct, word = m.groups()
        start = m.start(m.lastindex)
        if punct in ("{", "["):
            path = _child_path(stack, key)
            offsets.setdefault(path, start)
            stack.append([path, punct, 0])
            key = None
        elif punct in ("}", "]"):
            stack.pop()
        elif punct == ",":
            if stack and stack[-1][1] == "[":
                stack[-1][2] += 1
            key = None
        elif punct == ":":
            pass
        elif stack and stack[-1][1] == "{" and key is None:
            key = json.loads(string) if string else word
            offsets[stack[-1][0] + (key,)] = start
        else:
            path = _child_path(stack, key)
            offsets.setdefault(path, start)
    return offsets


def _child_path(stack: list[list], key) -> tuple:
    if not stack:
        return ()
    path, kind, index = stack[-1]
    return path + ((key,) if kind == "{" else (index,))
