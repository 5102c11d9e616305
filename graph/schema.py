"""Idempotent schema: constraints and indexes (global, and per release from core.model)."""

from __future__ import annotations

from core.model import INDEXED_STEMS, check_version, index_name, prop
from graph.driver import AsyncDatabase

GLOBAL_SCHEMA = (
    "CREATE CONSTRAINT cell_nucleus_id IF NOT EXISTS FOR (c:Cell) REQUIRE c.nucleus_id IS UNIQUE",
    "CREATE CONSTRAINT release_version IF NOT EXISTS FOR (r:Release) REQUIRE r.version IS UNIQUE",
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
