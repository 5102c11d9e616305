"""Every error code is provoked over HTTP; internal errors are masked."""

from __future__ import annotations

import dataclasses
from typing import Any

import neo4j
import pytest

from api.settings import ApiSettings
from graph import queries
from graph import releases as graph_releases
from graph.driver import AsyncDatabase
from graph.settings import ConnectionSettings
from tests.api.conftest import V1, V2, V_LOADING, Expected, GraphQL, asgi_app

OUTPUTS = """query($n: Int!, $v: Int!, $first: Int! = 10, $after: String) {
  cell(nucleusId: $n) { nucleusId outputs(version: $v, first: $first, after: $after) {
    totalCount nodes { synapses } pageInfo { endCursor } } } }"""


def some_cell(releases: dict[int, Expected]) -> int:
    return int(releases[V1].edges["pre"].value_counts().index[0])


def test_unknown_release(gql: GraphQL, releases: dict[int, Expected]) -> None:
    body = gql.post(OUTPUTS, n=some_cell(releases), v=9409)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNKNOWN_RELEASE"]
    assert "9409" in body["errors"][0]["message"]
    assert gql.codes("{ cells(version: 9409) { nodes { nucleusId } } }") == ["UNKNOWN_RELEASE"]
    assert gql.codes('{ cellByRootId(rootId: "1", version: 9409) { nucleusId } }') == [
        "UNKNOWN_RELEASE"
    ]
    assert gql.codes(
        f"{{ cell(nucleusId: {some_cell(releases)}) {{ rootId(version: 9409) }} }}"
    ) == ["UNKNOWN_RELEASE"]


def test_release_not_ready(gql: GraphQL, releases: dict[int, Expected]) -> None:
    assert gql.codes(OUTPUTS, n=some_cell(releases), v=V_LOADING) == ["RELEASE_NOT_READY"]
    assert gql.codes(
        f"{{ cell(nucleusId: {some_cell(releases)}) {{ cellType(version: {V_LOADING}) }} }}"
    ) == ["RELEASE_NOT_READY"]
    diff = f"""{{ cell(nucleusId: {some_cell(releases)}) {{
        connectivityDiff(fromVersion: {V1}, toVersion: {V_LOADING}, direction: OUTPUTS) {{ before }} }} }}"""
    assert gql.codes(diff) == ["RELEASE_NOT_READY"]
    # the release itself is visible, with its status
    data = gql.data(f"{{ release(version: {V_LOADING}) {{ status }} }}")
    assert data == {"release": {"status": "loading"}}


def test_limit_exceeded(gql: GraphQL, releases: dict[int, Expected]) -> None:
    assert gql.codes(OUTPUTS, n=some_cell(releases), v=V1, first=1001) == ["LIMIT_EXCEEDED"]
    assert gql.codes(f"{{ cells(version: {V2}, first: 5000) {{ nodes {{ nucleusId }} }} }}") == [
        "LIMIT_EXCEEDED"
    ]
    assert gql.codes(OUTPUTS, n=some_cell(releases), v=V1, first=1000) == []


@pytest.mark.parametrize(
    "query, variables",
    [
        (OUTPUTS, {"v": V1, "first": -1}),
        (OUTPUTS, {"v": V1, "after": "not-a-cursor"}),
        (OUTPUTS, {"v": V1, "after": "WyJDRUxMUzo5NDAxIiwxXQ"}),  # a cells cursor
        (OUTPUTS, {"v": -3}),
        ('{ cellByRootId(rootId: "12ab", version: 9401) { nucleusId } }', {}),
        ('{ cellByRootId(rootId: "99999999999999999999", version: 9401) { nucleusId } }', {}),
        ("{ cell(nucleusId: 1) { nucleusId ", {}),  # syntax
        ("{ cell(nucleusId: 1) { noSuchField } }", {}),  # validation
        ("query($n: Int!) { cell(nucleusId: $n) { nucleusId } }", {"n": "abc"}),  # coercion
        ("mutation { dropEverything }", {}),  # read-only: no mutations
    ],
)
def test_bad_request(
    gql: GraphQL, releases: dict[int, Expected], query: str, variables: dict[str, Any]
) -> None:
    if "$n" in query and "n" not in variables:
        variables = {"n": some_cell(releases), **variables}
    assert gql.codes(query, **variables) == ["BAD_REQUEST"]


SLOW = (
    "CALL () { UNWIND range(1, 200000000) AS x WITH x WHERE x % 7 = 3 RETURN count(*) AS slow_ }\n"
)


def test_timeout_is_an_error_never_less_data(
    neo4j_settings: ConnectionSettings,
    releases: dict[int, Expected],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # every release-scoped statement starts with the guard: make it burn CPU in Neo4j
    monkeypatch.setattr(queries, "GUARD", SLOW + queries.GUARD)
    short = dataclasses.replace(neo4j_settings, query_timeout=0.3)
    with asgi_app(ApiSettings(), short) as client:
        gql = GraphQL(client, "slow")
        body = gql.post(OUTPUTS, n=some_cell(releases), v=V1)
        assert [e["extensions"]["code"] for e in body["errors"]] == ["TIMEOUT"]
        assert body["data"] == {"cell": None}  # never an empty page instead
        body = gql.post(f"{{ cells(version: {V1}) {{ nodes {{ nucleusId }} }} }}")
        assert [e["extensions"]["code"] for e in body["errors"]] == ["TIMEOUT"]
        assert body["data"] is None


def test_internal_errors_are_masked(
    neo4j_settings: ConnectionSettings,
    releases: dict[int, Expected],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def boom(adb: AsyncDatabase) -> list[Any]:
        raise RuntimeError("secret internals: bolt://user:pw@host")

    monkeypatch.setattr(graph_releases, "list_releases", boom)
    with asgi_app(ApiSettings(), neo4j_settings) as client:
        body = GraphQL(client, "asgi").post("{ releases { version } }")
    (error,) = body["errors"]
    assert error["message"] == "Unexpected error."
    assert error["extensions"] == {"code": "INTERNAL"}
    assert "secret" not in str(body)


def test_database_down_is_unavailable(releases: dict[int, Expected]) -> None:
    nowhere = ConnectionSettings(uri="bolt://127.0.0.1:1", password="whatever1", query_timeout=5)
    with asgi_app(ApiSettings(), nowhere) as client:
        client.runner.run(client.adb.driver.close())
        # no 30 s of retries in a test: the same driver, retrying for 0 s
        client.adb.driver = neo4j.AsyncGraphDatabase.driver(
            nowhere.uri, auth=(nowhere.user, nowhere.password), max_transaction_retry_time=0
        )
        body = GraphQL(client, "asgi").post("{ releases { version } }")
        assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAVAILABLE"]
        assert "127.0.0.1:1" not in str(body)
        health = client.request("GET", "/healthz")
        assert health.status_code == 503
        assert health.json() == {"status": "unavailable", "neo4j": False}
