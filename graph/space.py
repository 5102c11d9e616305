"""Cells in space: a bounding box of nucleus positions and the k nearest cells to a point, in
one release, on the point index ``cell_position`` (graph/schema.py) over ``Cell.position``
(cartesian-3d, nm). Both take the same cell filters as every cell query (core.criteria).

The box is read through the point index (``USING INDEX``: the planner would otherwise start
from the release's root-ID index and test every cell of the release). The nearest cells come
from boxes that grow around the point (x4 per round, at most :data:`MAX_ROUNDS` rounds) until
one holds k cells within its inscribed sphere, so every answer is exact: a cell outside that
sphere is farther than every cell returned. Distances are Euclidean, nm; ties by nucleus ID.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.criteria import CellCriteria
from core.errors import BadRequest
from graph.driver import AsyncDatabase
from graph.queries import GUARD, CellPage, CellRecord, _cell_filter, _guarded

POINT_INDEX = "cell_position"
MAX_NEAREST = 1000
FIRST_RADIUS_NM = 20_000.0
MAX_ROUNDS = 12  # 20 um * 4**11: far past any EM volume


def _in_box(version: int, slot: int, rest: str, result: str) -> str:
    """GUARD, then the release's cells in the box $x0..$z1 (through the point index) that pass
    the cell filters, then ``rest``, which returns ``result``."""
    return (
        GUARD
        + f"""
CALL (ok) {{
  MATCH (c:Cell) USING INDEX c:Cell(position)
  WHERE ok AND point.withinBBox(c.position, point({{x: $x0, y: $y0, z: $z0}}),
                                point({{x: $x1, y: $y1, z: $z1}}))
    AND {_cell_filter(version, slot)}
{rest}
}}
RETURN statuses, slots, {result}
"""
    )


def box_cells_cypher(version: int, slot: int = 0) -> str:
    rest = """  WITH c WHERE $after IS NULL OR c.nucleus_id > $after
  WITH c ORDER BY c.nucleus_id LIMIT $first + 1
  RETURN collect(properties(c)) AS cells"""
    return _in_box(version, slot, rest, "cells")


def count_box_cypher(version: int, slot: int = 0) -> str:
    return _in_box(version, slot, "  RETURN count(c) AS total", "total")


def near_cells_cypher(version: int, slot: int = 0) -> str:
    rest = """  WITH c, point.distance(c.position, point({x: $x, y: $y, z: $z})) AS d
  WHERE d <= $radius
  WITH c, d ORDER BY d, c.nucleus_id LIMIT $k
  RETURN collect({cell: properties(c), d: d}) AS found"""
    return _in_box(version, slot, rest, "found")


Point = tuple[float, float, float]


def check_box(lo: Sequence[float], hi: Sequence[float]) -> tuple[Point, Point]:
    if len(lo) != 3 or len(hi) != 3:
        raise BadRequest(f"min and max take three numbers (x, y, z), got {list(lo)} and {list(hi)}")  # fmt: skip
    for axis, a, b in zip("xyz", lo, hi, strict=True):
        if a > b:
            raise BadRequest(f"the box is inverted on {axis}: min {a:g} > max {b:g}")
    return (float(lo[0]), float(lo[1]), float(lo[2])), (float(hi[0]), float(hi[1]), float(hi[2]))


def _corners(lo: Point, hi: Point) -> dict[str, float]:
    return {"x0": lo[0], "y0": lo[1], "z0": lo[2], "x1": hi[0], "y1": hi[1], "z1": hi[2]}


async def list_cells_in_box(
    adb: AsyncDatabase, version: int, lo: Sequence[float], hi: Sequence[float], *,
    where: CellCriteria = CellCriteria(),  # noqa: B008 - frozen, shared safely
    first: int = 100, after: int | None = None,
) -> CellPage:  # fmt: skip
    """Cells of a release whose nucleus lies in the box (nm, inclusive), in nucleus-ID order."""
    box = check_box(lo, hi)
    params = {**where.params(), **_corners(*box), "first": first, "after": after}
    row, slots = await _guarded(adb, lambda s: box_cells_cypher(version, s), [version], params)
    cells = [CellRecord.from_props(c, slots) for c in row["cells"]]
    return CellPage(cells=cells[:first], has_next=len(cells) > first)


async def count_cells_in_box(
    adb: AsyncDatabase, version: int, lo: Sequence[float], hi: Sequence[float], *,
    where: CellCriteria = CellCriteria(),  # noqa: B008 - frozen, shared safely
) -> int:  # fmt: skip
    params = {**where.params(), **_corners(*check_box(lo, hi))}
    row, _ = await _guarded(adb, lambda s: count_box_cypher(version, s), [version], params)
    return int(row["total"])


@dataclass(frozen=True)
class NearCell:
    cell: CellRecord
    distance: float  # nm


async def nearest_cells(
    adb: AsyncDatabase, version: int, point: Sequence[float], k: int = 10, *,
    where: CellCriteria = CellCriteria(),  # noqa: B008 - frozen, shared safely
    max_distance: float | None = None,
) -> list[NearCell]:  # fmt: skip
    """The ``k`` cells of a release nearest to ``point`` (nm), nearest first (within
    ``max_distance`` nm when given)."""
    if len(point) != 3:
        raise BadRequest(f"point takes three numbers (x, y, z), got {list(point)}")
    if not 1 <= k <= MAX_NEAREST:
        raise BadRequest(f"k must be 1..{MAX_NEAREST}, got {k}")
    if max_distance is not None and max_distance < 0:
        raise BadRequest(f"maxDistance must be >= 0, got {max_distance:g}")
    x, y, z = (float(v) for v in point)
    radius = FIRST_RADIUS_NM if max_distance is None else min(FIRST_RADIUS_NM, max_distance)
    found: list[NearCell] = []
    for _ in range(MAX_ROUNDS):
        params = {**where.params(), "x": x, "y": y, "z": z, "radius": radius, "k": k,
                  **_corners((x - radius, y - radius, z - radius),
                             (x + radius, y + radius, z + radius))}  # fmt: skip
        row, slots = await _guarded(adb, lambda s: near_cells_cypher(version, s), [version], params)
        found = [NearCell(CellRecord.from_props(f["cell"], slots), float(f["d"]))
                 for f in row["found"]]  # fmt: skip
        if len(found) >= k or (max_distance is not None and radius >= max_distance):
            break
        radius *= 4
        if max_distance is not None:
            radius = min(radius, max_distance)
    return found
