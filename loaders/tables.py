"""Record types that cross from the loader to the Neo4j writer.

Everything here is plain numpy, immutable (frozen dataclasses) and fully validated:
the writer never has to check anything again. Root and nucleus IDs are int64 end to end;
the dicts produced for Neo4j ``UNWIND`` hold Python ints (exact at 64 bits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from core.model import RELEASE_COUNT_KEYS

#: Canonical (CAVE) column names per table.
NUCLEI = "nuclei"
SYNAPSES = "synapses"
NEURONS = "neurons"
CELL_TYPES = "cell_types"

#: the counts the loader reports: the Release node's (core.model) plus its own working counts
COUNT_KEYS = (*RELEASE_COUNT_KEYS, "synapses_used")


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

    @staticmethod
    def concat(chunks: list[Edges]) -> Edges:
        """Chunks in (pre, post) order as one table (CSR offsets rebased)."""
        has_size = chunks[0].size is not None
        offsets = [np.zeros(1, np.int64)]
        base = 0
        for c in chunks:
            offsets.append(c.offsets[1:] + base)
            base += int(c.offsets[-1])
        return Edges(
            pre=np.concatenate([c.pre for c in chunks]),
            post=np.concatenate([c.post for c in chunks]),
            synapses=np.concatenate([c.synapses for c in chunks]),
            size=np.concatenate([c.size for c in chunks if c.size is not None])
            if has_size
            else None,
            offsets=np.concatenate(offsets),
            synapse_ids=np.concatenate([c.synapse_ids for c in chunks]),
            sizes=np.concatenate([c.sizes for c in chunks if c.sizes is not None])
            if has_size
            else None,
        )


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
    #: the synapse store (snapshot/layout.py), sorted by (post_pt_root_id, id), and its
    #: manifest entry (position type, extra columns, outcome counts); None: not built
    store: pa.Table | None = None
    store_meta: dict[str, Any] | None = None
