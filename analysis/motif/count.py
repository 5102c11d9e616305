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

import itertools
import operator
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from analysis.census import (
    _PAIR_BITS,
    _PATTERN_CLASS,
    TRIAD_CODES,
    IntArray,
    KeySet,
    Progress,
    ReleaseGraph,
    graph_census,
    reciprocal_pairs,
)
from analysis.motif.attributes import edge_column, resolve
from analysis.motif.ir import Constraint, Edge, EdgeComparison, Motif, NodeComparison
from analysis.release_graph import present, stable_order
from core.budget import Deadline, check
from core.errors import MotifError

BoolArray = npt.NDArray[np.bool_]
_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}  # fmt: skip
#: Rows per processing chunk, and the most rows a cross product may create.
CHUNK_ROWS = 1 << 20
MAX_CROSS_ROWS = 50_000_000


def _static_hit(values: npt.NDArray[Any], ok: BoolArray, c: Constraint) -> BoolArray:
    """Which entries satisfy ``c``, with DotMotif's rule for missing values (``ok`` False):
    only ``!=`` and ``!in`` of a list hold on them (Python's ``None != x``)."""
    out = np.zeros(values.size, dtype=bool)
    idx = np.flatnonzero(ok)
    v = values[idx]
    if c.op in _OPS:
        hit = np.asarray(_OPS[c.op](v, c.value), dtype=bool) if v.size else np.zeros(0, bool)
    elif c.op in ("in", "!in"):
        if isinstance(c.value, tuple):
            wanted = set(c.value)
            hit = np.fromiter((x in wanted for x in v), dtype=bool, count=v.size)
        else:  # a string: the value is a substring of it (DotMotif's `in` on a string)
            text = str(c.value)
            hit = np.fromiter((str(x) in text for x in v), dtype=bool, count=v.size)
    else:  # contains / !contains: the value is a substring of the property
        needle = str(c.value)
        hit = np.fromiter((needle in str(x) for x in v), dtype=bool, count=v.size)
    if c.op.startswith("!") and c.op != "!=":
        hit = ~hit
    out[idx] = hit
    if c.op == "!=" or (c.op == "!in" and isinstance(c.value, tuple)):
        out[~ok] = True
    return out


def _node_mask(g: ReleaseGraph, constraints: tuple[Constraint, ...]) -> BoolArray:
    mask = np.ones(g.n, dtype=bool)
    for c in constraints:
        values = g.node_attribute(c.prop)
        if values is None:  # resolve() refuses attributes the release does not carry
            values = np.full(g.n, None, dtype=object)
        mask &= _static_hit(values, present(values), c)
    return mask


