"""Idempotent schema: constraints and indexes (global and per release)."""

from __future__ import annotations

from core.model import check_version, prop
from graph.driver import Database

GLOBAL_SCHEMA = (
    "CREATE CONSTRAINT cell_nucleus_id IF NOT EXISTS FOR (c:Cell) REQUIRE c.nucleus_id IS UNIQUE",
    "CREATE CONSTRAINT release_version IF NOT EXISTS FOR (r:Release) REQUIRE r.version IS UNIQUE",
)


def release_schema(version: int) -> tuple[str, ...]:
    v = check_version(version)
    return tuple(
        f"CREATE INDEX cell_{stem}_v{v} IF NOT EXISTS FOR (c:Cell) ON (c.{prop(stem, v)})"
        for stem in ("root_id", "cell_type")
    )


def ensure_schema(db: Database) -> None:
    for statement in GLOBAL_SCHEMA:
        db.run_autocommit(statement)
    db.run_autocommit("CALL db.awaitIndexes(300)")


def ensure_release_schema(db: Database, version: int) -> None:
    for statement in release_schema(version):
        db.run_autocommit(statement)
    db.run_autocommit("CALL db.awaitIndexes(300)")


def drop_release_schema(db: Database, version: int) -> None:
    v = check_version(version)
    for stem in ("root_id", "cell_type"):
        db.run_autocommit(f"DROP INDEX cell_{stem}_v{v} IF EXISTS")
