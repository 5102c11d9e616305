"""An aggregated release as a snapshot (snapshot/layout.py): cells and edges, then (committed
on its own, after the release is served) the synapse store.

Edges are written one aggregation partition at a time, the synapse store one post-root
partition at a time (loaders.store), so memory stays bounded while a v117-sized release (about
98M edges, 337M synapse rows) streams to disk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from core.model import DEFAULT_DATASET, check_dataset
from loaders.aggregate import AggregatedRelease, prefetch
from loaders.tables import Cells, Edges, ReleaseData
from snapshot.layout import CELL_SCHEMA, Snapshot
from snapshot.write import SnapshotWriter, store_lock, write_store

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


def edge_table(edges: Edges) -> pa.Table:
    """The edges table of one chunk."""
    size = edges.size if edges.size is not None else pa.nulls(len(edges), pa.int64())
    return pa.table({"pre": edges.pre, "post": edges.post, "synapses": edges.synapses,
                     "size": size})  # fmt: skip


def write_release_snapshot(
    release: AggregatedRelease | ReleaseData,
    version: int,
    *,
    timestamp: datetime | None,
    sources: Sequence[Mapping[str, Any]],
    voxel_size: Sequence[float],
    root: Path | None = None,
    on_edges: Callable[[int], object] | None = None,  # called with synapses written
    seconds: dict[str, float] | None = None,  # edges
    slot: int = 0,  # v{version} or, beside a served one (a replace), v{version}_b
    dataset: str = DEFAULT_DATASET,
) -> Snapshot:
    """Write ``release`` (of ``dataset``) as the snapshot of ``version`` (cells, edges and the
    manifest, atomically) and return it; its synapse store follows with
    :func:`write_release_store`."""
    if isinstance(release, ReleaseData):
        chunks: Any = [release.edges]
        has_size = release.edges.size is not None
        if release.store is None or release.store_meta is None:
            raise ValueError("a ReleaseData needs its synapse store (build_release makes it)")
    else:
        # the next partition is grouped in a thread while this one is written (two cores)
        chunks = prefetch(release.iter_edges())
        has_size = release.has_size
    t0 = time.perf_counter()
    with SnapshotWriter(version, has_size=has_size, root=root, slot=slot) as w:
        w.write_cells(
            cells_table(
                release.cells, release.annotations, release.out_synapses, release.in_synapses
            )
        )
        for chunk in chunks:
            w.write_edges(edge_table(chunk))
            if on_edges is not None:
                on_edges(int(chunk.offsets[-1]))  # synapses of the chunk
        if seconds is not None:
            seconds["edges"] = time.perf_counter() - t0
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
                "dataset": check_dataset(dataset),
                "voxel_size_nm": list(voxel_size),
                "annotations": annotations,
                "multi_nucleus_roots": {str(k): v for k, v in release.multi_nucleus_roots.items()},
            },
        )


def write_release_store(
    release: AggregatedRelease | ReleaseData,
    snap: Snapshot,
    *,
    on_store: Callable[[int], object] | None = None,  # called with store rows written
) -> None:
    """Commit the synapse store of ``release`` into its snapshot ``snap`` (snapshot.write
    .write_store, under the store lock), then free the release's spilled store rows."""
    with store_lock(snap.path):  # write_store leaves a store another writer finished alone
        if isinstance(release, ReleaseData):
            assert release.store is not None and release.store_meta is not None  # checked before
            write_store(snap, [release.store], release.store.schema, release.store_meta,
                        on_rows=on_store)  # fmt: skip
        else:
            try:
                write_store(snap, prefetch(release.iter_store()),
                            release.snapshot_store_schema, release.store_meta,
                            on_rows=on_store)  # fmt: skip
            finally:
                release.store.cleanup()
