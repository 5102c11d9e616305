"""Record types that cross from the loader to the Neo4j writer.

Everything here is plain numpy, immutable (frozen dataclasses) and fully validated:
the writer never has to check anything again. Root and nucleus IDs are int64 end to end;
the dicts produced for Neo4j ``UNWIND`` hold Python ints (exact at 64 bits).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Canonical (CAVE) column names per table.
NUCLEI = "nuclei"
SYNAPSES = "synapses"
NEURONS = "neurons"
CELL_TYPES = "cell_types"
TABLES = (NUCLEI, SYNAPSES, NEURONS, CELL_TYPES)

COUNT_KEYS = (
    "cells",
    "edges",
    "synapses_total",
    "synapses_used",
    "dropped_autapse",
    "dropped_root0",
    "dropped_multi_nucleus_root",
    "dropped_partner_without_nucleus",
    "neuron_rows_unmatched",
    "cell_type_rows_unmatched",
)


@dataclass(frozen=True)
class Cells:
    """One row per nucleus, sorted by ``nucleus_id``. Positions in nm, volume in um^3 (NaN = none)."""

    nucleus_id: np.ndarray  # int64
    root_id: np.ndarray  # int64, 0 = outside the segmentation
    x: np.ndarray  # float64 nm
    y: np.ndarray
    z: np.ndarray
    volume: np.ndarray  # float64, NaN when unknown

    def __len__(self) -> int:
        return int(self.nucleus_id.shape[0])


@dataclass(frozen=True)
class Annotations:
    """Per-cell labels aligned with :class:`Cells` (object arrays; ``None`` = no row for that cell).

    A whole field is ``None`` when its table was not given. ``is_neuron`` comes from the neuron
    table; ``cell_type`` and ``classification_system`` from the cell-type table.
    """

    is_neuron: np.ndarray | None = None  # object: True / False / None
    cell_type: np.ndarray | None = None  # object: str / None
    classification_system: np.ndarray | None = None  # object: str / None


@dataclass(frozen=True)
class Edges:
    """Directed cell-to-cell edges, columnar, sorted by (pre, post).

    Per-synapse values are CSR: the synapses of edge ``i`` are
    ``synapse_ids[offsets[i]:offsets[i + 1]]`` (ascending) and ``sizes[...]`` in the same order.
    ``size`` and ``sizes`` are ``None`` when the synapse table had no size column.
    """

    pre: np.ndarray  # int64 nucleus id
    post: np.ndarray  # int64 nucleus id
    synapses: np.ndarray  # int64 count
    size: np.ndarray | None  # int64 sum of sizes
    offsets: np.ndarray  # int64, len(pre) + 1
    synapse_ids: np.ndarray  # int64, flat
    sizes: np.ndarray | None  # int64, flat

    def __len__(self) -> int:
        return int(self.pre.shape[0])

    def iter_batches(self, batch_size: int = 10_000) -> Iterator[list[dict[str, Any]]]:
        """Yield lists of at most ``batch_size`` dicts ready for ``UNWIND $rows``:
        ``{pre, post, synapses, size, sizes: list[int], synapse_ids: list[int]}``
        (``size`` None and ``sizes`` ``[]`` when sizes are unknown)."""
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            lo, hi = int(self.offsets[start]), int(self.offsets[stop])
            ids = self.synapse_ids[lo:hi].tolist()
            sizes = self.sizes[lo:hi].tolist() if self.sizes is not None else None
            sums = self.size[start:stop].tolist() if self.size is not None else None
            rel = (self.offsets[start : stop + 1] - lo).tolist()
            rows = []
            for k, (pre, post, n) in enumerate(
                zip(
                    self.pre[start:stop].tolist(),
                    self.post[start:stop].tolist(),
                    self.synapses[start:stop].tolist(),
                    strict=True,
                )
            ):
                a, b = rel[k], rel[k + 1]
                rows.append(
                    {
                        "pre": pre,
                        "post": post,
                        "synapses": n,
                        "size": sums[k] if sums is not None else None,
                        "sizes": sizes[a:b] if sizes is not None else [],
                        "synapse_ids": ids[a:b],
                    }
                )
            yield rows


@dataclass(frozen=True)
class ReleaseData:
    """Everything one data release contributes, validated and aggregated (see loaders.aggregate)."""

    cells: Cells
    annotations: Annotations
    edges: Edges
    out_synapses: np.ndarray  # int64, aligned with cells
    in_synapses: np.ndarray  # int64, aligned with cells
    counts: dict[str, int]
    multi_nucleus_roots: dict[int, list[int]] = field(default_factory=dict)

    def iter_cell_batches(self, batch_size: int = 10_000) -> Iterator[list[dict[str, Any]]]:
        """Yield lists of cell dicts for ``UNWIND``: nucleus_id, root_id, x, y, z, volume (None if
        unknown), out_synapses, in_synapses, and is_neuron / cell_type / classification_system when
        the corresponding table was loaded."""
        c, a = self.cells, self.annotations
        labels = {
            k: v
            for k, v in (
                ("is_neuron", a.is_neuron),
                ("cell_type", a.cell_type),
                ("classification_system", a.classification_system),
            )
            if v is not None
        }
        for start in range(0, len(c), batch_size):
            sl = slice(start, min(start + batch_size, len(c)))
            cols: dict[str, list[Any]] = {
                "nucleus_id": c.nucleus_id[sl].tolist(),
                "root_id": c.root_id[sl].tolist(),
                "x": c.x[sl].tolist(),
                "y": c.y[sl].tolist(),
                "z": c.z[sl].tolist(),
                "volume": [None if math.isnan(v) else v for v in c.volume[sl].tolist()],
                "out_synapses": self.out_synapses[sl].tolist(),
                "in_synapses": self.in_synapses[sl].tolist(),
            }
            cols.update({k: v[sl].tolist() for k, v in labels.items()})
            keys = list(cols)
            yield [dict(zip(keys, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]
