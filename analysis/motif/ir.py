"""The plain motif IR that the parser builds and the compilers read.

Every record is a frozen dataclass, so a parsed motif is hashable and can cross
layers (GraphQL resolver -> Cypher compiler / in-memory counter) unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

Scalar = int | float | str | bool
Value = Scalar | tuple[Scalar, ...]

#: Edge properties a motif may constrain, with their allowed operators.
EDGE_PROPERTIES: dict[str, type] = {"synapses": int, "size": int, "mean_size": float}
EDGE_OPERATORS: tuple[str, ...] = ("=", "!=", "<", "<=", ">", ">=")

#: Node properties a motif may constrain, with their value types.
NODE_PROPERTIES: dict[str, type] = {
    "cell_type": str,
    "is_neuron": bool,
    "nucleus_id": int,
    "classification_system": str,
}
NODE_OPERATORS: tuple[str, ...] = ("=", "!=", "in")

#: Default upper bound on the number of distinct nodes in one motif.
MAX_MOTIF_NODES = 8


@dataclass(frozen=True)
class Constraint:
    """``prop op value``; for ``in`` the value is a tuple of scalars."""

    prop: str
    op: str
    value: Value


@dataclass(frozen=True)
class Edge:
    """A directed edge ``src -> dst`` between two motif nodes."""

    src: str
    dst: str
    constraints: tuple[Constraint, ...] = ()


@dataclass(frozen=True)
class Motif:
    """A validated motif.

    ``nodes`` are in order of first mention; ``edges`` must exist (each pair at
    most once, constraints merged); ``non_edges`` must not exist (never carry
    constraints); ``node_constraints`` are ``(node, constraint)`` pairs.
    """

    nodes: tuple[str, ...]
    edges: tuple[Edge, ...]
    non_edges: tuple[Edge, ...] = ()
    node_constraints: tuple[tuple[str, Constraint], ...] = ()

    def constraints_of(self, node: str) -> tuple[Constraint, ...]:
        """The constraints on one node, in motif order."""
        return tuple(c for n, c in self.node_constraints if n == node)

    def induced_non_edges(self) -> tuple[Edge, ...]:
        """Every ordered pair of distinct nodes that is not a listed edge
        (what ``induced=True`` forbids), in node order."""
        listed = {(e.src, e.dst) for e in self.edges}
        return tuple(
            Edge(u, v) for u in self.nodes for v in self.nodes if u != v and (u, v) not in listed
        )
