"""GraphQL space fields: `cellsInBox` (cells whose nucleus lies in a box, paged) and
`nearestCells` (the k cells nearest a point), in nm or in the release's voxels, with the cell
filters of `cells`; on Neo4j's point index over nucleus positions (graph/space.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum
from typing import Annotated

import strawberry

from api import neuroglancer
from api.pagination import check_first, decode_int_cursor
from api.types import FIRST_DOC, Cell, CellConnection, CtxInfo, cell_connection
from core.criteria import CellCriteria
from core.errors import BadRequest
from core.model import check_dataset, check_version
from graph import space
from snapshot.layout import SnapshotError

MAX_LINK_CELLS = 500


@strawberry.enum(description="Units of coordinates given to a space query.")
class Unit(Enum):
    NM = "nm"
    VOXELS = "voxels"  # of the release's source tables (its snapshot's voxel_size_nm)


@strawberry.type(description="A cell and its nucleus's distance from the point asked.")
class NearbyCell:
    cell: Cell
    distance: float = strawberry.field(description="Euclidean distance, nm.")


def _finite(name: str, values: Sequence[float]) -> list[float]:
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise BadRequest(f"{name} takes three finite numbers (x, y, z), got {list(values)}")
    return [float(v) for v in values]


def _to_nm(info: CtxInfo, version: int, unit: Unit, *points: Sequence[float]) -> list[list[float]]:
    """Points in nm: as given, or voxels times the release's voxel size."""
    if unit is Unit.NM:
        return [list(p) for p in points]
    try:
        vox = info.context.snapshot(version).manifest.get("voxel_size_nm") or [4.0, 4.0, 40.0]
    except SnapshotError as exc:
        raise BadRequest(f"unit VOXELS needs release {version}'s snapshot: {exc}") from None
    return [[float(c) * float(v) for c, v in zip(p, vox, strict=True)] for p in points]


@strawberry.type
class SpaceQuery:
    @strawberry.field(
        description="Cells of a release whose nucleus lies in the box from min to max "
        "(inclusive; nm, or the release's voxels with unit VOXELS), in nucleus-ID order, "
        "with the filters of `cells`. On the point index over nucleus positions."
    )
    async def cells_in_box(
        self,
        info: CtxInfo,
        version: int,
        min: list[float],
        max: list[float],
        unit: Unit = Unit.NM,
        cell_type: str | None = None,
        is_neuron: bool | None = None,
        first: Annotated[int, strawberry.argument(description=FIRST_DOC)] = 100,
        after: str | None = None,
    ) -> CellConnection:
        check_version(version)
        check_first(first)
        lo, hi = _to_nm(info, version, unit, _finite("min", min), _finite("max", max))
        box = space.check_box(lo, hi)
        tag = f"BOX:{version}:{box}"
        key = decode_int_cursor(after, tag) if after else None
        where = CellCriteria.of(cell_type=cell_type, is_neuron=is_neuron)
        page = await space.list_cells_in_box(
            info.context.adb, version, *box, where=where, first=first,
            after=int(key[0]) if key else None,
        )  # fmt: skip
        return cell_connection(info, page, tag, version, where, box)

    @strawberry.field(
        description="The k (1-1000) cells of a release whose nucleus is nearest the point "
        "(nm, or voxels with unit VOXELS), nearest first (ties by nucleus ID), within "
        "maxDistance nm when given, with the filters of `cells`. Exact: grown boxes on the "
        "point index."
    )
    async def nearest_cells(
        self,
        info: CtxInfo,
        version: int,
        point: list[float],
        k: int = 10,
        unit: Unit = Unit.NM,
        max_distance: float | None = None,
        cell_type: str | None = None,
        is_neuron: bool | None = None,
    ) -> list[NearbyCell]:
        check_version(version)
        (p,) = _to_nm(info, version, unit, _finite("point", point))
        where = CellCriteria.of(cell_type=cell_type, is_neuron=is_neuron)
        found = await space.nearest_cells(
            info.context.adb, version, p, k, where=where, max_distance=max_distance
        )
        info.context.seen_complete(version)
        info.context.prime_cells([f.cell for f in found])
        return [NearbyCell(cell=Cell(record=f.cell), distance=f.distance) for f in found]

    @strawberry.field(
        description="A Neuroglancer link to a set of cells of a release (1-500 nucleus IDs "
        "of one dataset, default the server's): their root IDs selected, one colour each, "
        "centred on the first cell's nucleus."
    )
    async def neuroglancer_url(
        self, info: CtxInfo, version: int, nucleus_ids: list[int], dataset: str | None = None
    ) -> str:
        check_version(version)
        if not 1 <= len(nucleus_ids) <= MAX_LINK_CELLS:
            raise BadRequest(f"nucleusIds: give 1 to {MAX_LINK_CELLS}, got {len(nucleus_ids)}")
        ds = (
            check_dataset(dataset)
            if dataset is not None
            else await info.context.dataset_of(version)
        )
        records = await info.context.cells.load_many([(ds, n) for n in nucleus_ids])
        missing = [n for n, r in zip(nucleus_ids, records, strict=True) if r is None]
        if missing:
            raise BadRequest(f"no cell {missing[0]} in dataset {ds!r}")
        return await neuroglancer.cells_url(info.context, version, records)
