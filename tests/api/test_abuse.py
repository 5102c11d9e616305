"""Abusive requests (issue 12): sizes bounded before any work, the client's faults coded as
the client's, a server that keeps answering, DNS rebinding and schema discovery refused."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.settings import ApiSettings
from core.model import MAX_VERSION
from graph.driver import AsyncDatabase
from graph.settings import ConnectionSettings
from tests.api.conftest import V1, Expected, GraphQL, asgi_app

OUTPUTS = """query($n: Int!, $v: Int!, $after: String, $t: String) {
  cell(nucleusId: $n) { outputs(version: $v, first: 5, after: $after, partnerCellType: $t) {
    nodes { synapses } } } }"""
CELLS = (
    "query($after: String) { cells(version: %d, first: 5, after: $after) { nodes { nucleusId } } }"
)
SEARCH = """query($m: String!, $after: String, $v: Int! = %d) {
  motifSearch(version: $v, motif: $m, first: 2, after: $after) {
    nodes { assignments { name } } pageInfo { endCursor } } }"""
COUNT = "query($m: String!) { motifCount(version: %d, motif: $m) }"


def cursor(*items: Any, raw: str | None = None) -> str:
    text = raw if raw is not None else json.dumps(list(items), separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def some_cell(releases: dict[int, Expected]) -> int:
    return int(releases[V1].edges["pre"].value_counts().index[0])


def motif_tag(asgi: GraphQL, motif: str) -> str:
    """The tag of a real motif cursor (its offset is what the test forges)."""
    data = asgi.data(SEARCH % V1, m=motif)
    end = data["motifSearch"]["pageInfo"]["endCursor"]
    padded = end + "=" * (-len(end) % 4)
    return str(json.loads(base64.urlsafe_b64decode(padded))[0])


# --------------------------------------------------------------------------- the client's fault


@pytest.mark.parametrize(
    "after",
    [
        cursor(f"OUTPUTS:SYNAPSES:{V1}", 2**70, 5),  # out of int64
        cursor(f"OUTPUTS:SYNAPSES:{V1}", 3, 2**64),
        cursor(f"OUTPUTS:SYNAPSES:{V1}", 3, -(2**63) - 1),
        cursor(raw=f'["OUTPUTS:SYNAPSES:{V1}",NaN,5]'),  # NaN: refused, not an empty page
        cursor(raw=f'["OUTPUTS:SYNAPSES:{V1}",Infinity,5]'),
        cursor(f"OUTPUTS:SYNAPSES:{V1}", 3, 1.5),  # a nucleus ID is an integer
    ],
)
def test_forged_partner_cursors_are_bad_requests(
    asgi: GraphQL, releases: dict[int, Expected], after: str
) -> None:
    assert asgi.codes(OUTPUTS, n=some_cell(releases), v=V1, after=after) == ["BAD_REQUEST"]


def test_forged_cells_cursor_is_a_bad_request(asgi: GraphQL, releases: dict[int, Expected]) -> None:
    assert asgi.codes(CELLS % V1, after=cursor(f"CELLS:{V1}", 2**64)) == ["BAD_REQUEST"]
    assert asgi.codes(CELLS % V1, after=cursor(raw=f'["CELLS:{V1}",NaN]')) == ["BAD_REQUEST"]


@pytest.mark.parametrize("key", [2**63, -(2**63) - 1, 2.5, 10**30])
def test_forged_motif_cursors_are_bad_requests(
    asgi: GraphQL, releases: dict[int, Expected], key: int | float
) -> None:
    motif = "A -> B"
    tag = motif_tag(asgi, motif)
    assert asgi.codes(SEARCH % V1, m=motif, after=cursor(tag, key, 1)) == ["BAD_REQUEST"]
    assert asgi.codes(SEARCH % V1, m=motif, after=cursor(tag, 1, key)) == ["BAD_REQUEST"]
    assert asgi.codes(SEARCH % V1, m=motif, after=cursor(tag, -5, -5)) == []  # before all


def test_huge_root_ids_are_refused_by_the_client_codes(
    asgi: GraphQL, releases: dict[int, Expected]
) -> None:
    q = f"query($r: String!) {{ cellByRootId(rootId: $r, version: {V1}) {{ nucleusId }} }}"
    assert asgi.codes(q, r="1" * 5000) == ["BAD_REQUEST"]  # under the string limit
    assert asgi.codes(q, r="1" * 2**20) == ["LIMIT_EXCEEDED"]  # 1 MB: over it


def test_negative_census_seed_is_a_bad_request(
    asgi: GraphQL, releases: dict[int, Expected]
) -> None:
    q = "{ motifCensus(version: %d, nullModel: DEGREE_PRESERVING, samples: 2, seed: -1) { cells } }"
    assert asgi.codes(q % V1) == ["BAD_REQUEST"]
    start = "{ startMotifCensus(version: %d, nullModel: DEGREE_PRESERVING, samples: 2, seed: -1) { id } }"
    assert asgi.codes(start % V1) == ["BAD_REQUEST"]


@pytest.mark.parametrize("literal", ["10" + "0" * 22, "-" + "9" * 30, "9223372036854775808"])
def test_huge_motif_integer_literals_are_bad_requests(
    asgi: GraphQL, releases: dict[int, Expected], literal: str
) -> None:
    for motif in (f"A -> B [size > {literal}]", f"A -> B; A.nucleus_id = {literal}"):
        assert asgi.codes(COUNT % V1, m=motif) == ["BAD_REQUEST"], motif
        assert asgi.codes(SEARCH % V1, m=motif) == ["BAD_REQUEST"], motif


@pytest.mark.parametrize("version", [0, 1, 2**20, MAX_VERSION])
def test_motif_search_takes_every_version_the_loader_takes(
    asgi: GraphQL, releases: dict[int, Expected], version: int
) -> None:
    """core.model.check_version, as the loader: versions nobody loaded are UNKNOWN_RELEASE."""
    assert asgi.codes(SEARCH % version, m="A -> B") == ["UNKNOWN_RELEASE"]
    assert asgi.codes(SEARCH % (MAX_VERSION + 1), m="A -> B") == ["BAD_REQUEST"]


# --------------------------------------------------------------------------- sizes


def test_a_huge_motif_variable_is_refused_at_once(
    asgi: GraphQL, releases: dict[int, Expected]
) -> None:
    motif = "A -> B" + ";" * 2**20  # the 8.2 s stall
    t0 = time.perf_counter()
    body = asgi.post(COUNT % V1, m=motif)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["LIMIT_EXCEEDED"]
    assert "CGRAPH_MAX_MOTIF" in body["errors"][0]["message"]
    assert time.perf_counter() - t0 < 2.0


def test_every_string_argument_is_bounded(asgi: GraphQL, releases: dict[int, Expected]) -> None:
    long = "x" * (ApiSettings().max_string + 1)
    n = some_cell(releases)
    assert asgi.codes(OUTPUTS, n=n, v=V1, t=long) == ["LIMIT_EXCEEDED"]  # a variable
    inline = OUTPUTS.replace("partnerCellType: $t", f'partnerCellType: "{long}"')
    inline = inline.replace(", $t: String", "")
    assert asgi.codes(inline, n=n, v=V1) == ["LIMIT_EXCEEDED"]  # a literal
    listed = f"query($t: [String!]) {{ motifCensus(version: {V1}, cellTypes: $t) {{ cells }} }}"
    assert asgi.codes(listed, t=["23P", long]) == ["LIMIT_EXCEEDED"]  # inside a list
    assert asgi.codes(OUTPUTS, n=n, v=V1, t="x" * 100) == []  # short ones pass


def test_a_huge_document_is_refused_before_parsing(
    asgi: GraphQL, releases: dict[int, Expected]
) -> None:
    doc = "{ releases { version } }" + " " * (ApiSettings().max_document + 1)
    assert asgi.codes(doc) == ["LIMIT_EXCEEDED"]


def test_the_longest_motif_is_parsed_off_the_event_loop(
    neo4j_settings: ConnectionSettings,
    releases: dict[int, Expected],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A motif of as many node constraints as CGRAPH_MAX_MOTIF allows is parsed in the parser
    pool, never on the event loop's thread, and both fields answer (no INTERNAL). Structural,
    not timed: the thread that parsed is recorded."""
    import threading

    import api.motif_text

    line = 'A.cell_type != "no-such-type-{i}"\n'
    motif = "A -> B\n"
    i = 0
    while len(motif) + len(line.format(i=i)) <= ApiSettings().max_motif:
        motif += line.format(i=i)
        i += 1
    assert i > 500
    parsed_on: list[str] = []
    original = api.motif_text._parse

    def recording(text: str) -> Any:
        parsed_on.append(threading.current_thread().name)
        return original(text)

    monkeypatch.setattr(api.motif_text, "_parse", recording)
    n = some_cell(releases)

    async def scenario() -> tuple[str, list[dict[str, Any]]]:
        adb = AsyncDatabase(neo4j_settings)
        app = create_app(ApiSettings(), adb=adb)
        loop_thread = threading.current_thread().name
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://localhost", timeout=120) as c:  # fmt: skip
            await c.post("/graphql", json={"query": OUTPUTS, "variables": {"n": n, "v": V1}})
            bodies = []
            for q in (SEARCH % V1, COUNT % V1):
                r = await c.post("/graphql", json={"query": q, "variables": {"m": motif}})
                assert r.status_code == 200
                bodies.append(r.json())
        await adb.close()
        return loop_thread, bodies

    loop_thread, bodies = asyncio.run(scenario())
    assert parsed_on and all(t.startswith("cgraph-motif-parse") for t in parsed_on), parsed_on
    assert loop_thread not in parsed_on
    for body in bodies:
        codes = [e["extensions"]["code"] for e in body.get("errors") or ()]
        assert "INTERNAL" not in codes and (body.get("data") or codes), body


