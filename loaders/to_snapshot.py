"""An aggregated release as a snapshot (snapshot/layout.py): cells, edges, the synapses on them.

Edges are written one aggregation partition at a time, so memory stays bounded while a
v117-sized release (about 98M edges, 164M used synapses) streams to disk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from loaders.aggregate import AggregatedRelease, prefetch
from loaders.tables import Cells, Edges, ReleaseData
from snapshot.layout import CELL_SCHEMA, Snapshot
from snapshot.write import SnapshotWriter

ANNOTATIONS = ("is_neuron", "cell_type", "classification_system")


def cells_table(
    cells: Cells, annotations: Any, out_synapses: np.ndarray, in_synapses: np.ndarray
) -> pa.Table:
    n = len(cells)
    cols: dict[str, Any] = {
        "nucleus_id": cells.nucleus_id,
        "x": cells.x,
        "y": cells.y,
        "z": cells.z,
        "volume": pa.array(cells.volume, mask=np.isnan(cells.volume)),
        "root_id": cells.root_id,
        "out_synapses": out_synapses,
        "in_synapses": in_synapses,
    }
    for name in ANNOTATIONS:
        values = getattr(annotations, name)
        typ = CELL_SCHEMA.field(name).type
        cols[name] = pa.nulls(n, typ) if values is None else pa.array(list(values), type=typ)
    return pa.table({f.name: cols[f.name] for f in CELL_SCHEMA})


def edge_tables(edges: Edges) -> tuple[pa.Table, pa.Table]:
    """(edges, synapses) tables of one chunk."""
    size = edges.size if edges.size is not None else pa.nulls(len(edges), pa.int64())
    e = pa.table({"pre": edges.pre, "post": edges.post, "synapses": edges.synapses, "size": size})
    counts = edges.synapses
    s = pa.table(
        {
            "pre": np.repeat(edges.pre, counts),
            "post": np.repeat(edges.post, counts),
            "id": edges.synapse_ids,
            "size": edges.sizes
            if edges.sizes is not None
            else pa.nulls(len(edges.synapse_ids), pa.int64()),
        }
    )
    return e, s


def write_release_snapshot(
    release: AggregatedRelease | ReleaseData,
    version: int,
    *,
    timestamp: datetime | None,
    sources: Sequence[Mapping[str, Any]],
    voxel_size: Sequence[float],
    root: Path | None = None,
    on_edges: Callable[[int], object] | None = None,  # called with synapses written
) -> Snapshot:
    """Write ``release`` as the snapshot of ``version`` (atomically) and return it."""
    if isinstance(release, ReleaseData):
        chunks: Any = [release.edges]
        has_size = release.edges.size is not None
    else:
        # the next partition is grouped in a thread while this one is written (two cores)
        chunks = prefetch(release.iter_edges())
        has_size = release.has_size
    with SnapshotWriter(version, has_size=has_size, root=root) as w:
        w.write_cells(
            cells_table(
                release.cells, release.annotations, release.out_synapses, release.in_synapses
            )
        )
        for chunk in chunks:
            w.write_edges(*edge_tables(chunk))
            if on_edges is not None:
                on_edges(int(chunk.offsets[-1]))  # synapses of the chunk
        counts = dict(release.counts)
        counts["edges"] = w.rows["edges.parquet"]
        counts["synapses"] = counts.pop("synapses_used", counts.get("synapses", 0))
        counts["multi_nucleus_roots"] = len(release.multi_nucleus_roots)
        annotations = [a for a in ANNOTATIONS if getattr(release.annotations, a) is not None]
        return w.commit(
            counts=counts,
            sources=sources,
            timestamp=timestamp,
            extra={
                "voxel_size_nm": list(voxel_size),
                "annotations": annotations,
                "multi_nucleus_roots": {str(k): v for k, v in release.multi_nucleus_roots.items()},
            },
        )
