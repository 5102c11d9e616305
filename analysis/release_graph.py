"""A release held in memory: cells sorted by nucleus ID, edges sorted by (src, dst), CSR out/in
adjacency. Built from Neo4j (graph.whole_release) or from a release snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


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

    def subgraph(self, node_mask: npt.NDArray[np.bool_], *, min_synapses: int = 1) -> ReleaseGraph:
        """The subgraph induced by the cells where ``node_mask`` is True, keeping only
        edges with at least ``min_synapses`` synapses."""
        new_index = np.cumsum(node_mask) - 1
        keep = node_mask[self.src] & node_mask[self.dst]
        if min_synapses > 1:
            keep &= self.synapses >= min_synapses

        def sub(a: npt.NDArray[np.object_] | None) -> npt.NDArray[np.object_] | None:
            return None if a is None else a[node_mask]

        return ReleaseGraph.build(
            self.nodes[node_mask], new_index[self.src[keep]], new_index[self.dst[keep]],
            synapses=self.synapses[keep], size=self.size[keep], cell_type=sub(self.cell_type),
            is_neuron=sub(self.is_neuron),
            classification_system=sub(self.classification_system),
        )  # fmt: skip
