"""GraphQL `typeConnectivity`: the release's cell-type x cell-type wiring, computed from its
snapshot with DuckDB (snapshot/wiring.py), without Neo4j."""

from __future__ import annotations

import asyncio
from enum import Enum
from typing import Any

import strawberry

from api.types import CtxInfo
from snapshot.wiring import type_connectivity


@strawberry.enum(description="Which cell property names a cell's type.")
class TypeClassification(Enum):
    CELL_TYPE = "cell_type"
    CLASSIFICATION_SYSTEM = "classification_system"
    IS_NEURON = "is_neuron"


@strawberry.type(description="Wiring between two cell types of a release (types null for cells "
                             "without one).")  # fmt: skip
class TypeConnection:
    pre_type: str | None
    post_type: str | None
    edges: int = strawberry.field(description="Connected ordered cell pairs.")
    synapses: int = strawberry.field(description="Synapses on those edges.")
    size: float | None = strawberry.field(
        description="Summed synaptic cleft size (voxels); null when the source had no sizes."
    )
    pre_cells: int = strawberry.field(description="Cells of the pre type.")
    post_cells: int = strawberry.field(description="Cells of the post type.")
    possible_pairs: float = strawberry.field(
        description="Ordered pairs of distinct cells: preCells * postCells, n * (n - 1) within "
        "one type (a Float: it passes 2^31 at MICrONS size)."
    )
    probability: float | None = strawberry.field(description="edges / possiblePairs.")


@strawberry.type
class WiringQuery:
    @strawberry.field(
        description="The release's cell-type x cell-type wiring: edges, synapses, summed size "
        "and connection probability per (pre type, post type), sorted by pre then post type "
        "(null last); pairs without an edge are left out. An edge counts with at least "
        "minSynapses synapses; boundingBox [[minX, minY, minZ], [maxX, maxY, maxZ]] (nm, "
        "inclusive, nucleus positions) keeps the cells inside it. From the release snapshot."
    )
    async def type_connectivity(
        self,
        info: CtxInfo,
        version: int,
        min_synapses: int = 1,
        classification: TypeClassification = TypeClassification.CELL_TYPE,
        bounding_box: list[list[float]] | None = None,
    ) -> list[TypeConnection]:
        snap = info.context.snapshot(version)

        def read() -> list[dict[str, Any]]:
            return type_connectivity(
                snap, classification.value, min_synapses, bounding_box
            ).to_pylist()

        rows = await asyncio.to_thread(read)
        return [
            TypeConnection(
                pre_type=r["pre_type"],
                post_type=r["post_type"],
                edges=r["edges"],
                synapses=r["synapses"],
                size=None if r["size"] is None else float(r["size"]),
                pre_cells=r["pre_cells"],
                post_cells=r["post_cells"],
                possible_pairs=float(r["possible_pairs"]),
                probability=r["probability"],
            )  # fmt: skip
            for r in rows
        ]