def _with_timeout(conn: ConnectionSettings, seconds: float) -> ConnectionSettings:
    import dataclasses

    return dataclasses.replace(conn, query_timeout=seconds)


# --------------------------------------------------------------------------- security


def test_foreign_host_headers_are_refused(
    neo4j_settings: ConnectionSettings, releases: dict[int, Expected]
) -> None:
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1."""
    query = {"query": "{ releases { version } }"}
    with asgi_app(ApiSettings(), neo4j_settings) as client:
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", ""):
            r = client.request("POST", "/graphql", json=query, headers={"host": host})
            assert r.status_code == 400, host
            assert r.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
            assert client.request("GET", "/healthz", headers={"host": host}).status_code == 400
            r = client.request("POST", "/export/partners", json={}, headers={"host": host})
            assert r.status_code == 400
        for host in ("localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000"):
            r = client.request("POST", "/graphql", json=query, headers={"host": host})
            assert r.status_code == 200 and "errors" not in r.json(), host
    allowed = ApiSettings(allowed_hosts=("api.example.org",))
    with asgi_app(allowed, neo4j_settings) as client:
        r = client.request("POST", "/graphql", json=query, headers={"host": "API.example.org:443"})
        assert r.status_code == 200
        r = client.request("POST", "/graphql", json=query, headers={"host": "evil.example"})
        assert r.status_code == 400


def test_allowed_hosts_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CGRAPH_ALLOWED_HOSTS", " api.example.org, Other.Example ")
    monkeypatch.setenv("CGRAPH_INTROSPECTION", "0")
    s = ApiSettings.from_env()
    assert s.allowed_hosts == ("api.example.org", "other.example")
    assert s.introspection is False
    assert ApiSettings().introspection is True and ApiSettings().allowed_hosts == ()


def test_introspection_and_suggestions_can_be_turned_off(
    neo4j_settings: ConnectionSettings, releases: dict[int, Expected]
) -> None:
    typo = "{ releasez { version } }"
    enum_typo = f"{{ motifCensus(version: {V1}, nullModel: DEGREE_PRESERVIN) {{ cells }} }}"
    with asgi_app(ApiSettings(), neo4j_settings) as client:
        gql = GraphQL(client, "open")
        assert gql.data("{ __schema { queryType { name } } }")
        assert "Did you mean" in gql.post(typo)["errors"][0]["message"]
        assert "Did you mean" in gql.post(enum_typo)["errors"][0]["message"]
    with asgi_app(ApiSettings(introspection=False), neo4j_settings) as client:
        gql = GraphQL(client, "closed")
        codes = gql.codes("{ __schema { queryType { name } } }")
        assert codes and set(codes) == {"BAD_REQUEST"}
        codes = gql.codes('{ __type(name: "Cell") { fields { name } } }')
        assert codes and set(codes) == {"BAD_REQUEST"}
        for q in (typo, enum_typo):
            (error,) = gql.post(q)["errors"]
            assert error["extensions"]["code"] == "BAD_REQUEST"
            assert "Did you mean" not in error["message"] and "releases" not in error["message"]
        assert gql.data("{ releases { version } }")  # queries still work
