"""Idempotent schema: constraints and indexes (global, and per release from core.model)."""

from __future__ import annotations

from core.model import INDEXED_STEMS, check_version, default_dataset, index_name, prop
from graph.driver import AsyncDatabase

#: a cell is keyed by (dataset, nucleus_id); nucleus_id alone is indexed for lookups in a
#: release (whose relationship type or properties then pick the dataset's cell)
GLOBAL_SCHEMA = (
    "CREATE CONSTRAINT cell_dataset_nucleus_id IF NOT EXISTS FOR (c:Cell) "
    "REQUIRE (c.dataset, c.nucleus_id) IS UNIQUE",
    "CREATE INDEX cell_nucleus_id_lookup IF NOT EXISTS FOR (c:Cell) ON (c.nucleus_id)",
    "CREATE CONSTRAINT release_version IF NOT EXISTS FOR (r:Release) REQUIRE r.version IS UNIQUE",
    # nucleus positions (cartesian-3d, nm): cellsInBox and nearestCells (graph/space.py)
    "CREATE POINT INDEX cell_position IF NOT EXISTS FOR (c:Cell) ON (c.position)",
)
#: stores written before datasets: their cells and releases join the default dataset, and the
#: old one-ID-space constraint goes
MIGRATE = (
    "MATCH (c:Cell) WHERE c.dataset IS NULL "
    "CALL (c) { SET c.dataset = $dataset } IN TRANSACTIONS OF 20000 ROWS",
    # a release a load began (not the bare node a new load's claim just made)
    "MATCH (r:Release) WHERE r.dataset IS NULL AND r.started_at IS NOT NULL "
    "SET r.dataset = $dataset",
    "DROP CONSTRAINT cell_nucleus_id IF EXISTS",
)
AWAIT_INDEXES = "CALL db.awaitIndexes(900)"


def release_schema(version: int, slot: int = 0) -> tuple[str, ...]:
    v = check_version(version)
    return tuple(
        f"CREATE INDEX {index_name(stem, v, slot)} IF NOT EXISTS FOR (c:Cell) "
        f"ON (c.{prop(stem, v, slot)})"
        for stem in INDEXED_STEMS
    )


async def ensure_schema(adb: AsyncDatabase) -> None:
    for statement in MIGRATE:
        await adb.run_autocommit(statement, {"dataset": default_dataset()})
    for statement in GLOBAL_SCHEMA:
        await adb.run_autocommit(statement)
    await adb.run_autocommit(AWAIT_INDEXES)


async def ensure_release_schema(adb: AsyncDatabase, version: int, slot: int = 0) -> None:
    for statement in release_schema(version, slot):
        await adb.run_autocommit(statement)
    await adb.run_autocommit(AWAIT_INDEXES)


async def drop_release_schema(adb: AsyncDatabase, version: int, slot: int | None = None) -> None:
    """Drop the release's indexes (of one slot, or of both)."""
    v = check_version(version)
    for s in (0, 1) if slot is None else (slot,):
        for stem in INDEXED_STEMS:
            await adb.run_autocommit(f"DROP INDEX {index_name(stem, v, s)} IF EXISTS")
