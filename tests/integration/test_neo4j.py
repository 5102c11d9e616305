"""The foundation against a real Neo4j: connection, schema, named errors."""

from __future__ import annotations

import dataclasses

import pytest

from core.errors import AuthFailed, Neo4jUnavailable, QueryTimeout
from graph.driver import Database
from graph.schema import ensure_release_schema, ensure_schema
from graph.settings import ConnectionSettings


def test_return_1(db: Database) -> None:
    assert db.read("RETURN 1 AS x") == [{"x": 1}]
    assert db.verify().startswith("Neo4j/")


def test_routing_uri_works(neo4j_settings: ConnectionSettings) -> None:
    routed = dataclasses.replace(
        neo4j_settings, uri=neo4j_settings.uri.replace("bolt://", "neo4j://")
    )
    with Database(routed) as d:
        assert d.read("RETURN $v AS v", {"v": 864691135987654321}) == [{"v": 864691135987654321}]


def test_schema_is_idempotent(db: Database) -> None:
    db.call(ensure_schema)
    db.call(ensure_schema)
    db.call(ensure_release_schema, 990001)
    db.call(ensure_release_schema, 990001)
    names = {r["name"] for r in db.read("SHOW INDEXES YIELD name RETURN name")}
    assert {"cell_dataset_nucleus_id", "cell_nucleus_id_lookup", "release_version",
            "cell_position", "cell_root_id_v990001"} <= names  # fmt: skip
    constraints = db.read("SHOW CONSTRAINTS YIELD name, type, properties "
                          "RETURN name, type, properties")  # fmt: skip
    assert {"name": "cell_dataset_nucleus_id", "type": "UNIQUENESS",
            "properties": ["dataset", "nucleus_id"]} in constraints  # fmt: skip
    assert "cell_nucleus_id" not in {c["name"] for c in constraints}  # one ID space no more

    async def explain() -> object:
        async with db.adb.driver.session(database=db.name) as s:
            result = await s.run("EXPLAIN MATCH (c:Cell {root_id_v990001: $r}) RETURN c", r=1)
            return await result.consume()

    summary = db.run(explain())  # type: ignore[arg-type]
    assert "NodeIndexSeek" in str(summary.plan)
    from graph.schema import drop_release_schema

    db.call(drop_release_schema, 990001)


def test_wrong_password_is_a_named_error(neo4j_settings: ConnectionSettings) -> None:
    bad = dataclasses.replace(neo4j_settings, password="definitely-wrong-pw")
    with Database(bad) as d, pytest.raises(AuthFailed, match="wrong password"):
        d.verify()


def test_unreachable_server_is_a_named_error() -> None:
    nowhere = ConnectionSettings(uri="bolt://127.0.0.1:1", password="whatever1")
    with Database(nowhere) as d, pytest.raises(Neo4jUnavailable, match="cannot reach"):
        d.verify()


def test_read_timeout_raises_instead_of_returning_less(db: Database) -> None:
    slow = "UNWIND range(1, 100000000) AS x WITH x WHERE x % 7 = 3 RETURN count(*) AS n"
    with pytest.raises(QueryTimeout):
        db.read(slow, timeout=0.5)
