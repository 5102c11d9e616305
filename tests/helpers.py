"""Helpers shared by the test modules (one copy each)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from graph import releases
from graph.driver import Database
from loaders.tables import Edges, ReleaseData


def drop_releases(db: Database, *versions: int) -> None:
    """Drop each of these releases that is loaded (a module's own versions)."""
    for v in versions:
        if db.call(releases.get_release, v) is not None:
            db.call(releases.drop_release, v)


def edge_rows(edges: Edges, batch_size: int = 10_000) -> Iterator[list[dict[str, Any]]]:
    """Edges as row dicts {pre, post, synapses, size, sizes, synapse_ids}, in batches."""
    for start in range(0, len(edges), batch_size):
        stop = min(start + batch_size, len(edges))
        rows = []
        for i in range(start, stop):
            lo, hi = int(edges.offsets[i]), int(edges.offsets[i + 1])
            rows.append(
                {
                    "pre": int(edges.pre[i]),
                    "post": int(edges.post[i]),
                    "synapses": int(edges.synapses[i]),
                    "size": None if edges.size is None else int(edges.size[i]),
                    "sizes": [] if edges.sizes is None else edges.sizes[lo:hi].tolist(),
                    "synapse_ids": edges.synapse_ids[lo:hi].tolist(),
                }
            )
        yield rows


def cell_rows(data: ReleaseData, batch_size: int = 10_000) -> Iterator[list[dict[str, Any]]]:
    """Cells as row dicts; annotation keys only for the tables that were loaded."""
    c, a = data.cells, data.annotations
    labels = {k: v for k, v in (("is_neuron", a.is_neuron), ("cell_type", a.cell_type),
              ("classification_system", a.classification_system)) if v is not None}  # fmt: skip
    for start in range(0, len(c), batch_size):
        rows = []
        for i in range(start, min(start + batch_size, len(c))):
            vol = float(c.volume[i])
            row: dict[str, Any] = {
                "nucleus_id": int(c.nucleus_id[i]), "root_id": int(c.root_id[i]),
                "x": float(c.x[i]), "y": float(c.y[i]), "z": float(c.z[i]),
                "volume": None if math.isnan(vol) else vol,
                "out_synapses": int(data.out_synapses[i]), "in_synapses": int(data.in_synapses[i]),
            }  # fmt: skip
            row.update({k: v[i] for k, v in labels.items()})
            rows.append(row)
        yield rows
