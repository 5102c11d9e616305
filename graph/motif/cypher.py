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
"""

from __future__ import annotations

import re
from typing import Any, Literal

from analysis.motif.ir import Constraint, Motif
from core.errors import MotifError

#: Cypher names of node properties; ``{v}`` is the release.
NODE_PROPERTY_CYPHER = {
    "cell_type": "cell_type_v{v}",
    "is_neuron": "is_neuron_v{v}",
    "classification_system": "classification_system_v{v}",
    "nucleus_id": "nucleus_id",
}
#: Cypher expressions of edge properties; ``{r}`` is the relationship variable.
EDGE_PROPERTY_CYPHER = {
    "synapses": "{r}.synapses",
    "size": "{r}.size",
    "mean_size": "toFloat({r}.size) / {r}.synapses",
}
_CYPHER_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "in": "IN"}
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
) -> tuple[str, dict[str, Any]]:
    """Return ``(cypher, params)`` finding (``match``) or counting (``count``) the
    injective assignments of motif nodes to cells of release ``version``.

    match rows have one column per motif node (its ``nucleus_id``), ordered by
    those columns, paged with ``$skip``/``$limit`` (set in ``params`` from
    ``skip``/``limit``; the caller may override them). count returns ``n``.
    """
    if isinstance(version, bool) or not isinstance(version, int) or version <= 0:
        raise MotifError(f"release version must be a positive int, not {version!r}")
    if mode not in ("match", "count"):
        raise MotifError(f"mode must be 'match' or 'count', not {mode!r}")
    rel_type = f"SYNAPSE_V{version}"
    var = {n: _var(n) for n in motif.nodes}
    taken = {n.lower() for n in motif.nodes}
    prefix = "r"
    while any(re.fullmatch(rf"{prefix}\d+", n) for n in taken):
        prefix = "_" + prefix
    params = _Params()

    # MATCH: one pattern per required edge; nodes get their label on first mention.
    seen: set[str] = set()

    def node(n: str) -> str:
        if n in seen:
            return f"({var[n]})"
        seen.add(n)
        return f"({var[n]}:Cell)"

    patterns: list[str] = []
    edge_conditions: list[str] = []
    for i, e in enumerate(motif.edges, start=1):
        r = f"{prefix}{i}"
        patterns.append(f"{node(e.src)}-[{r}:{rel_type}]->{node(e.dst)}")
        for c in e.constraints:
            expr = EDGE_PROPERTY_CYPHER[c.prop].format(r=r)
            p = params.add(f"{e.src}_{e.dst}_{c.prop}", c.value)
            edge_conditions.append(f"{expr} {_CYPHER_OPS[c.op]} {p}")
    patterns += [node(n) for n in motif.nodes if n not in seen]

    conditions = [f"{var[n]}.root_id_v{version} IS NOT NULL" for n in motif.nodes]
    for i, u in enumerate(motif.nodes):
        distinct = [f"{var[u]} <> {var[v]}" for v in motif.nodes[i + 1 :]]
        conditions += _wrap(distinct, 4)
    for n, c in motif.node_constraints:
        conditions.append(_node_condition(var[n], n, c, version, params))
    conditions += edge_conditions
    forbidden = list(motif.non_edges)
    if induced:
        forbidden += [e for e in motif.induced_non_edges() if e not in forbidden]
    conditions += [f"NOT ({var[e.src]})-[:{rel_type}]->({var[e.dst]})" for e in forbidden]

    lines = ["MATCH " + ",\n      ".join(patterns)]
    lines.append("WHERE " + "\n  AND ".join(conditions))
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


def _node_condition(v: str, name: str, c: Constraint, version: int, params: _Params) -> str:
    prop = NODE_PROPERTY_CYPHER[c.prop].format(v=version)
    p = params.add(f"{name}_{c.prop}", c.value)
    return f"{v}.{prop} {_CYPHER_OPS[c.op]} {p}"
