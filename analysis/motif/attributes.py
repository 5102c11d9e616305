"""What a motif may name, and how a parsed motif is resolved against one release.

Node attributes are the cell properties of the graph model (core.model): the nucleus ID,
volume, the position components and every release-scoped property (root ID, the annotation
columns cell type, is_neuron and classification system, the synapse totals). A new
annotation property declared in core.model becomes a motif attribute here, in the snapshot
and Neo4j reads and in the Cypher compiler without further code. Edge attributes are
``synapses`` (``weight`` is its alias: DotMotif's and neuPrint's name for the synapse
count), ``size`` and ``mean_size``.

The parser checks names, value types and operators against this catalogue (an unknown name
is an error listing the catalogue); :func:`resolve` then checks that the release's cells
carry every attribute the motif uses (an error listing what they carry) and lowers polarity
edges to the presynaptic cell's classification.
"""

from __future__ import annotations

from collections.abc import Iterable

from analysis.motif.ir import (
    MEMBER_OPERATORS,
    ORDER_OPERATORS,
    TEXT_OPERATORS,
    Constraint,
    Motif,
    Value,
)
from core.errors import MotifError
from core.model import CELL_PROPERTIES, RELEASE_PROPERTIES

#: node attribute -> Python type of its values
NODE_ATTRIBUTES: dict[str, type] = {
    "nucleus_id": int,
    **{p.stem: p.type for p in RELEASE_PROPERTIES},
    "volume": float,
    "position_x": float,
    "position_y": float,
    "position_z": float,
}
assert {"nucleus_id", "volume", "position"} <= set(CELL_PROPERTIES)
#: node attributes every cell of a release has (never null)
ALWAYS_CARRIED = frozenset({"nucleus_id", "root_id"})
#: edge attribute -> (type, the stored property it reads)
EDGE_ATTRIBUTES: dict[str, tuple[type, str]] = {
    "synapses": (int, "synapses"),
    "weight": (int, "synapses"),
    "size": (int, "size"),
    "mean_size": (float, "mean_size"),
}
#: edge attributes that may be null (size when the source had no sizes)
NULLABLE_EDGE = frozenset({"size", "mean_size"})

#: polarity -> the classification_system value of the presynaptic cell
POLARITY_CLASS = {"excitatory": "excitatory_neuron", "inhibitory": "inhibitory_neuron"}


def edge_column(name: str) -> str:
    """The stored edge property an edge attribute reads (``weight`` -> ``synapses``)."""
    return EDGE_ATTRIBUTES[name][1]


def _kind(t: type) -> str:
    return "number" if t in (int, float) else t.__name__


def _describe(value: Value) -> str:
    return f"{type(value).__name__} {value!r}"


def _scalar_ok(t: type, value: object) -> bool:
    if t is bool:
        return isinstance(value, bool)
    if t in (int, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, t)


def operators_for(t: type) -> tuple[str, ...]:
    if t is bool:
        return ("=", "!=", *MEMBER_OPERATORS)
    if t is str:
        return ORDER_OPERATORS + MEMBER_OPERATORS + TEXT_OPERATORS
    return ORDER_OPERATORS + MEMBER_OPERATORS


def node_type(prop: str, where: str) -> type:
    if prop not in NODE_ATTRIBUTES:
        raise MotifError(
            f"{where}unknown node property {prop!r}; allowed: {', '.join(NODE_ATTRIBUTES)}"
        )
    return NODE_ATTRIBUTES[prop]


def edge_type(prop: str, where: str) -> type:
    if prop not in EDGE_ATTRIBUTES:
        raise MotifError(
            f"{where}unknown edge property {prop!r}; allowed: {', '.join(EDGE_ATTRIBUTES)}"
        )
    return EDGE_ATTRIBUTES[prop][0]


def check_constraint(c: Constraint, t: type, what: str, where: str) -> None:
    """Operator and value type of ``prop op value`` on a property of type ``t``."""
    allowed = operators_for(t)
    if c.op not in allowed:
        raise MotifError(
            f"{where}operator {c.op!r} is not allowed on {what} property {c.prop!r}; "
            f"allowed: {' '.join(allowed)}"
        )
    name = t.__name__ if t is not float else "number"
    if c.op in MEMBER_OPERATORS:
        if isinstance(c.value, str) and t is str:
            return  # DotMotif: the property is a substring of the value
        if not isinstance(c.value, tuple) or not c.value:
            raise MotifError(f'{where}{c.op!r} takes a non-empty list, e.g. ["BC", "MC"]')
        bad = [v for v in c.value if not _scalar_ok(t, v)]
        if bad:
            raise MotifError(
                f"{where}{what} property {c.prop!r} takes {name} values, not {_describe(bad[0])}"
            )
        return
    if isinstance(c.value, tuple) or not _scalar_ok(t, c.value):
        got = "a list" if isinstance(c.value, tuple) else _describe(c.value)
        if what == "edge":
            raise MotifError(f"{where}edge property {c.prop!r} takes a number, not {got}")
        raise MotifError(f"{where}{what} property {c.prop!r} takes a {name}, not {got}")


def check_comparison(lt: type, op: str, rt: type, text: str, where: str) -> None:
    """``left op right`` between two bound values of types lt and rt."""
    if _kind(lt) != _kind(rt):
        raise MotifError(f"{where}{text} compares a {_kind(lt)} with a {_kind(rt)}")
    allowed = operators_for(str) if lt is str else ("=", "!=") if lt is bool else ORDER_OPERATORS
    if op not in allowed:
        raise MotifError(
            f"{where}operator {op!r} cannot compare {_kind(lt)}s; allowed: {' '.join(allowed)}"
        )


def used_node_attributes(motif: Motif) -> list[str]:
    """Node attributes the motif reads, in first-use order (polarity reads the class)."""
    names: dict[str, None] = {}
    for _, c in motif.node_constraints:
        names.setdefault(c.prop)
    for nc in motif.node_comparisons:
        names.setdefault(nc.left_prop)
        names.setdefault(nc.right_prop)
    if motif.polarities:
        names.setdefault("classification_system")
    return list(names)


def resolve(motif: Motif, carried: Iterable[str] | None, release: str = "the release") -> Motif:
    """The motif ready for an executor: every node attribute it uses is checked against the
    attributes the release's cells carry (``carried``; None: assume all), and polarity
    edges become constraints on the presynaptic cell's ``classification_system``."""
    if carried is not None:
        have = set(carried) | ALWAYS_CARRIED
        for name in used_node_attributes(motif):
            if name not in have:
                why = " (polarity edges -+ and -| read it)" if (
                    name == "classification_system" and motif.polarities) else ""  # fmt: skip
                listed = ", ".join(n for n in NODE_ATTRIBUTES if n in have)
                raise MotifError(f"{release}'s cells carry no {name!r}{why}; they carry: {listed}")
    if not motif.polarities:
        return motif
    extra = [
        (node, Constraint("classification_system", "=", POLARITY_CLASS[p]))
        for node, p in motif.polarities
    ]
    merged = list(motif.node_constraints)
    merged += [x for x in extra if x not in merged]
    return motif.with_(node_constraints=tuple(merged), polarities=())
