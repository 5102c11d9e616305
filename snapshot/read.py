"""Reads from a snapshot that serve single answers: the synapses of given edges.

The synapse store (``synapses.parquet``, snapshot/layout.py) is sorted by
``(post_pt_root_id, id)`` in row groups of 64k rows. An edge (pre nucleus, post nucleus)'s
synapses are the store rows with outcome ``used`` and those two nuclei; they all lie on the post
nucleus's root (from ``cells.parquet``), which the row groups' min/max statistics of
``post_pt_root_id`` locate (one or two row groups). The used rows of decoded row groups are kept
in a small LRU cache, so the synapses of one page of partners cost a few row-group reads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from snapshot.layout import CELLS, SYNAPSES, Snapshot, store_meta

#: decoded row groups kept per process (the used rows of 64k: at most 2.5 MiB each)
CACHED_ROW_GROUPS = 128
_COLUMNS = ["post_pt_root_id", "pre_nucleus_id", "post_nucleus_id", "id", "size", "outcome"]

Pair = tuple[int, int]
EdgeSynapses = tuple[list[int], list[int] | None]  # ids ascending, sizes in the same order
_Group = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]


@dataclass
class _Reader:
    path: str
    lo: np.ndarray  # min post_pt_root_id of each row group
    hi: np.ndarray  # max
    nucleus: np.ndarray  # cells' nucleus IDs (sorted) ...
    root: np.ndarray  # ... and their roots
    has_size: bool
    groups: OrderedDict[int, _Group] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, snap: Snapshot) -> _Reader:
        store_meta(snap)  # StoreNotReady while a load is still writing it
        path = str(snap.file(SYNAPSES))
        meta = pq.ParquetFile(path).metadata
        col = meta.schema.to_arrow_schema().get_field_index("post_pt_root_id")
        lo, hi = [], []
        for i in range(meta.num_row_groups):
            st = meta.row_group(i).column(col).statistics
            lo.append(st.min)
            hi.append(st.max)
        cells = pq.read_table(snap.file(CELLS), columns=["nucleus_id", "root_id"])
        return cls(path, np.asarray(lo, np.int64), np.asarray(hi, np.int64),
                   cells["nucleus_id"].to_numpy(), cells["root_id"].to_numpy(),
                   snap.has_size)  # fmt: skip

    def group(self, i: int) -> _Group:
        with self.lock:
            hit = self.groups.get(i)
            if hit is not None:
                self.groups.move_to_end(i)
                return hit
        t = pq.ParquetFile(self.path).read_row_group(i, columns=_COLUMNS)
        t = t.filter(pc.equal(t["outcome"].cast("string"), "used"))
        size = t["size"].to_numpy() if self.has_size else None
        arrays: _Group = (t["post_pt_root_id"].to_numpy(), t["pre_nucleus_id"].to_numpy(),
                          t["post_nucleus_id"].to_numpy(), t["id"].to_numpy(), size)  # fmt: skip
        with self.lock:
            self.groups[i] = arrays
            while len(self.groups) > CACHED_ROW_GROUPS:
                self.groups.popitem(last=False)
        return arrays

    def post_root(self, nucleus: int) -> int | None:
        i = int(np.searchsorted(self.nucleus, nucleus))
        if i < len(self.nucleus) and self.nucleus[i] == nucleus:
            return int(self.root[i])
        return None

    def synapses(self, pairs: Iterable[Pair]) -> dict[Pair, EdgeSynapses]:
        out: dict[Pair, EdgeSynapses] = {}
        for pre, post in pairs:
            ids: list[int] = []
            sizes: list[int] | None = [] if self.has_size else None
            found = self.post_root(post)
            root = -1 if found is None else found  # -1: no row group holds it
            first = int(np.searchsorted(self.hi, root, "left"))
            last = int(np.searchsorted(self.lo, root, "right"))
            for g in range(first, last):
                r, p, q, i, s = self.group(g)
                a, b = np.searchsorted(r, root, "left"), np.searchsorted(r, root, "right")
                hit = a + np.flatnonzero((p[a:b] == pre) & (q[a:b] == post))
                ids.extend(i[hit].tolist())
                if sizes is not None and s is not None:
                    sizes.extend(s[hit].tolist())
            out[(pre, post)] = (ids, sizes)
        return out


_readers: dict[tuple[str, str], _Reader] = {}
_lock = threading.Lock()


def edge_synapses(snap: Snapshot, pairs: Iterable[Pair]) -> dict[Pair, EdgeSynapses]:
    """Synapse IDs (ascending) and sizes (None without sizes) of each (pre, post) edge."""
    key = (str(snap.path), snap.digest)
    with _lock:
        reader = _readers.get(key)
        if reader is None:
            reader = _readers[key] = _Reader.open(snap)
    return reader.synapses(pairs)
