"""Reads from a snapshot that serve single answers: the synapses of given edges.

``synapses.parquet`` is sorted by (pre, post, id) in row groups of 32k rows whose min/max
statistics of ``pre`` locate a cell's rows; decoded row groups are kept in a small LRU cache, so
the synapses of one page of partners cost a few row-group reads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow.parquet as pq

from snapshot.layout import SYNAPSES, Snapshot

#: decoded row groups kept per process (32k rows x 4 columns x 8 bytes = 1 MiB each)
CACHED_ROW_GROUPS = 256

Pair = tuple[int, int]
EdgeSynapses = tuple[list[int], list[int] | None]  # ids ascending, sizes in the same order


@dataclass
class _Reader:
    path: str
    lo: np.ndarray  # min pre of each row group
    hi: np.ndarray  # max pre
    groups: OrderedDict[int, tuple[np.ndarray, ...]] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, snap: Snapshot) -> _Reader:
        path = str(snap.file(SYNAPSES))
        meta = pq.ParquetFile(path).metadata
        col = meta.schema.to_arrow_schema().get_field_index("pre")
        lo, hi = [], []
        for i in range(meta.num_row_groups):
            st = meta.row_group(i).column(col).statistics
            lo.append(st.min)
            hi.append(st.max)
        return cls(path, np.asarray(lo, np.int64), np.asarray(hi, np.int64))

    def group(self, i: int) -> tuple[np.ndarray, ...]:
        with self.lock:
            hit = self.groups.get(i)
            if hit is not None:
                self.groups.move_to_end(i)
                return hit
        t = pq.ParquetFile(self.path).read_row_group(i)
        size = t["size"]
        arrays = (t["pre"].to_numpy(), t["post"].to_numpy(), t["id"].to_numpy(),
                  None if size.null_count == len(size) else size.to_numpy())  # fmt: skip
        with self.lock:
            self.groups[i] = arrays  # type: ignore[assignment]
            while len(self.groups) > CACHED_ROW_GROUPS:
                self.groups.popitem(last=False)
        return arrays  # type: ignore[return-value]

    def synapses(self, pairs: Iterable[Pair]) -> dict[Pair, EdgeSynapses]:
        out: dict[Pair, tuple[list[int], list[int] | None]] = {}
        for pre, post in pairs:
            ids: list[int] = []
            sizes: list[int] | None = []
            first = int(np.searchsorted(self.hi, pre, "left"))
            last = int(np.searchsorted(self.lo, pre, "right"))
            for g in range(first, last):
                p, q, i, s = self.group(g)
                a, b = np.searchsorted(p, pre, "left"), np.searchsorted(p, pre, "right")
                lo = a + np.searchsorted(q[a:b], post, "left")
                hi = a + np.searchsorted(q[a:b], post, "right")
                ids.extend(i[lo:hi].tolist())
                if s is None:
                    sizes = None
                elif sizes is not None:
                    sizes.extend(s[lo:hi].tolist())
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
