"""Exact motif counts and matches on an in-memory release graph.

The matcher joins edge arrays instead of searching node by node: it starts
from the motif edge with the fewest candidate graph edges, then repeatedly
extends the partial matches (one row per injective assignment so far) along a
motif edge with one end already bound (CSR look-up), filtering on edges whose
ends are both bound, on distinctness and on forbidden edges as soon as they
can be checked. Rows are processed in chunks, so memory stays bounded.

Counts are DotMotif's: ordered, injective assignments of cells to motif nodes.
A comparison with a missing value (null cell type, null size) never holds, as
in Cypher, so counts agree with the Cypher compiled by cypher.py.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from graph.census import IntArray, KeySet, ReleaseGraph
from graph.errors import MotifError
from graph.motif.ir import Constraint, Edge, Motif

BoolArray = npt.NDArray[np.bool_]
_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}  # fmt: skip
#: Rows per processing chunk, and the most rows a cross product may create.
CHUNK_ROWS = 1 << 20
MAX_CROSS_ROWS = 50_000_000


def _node_mask(g: ReleaseGraph, constraints: tuple[Constraint, ...]) -> BoolArray:
    mask = np.ones(g.n, dtype=bool)
    for c in constraints:
        values: npt.NDArray[Any] | None = g.nodes if c.prop == "nucleus_id" else getattr(g, c.prop)
        if values is None:
            return np.zeros(g.n, dtype=bool)
        present = np.array([v is not None for v in values], dtype=bool)
        if c.op == "in":
            wanted = set(c.value) if isinstance(c.value, tuple) else {c.value}
            hit = np.fromiter((v in wanted for v in values), dtype=bool, count=g.n)
        else:
            hit = np.asarray(_OPS[c.op](values, c.value), dtype=bool)
        mask &= hit & present
    return mask


def _edge_mask(g: ReleaseGraph, constraints: tuple[Constraint, ...]) -> BoolArray:
    mask = np.ones(g.m, dtype=bool)
    for c in constraints:
        if c.prop == "synapses":
            values: npt.NDArray[Any] = g.synapses
        elif c.prop == "size":
            values = g.size
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                values = g.size / g.synapses
        mask &= np.asarray(_OPS[c.op](values, c.value), dtype=bool)
        if values.dtype.kind == "f":
            mask &= ~np.isnan(values)
    return mask


class _EdgeTable:
    """The graph edges that can match one motif edge; indexes built on first use."""

    def __init__(self, g: ReleaseGraph, e: Edge, masks: dict[str, BoolArray]) -> None:
        keep = _edge_mask(g, e.constraints) & masks[e.src][g.src] & masks[e.dst][g.dst]
        self.edge, self.n = e, g.n
        self.src, self.dst = g.src[keep], g.dst[keep]  # sorted by (src, dst)

    def _ptr(self, x: IntArray) -> IntArray:
        return np.concatenate([[0], np.cumsum(np.bincount(x, minlength=self.n))])

    @cached_property
    def keys(self) -> KeySet:
        return KeySet(self.src * self.n + self.dst)

    @cached_property
    def by_src(self) -> tuple[IntArray, IntArray]:
        """(ptr over cells, dst sorted by src)"""
        return self._ptr(self.src), self.dst

    @cached_property
    def by_dst(self) -> tuple[IntArray, IntArray]:
        """(ptr over cells, src sorted by dst)"""
        order = np.argsort(self.dst, kind="stable")
        return self._ptr(self.dst[order]), self.src[order]


def _expand(rows: IntArray, col: int, csr: tuple[IntArray, IntArray]) -> IntArray:
    """Append to each row every neighbour (in ``csr``) of the cell in ``col``."""
    ptr, nbr = csr
    x = rows[:, col]
    start, cnt = ptr[x], ptr[x + 1] - ptr[x]
    rep = np.repeat(np.arange(rows.shape[0]), cnt)
    pos = np.arange(rep.size) + (start - (np.cumsum(cnt) - cnt))[rep]
    out = np.empty((rep.size, rows.shape[1] + 1), dtype=np.int64)
    out[:, :-1] = rows[rep]
    out[:, -1] = nbr[pos]
    return out


def _distinct_last(rows: IntArray) -> IntArray:
    """Keep rows whose last cell differs from every earlier one."""
    last = rows[:, -1]
    ok = rows[:, 0] != last
    for k in range(1, rows.shape[1] - 1):
        ok &= rows[:, k] != last
    return rows[ok]


Step = Callable[[IntArray], IntArray]


def _plan(g: ReleaseGraph, motif: Motif, induced: bool) -> tuple[list[str], IntArray, list[Step]]:
    """Join order: (bound node order, first rows, steps that extend/filter rows)."""
    masks = {v: _node_mask(g, motif.constraints_of(v)) for v in motif.nodes}
    tables = [_EdgeTable(g, e, masks) for e in motif.edges]
    forbidden = list(motif.induced_non_edges() if induced else motif.non_edges)
    n = g.n
    steps: list[Step] = []
    pending = list(tables)
    if pending:
        first = min(pending, key=lambda t: t.src.size)
        pending.remove(first)
        order = [first.edge.src, first.edge.dst]
        rows = np.column_stack([first.src, first.dst])
    else:
        v = min(motif.nodes, key=lambda v: int(masks[v].sum()))
        order, rows = [v], np.flatnonzero(masks[v])[:, None]

    def add_filters() -> None:
        col = {v: i for i, v in enumerate(order)}
        for t in [t for t in pending if t.edge.src in col and t.edge.dst in col]:
            pending.remove(t)
            steps.append(_pair_filter(col[t.edge.src], col[t.edge.dst], n, t.keys, True))
        for e in [e for e in forbidden if e.src in col and e.dst in col]:
            forbidden.remove(e)
            steps.append(_pair_filter(col[e.src], col[e.dst], n, g.edge_keys, False))

    add_filters()
    while len(order) < len(motif.nodes):
        col = {v: i for i, v in enumerate(order)}
        frontier = [t for t in pending if (t.edge.src in col) != (t.edge.dst in col)]
        if frontier:
            t = min(frontier, key=lambda t: t.src.size)
            pending.remove(t)
            if t.edge.src in col:
                new, step = t.edge.dst, _expander(col[t.edge.src], t.by_src)
            else:
                new, step = t.edge.src, _expander(col[t.edge.dst], t.by_dst)
        else:  # no edge reaches the rest: cross product with the candidates
            new = min((v for v in motif.nodes if v not in col), key=lambda v: int(masks[v].sum()))
            step = _crosser(np.flatnonzero(masks[new]))
        steps.append(step)
        order.append(new)
        add_filters()
    return order, rows, steps


def _pair_filter(i: int, j: int, n: int, keys: KeySet, present: bool) -> Step:
    """Keep rows whose (col i -> col j) edge is (present) or is not (absent) in keys."""

    def step(rows: IntArray) -> IntArray:
        return rows[keys.contains(rows[:, i] * n + rows[:, j]) == present]

    return step


def _expander(col: int, csr: tuple[IntArray, IntArray]) -> Step:
    def step(rows: IntArray) -> IntArray:
        return _distinct_last(_expand(rows, col, csr))

    return step


def _crosser(cands: IntArray) -> Step:
    def step(rows: IntArray) -> IntArray:
        if rows.shape[0] * cands.size > MAX_CROSS_ROWS:
            raise MotifError("motif too loosely connected to count in memory")
        out = np.column_stack([np.repeat(rows, cands.size, axis=0), np.tile(cands, rows.shape[0])])
        return _distinct_last(out)

    return step


def _run(rows: IntArray, steps: list[Step]) -> Iterator[IntArray]:
    if not steps:
        yield rows
        return
    for lo in range(0, rows.shape[0], CHUNK_ROWS):
        out = steps[0](rows[lo : lo + CHUNK_ROWS])
        if out.shape[0]:
            yield from _run(out, steps[1:])


def count_motif(
    g: ReleaseGraph, motif: Motif, *, induced: bool = False, distinct_subgraphs: bool = False
) -> int:
    """Number of injective assignments of cells to motif nodes that satisfy the
    motif; with ``distinct_subgraphs`` divided by the motif's automorphisms."""
    _, rows, steps = _plan(g, motif, induced)
    total = sum(r.shape[0] for r in _run(rows, steps))
    return total // automorphism_count(motif, induced=induced) if distinct_subgraphs else total