def _edge_values(g: ReleaseGraph, prop: str, ids: IntArray | None = None) -> npt.NDArray[Any]:
    def col(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return a if ids is None else a[ids]

    column = edge_column(prop)
    if column == "synapses":
        return col(g.synapses)
    if column == "size":
        return col(g.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        return col(g.size) / col(g.synapses)


def _edge_mask(
    g: ReleaseGraph, constraints: tuple[Constraint, ...], ids: IntArray | None = None
) -> BoolArray:
    """Which edges (all, or the edges ``ids``) satisfy the constraints."""
    mask = np.ones(g.m if ids is None else ids.size, dtype=bool)
    for c in constraints:
        values = _edge_values(g, c.prop, ids)
        mask &= _static_hit(values, present(values), c)
    return mask


class _EdgeTable:
    """The graph edges that can match one motif edge; indexes built on first use. A motif
    edge that keeps every graph edge (no constraint on it or its ends) uses the graph's own
    cached indexes instead of copies."""

    def __init__(self, g: ReleaseGraph, e: Edge, masks: dict[str, BoolArray]) -> None:
        ids: IntArray | None = None  # the kept edges (ascending), None for all of them
        if not masks[e.src].all():  # the out-edges of the kept cells
            rows = np.flatnonzero(masks[e.src])
            ptr = g.out_ptr
            if int((ptr[rows + 1] - ptr[rows]).sum()) < g.m // 8:  # few: their CSR ranges
                ids = _ranges(ptr[rows], ptr[rows + 1])
            else:  # many: one pass over the edges (src is sorted, so a repeat, no gather)
                ids = np.flatnonzero(np.repeat(masks[e.src], np.diff(ptr)))
        if not masks[e.dst].all():
            hit = masks[e.dst][g.dst if ids is None else g.dst[ids]]
            ids = np.flatnonzero(hit) if ids is None else ids[hit]
        if e.constraints:
            hit = _edge_mask(g, e.constraints, ids)
            ids = np.flatnonzero(hit) if ids is None else ids[hit]
        self.edge, self.n, self.g, self.full = e, g.n, g, ids is None
        # sorted by (src, dst)
        self.src, self.dst = (g.src, g.dst) if ids is None else (g.src[ids], g.dst[ids])

    def _ptr(self, x: IntArray) -> IntArray:
        return np.concatenate([[0], np.cumsum(np.bincount(x, minlength=self.n))])

    @cached_property
    def keys(self) -> KeySet:
        if self.full:
            return self.g.edge_keys
        return KeySet(self.src * self.n + self.dst, assume_sorted=True)

    @cached_property
    def by_src(self) -> tuple[IntArray, IntArray]:
        """(ptr over cells, dst sorted by src)"""
        if self.full:
            return self.g.out_ptr, self.g.dst
        return self._ptr(self.src), self.dst

    @cached_property
    def by_dst(self) -> tuple[IntArray, IntArray]:
        """(ptr over cells, src sorted by dst)"""
        if self.full:
            g = self.g
            return g.in_ptr, g.cached("src_by_dst", lambda: g.src[g.in_order])
        order = stable_order(self.dst, self.n)
        return self._ptr(self.dst[order]), self.src[order]


def _ranges(starts: IntArray, ends: IntArray) -> IntArray:
    """The integers of [starts[k], ends[k]) for every k, concatenated."""
    cnt = ends - starts
    total = int(cnt.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    return np.arange(total, dtype=np.int64) + np.repeat(starts - (np.cumsum(cnt) - cnt), cnt)


def _distinct_last(rows: IntArray) -> IntArray:
    """Keep rows whose last cell differs from every earlier one."""
    last = rows[:, -1]
    ok = rows[:, 0] != last
    for k in range(1, rows.shape[1] - 1):
        ok &= rows[:, k] != last
    return rows[ok]


class _Step:
    """Extends or filters partial matches (one row per injective assignment so far)."""

    def fanout(self, rows: IntArray) -> IntArray | None:
        """Rows each input row can become (None: at most one, a filter)."""
        return None

    def __call__(self, rows: IntArray) -> IntArray:
        raise NotImplementedError

    def count(self, rows: IntArray) -> int:
        """len(self(rows)), without building the rows where possible."""
        return int(self(rows).shape[0])


class _PairFilter(_Step):
    """Keep rows whose (col i -> col j) edge is (present) or is not (absent) in keys."""

    def __init__(self, i: int, j: int, n: int, keys: KeySet, present: bool) -> None:
        self.i, self.j, self.n, self.keys, self.present = i, j, n, keys, present

    def __call__(self, rows: IntArray) -> IntArray:
        return rows[self.keys.contains(rows[:, self.i] * self.n + rows[:, self.j]) == self.present]


class _Expander(_Step):
    """Append every neighbour (CSR) of the cell in ``col``, distinct from the row's cells.
    ``keys``/``outward`` test adjacency for counting without building the rows."""

    def __init__(self, col: int, csr: tuple[IntArray, IntArray], t: _EdgeTable, outward: bool):
        self.col, self.csr, self.table, self.outward = col, csr, t, outward

    def fanout(self, rows: IntArray) -> IntArray:
        ptr = self.csr[0]
        x = rows[:, self.col]
        return ptr[x + 1] - ptr[x]

    def __call__(self, rows: IntArray) -> IntArray:
        ptr, nbr = self.csr
        x = rows[:, self.col]
        start, cnt = ptr[x], ptr[x + 1] - ptr[x]
        rep = np.repeat(np.arange(rows.shape[0]), cnt)
        pos = np.arange(rep.size) + (start - (np.cumsum(cnt) - cnt))[rep]
        out = np.empty((rep.size, rows.shape[1] + 1), dtype=np.int64)
        out[:, :-1] = rows[rep]
        out[:, -1] = nbr[pos]
        return _distinct_last(out)

    def count(self, rows: IntArray) -> int:
        total = int(self.fanout(rows).sum())
        x, n = rows[:, self.col], self.table.n
        for k in range(rows.shape[1]):
            if k != self.col:  # a neighbour that is already bound is not a new match
                y = rows[:, k]
                q = x * n + y if self.outward else y * n + x
                total -= int(np.count_nonzero(self.table.keys.contains(q)))
        return total


class _Cross(_Step):
    """Append every candidate cell (no edge reaches the next node)."""

    def __init__(self, cands: IntArray, n: int) -> None:
        self.cands = cands
        self.is_cand = np.zeros(n, dtype=bool)
        self.is_cand[cands] = True

    def fanout(self, rows: IntArray) -> IntArray:
        return np.full(rows.shape[0], self.cands.size, dtype=np.int64)

    def __call__(self, rows: IntArray) -> IntArray:
        if rows.shape[0] * self.cands.size > MAX_CROSS_ROWS:
            raise MotifError("motif too loosely connected to list in memory")
        reps = np.repeat(rows, self.cands.size, axis=0)
        return _distinct_last(np.column_stack([reps, np.tile(self.cands, rows.shape[0])]))

    def count(self, rows: IntArray) -> int:
        return rows.shape[0] * self.cands.size - int(np.count_nonzero(self.is_cand[rows]))


def _compare(a: npt.NDArray[Any], b: npt.NDArray[Any], op: str) -> BoolArray:
    """``a[k] op b[k]`` for values that are all present."""
    if op in _OPS:
        return np.asarray(_OPS[op](a, b), dtype=bool) if a.size else np.zeros(0, dtype=bool)
    if op in ("contains", "!contains"):
        hit = np.fromiter((str(y) in str(x) for x, y in zip(a, b, strict=True)), bool, a.size)
    else:  # in / !in: a is a substring of b
        hit = np.fromiter((str(x) in str(y) for x, y in zip(a, b, strict=True)), bool, a.size)
    return ~hit if op.startswith("!") else hit


class _NodeCompare(_Step):
    """Keep rows where ``col i .left_prop op col j .right_prop``; a missing value on either
    side never holds (DotMotif skips cells without the attribute)."""

    def __init__(self, g: ReleaseGraph, i: int, j: int, c: NodeComparison) -> None:
        def column(name: str) -> tuple[npt.NDArray[Any], BoolArray]:
            a = g.node_attribute(name)
            a = np.full(g.n, None, dtype=object) if a is None else a
            return a, present(a)

        self.i, self.j, self.op = i, j, c.op
        (self.lv, self.lok), (self.rv, self.rok) = column(c.left_prop), column(c.right_prop)

    def __call__(self, rows: IntArray) -> IntArray:
        x, y = rows[:, self.i], rows[:, self.j]
        idx = np.flatnonzero(self.lok[x] & self.rok[y])
        keep = np.zeros(rows.shape[0], dtype=bool)
        keep[idx] = _compare(self.lv[x[idx]], self.rv[y[idx]], self.op)
        return rows[keep]


class _EdgeCompare(_Step):
    """Keep rows where ``edge(a, b).left_prop op edge(c, d).right_prop`` (both edges are
    required, so they exist once their ends are bound). A missing size compares as Python's
    None does in DotMotif: equal to another missing one, unequal to any number."""

    def __init__(self, g: ReleaseGraph, cols: tuple[int, int, int, int], c: EdgeComparison):
        self.g, self.cols, self.c = g, cols, c

    def __call__(self, rows: IntArray) -> IntArray:
        g, (a, b, c, d), n = self.g, self.cols, self.g.n
        e1 = g.edge_keys.find(rows[:, a] * n + rows[:, b])
        e2 = g.edge_keys.find(rows[:, c] * n + rows[:, d])
        v1 = _edge_values(g, self.c.left_prop, e1)
        v2 = _edge_values(g, self.c.right_prop, e2)
        ok1, ok2 = present(v1), present(v2)
        both = ok1 & ok2
        keep = np.zeros(rows.shape[0], dtype=bool)
        keep[both] = _compare(v1[both], v2[both], self.c.op)
        if self.c.op == "=":
            keep |= ~ok1 & ~ok2
        elif self.c.op == "!=":
            keep |= ok1 != ok2
        return rows[keep]


def _plan(g: ReleaseGraph, motif: Motif, induced: bool) -> tuple[list[str], IntArray, list[_Step]]:
    """Join order: (bound node order, first rows, steps that extend/filter rows)."""
    masks = {v: _node_mask(g, motif.constraints_of(v)) for v in motif.nodes}
    tables = [_EdgeTable(g, e, masks) for e in motif.edges]
    forbidden = list(motif.induced_non_edges() if induced else motif.non_edges)
    node_cmps, edge_cmps = list(motif.node_comparisons), list(motif.edge_comparisons)
    n = g.n
    steps: list[_Step] = []
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
            steps.append(_PairFilter(col[t.edge.src], col[t.edge.dst], n, t.keys, True))
        for e in [e for e in forbidden if e.src in col and e.dst in col]:
            forbidden.remove(e)
            steps.append(_PairFilter(col[e.src], col[e.dst], n, g.edge_keys, False))
        for nc in [nc for nc in node_cmps if nc.left in col and nc.right in col]:
            node_cmps.remove(nc)
            steps.append(_NodeCompare(g, col[nc.left], col[nc.right], nc))
        for ec in [ec for ec in edge_cmps if all(v in col for v in (*ec.left, *ec.right))]:
            edge_cmps.remove(ec)
            ends = (col[ec.left[0]], col[ec.left[1]], col[ec.right[0]], col[ec.right[1]])
            steps.append(_EdgeCompare(g, ends, ec))

    add_filters()
    while len(order) < len(motif.nodes):
        col = {v: i for i, v in enumerate(order)}
        frontier = [t for t in pending if (t.edge.src in col) != (t.edge.dst in col)]
        step: _Step
        if frontier:
            t = min(frontier, key=lambda t: t.src.size)
            pending.remove(t)
            if t.edge.src in col:
                new, step = t.edge.dst, _Expander(col[t.edge.src], t.by_src, t, True)
            else:
                new, step = t.edge.src, _Expander(col[t.edge.dst], t.by_dst, t, False)
        else:  # no edge reaches the rest: cross product with the candidates
            new = min((v for v in motif.nodes if v not in col), key=lambda v: int(masks[v].sum()))
            step = _Cross(np.flatnonzero(masks[new]), n)
        steps.append(step)
        order.append(new)
        add_filters()
    return order, rows, steps


def _pieces(rows: IntArray, step: _Step) -> Iterator[IntArray]:
    """Split ``rows`` so that ``step`` makes at most about CHUNK_ROWS rows per piece."""
    fan = step.fanout(rows)
    if fan is None:
        for lo in range(0, rows.shape[0], CHUNK_ROWS):
            yield rows[lo : lo + CHUNK_ROWS]
        return
    cum = np.cumsum(fan)
    lo = 0
    while lo < rows.shape[0]:
        base = cum[lo - 1] if lo else 0
        hi = max(lo + 1, int(np.searchsorted(cum, base + CHUNK_ROWS, side="right")))
        yield rows[lo:hi]
        lo = hi


def _run(rows: IntArray, steps: list[_Step], deadline: Deadline | None) -> Iterator[IntArray]:
    """Every full match, in pieces."""
    if not steps:
        yield rows
        return
    for piece in _pieces(rows, steps[0]):
        check(deadline)
        out = steps[0](piece)
        if out.shape[0]:
            yield from _run(out, steps[1:], deadline)


def _fused_count(rows: IntArray, expand: _Expander, filters: list[_PairFilter]) -> int:
    """len(filters(expand(rows))) with the new cell as a 1-D column: no 2-D rows built."""
    ptr, nbr = expand.csr
    x = rows[:, expand.col]
    start, cnt = ptr[x], ptr[x + 1] - ptr[x]
    rep = np.repeat(np.arange(rows.shape[0]), cnt)
    new = nbr[np.arange(rep.size) + (start - (np.cumsum(cnt) - cnt))[rep]]
    width = rows.shape[1]
    ok = np.ones(new.size, dtype=bool)
    for k in range(width):
        ok &= rows[rep, k] != new

    def column(k: int) -> IntArray:
        return new if k == width else rows[rep, k]

    for f in filters:
        q = column(f.i) * f.n + column(f.j)
        ok &= f.keys.contains(q) == f.present
    return int(np.count_nonzero(ok))


def _count(rows: IntArray, steps: list[_Step], deadline: Deadline | None) -> int:
    """Number of full matches; the last expansion (and the filters right after it)
    counts without building its rows."""
    if not steps:
        return int(rows.shape[0])
    first = steps[0]
    filters = [f for f in steps[1:] if isinstance(f, _PairFilter)]
    if isinstance(first, _Expander) and len(steps) > 1 and len(filters) == len(steps) - 1:
        total = 0
        for piece in _pieces(rows, first):
            check(deadline)
            total += _fused_count(piece, first, filters)
        return total
    total = 0
    for piece in _pieces(rows, steps[0]) if len(steps) > 1 else [rows]:
        check(deadline)
        if len(steps) == 1:
            for lo in range(0, piece.shape[0], CHUNK_ROWS):
                total += steps[0].count(piece[lo : lo + CHUNK_ROWS])
        else:
            out = steps[0](piece)
            if out.shape[0]:
                total += _count(out, steps[1:], deadline)
    return total


def count_motif(
    g: ReleaseGraph,
    motif: Motif,
    *,
    induced: bool = False,
    distinct_subgraphs: bool = False,
    deadline: Deadline | None = None,
    progress: Progress | None = None,
) -> int:
    """Number of injective assignments of cells to motif nodes that satisfy the
    motif; with ``distinct_subgraphs`` divided by the motif's automorphisms.
    Raises QueryTimeout once ``deadline`` passes (checked between chunks). ``progress``
    hears the share done of a census-backed count (:func:`uses_census`)."""
    motif = resolve(motif, g.carried())
    plain = _count_by_census(g, motif, induced, deadline, progress)
    if plain is not None:
        total = plain
    else:
        _, rows, steps = _plan(g, motif, induced)
        total = _count(rows, steps, deadline)
    return total // automorphism_count(motif, induced=induced) if distinct_subgraphs else total


def find_motif(
    g: ReleaseGraph,
    motif: Motif,
    *,
    induced: bool = False,
    limit: int = 1000,
    offset: int = 0,
    deadline: Deadline | None = None,
) -> list[dict[str, int]]:
    """Matches as {node: nucleus_id}, ordered by the nucleus ids in motif node
    order (the order of the Cypher ``match`` query), ``offset`` then ``limit``."""
    motif = resolve(motif, g.carried())
    order, rows, steps = _plan(g, motif, induced)
    parts = list(_run(rows, steps, deadline))
    if not parts:
        return []
    ids = g.nodes[np.concatenate(parts)[:, [order.index(v) for v in motif.nodes]]]
    ids = ids[np.lexsort(ids.T[::-1])][offset : offset + limit]
    return [dict(zip(motif.nodes, map(int, row), strict=True)) for row in ids]


def _embeddings(motif: Motif, induced: bool, present: set[tuple[int, int]], k: int) -> int:
    """Injective maps of the motif's k nodes onto cells 0..k-1 whose links are ``present``."""
    required = {(motif.nodes.index(e.src), motif.nodes.index(e.dst)) for e in motif.edges}
    banned = {(motif.nodes.index(e.src), motif.nodes.index(e.dst)) for e in motif.non_edges}
    total = 0
    for perm in itertools.permutations(range(k)):
        image = {(perm[u], perm[v]) for u, v in required}
        if not image <= present:
            continue
        if any((perm[u], perm[v]) in present for u, v in banned):
            continue
        if induced and len(present) != len(image):
            continue
        total += 1
    return total


def uses_census(motif: Motif) -> bool:
    """Whether :func:`count_motif` counts this motif from the whole triad census (an
    unconstrained 3-node motif): its cost is the census's."""
    return motif.unconstrained and len(motif.nodes) == 3


def _count_by_census(
    g: ReleaseGraph,
    motif: Motif,
    induced: bool,
    deadline: Deadline | None,
    progress: Progress | None = None,
) -> int | None:
    """Exact count of an unconstrained 2- or 3-node motif from the dyad or triad census:
    the sum over isomorphism classes of (cells sets in the class) x (embeddings of the
    motif into one of them). None when the motif has constraints or more nodes."""
    k = len(motif.nodes)
    if not motif.unconstrained or k not in (2, 3):
        return None
    if k == 2:
        mutual = reciprocal_pairs(g)
        classes = {((0, 1),): g.m - 2 * mutual, ((0, 1), (1, 0)): mutual}
        return sum(n * _embeddings(motif, induced, set(links), 2) for links, n in classes.items())
    census = graph_census(g, deadline, progress)[0]
    total = 0
    for c, code in enumerate(TRIAD_CODES):
        if census[code]:
            pattern = _PATTERN_CLASS.tolist().index(c)
            links = {pair for pair, bit in _PAIR_BITS.items() if pattern & bit}
            total += census[code] * _embeddings(motif, induced, links, 3)
    return total


def automorphism_count(motif: Motif, *, induced: bool = False) -> int:
    """Permutations of the motif nodes that map required edges (with their
    constraints), forbidden edges, node constraints and comparisons onto themselves."""
    node_cmps = {c.canonical() for c in motif.node_comparisons}
    edge_cmps = {c.canonical() for c in motif.edge_comparisons}
    polar = set(motif.polarities)
    edges = {(e.src, e.dst): frozenset(e.constraints) for e in motif.edges}
    banned = set() if induced else {(e.src, e.dst) for e in motif.non_edges}
    label = {v: frozenset(motif.constraints_of(v)) for v in motif.nodes}
    nodes = list(motif.nodes)

    def consistent(image: dict[str, str]) -> bool:
        for (u, v), cs in edges.items():
            if u in image and v in image and edges.get((image[u], image[v])) != cs:
                return False
        return all((image[u], image[v]) in banned for u, v in banned if u in image and v in image)

    def symmetric(p: dict[str, str]) -> bool:
        mapped_nodes = {
            NodeComparison(p[c.left], c.left_prop, c.op, p[c.right], c.right_prop).canonical()
            for c in motif.node_comparisons
        }
        mapped_edges = {
            EdgeComparison((p[c.left[0]], p[c.left[1]]), c.left_prop, c.op,
                           (p[c.right[0]], p[c.right[1]]), c.right_prop).canonical()
            for c in motif.edge_comparisons
        }  # fmt: skip
        return (
            mapped_nodes == node_cmps
            and mapped_edges == edge_cmps
            and {(p[v], k) for v, k in polar} == polar
        )

    def extend(image: dict[str, str]) -> int:
        if len(image) == len(nodes):
            return int(symmetric(image))
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
