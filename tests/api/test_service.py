"""The service around the schema: limits, auth, health, GraphiQL, the committed SDL."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.schema import build_schema, sdl
from api.settings import ApiSettings
from graph.settings import ConnectionSettings
from tests.api.conftest import V1, Expected, GraphQL, LiveServer, asgi_app

REPO = Path(__file__).resolve().parents[2]


def test_committed_schema_matches_the_code() -> None:
    committed = (REPO / "schema.graphql").read_text()
    assert committed == sdl(), "schema.graphql is stale: python -m api.schema > schema.graphql"


def test_schema_is_read_only() -> None:
    schema = build_schema()
    assert schema.mutation is None and schema.subscription is None
    assert "type Mutation" not in sdl()


def test_deep_query_is_refused(gql: GraphQL) -> None:
    inner = "nucleusId"
    for _ in range(6):  # cell -> outputs -> nodes -> cell -> ...
        inner = f"outputs(version: {V1}) {{ nodes {{ cell {{ {inner} }} }} }}"
    body = gql.post(f"{{ cell(nucleusId: 1) {{ {inner} }} }}")
    assert body["data"] is None
    assert {e["extensions"]["code"] for e in body["errors"]} == {"LIMIT_EXCEEDED"}
    assert "depth" in body["errors"][0]["message"]


def test_aliased_query_is_refused(gql: GraphQL) -> None:
    fields = " ".join(f"a{i}: cell(nucleusId: {i}) {{ nucleusId }}" for i in range(31))
    body = gql.post(f"{{ {fields} }}")
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["LIMIT_EXCEEDED"]
    assert "aliases" in body["errors"][0]["message"]


def test_huge_query_is_refused(gql: GraphQL) -> None:
    fields = " ".join(["nucleusId"] * 2500)
    body = gql.post(f"{{ cell(nucleusId: 1) {{ {fields} }} }}")
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["LIMIT_EXCEEDED"]
    assert "tokens" in body["errors"][0]["message"]


def test_ordinary_query_is_not_refused(gql: GraphQL, releases: dict[int, Expected]) -> None:
    fields = " ".join(
        f"a{i}: cell(nucleusId: {2_000_000_000 + i}) {{ nucleusId }}" for i in range(30)
    )
    body = gql.post(f"{{ {fields} }}")
    assert "errors" not in body and body["data"]["a0"] is None


def test_healthz(gql: GraphQL) -> None:
    r = gql.transport.request("GET", "/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "neo4j": True}


def test_graphiql_in_a_browser(gql: GraphQL) -> None:
    r = gql.transport.request("GET", "/graphql", headers={"Accept": "text/html"})
    assert r.status_code == 200
    assert "graphiql" in r.text.lower()


def test_get_queries_work(gql: GraphQL) -> None:
    r = gql.transport.request("GET", "/graphql", params={"query": "{ releases { version } }"})
    assert r.status_code == 200 and "errors" not in r.json()


QUERY = {"query": "{ releases { version } }"}


@pytest.mark.parametrize("transport", ["asgi", "uvicorn"])
def test_bearer_token(
    neo4j_settings: ConnectionSettings, releases: dict[int, Expected], transport: str
) -> None:
    settings = ApiSettings(token="s3cret-token")

    def check(request: object) -> None:
        post = request  # type: ignore[assignment]
        r = post("POST", "/graphql", json=QUERY)  # type: ignore[operator]
        assert r.status_code == 401
        assert r.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert r.headers["www-authenticate"].startswith("Bearer")
        r = post("POST", "/graphql", json=QUERY, headers={"Authorization": "Bearer wrong"})  # type: ignore[operator]
        assert r.status_code == 401
        r = post("GET", "/graphql", params=QUERY)  # type: ignore[operator]
        assert r.status_code == 401
        r = post("POST", "/graphql", json=QUERY, headers={"Authorization": "Bearer s3cret-token"})  # type: ignore[operator]
        assert r.status_code == 200 and "errors" not in r.json()
        assert post("GET", "/healthz").status_code == 200  # type: ignore[operator]
        html = post("GET", "/graphql", headers={"Accept": "text/html"})  # type: ignore[operator]
        assert html.status_code == 200  # the IDE page; its requests need the token

    if transport == "asgi":
        with asgi_app(settings, neo4j_settings) as client:
            check(client.request)
    else:
        server = LiveServer(settings, neo4j_settings)
        try:
            check(server.request)
        finally:
            server.close()
