"""Compile a motif (ir.Motif) into one parameterised Cypher query.

The query is built from validated pieces only: the relationship type and the
per-release property names come from an int release number and the property
whitelists in ir.py; node variables are the motif's identifiers; every value is
a ``$parameter``. Example (``A -> B [synapses >= 3]; B -> A``, release 117,
match mode)::

    MATCH (A:Cell)-[r1:SYNAPSE_V117]->(B:Cell),
          (B)-[r2:SYNAPSE_V117]->(A)
    WHERE A.root_id_v117 IS NOT NULL
      AND B.root_id_v117 IS NOT NULL
      AND A <> B
      AND r1.synapses >= $A_B_synapses
    RETURN A.nucleus_id AS A, B.nucleus_id AS B
    ORDER BY A, B
    SKIP $skip
    LIMIT $limit

That is the *sorted* form, for a motif anchored on a later node (an ``=`` or ``in`` on its
``nucleus_id`` or ``root_id``): its matches are few, found from the anchor's index, then
sorted. Any other motif gets the *streaming* form: the first node's cells are walked in
``nucleus_id`` order (the index provides it) and each one's matches found in a subquery, so
``ORDER BY ... LIMIT`` stops after the first page (Neo4j's PartialTop) instead of sorting every
match of the release::

    MATCH (A:Cell)
    WHERE A.root_id_v117 IS NOT NULL
    WITH A ORDER BY A.nucleus_id
    CALL (A) {
      MATCH (A)-[r1:SYNAPSE_V117]->(B:Cell),
            (B)-[r2:SYNAPSE_V117]->(A)
      WHERE B.root_id_v117 IS NOT NULL
        AND A <> B
        AND r1.synapses >= $A_B_synapses
      RETURN B
    }
    RETURN A.nucleus_id AS A, B.nucleus_id AS B
    ORDER BY A, B
    SKIP $skip
    LIMIT $limit

``after`` (the last match of the previous page) adds a keyset condition, so a page never
re-reads the matches before it: ``A.nucleus_id >= $after_A`` on the walk and
``(A.nucleus_id > $after_A OR B.nucleus_id > $after_B)`` on the matches.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from analysis.motif.attributes import (
    ALWAYS_CARRIED,
    NODE_ATTRIBUTES,
    NULLABLE_EDGE,
    edge_column,
    resolve,
)
from analysis.motif.ir import Constraint, Motif
from core.errors import MotifError
from core.model import prop, rel_type

#: Cypher expressions of node attributes that are not release-scoped; ``{n}`` is the node.
NODE_PROPERTY_CYPHER = {
    "nucleus_id": "{n}.nucleus_id",
    "volume": "{n}.volume",
    "position_x": "{n}.position.x",
    "position_y": "{n}.position.y",
    "position_z": "{n}.position.z",
}
#: Cypher expressions of edge properties; ``{r}`` is the relationship variable.
EDGE_PROPERTY_CYPHER = {
    "synapses": "{r}.synapses",
    "size": "{r}.size",
    "mean_size": "toFloat({r}.size) / {r}.synapses",
}
_CYPHER_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_RESERVED = set(
    [
        "all",
        "and",
        "any",
        "as",
        "asc",
        "ascending",
        "by",
        "call",
        "case",
        "contains",
        "count",
        "create",
        "delete",
        "desc",
        "descending",
        "detach",
        "distinct",
        "else",
        "end",
        "ends",
        "exists",
        "false",
        "foreach",
        "in",
        "is",
        "limit",
        "load",
        "match",
        "merge",
        "none",
        "not",
        "null",
        "on",
        "optional",
        "or",
        "order",
        "remove",
        "return",
        "set",
        "single",
        "skip",
        "starts",
        "then",
        "true",
        "union",
        "unwind",
        "when",
        "where",
        "with",
        "xor",
        "yield",
    ]
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
DEFAULT_PAGE_SIZE = 1000


def _var(name: str) -> str:
    if not _IDENT.match(name):
        raise MotifError(f"invalid node name {name!r}")
    return f"`{name}`" if name.lower() in _RESERVED else name


class _Params:
    """Allocates readable, unique parameter names (``A_cell_type``, ``A_B_size``)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, base: str, value: Any) -> str:
        name, i = base, 2
        while name in self.values or name in ("skip", "limit"):
            name, i = f"{base}_{i}", i + 1
        self.values[name] = list(value) if isinstance(value, tuple) else value
        return f"${name}"


