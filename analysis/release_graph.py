"""A release held in memory: cells sorted by nucleus ID, edges sorted by (src, dst). Built from
Neo4j (graph.whole_release) or from a release snapshot (analysis.from_snapshot).

Only what every whole-release question needs is made up front: the node ids and the sorted edge
endpoint arrays. Everything derived (sorted keys, CSR pointers, the in-edge order, the key set
for membership tests, the reciprocal-pair count) is built on first use, once, and kept; edge
columns (synapses, size) can be read on first use too. Building from edges that are already
sorted (a snapshot's file order) is one linear check, not a sort.

Derived structures are cached inside the object, guarded by one lock per name, so concurrent
first uses build each once. A ReleaseGraph never changes after it is built (treat its arrays as
read-only).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
T = TypeVar("T")

#: Edges per chunk of the linear passes (bounds their temporaries).
CHUNK = 1 << 22
#: Bits of the KeySet pre-filter per key, at least (at most twice as many).
FILTER_BITS_PER_KEY = 32
#: At least this many look-ups at once are sorted first: binary searches in key order reuse the
#: cache, 4-7x faster than in random order on millions of keys (bench/bench_analytics.py).
SORTED_SEARCH_MIN = 1 << 12
_ONE = np.uint64(1)
_uids = itertools.count(1)


def strictly_sorted(src: IntArray, dst: IntArray, n: int) -> bool:
    """Whether the keys ``src * n + dst`` strictly increase (sorted, no duplicate edge) and no
    edge is an autapse; chunked, so the temporaries stay small."""
    prev = -1
    for lo in range(0, src.size, CHUNK):
        s, d = src[lo : lo + CHUNK], dst[lo : lo + CHUNK]
        k = s * n + d
        if k[0] <= prev or not np.all(k[1:] > k[:-1]) or np.any(s == d):
            return False
        prev = int(k[-1])
    return True


def stable_order(x: IntArray, bound: int) -> IntArray:
    """``np.argsort(x, kind="stable")`` for integers 0 <= x < bound, as LSD radix passes over
    16- and 8-bit digits (numpy's stable sort of 8- and 16-bit integers is a linear radix
    sort), instead of a comparison sort of int64 values: 2 passes for up to 2^24 cells."""
    if x.size < 1 << 16 or bound <= 1:
        return np.argsort(x, kind="stable")
    order: IntArray | None = None
    shift = 0
    while shift == 0 or (bound - 1) >> shift:
        width = 16 if (bound - 1) >> (shift + 8) else 8
        digit = ((x if order is None else x[order]) >> shift) & ((1 << width) - 1)
        step = np.argsort(digit.astype(np.uint16 if width == 16 else np.uint8), kind="stable")
        order = step if order is None else order[step]
        shift += width
    assert order is not None
    return order


class KeySet:
    """A static set of non-negative int64 keys: the sorted keys plus a coarse bitmap pre-filter
    (bit ``key >> shift``, 16-32 bits per key, 2-4 bytes), so most misses cost one random read of a small
    table instead of a binary search. When ``shift`` is 0 the bitmap is the set itself and no
    search is needed. Built in one linear pass from sorted keys."""

    def __init__(self, keys: IntArray, *, assume_sorted: bool = False) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        if not assume_sorted and keys.size > 1 and np.any(keys[1:] < keys[:-1]):
            keys = np.sort(keys)
        if keys.size and keys[0] < 0:
            raise ValueError("KeySet keys must be non-negative")
        self.keys = keys
        self.span = int(keys[-1]) + 1 if keys.size else 0
        target = max(1 << 10, keys.size * FILTER_BITS_PER_KEY)
        self.shift = max(0, (self.span // target).bit_length())
        self.exact = self.shift == 0
        self._words = np.zeros(((self.span >> self.shift) >> 6) + 1, dtype=np.uint64)
        for lo in range(0, keys.size, CHUNK):
            pos = keys[lo : lo + CHUNK] >> self.shift
            w = pos >> 6
            bit = _ONE << (pos & 63).astype(np.uint64)
            starts = np.flatnonzero(np.concatenate([[True], w[1:] != w[:-1]]))
            self._words[w[starts]] |= np.bitwise_or.reduceat(bit, starts)

    @property
    def nbytes(self) -> int:
        return int(self._words.nbytes)

    def _maybe(self, q: IntArray) -> npt.NDArray[np.bool_]:
        ok = (q >= 0) & (q < self.span)
        pos = np.where(ok, q, 0) >> self.shift
        bit = (self._words[pos >> 6] >> (pos & 63).astype(np.uint64)) & _ONE
        return ok & bit.astype(bool)

    def _search(self, flat: IntArray) -> tuple[IntArray, npt.NDArray[np.bool_]]:
        """(position in ``keys``, is a key) of each query (positions clipped into range)."""
        if flat.size >= SORTED_SEARCH_MIN and self.keys.size >= SORTED_SEARCH_MIN:
            order = np.argsort(flat)
            pos = np.empty(flat.size, dtype=np.int64)
            pos[order] = np.searchsorted(self.keys, flat[order])
        else:
            pos = np.searchsorted(self.keys, flat)
        pos[pos == self.keys.size] = 0
        return pos, self.keys[pos] == flat

    def find(self, q: IntArray) -> IntArray:
        """Position of each query in ``keys``, or -1 where absent."""
        q = np.asarray(q, dtype=np.int64)
        out = np.full(q.shape, -1, dtype=np.int64)
        cand = np.flatnonzero(self._maybe(q))
        if cand.size:
            pos, hit = self._search(q.ravel()[cand])
            out.ravel()[cand[hit]] = pos[hit]
        return out

    def contains(self, q: IntArray) -> npt.NDArray[np.bool_]:
        q = np.asarray(q, dtype=np.int64)
        maybe = self._maybe(q)
        if self.exact:
            return maybe
        cand = np.flatnonzero(maybe)
        if cand.size:
            maybe.ravel()[cand] = self._search(q.ravel()[cand])[1]
        return maybe


class ReleaseGraph:
    """One release in memory. Build it with :meth:`build` (or :meth:`from_ids`).

    ``src``/``dst`` index into ``nodes``; edges are unique, without autapses, sorted by
    (src, dst); ``size`` is float with NaN for null. Node attribute arrays are object arrays
    (None for null) or None when unknown. ``uid`` names this graph in the process (never
    reused), so results computed on it can be keyed by it.
    """

    def __init__(
        self,
        nodes: IntArray,
        src: IntArray,
        dst: IntArray,
        *,
        synapses: IntArray | None,
        size: FloatArray | None,
        load_columns: Callable[[], tuple[IntArray, FloatArray]] | None = None,
        cell_type: npt.NDArray[np.object_] | None = None,
        is_neuron: npt.NDArray[np.object_] | None = None,
        classification_system: npt.NDArray[np.object_] | None = None,
        attributes: dict[str, npt.NDArray[Any]] | None = None,
    ) -> None:
        self.nodes, self.src, self.dst = nodes, src, dst
        #: further node attributes by name (volume, position_x, root_id, ...), one entry a
        #: cell: numeric arrays (NaN for null in float ones) or object arrays (None for null)
        self.attributes: dict[str, npt.NDArray[Any]] = dict(attributes or {})
        self.cell_type, self.is_neuron = cell_type, is_neuron
        self.classification_system = classification_system
        self.uid = next(_uids)
        self._memo: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        if synapses is not None and size is not None:
            self._memo["columns"] = (synapses, size)
        elif load_columns is None:
            raise ValueError("give synapses and size, or load_columns")
        self._load_columns = load_columns

    def __repr__(self) -> str:
        return f"ReleaseGraph(n={self.n}, m={self.m}, uid={self.uid})"

    @property
    def n(self) -> int:
        return int(self.nodes.size)

    @property
    def m(self) -> int:
        return int(self.src.size)

    # ------------------------------------------------------------------ derived, on first use

    def cached(self, name: str, make: Callable[[], T]) -> T:
        """``make()`` once per ``name`` for this graph (concurrent callers wait for the first);
        a failure is not cached. For results that are pure functions of the graph."""
        try:
            return self._memo[name]  # type: ignore[no-any-return]
        except KeyError:
            pass
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            if name not in self._memo:
                self._memo[name] = make()
            return self._memo[name]  # type: ignore[no-any-return]

    def forget(self, *names: str) -> None:
        """Drop kept results (benchmarks time a computation cold; the graph stays valid)."""
        with self._guard:
            for name in names:
                self._memo.pop(name, None)

    def node_attribute(self, name: str) -> npt.NDArray[Any] | None:
        """The values of a node attribute, one a cell (None when the graph has none)."""
        if name == "nucleus_id":
            return self.nodes
        if name in ("cell_type", "is_neuron", "classification_system"):
            a: npt.NDArray[Any] | None = getattr(self, name)
            return a
        return self.attributes.get(name)

    def carried(self) -> frozenset[str]:
        """Names of the node attributes at least one cell has a value of."""
        return self.cached("carried", self._carried)

    def _carried(self) -> frozenset[str]:
        names = ["nucleus_id", "cell_type", "is_neuron", "classification_system", *self.attributes]
        out = set()
        for name in names:
            a = self.node_attribute(name)
            if a is not None and bool(present(a).any()):
                out.add(name)
        return frozenset(out)

    def peek(self, name: str) -> Any | None:
        """A cached value if it was made, else None (never builds)."""
        return self._memo.get(name)

    @property
    def synapses(self) -> IntArray:
        return self._columns()[0]

    @property
    def size(self) -> FloatArray:
        return self._columns()[1]

    def _columns(self) -> tuple[IntArray, FloatArray]:
        cols: tuple[IntArray, FloatArray] | None = self._memo.get("columns")
        if cols is not None:
            return cols
        assert self._load_columns is not None
        return self.cached("columns", self._load_columns)

    @property
    def columns_loaded(self) -> bool:
        """Whether synapses and size are in memory (else the first use reads them)."""
        return "columns" in self._memo

    @property
    def keys(self) -> IntArray:
        """``src * n + dst``, sorted (the edge order)."""
        return self.cached("keys", lambda: self.src * self.n + self.dst)

    @property
    def out_ptr(self) -> IntArray:
        """CSR pointers: the out-edges of cell i are edges out_ptr[i]:out_ptr[i + 1]."""
        return self.cached("out_ptr", lambda: _ptr(self.src, self.n))

    @property
    def in_ptr(self) -> IntArray:
        """The in-edges of cell i are in_order[in_ptr[i]:in_ptr[i + 1]]."""
        return self.cached("in_ptr", lambda: _ptr(self.dst, self.n))

    @property
    def in_order(self) -> IntArray:
        """Edge ids sorted by (dst, src): the stable order by dst (edges are sorted by src)."""
        return self.cached("in_order", lambda: stable_order(self.dst, self.n))

    @property
    def edge_keys(self) -> KeySet:
        """The edges as a KeySet of ``src * n + dst``."""
        return self.cached("edge_keys", lambda: KeySet(self.keys, assume_sorted=True))

    # ------------------------------------------------------------------ construction

    @classmethod
    def build(
        cls,
        nodes: npt.ArrayLike,
        src_idx: npt.ArrayLike,
        dst_idx: npt.ArrayLike,
        *,
        synapses: npt.ArrayLike | None = None,
        size: npt.ArrayLike | None = None,
        load_columns: Callable[[], tuple[IntArray, FloatArray]] | None = None,
        cell_type: npt.ArrayLike | None = None,
        is_neuron: npt.ArrayLike | None = None,
        classification_system: npt.ArrayLike | None = None,
        attributes: Mapping[str, npt.ArrayLike] | None = None,
    ) -> ReleaseGraph:
        """From node ids (sorted, unique) and edge endpoint indices into them.
        Autapses are dropped (no motif or triad uses them); duplicate edges raise.

        Edges already sorted by (src, dst), unique and autapse-free are taken as they are
        (no copy, no sort). ``load_columns`` (instead of synapses/size) reads the edge columns,
        in that edge order, on first use; it is only accepted for such edges."""
        ids = np.asarray(nodes, dtype=np.int64)
        if ids.size > 1 and not np.all(ids[1:] > ids[:-1]):
            raise ValueError("nodes must be sorted and unique")
        n = ids.size
        s = np.asarray(src_idx, dtype=np.int64)
        d = np.asarray(dst_idx, dtype=np.int64)
        if (
            s.shape != d.shape
            or s.ndim != 1
            or (s.size and (min(s.min(), d.min()) < 0 or max(s.max(), d.max()) >= n))
        ):
            raise ValueError("edge endpoints must be indices into nodes")

        def attr(a: npt.ArrayLike | None) -> npt.NDArray[np.object_] | None:
            if a is None:
                return None
            out = np.asarray(a, dtype=object)
            if out.shape != (n,):
                raise ValueError("node attribute arrays must have one entry per node")
            return out

        ct, neuron, cs = attr(cell_type), attr(is_neuron), attr(classification_system)
        extra = {k: _attribute_array(v, n) for k, v in (attributes or {}).items()}
        if strictly_sorted(s, d, n):
            lazy = load_columns is not None and synapses is None and size is None
            syn, sz = (None, None) if lazy else _edge_columns(s.size, synapses, size, load_columns)
            return cls(ids, s, d, synapses=syn, size=sz, load_columns=load_columns if lazy else None,
                       cell_type=ct, is_neuron=neuron, classification_system=cs,
                       attributes=extra)  # fmt: skip
        syn, sz = _edge_columns(s.size, synapses, size, load_columns)
        keep = s != d
        keys = s[keep] * n + d[keep]
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        if keys.size > 1 and np.any(keys[1:] == keys[:-1]):
            raise ValueError("duplicate edges; merge (pre, post) pairs first")
        g = cls(
            ids, s[keep][order], d[keep][order], synapses=syn[keep][order],
            size=sz[keep][order], cell_type=ct, is_neuron=neuron, classification_system=cs,
            attributes=extra,
        )  # fmt: skip
        g._memo["keys"] = keys
        return g

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
        if attrs.get("attributes"):
            attrs["attributes"] = {k: np.asarray(v)[order] for k, v in attrs["attributes"].items()}
        idx = []
        for ends in (pre, post):
            e = np.asarray(ends, dtype=np.int64)
            i = np.searchsorted(ids, e)
            i[i == ids.size] = 0
            if e.size and not np.all(ids[i] == e):
                raise ValueError("an edge end is not among the nodes")
            idx.append(i)
        return cls.build(ids, idx[0], idx[1], **attrs)

    def subgraph(self, node_mask: npt.NDArray[np.bool_], *, min_synapses: int = 1) -> ReleaseGraph:
        """The subgraph induced by the cells where ``node_mask`` is True, keeping only
        edges with at least ``min_synapses`` synapses."""
        new_index = np.cumsum(node_mask) - 1
        keep = node_mask[self.src] & node_mask[self.dst]
        if min_synapses > 1:
            keep &= self.synapses >= min_synapses

        def sub(a: npt.NDArray[np.object_] | None) -> npt.NDArray[np.object_] | None:
            return None if a is None else a[node_mask]

        def columns() -> tuple[IntArray, FloatArray]:
            return self.synapses[keep], self.size[keep]

        lazy = not self.columns_loaded  # the edge columns of the subgraph, when first used
        syn, sz = (None, None) if lazy else columns()
        return ReleaseGraph.build(
            self.nodes[node_mask], new_index[self.src[keep]], new_index[self.dst[keep]],
            synapses=syn, size=sz, load_columns=columns if lazy else None,
            cell_type=sub(self.cell_type), is_neuron=sub(self.is_neuron),
            classification_system=sub(self.classification_system),
            attributes={k: v[node_mask] for k, v in self.attributes.items()},
        )  # fmt: skip


def present(a: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Which entries of an attribute array have a value (not None, not NaN)."""
    if a.dtype.kind == "f":
        return ~np.isnan(a)
    if a.dtype.kind == "O":
        return np.fromiter((x is not None and x == x for x in a), dtype=bool, count=a.size)
    return np.ones(a.size, dtype=bool)


def _attribute_array(values: npt.ArrayLike, n: int) -> npt.NDArray[Any]:
    a = np.asarray(values)
    if a.dtype.kind not in "biuf":
        a = np.asarray(values, dtype=object)
    if a.shape != (n,):
        raise ValueError("node attribute arrays must have one entry per node")
    return a


def _ptr(x: IntArray, n: int) -> IntArray:
    out = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(x, minlength=n), out=out[1:])
    return out


def _edge_columns(
    m: int,
    synapses: npt.ArrayLike | None,
    size: npt.ArrayLike | None,
    load: Callable[[], tuple[IntArray, FloatArray]] | None,
) -> tuple[IntArray, FloatArray]:
    if load is not None and synapses is None and size is None:
        return load()
    syn = np.ones(m, np.int64) if synapses is None else np.asarray(synapses, np.int64)
    sz = np.full(m, np.nan) if size is None else np.asarray(size, np.float64)
    if syn.shape != (m,) or sz.shape != (m,):
        raise ValueError("synapses and size need one entry per edge")
    return syn, sz
