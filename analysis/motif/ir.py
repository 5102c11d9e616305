"""The plain motif IR that the parser builds and the executors read.

Every record is a frozen dataclass, so a parsed motif is hashable and can cross
layers (GraphQL resolver -> Cypher compiler / in-memory counter) unchanged. Macros,
named edges and ``A === B`` are gone by the time a Motif exists: the parser expands
macros, turns constraints on named edges into edge constraints and edge comparisons,
and merges the node constraints of automorphic nodes (as DotMotif does). Polarity
edges (``-+``, ``-|``) stay as ``polarities`` until :func:`analysis.motif.attributes.resolve`
lowers them against a release.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

Scalar = int | float | str | bool
Value = Scalar | tuple[Scalar, ...]

#: Comparison operators after aliasing ("==" is "=", "<>" is "!=").
ORDER_OPERATORS: tuple[str, ...] = ("=", "!=", "<", "<=", ">", ">=")
MEMBER_OPERATORS: tuple[str, ...] = ("in", "!in")
TEXT_OPERATORS: tuple[str, ...] = ("contains", "!contains")
#: (op, swapped op): ``x op y`` is ``y swapped x``
SWAPPED = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<=",
           "in": "contains", "contains": "in", "!in": "!contains", "!contains": "!in"}  # fmt: skip

#: Default upper bound on the number of distinct nodes in one motif.
MAX_MOTIF_NODES = 8


@dataclass(frozen=True)
class Constraint:
    """``prop op value``; for ``in``/``!in`` the value is a tuple of scalars (a list) or a
    string (then, as in DotMotif, the property must be a substring of it)."""

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
class NodeComparison:
    """``left.left_prop op right.right_prop`` between two motif nodes (or one node)."""

    left: str
    left_prop: str
    op: str
    right: str
    right_prop: str

    def canonical(self) -> tuple[str, str, str, str, str]:
        """The same comparison written one fixed way (for symmetry tests)."""
        a = (self.left, self.left_prop, self.op, self.right, self.right_prop)
        b = (self.right, self.right_prop, SWAPPED[self.op], self.left, self.left_prop)
        return min(a, b)


@dataclass(frozen=True)
class EdgeComparison:
    """``(u -> v).left_prop op (x -> y).right_prop`` between two required edges
    (``ab.weight >= ac.weight`` with ``A -> B as ab``, ``A -> C as ac``)."""

    left: tuple[str, str]
    left_prop: str
    op: str
    right: tuple[str, str]
    right_prop: str

    def canonical(self) -> tuple[object, ...]:
        a = (self.left, self.left_prop, self.op, self.right, self.right_prop)
        b = (self.right, self.right_prop, SWAPPED[self.op], self.left, self.left_prop)
        return min(a, b)


@dataclass(frozen=True)
class Motif:
    """A validated motif.

    ``nodes`` are in order of first mention; ``edges`` must exist (each pair at
    most once, constraints merged); ``non_edges`` must not exist (never carry
    constraints); ``node_constraints`` are ``(node, constraint)`` pairs;
    ``node_comparisons`` and ``edge_comparisons`` compare two bound values;
    ``polarities`` are ``(node, "excitatory" | "inhibitory")``: the presynaptic cell of a
    polarity edge; ``automorphisms`` are the ``A === B`` pairs (already applied).
    """

    nodes: tuple[str, ...]
    edges: tuple[Edge, ...]
    non_edges: tuple[Edge, ...] = ()
    node_constraints: tuple[tuple[str, Constraint], ...] = ()
    node_comparisons: tuple[NodeComparison, ...] = ()
    edge_comparisons: tuple[EdgeComparison, ...] = ()
    polarities: tuple[tuple[str, str], ...] = ()
    automorphisms: tuple[tuple[str, str], ...] = field(default=(), compare=True)

    def constraints_of(self, node: str) -> tuple[Constraint, ...]:
        """The constraints on one node, in motif order."""
        return tuple(c for n, c in self.node_constraints if n == node)

    def edge(self, src: str, dst: str) -> Edge:
        for e in self.edges:
            if (e.src, e.dst) == (src, dst):
                return e
        raise KeyError((src, dst))

    @property
    def unconstrained(self) -> bool:
        """Only structure: no constraint or comparison on any node or edge."""
        return not (
            self.node_constraints
            or self.node_comparisons
            or self.edge_comparisons
            or self.polarities
            or any(e.constraints for e in self.edges)
        )

    def with_(self, **changes: object) -> Motif:
        return replace(self, **changes)  # type: ignore[arg-type]

    def induced_non_edges(self) -> tuple[Edge, ...]:
        """Every ordered pair of distinct nodes that is not a listed edge
        (what ``induced=True`` forbids), in node order."""
        listed = {(e.src, e.dst) for e in self.edges}
        return tuple(
            Edge(u, v) for u in self.nodes for v in self.nodes if u != v and (u, v) not in listed
        )