def _wrap(items: list[str], per_line: int) -> list[str]:
    return [" AND ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]


def compile_motif(
    motif: Motif,
    version: int,
    *,
    induced: bool = False,
    mode: Literal["match", "count"] = "match",
    skip: int = 0,
    limit: int = DEFAULT_PAGE_SIZE,
    after: Sequence[int] | None = None,
    carried: frozenset[str] | None = None,
    slot: int = 0,
) -> tuple[str, dict[str, Any]]:
    """Return ``(cypher, params)`` finding (``match``) or counting (``count``) the
    injective assignments of motif nodes to cells of release ``version``.

    match rows have one column per motif node (its ``nucleus_id``), ordered by
    those columns, paged with ``$skip``/``$limit`` (set in ``params`` from
    ``skip``/``limit``; the caller may override them) and, with ``after`` (one nucleus ID
    per motif node, the last match of the previous page), only the matches after it.
    count returns ``n``.
    """
    if isinstance(version, bool) or not isinstance(version, int) or version <= 0:
        raise MotifError(f"release version must be a positive int, not {version!r}")
    if mode not in ("match", "count"):
        raise MotifError(f"mode must be 'match' or 'count', not {mode!r}")
    motif = resolve(motif, carried, f"release {version}")
    rel = rel_type(version, slot)
    var = {n: _var(n) for n in motif.nodes}
    taken = {n.lower() for n in motif.nodes}
    prefix = "r"
    while any(re.fullmatch(rf"{prefix}\d+", n) for n in taken):
        prefix = "_" + prefix
    params = _Params()

    if after is not None and (len(after) != len(motif.nodes) or mode != "match"):
        raise MotifError(f"after must hold one nucleus ID per motif node ({len(motif.nodes)})")
    first = motif.nodes[0]
    stream = mode == "match" and not _anchored_later(motif)

    # MATCH: one pattern per required edge; nodes get their label on first mention.
    seen: set[str] = {first} if stream else set()

    def node(n: str) -> str:
        if n in seen:
            return f"({var[n]})"
        seen.add(n)
        return f"({var[n]}:Cell)"

    patterns: list[str] = []
    edge_conditions: list[str] = []
    rel_var: dict[tuple[str, str], str] = {}
    for i, e in enumerate(motif.edges, start=1):
        r = f"{prefix}{i}"
        rel_var[(e.src, e.dst)] = r
        patterns.append(f"{node(e.src)}-[{r}:{rel}]->{node(e.dst)}")
        for c in e.constraints:
            expr = EDGE_PROPERTY_CYPHER[edge_column(c.prop)].format(r=r)
            p = params.add(f"{e.src}_{e.dst}_{c.prop}", c.value)
            edge_conditions.append(_condition(expr, c, p, c.prop in NULLABLE_EDGE))
    for ec in motif.edge_comparisons:
        a = EDGE_PROPERTY_CYPHER[edge_column(ec.left_prop)].format(r=rel_var[ec.left])
        b = EDGE_PROPERTY_CYPHER[edge_column(ec.right_prop)].format(r=rel_var[ec.right])
        nullable = ec.left_prop in NULLABLE_EDGE or ec.right_prop in NULLABLE_EDGE
        edge_conditions.append(_edge_comparison(a, ec.op, b, nullable))
    patterns += [node(n) for n in motif.nodes if n not in seen]

    # conditions on the first node alone: on the walk (streaming form) or first in WHERE
    root = prop("root_id", version, slot)
    outer = [f"{var[first]}.{root} IS NOT NULL"]
    conditions = [f"{var[n]}.{root} IS NOT NULL" for n in motif.nodes[1:]]
    for i, u in enumerate(motif.nodes):
        distinct = [f"{var[u]} <> {var[v]}" for v in motif.nodes[i + 1 :]]
        conditions += _wrap(distinct, 4)
    for n, c in motif.node_constraints:
        expr = node_property(var[n], c.prop, version, slot)
        p = params.add(f"{n}_{c.prop}", c.value)
        (outer if stream and n == first else conditions).append(
            _condition(expr, c, p, c.prop not in ALWAYS_CARRIED)
        )
    for nc in motif.node_comparisons:
        a = node_property(var[nc.left], nc.left_prop, version, slot)
        b = node_property(var[nc.right], nc.right_prop, version, slot)
        conditions.append(_text_or_order(a, nc.op, b))
    conditions += edge_conditions
    forbidden = list(motif.non_edges)
    if induced:
        forbidden += [e for e in motif.induced_non_edges() if e not in forbidden]
    conditions += [f"NOT ({var[e.src]})-[:{rel}]->({var[e.dst]})" for e in forbidden]
    if after is not None:
        keys = [params.add(f"after_{n}", int(a)) for n, a in zip(motif.nodes, after, strict=True)]
        ids = [f"{var[n]}.nucleus_id" for n in motif.nodes]
        if stream:
            outer.append(f"{ids[0]} >= {keys[0]}")
        conditions.append(_keyset(ids, keys, first_at_least=stream))

    if not stream:
        lines = ["MATCH " + ",\n      ".join(patterns)]
        lines.append("WHERE " + "\n  AND ".join(outer + conditions))
    else:
        a = var[first]
        lines = [f"MATCH ({a}:Cell)", "WHERE " + "\n  AND ".join(outer)]
        lines.append(f"WITH {a} ORDER BY {a}.nucleus_id")
        if len(motif.nodes) > 1:
            inner = ["MATCH " + ",\n      ".join(patterns)]
            inner.append("WHERE " + "\n  AND ".join(conditions))
            inner.append("RETURN " + ", ".join(var[n] for n in motif.nodes[1:]))
            lines.append(f"CALL ({a}) {{")
            lines += ["  " + ln for ln in "\n".join(inner).split("\n")]
            lines.append("}")
    if mode == "count":
        lines.append("RETURN count(*) AS n")
    else:
        cols = [var[n] for n in motif.nodes]
        lines.append("RETURN " + ", ".join(f"{var[n]}.nucleus_id AS {var[n]}" for n in motif.nodes))
        lines.append("ORDER BY " + ", ".join(cols))
        lines += ["SKIP $skip", "LIMIT $limit"]
        params.values["skip"] = skip
        params.values["limit"] = limit
    return "\n".join(lines), params.values


#: node attributes whose ``=`` / ``in`` finds a motif's few matches from an index
_ANCHORS = ("nucleus_id", "root_id")


def _anchored_later(motif: Motif) -> bool:
    """Whether a node after the first is pinned to a few cells (then the sorted form is fast)."""
    return any(
        n != motif.nodes[0] and c.prop in _ANCHORS and c.op in ("=", "in")
        for n, c in motif.node_constraints
    )


def _keyset(ids: list[str], keys: list[str], *, first_at_least: bool) -> str:
    """``(ids) > (keys)`` in lexicographic order (shorter when ``ids[0] >= keys[0]`` holds)."""
    tail = f"{ids[-1]} > {keys[-1]}"
    for i, k in zip(reversed(ids[:-1]), reversed(keys[:-1]), strict=True):
        if i == ids[0] and first_at_least:
            return f"({i} > {k} OR {tail})"
        tail = f"{i} > {k} OR ({i} = {k} AND ({tail}))"
    return f"({tail})"


def node_property(v: str, name: str, version: int, slot: int = 0) -> str:
    """The Cypher expression of node attribute ``name`` of node variable ``v``."""
    if name in NODE_PROPERTY_CYPHER:
        return NODE_PROPERTY_CYPHER[name].format(n=v)
    if name not in NODE_ATTRIBUTES:
        raise MotifError(f"unknown node property {name!r}")
    return f"{v}.{prop(name, version, slot)}"  # a release-scoped property of the model


def _text_or_order(a: str, op: str, b: str) -> str:
    """``a op b`` for two present values (null makes it false, as a missing value must)."""
    if op in _CYPHER_OPS:
        return f"{a} {_CYPHER_OPS[op]} {b}"
    if op == "contains":
        return f"{a} CONTAINS {b}"
    if op == "!contains":
        return f"NOT {a} CONTAINS {b}"
    if op == "in":
        return f"{b} CONTAINS {a}"
    return f"NOT {b} CONTAINS {a}"  # !in


def _condition(expr: str, c: Constraint, p: str, nullable: bool) -> str:
    """``expr op $p`` with DotMotif's rule for a missing value: only ``!=`` and ``!in`` of a
    list hold on it."""
    if c.op in ("in", "!in") and isinstance(c.value, tuple):
        if c.op == "in":
            return f"{expr} IN {p}"
        return f"({expr} IS NULL OR NOT {expr} IN {p})" if nullable else f"NOT {expr} IN {p}"
    if c.op == "!=" and nullable:
        return f"({expr} IS NULL OR {expr} <> {p})"
    return _text_or_order(expr, c.op, p)


def _edge_comparison(a: str, op: str, b: str, nullable: bool) -> str:
    """Two edge values; a missing one compares like Python's None (DotMotif)."""
    plain = _text_or_order(a, op, b)
    if not nullable or op not in ("=", "!="):
        return plain
    if op == "=":
        return f"({plain} OR ({a} IS NULL AND {b} IS NULL))"
    return f"({plain} OR ({a} IS NULL) <> ({b} IS NULL))"


def carried_cypher(version: int, slot: int = 0) -> str:
    """For each node attribute that can be null, whether any cell of the release has it."""
    cols = [
        f"count({node_property('c', name, version, slot)}) > 0 AS {name}"
        for name in NODE_ATTRIBUTES
        if name not in ALWAYS_CARRIED
    ]
    return (
        f"MATCH (c:Cell) WHERE c.{prop('root_id', version, slot)} IS NOT NULL\n"
        "RETURN " + ",\n       ".join(cols)
    )