def find_motif(
    g: ReleaseGraph, motif: Motif, *, induced: bool = False, limit: int = 1000, offset: int = 0
) -> list[dict[str, int]]:
    """Matches as {node: nucleus_id}, ordered by the nucleus ids in motif node
    order (the order of the Cypher ``match`` query), ``offset`` then ``limit``."""
    order, rows, steps = _plan(g, motif, induced)
    parts = list(_run(rows, steps))
    if not parts:
        return []
    ids = g.nodes[np.concatenate(parts)[:, [order.index(v) for v in motif.nodes]]]
    ids = ids[np.lexsort(ids.T[::-1])][offset : offset + limit]
    return [dict(zip(motif.nodes, map(int, row), strict=True)) for row in ids]


def automorphism_count(motif: Motif, *, induced: bool = False) -> int:
    """Permutations of the motif nodes that map required edges (with their
    constraints), forbidden edges and node constraints onto themselves."""
    edges = {(e.src, e.dst): frozenset(e.constraints) for e in motif.edges}
    banned = set() if induced else {(e.src, e.dst) for e in motif.non_edges}
    label = {v: frozenset(motif.constraints_of(v)) for v in motif.nodes}
    nodes = list(motif.nodes)

    def consistent(image: dict[str, str]) -> bool:
        for (u, v), cs in edges.items():
            if u in image and v in image and edges.get((image[u], image[v])) != cs:
                return False
        return all((image[u], image[v]) in banned for u, v in banned if u in image and v in image)

    def extend(image: dict[str, str]) -> int:
        if len(image) == len(nodes):
            return 1
        v = nodes[len(image)]
        total = 0
        for w in nodes:
            if w not in image.values() and label[w] == label[v]:
                image[v] = w
                if consistent(image):
                    total += extend(image)
                del image[v]
        return total

    return extend({})
