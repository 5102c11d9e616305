"""In-memory release graphs, the exact triad census and its null models.

A :class:`ReleaseGraph` holds one release as numpy arrays (cells sorted by
nucleus id, edges sorted by (src, dst), CSR out/in adjacency). The census is
vectorised: dyads come from the edge arrays, open triads from per-cell degree
counts, closed triads from a degree-ordered triangle enumeration, and 003 is
C(n, 3) minus the rest, all as Python ints.

    >>> g = ReleaseGraph.build(np.arange(3), np.array([0, 1]), np.array([1, 2]))
    >>> triad_census(g)["021C"]
    1
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from math import comb, prod
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]

#: The 16 MAN triad classes, in networkx order.
TRIAD_CODES = (
    "003", "012", "102", "021D", "021U", "021C", "111D", "111U",
    "030T", "030C", "201", "120D", "120U", "120C", "210", "300",
)  # fmt: skip
_INDEX = {c: i for i, c in enumerate(TRIAD_CODES)}


# --------------------------------------------------------------------------- graph


class KeySet:
    """A static set of int64 keys: sorted array + a bitmap pre-filter, so that
    most misses cost one random byte read instead of a binary search."""

    def __init__(self, keys: IntArray) -> None:
        self.keys = np.sort(keys) if keys.size and np.any(keys[1:] < keys[:-1]) else keys
        bits = max(16, int(np.ceil(np.log2(max(1, keys.size) * 16))))
        self._shift = np.uint64(64 - bits)
        self._filter = np.zeros(1 << bits, dtype=bool)
        self._filter[self._hash(self.keys)] = True

    def _hash(self, q: IntArray) -> npt.NDArray[np.uint64]:
        with np.errstate(over="ignore"):
            return (q.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> self._shift

    def find(self, q: IntArray) -> IntArray:
        """Position of each query in ``keys``, or -1 where absent."""
        out = np.full(q.shape, -1, dtype=np.int64)
        cand = np.flatnonzero(self._filter[self._hash(q)])
        if cand.size and self.keys.size:
            pos = np.searchsorted(self.keys, q[cand])
            pos[pos == self.keys.size] = 0
            hit = self.keys[pos] == q[cand]
            out[cand[hit]] = pos[hit]
        return out

    def contains(self, q: IntArray) -> npt.NDArray[np.bool_]:
        return self.find(q) >= 0


@dataclass(frozen=True, eq=False)
class ReleaseGraph:
    """One release in memory. Build it with :meth:`build` (or :meth:`from_ids`).

    ``src``/``dst`` index into ``nodes``; edges are unique, without autapses,
    sorted by (src, dst); ``size`` is float with NaN for null. Node attribute
    arrays are object arrays (None for null) or None when unknown.
    """

    nodes: IntArray
    src: IntArray
    dst: IntArray
    synapses: IntArray
    size: npt.NDArray[np.float64]
    cell_type: npt.NDArray[np.object_] | None
    is_neuron: npt.NDArray[np.object_] | None
    classification_system: npt.NDArray[np.object_] | None
    out_ptr: IntArray
    in_ptr: IntArray
    in_order: IntArray  # edge ids sorted by (dst, src)
    edge_keys: KeySet  # src * n + dst

    @property
    def n(self) -> int:
        return int(self.nodes.size)

    @property
    def m(self) -> int:
        return int(self.src.size)

    @classmethod
    def build(
        cls,
        nodes: npt.ArrayLike,
        src_idx: npt.ArrayLike,
        dst_idx: npt.ArrayLike,
        *,
        synapses: npt.ArrayLike | None = None,
        size: npt.ArrayLike | None = None,
        cell_type: npt.ArrayLike | None = None,
        is_neuron: npt.ArrayLike | None = None,
        classification_system: npt.ArrayLike | None = None,
    ) -> ReleaseGraph:
        """From node ids (sorted, unique) and edge endpoint indices into them.
        Autapses are dropped (no motif or triad uses them); duplicate edges raise."""
        ids = np.asarray(nodes, dtype=np.int64)
        if ids.size > 1 and not np.all(ids[1:] > ids[:-1]):
            raise ValueError("nodes must be sorted and unique")
        n = ids.size
        s = np.asarray(src_idx, dtype=np.int64)
        d = np.asarray(dst_idx, dtype=np.int64)
        if s.shape != d.shape or (
            s.size and (min(s.min(), d.min()) < 0 or max(s.max(), d.max()) >= n)
        ):
            raise ValueError("edge endpoints must be indices into nodes")
        syn = np.ones(s.size, np.int64) if synapses is None else np.asarray(synapses, np.int64)
        sz = np.full(s.size, np.nan) if size is None else np.asarray(size, np.float64)
        keep = s != d
        keys = s[keep] * n + d[keep]
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        if keys.size > 1 and np.any(keys[1:] == keys[:-1]):
            raise ValueError("duplicate edges; merge (pre, post) pairs first")
        s, d = s[keep][order], d[keep][order]

        def attr(a: npt.ArrayLike | None) -> npt.NDArray[np.object_] | None:
            if a is None:
                return None
            out = np.asarray(a, dtype=object)
            if out.shape != (n,):
                raise ValueError("node attribute arrays must have one entry per node")
            return out

        in_order = np.lexsort((s, d))
        return cls(
            nodes=ids, src=s, dst=d, synapses=syn[keep][order], size=sz[keep][order],
            cell_type=attr(cell_type), is_neuron=attr(is_neuron),
            classification_system=attr(classification_system),
            out_ptr=np.concatenate([[0], np.cumsum(np.bincount(s, minlength=n))]),
            in_ptr=np.concatenate([[0], np.cumsum(np.bincount(d, minlength=n))]),
            in_order=in_order, edge_keys=KeySet(keys),
        )  # fmt: skip

    @classmethod
    def from_ids(
        cls, nodes: npt.ArrayLike, pre: npt.ArrayLike, post: npt.ArrayLike, **attrs: Any
    ) -> ReleaseGraph:
        """From node ids and edges given as (pre id, post id); unsorted node ids
        are sorted (node attributes follow); every edge end must be a node."""
        ids = np.asarray(nodes, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        for k in ("cell_type", "is_neuron", "classification_system"):
            if attrs.get(k) is not None:
                attrs[k] = np.asarray(attrs[k], dtype=object)[order]
        idx = []
        for ends in (pre, post):
            e = np.asarray(ends, dtype=np.int64)
            i = np.searchsorted(ids, e)
            i[i == ids.size] = 0
            if e.size and not np.all(ids[i] == e):
                raise ValueError("an edge end is not among the nodes")
            idx.append(i)
        return cls.build(ids, idx[0], idx[1], **attrs)

    def subgraph(self, node_mask: npt.NDArray[np.bool_]) -> ReleaseGraph:
        """The subgraph induced by the cells where ``node_mask`` is True."""
        new_index = np.cumsum(node_mask) - 1
        keep = node_mask[self.src] & node_mask[self.dst]

        def sub(a: npt.NDArray[np.object_] | None) -> npt.NDArray[np.object_] | None:
            return None if a is None else a[node_mask]

        return ReleaseGraph.build(
            self.nodes[node_mask], new_index[self.src[keep]], new_index[self.dst[keep]],
            synapses=self.synapses[keep], size=self.size[keep], cell_type=sub(self.cell_type),
            is_neuron=sub(self.is_neuron),
            classification_system=sub(self.classification_system),
        )  # fmt: skip


def reciprocal_pairs(g: ReleaseGraph) -> int:
    """Number of unordered cell pairs connected in both directions."""
    rev = g.edge_keys.contains(g.dst * g.n + g.src)
    return int(rev.sum()) // 2


# --------------------------------------------------------------------------- census

_PAIR_BITS = {(0, 1): 1, (1, 0): 2, (0, 2): 4, (2, 0): 8, (1, 2): 16, (2, 1): 32}
_PATH_CODE = {
    ("out", "out"): "021D", ("in", "in"): "021U", ("in", "out"): "021C",
    ("in", "mut"): "111D", ("mut", "out"): "111U", ("mut", "mut"): "201",
}  # fmt: skip


def _link(pattern: int, x: int, y: int) -> str | None:
    xy, yx = pattern & _PAIR_BITS[(x, y)], pattern & _PAIR_BITS[(y, x)]
    return "mut" if xy and yx else "out" if xy else "in" if yx else None


def _classify(pattern: int) -> tuple[str, list[str]]:
    """MAN class of a 3-cell pattern, and the open-triad class of each of its
    2-paths (a centre cell linked to both others) - used to correct for triangles."""
    links = {(x, y): _link(pattern, x, y) for x in range(3) for y in range(3) if x != y}
    paths = []
    for x in range(3):
        y, z = (v for v in range(3) if v != x)
        a, b = links[(x, y)], links[(x, z)]
        if a and b:
            paths.append(_PATH_CODE[(a, b) if (a, b) in _PATH_CODE else (b, a)])
    kinds = sorted(links[(x, y)] or "" for x, y in ((0, 1), (0, 2), (1, 2)))
    nmut, nasym = kinds.count("mut"), kinds.count("out") + kinds.count("in")
    if nmut + nasym < 3:
        if nmut + nasym < 2:
            return ("003", "012", "102")[nasym + 2 * nmut], paths
        return paths[0], paths
    outdeg = [sum(links[(x, y)] == "out" for y in range(3) if y != x) for x in range(3)]
    indeg = [sum(links[(x, y)] == "in" for y in range(3) if y != x) for x in range(3)]
    if nmut == 0:
        return ("030C" if outdeg == [1, 1, 1] else "030T"), paths
    if nmut == 1:
        apex = next(x for x in range(3) if "mut" not in (links[(x, y)] for y in range(3) if y != x))
        return ("120D" if outdeg[apex] == 2 else "120U" if indeg[apex] == 2 else "120C"), paths
    return ("210" if nmut == 2 else "300"), paths


_PATTERN_CLASS = np.zeros(64, dtype=np.int64)
_PATTERN_PATHS = np.zeros((64, 16), dtype=np.int64)
for _p in range(64):
    _c, _paths = _classify(_p)
    _PATTERN_CLASS[_p] = _INDEX[_c]
    for _q in _paths:
        _PATTERN_PATHS[_p, _INDEX[_q]] += 1 if len(_paths) == 3 else 0

_WEDGE_CHUNK = 4_000_000


def _dyads(g: ReleaseGraph) -> tuple[IntArray, IntArray, IntArray]:
    """Connected unordered pairs as (lo, hi, kind) with kind 1 = lo->hi only,
    2 = hi->lo only, 3 = both."""
    rev = g.edge_keys.contains(g.dst * g.n + g.src)
    lo, hi = np.minimum(g.src, g.dst), np.maximum(g.src, g.dst)
    keep = ~rev | (g.src < g.dst)
    lo, hi = lo[keep], hi[keep]
    kind = np.where(rev[keep], 3, np.where(g.src[keep] < g.dst[keep], 1, 2))
    return lo, hi, kind


def _triangles(n: int, lo: IntArray, hi: IntArray, deg: IntArray) -> list[IntArray]:
    """Every triangle of the undirected graph once, as cells u, v, w and pair
    indices u-v, u-w, v-w, with rank(u) < rank(v) < rank(w) (rank by degree)."""
    by_rank = np.lexsort((np.arange(n), deg))
    rank = np.empty(n, dtype=np.int64)
    rank[by_rank] = np.arange(n)
    a, b = rank[lo], rank[hi]
    a, b = np.minimum(a, b), np.maximum(a, b)
    order = np.argsort(a * n + b, kind="stable")
    a, b = a[order], b[order]
    fwd = KeySet(a * n + b)
    row_end = np.cumsum(np.bincount(a, minlength=n))[a]
    partners = row_end - np.arange(a.size) - 1  # later edges in the same row
    out: list[tuple[IntArray, ...]] = []
    cum = np.cumsum(partners)
    start = 0
    while start < a.size:
        base = cum[start - 1] if start else 0
        stop = int(np.searchsorted(cum, base + _WEDGE_CHUNK, side="right"))
        stop = max(stop, start + 1)
        cnt = partners[start:stop]
        e1 = np.repeat(np.arange(start, stop), cnt)
        first = np.cumsum(cnt) - cnt
        e2 = e1 + 1 + (np.arange(e1.size) - np.repeat(first, cnt))
        e3 = fwd.find(b[e1] * n + b[e2])
        hit = e3 >= 0
        e1, e2, e3 = e1[hit], e2[hit], e3[hit]
        cells = by_rank[a[e1]], by_rank[b[e1]], by_rank[b[e2]]
        out.append((*cells, order[e1], order[e2], order[e3]))
        start = stop
    if not out:
        return [np.zeros(0, dtype=np.int64)] * 6
    return [np.concatenate(x) for x in zip(*out, strict=True)]


def triad_census(g: ReleaseGraph, node_mask: npt.NDArray[np.bool_] | None = None) -> dict[str, int]:
    """Exact counts of the 16 MAN triad classes (same numbers as
    ``networkx.triadic_census``), optionally on the subgraph of ``node_mask``."""
    if node_mask is not None:
        g = g.subgraph(np.asarray(node_mask, dtype=bool))
    n = g.n
    lo, hi, kind = _dyads(g)
    mutual = kind == 3
    mut = np.bincount(lo[mutual], minlength=n) + np.bincount(hi[mutual], minlength=n)
    o = np.bincount(g.src, minlength=n) - mut
    i = np.bincount(g.dst, minlength=n) - mut
    deg = o + i + mut
    u, v, w, p1, p2, p3 = _triangles(n, lo, hi, deg)

    # Directed pattern of each triangle on (u, v, w): pairs (u,v), (u,w), (v,w).
    def bits(p: IntArray, x: IntArray) -> tuple[IntArray, IntArray]:
        k = kind[p]
        fwd, bwd = k & 1, k >> 1  # lo->hi, hi->lo
        x_is_lo = lo[p] == x
        return np.where(x_is_lo, fwd, bwd), np.where(x_is_lo, bwd, fwd)

    uv, vu = bits(p1, u)
    uw, wu = bits(p2, u)
    vw, wv = bits(p3, v)
    pattern = uv + 2 * vu + 4 * uw + 8 * wu + 16 * vw + 32 * wv
    per_pattern = np.bincount(pattern, minlength=64)

    counts = np.zeros(16, dtype=object)
    counts += np.bincount(_PATTERN_CLASS, weights=per_pattern, minlength=16).astype(np.int64)
    common = np.bincount(np.concatenate([p1, p2, p3]), minlength=lo.size)
    third = n - deg[lo] - deg[hi] + common  # cells linked to neither end of a pair
    counts[_INDEX["012"]] = int(third[~mutual].sum())
    counts[_INDEX["102"]] = int(third[mutual].sum())
    closed = per_pattern @ _PATTERN_PATHS
    opened = {
        "021D": o * (o - 1) // 2, "021U": i * (i - 1) // 2, "021C": o * i,
        "111D": mut * i, "111U": mut * o, "201": mut * (mut - 1) // 2,
    }  # fmt: skip
    for code, per_cell in opened.items():
        counts[_INDEX[code]] = int(per_cell.sum()) - int(closed[_INDEX[code]])
    counts[0] = comb(n, 3) - int(sum(counts[1:]))
    return {code: int(c) for code, c in zip(TRIAD_CODES, counts, strict=True)}


# --------------------------------------------------------------------------- null models


def er_expected(n: int, m: int, model: Literal["gnp", "gnm"] = "gnp") -> dict[str, float]:
    """Expected triad counts in a random directed graph with ``n`` cells and ``m``
    edges (no autapses): ``gnp`` = every ordered pair independently with
    p = m / (n (n - 1)) (the model of Turner et al. 2022, "ER connection
    probability"); ``gnm`` = uniform over graphs with exactly m edges. Each sums
    to C(n, 3); they differ by O(1/m)."""
    pairs = n * (n - 1)
    if n < 3 or not 0 <= m <= pairs:
        return {c: 0.0 for c in TRIAD_CODES}
    p = m / pairs
    prob = np.zeros(16)
    for pattern in range(64):
        k = pattern.bit_count()
        if model == "gnp":
            pr = p**k * (1 - p) ** (6 - k)
        else:
            pr = prod(m - j for j in range(k)) * prod(pairs - m - j for j in range(6 - k))
            pr /= prod(pairs - j for j in range(6))
        prob[_PATTERN_CLASS[pattern]] += pr
    return {c: comb(n, 3) * float(prob[i]) for i, c in enumerate(TRIAD_CODES)}


@dataclass(frozen=True)
class NullCensus:
    """Per-class mean and (sample) standard deviation of the triad census over
    ``samples`` degree-preserving randomisations."""

    mean: dict[str, float]
    std: dict[str, float]
    samples: int
    swaps_per_edge: float

    def z_scores(self, observed: dict[str, int]) -> dict[str, float]:
        """(observed - mean) / std; 0 where std is 0 and observed equals the mean,
        +-inf where std is 0 and they differ."""
        out = {}
        for c in TRIAD_CODES:
            diff, sd = observed[c] - self.mean[c], self.std[c]
            out[c] = diff / sd if sd > 0 else 0.0 if diff == 0 else float(np.sign(diff)) * np.inf
        return out


def _swap_round(src: IntArray, dst: IntArray, n: int, rng: np.random.Generator) -> int:
    """One batch of directed double-edge swaps (a->b, c->d) => (a->d, c->b) over a
    random pairing of all edges, in place. A proposal is rejected if it would
    create an autapse, an edge already present, or the same new edge as another
    proposal, so in/out degrees are kept and the graph stays simple."""
    present = KeySet(src * n + dst)
    perm = rng.permutation(src.size)
    half = src.size // 2
    i, j = perm[:half], perm[half : 2 * half]
    a, b, c, d = src[i], dst[i], src[j], dst[j]
    new1, new2 = a * n + d, c * n + b
    ok = (a != d) & (c != b) & ~present.contains(new1) & ~present.contains(new2)
    new = np.concatenate([new1[ok], new2[ok]])
    _, first, counts = np.unique(new, return_index=True, return_counts=True)
    dup_keys = new[first[counts > 1]]
    if dup_keys.size:
        ok_idx = np.flatnonzero(ok)
        clash = np.isin(new1[ok_idx], dup_keys) | np.isin(new2[ok_idx], dup_keys)
        ok[ok_idx[clash]] = False
    dst[i[ok]] = d[ok]
    dst[j[ok]] = b[ok]
    return int(ok.sum())


def _null_worker(args: tuple[IntArray, IntArray, int, int, float, Any]) -> list[list[int]]:
    src, dst, n, samples, swaps_per_edge, seed = args
    rng = np.random.default_rng(seed)
    src, dst = src.copy(), dst.copy()
    nodes = np.arange(n)
    rounds = max(1, int(np.ceil(2 * swaps_per_edge)))
    out = []
    for _ in range(samples):
        for _ in range(rounds):
            _swap_round(src, dst, n, rng)
        c = triad_census(ReleaseGraph.build(nodes, src, dst))
        out.append([c[k] for k in TRIAD_CODES])
    return out


def degree_preserving_null(
    g: ReleaseGraph,
    samples: int = 100,
    seed: int = 0,
    *,
    swaps_per_edge: float = 1.0,
    workers: int | None = None,
) -> NullCensus:
    """Triad-census mean/std over random graphs with every cell's in- and
    out-degree kept (directed edge swaps, no autapses, no multi-edges).

    Each worker runs its own Markov chain from ``g`` (seeds from ``seed``);
    between consecutive samples it attempts ``swaps_per_edge`` swaps per edge.
    ``workers`` defaults to the number of CPUs (at most ``samples``)."""
    if samples < 2:
        raise ValueError("need at least 2 samples for a standard deviation")
    workers = max(1, min(samples, workers or os.cpu_count() or 1))
    seeds = np.random.SeedSequence(seed).spawn(workers)
    share = [samples // workers + (k < samples % workers) for k in range(workers)]
    jobs = [(g.src, g.dst, g.n, share[k], swaps_per_edge, seeds[k]) for k in range(workers)]
    if workers == 1:
        rows = _null_worker(jobs[0])
    else:
        with ProcessPoolExecutor(workers) as pool:
            rows = [r for chunk in pool.map(_null_worker, jobs) for r in chunk]
    arr = np.array(rows, dtype=np.float64)
    return NullCensus(
        mean={c: float(v) for c, v in zip(TRIAD_CODES, arr.mean(axis=0), strict=True)},
        std={c: float(v) for c, v in zip(TRIAD_CODES, arr.std(axis=0, ddof=1), strict=True)},
        samples=samples,
        swaps_per_edge=swaps_per_edge,
    )
