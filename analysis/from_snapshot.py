"""A :class:`ReleaseGraph` straight from a release snapshot's Parquet files (no database).

Edges in a snapshot are sorted by (pre, post) nucleus ID and cells by nucleus ID, so the CSR
order the graph needs is the file order: no sort. Nucleus IDs become cell indices through a
dense lookup table when they are small (CAVE nucleus IDs have 6-7 digits), else by binary search.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from analysis.release_graph import IntArray, ReleaseGraph
from snapshot.layout import CELLS, EDGES, Snapshot

#: largest nucleus ID for which a dense id -> index table is used (int32, 4 bytes an entry)
DENSE_MAX_ID = 1 << 27


def index_of(nodes: IntArray, ids: IntArray) -> IntArray:
    """Positions of ``ids`` (all present) in the sorted unique ``nodes``."""
    if nodes.size and int(nodes[0]) >= 0 and int(nodes[-1]) < DENSE_MAX_ID:
        table = np.full(int(nodes[-1]) + 1, -1, dtype=np.int32)
        table[nodes] = np.arange(nodes.size, dtype=np.int32)
        out = table[ids]
    else:
        out = np.searchsorted(nodes, ids).astype(np.int32)
    if out.size and (int(out.min()) < 0 or not np.array_equal(nodes[out], ids)):
        raise ValueError("an edge end is not among the cells of the snapshot")
    return out.astype(np.int64)


def release_graph_from_snapshot(snap: Snapshot) -> ReleaseGraph:
    cells = pq.read_table(
        snap.file(CELLS), columns=["nucleus_id", "cell_type", "is_neuron", "classification_system"]
    )
    nodes = cells["nucleus_id"].to_numpy()
    edges = pq.read_table(snap.file(EDGES), columns=["pre", "post", "synapses", "size"])
    src = index_of(nodes, edges["pre"].to_numpy())
    dst = index_of(nodes, edges["post"].to_numpy())
    size = edges["size"].to_numpy(zero_copy_only=False).astype(np.float64)
    return ReleaseGraph.build(
        nodes, src, dst, synapses=edges["synapses"].to_numpy(), size=size,
        cell_type=cells["cell_type"].to_numpy(zero_copy_only=False),
        is_neuron=cells["is_neuron"].to_numpy(zero_copy_only=False),
        classification_system=cells["classification_system"].to_numpy(zero_copy_only=False),
    )  # fmt: skip
