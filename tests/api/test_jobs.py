"""Whole-release work off the event loop, one graph read per release, and background jobs,
through the real app against a real Neo4j (the releases of tests/api/conftest.py).

Concurrency is asserted on what happened (which answers arrived before which), never on
wall-clock thresholds."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from math import comb
from typing import Any

import httpx
import networkx as nx
import pytest

from analysis.from_snapshot import release_graph_from_snapshot
from api import jobs
from api.app import create_app
from api.settings import ApiSettings
from graph import whole_release
from graph.driver import AsyncDatabase
from graph.settings import ConnectionSettings
from tests.api.conftest import V1, V2, Expected, GraphQL

CENSUS_FIELDS = "cells edges reciprocalPairs expectedReciprocalPairs triads { code count expected zScore }"  # fmt: skip
CENSUS = f"""
query ($v: Int!, $null: NullModel, $samples: Int, $seed: Int) {{
  motifCensus(version: $v, nullModel: $null, samples: $samples, seed: $seed) {{ {CENSUS_FIELDS} }}
}}"""
JOB_FIELDS = f"""id kind version state progress estimatedSeconds submittedAt startedAt finishedAt
  count census {{ {CENSUS_FIELDS} }} error {{ code message }}"""
START_CENSUS = f"""
query ($v: Int!, $null: NullModel, $samples: Int, $seed: Int) {{
  startMotifCensus(version: $v, nullModel: $null, samples: $samples, seed: $seed) {{ {JOB_FIELDS} }}
}}"""
START_COUNT = f"""
query ($v: Int!, $m: String!) {{ startMotifCount(version: $v, motif: $m) {{ {JOB_FIELDS} }} }}"""
JOB = f"query ($id: ID!) {{ analysisJob(id: $id) {{ {JOB_FIELDS} }} }}"
COUNT = "query ($v: Int!, $m: String!) { motifCount(version: $v, motif: $m) }"
PARTNER = """
query ($n: Int!, $v: Int!) { cell(nucleusId: $n) { outputs(version: $v, first: 5) { totalCount } } }
"""
RECIPROCAL = "A -> B; B -> A"
FFL = "A -> B; B -> C; A -> C"


def _graph(exp: Expected) -> nx.DiGraph:
    G = nx.DiGraph()
    G.add_nodes_from(int(v) for v in exp.nuclei["id"])
    G.add_edges_from(zip(exp.edges["pre"].tolist(), exp.edges["post"].tolist(), strict=True))
    return G


def _busiest(exp: Expected) -> int:
    return int(exp.edges["pre"].value_counts().index[0])


class App:
    """The app on httpx's ASGITransport inside one event loop (the test's own)."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.adb = AsyncDatabase(settings)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(ApiSettings(), adb=self.adb)),
            base_url="http://localhost", timeout=600,
        )  # fmt: skip

    async def post(self, query: str, **variables: Any) -> dict[str, Any]:
        r = await self.http.post("/graphql", json={"query": query, "variables": variables})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def data(self, query: str, **variables: Any) -> dict[str, Any]:
        body = await self.post(query, **variables)
        assert not body.get("errors"), body["errors"]
        out: dict[str, Any] = body["data"]
        return out

    async def close(self) -> None:
        await self.http.aclose()
        await self.adb.close()


def _run(settings: ConnectionSettings, scenario: Callable[[App], Any]) -> Any:
    async def main() -> Any:
        app = App(settings)
        try:
            return await scenario(app)
        finally:
            await app.close()

    return asyncio.run(main())


@pytest.fixture
def fresh_jobs() -> Iterator[jobs.JobManager]:
    """A job manager of the test's own (the process's one is put back afterwards)."""
    mine = jobs.JobManager(jobs.pool(), max_jobs=8, keep_seconds=600, timeout=600)
    old = jobs.set_manager(mine)
    yield mine
    jobs.set_manager(old)


def _poll(gql: GraphQL, job_id: str, until: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    for _ in range(1200):
        job: dict[str, Any] = gql.data(JOB, id=job_id)["analysisJob"]
        if until(job):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not get there: {job}")


# --------------------------------------------------------------------------- (a) not blocked


def test_partner_queries_answer_while_an_inline_census_runs(
    neo4j_settings: ConnectionSettings, releases: dict[int, Expected]
) -> None:
    """A degree-preserving census of 1000 samples runs inline (on the shared pool) while the
    same event loop keeps answering partner queries: many of them finish before it does."""
    exp = releases[V1]
    cell = _busiest(exp)
    patient = replace(neo4j_settings, query_timeout=600.0)  # inline, not refused: budget ample

    async def scenario(app: App) -> tuple[list[str], dict[str, Any]]:
        await app.data(COUNT, v=V1, m="A -> B")  # the graph is read and cached
        order: list[str] = []

        async def census() -> dict[str, Any]:
            out = await app.data(CENSUS, v=V1, null="DEGREE_PRESERVING", samples=1000, seed=3)
            order.append("census")
            return out

        task = asyncio.create_task(census())
        while not task.done():
            got = await app.data(PARTNER, n=cell, v=V1)
            assert got["cell"]["outputs"]["totalCount"] > 0
            order.append("partner")
        return order, await task

    order, result = _run(patient, scenario)
    assert order.count("census") == 1 and order.index("census") >= 5, order
    c = result["motifCensus"]
    assert sum(t["expected"] for t in c["triads"]) == pytest.approx(comb(c["cells"], 3))
    assert c["expectedReciprocalPairs"] is not None


def test_partner_queries_answer_while_a_job_runs(
    neo4j_settings: ConnectionSettings, releases: dict[int, Expected], fresh_jobs: jobs.JobManager
) -> None:
    exp = releases[V1]
    cell = _busiest(exp)

    async def scenario(app: App) -> tuple[int, dict[str, Any]]:
        start = await app.data(START_CENSUS, v=V1, null="DEGREE_PRESERVING", samples=1000, seed=4)
        job = start["startMotifCensus"]
        partners_while_running = 0
        while job["state"] in ("QUEUED", "RUNNING"):
            await app.data(PARTNER, n=cell, v=V1)
            partners_while_running += 1
            job = (await app.data(JOB, id=job["id"]))["analysisJob"]
        return partners_while_running, job

    partners, job = _run(neo4j_settings, scenario)
    assert job["state"] == "DONE", job["error"]
    assert partners >= 5 and job["progress"] == 1.0
    assert job["census"]["expectedReciprocalPairs"] is not None


# --------------------------------------------------------------------------- (b) one read


def test_concurrent_first_requests_read_the_graph_once(
    neo4j_settings: ConnectionSettings,
    releases: dict[int, Expected],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two first requests at once (same event loop), then two from two event loops in two
    threads: each pair reads the snapshot once and both answers are the right count."""
    G = _graph(releases[V2])
    recip = sum(1 for a, b in G.edges if G.has_edge(b, a))  # ordered matches
    builds: list[int] = []
    gate = threading.Event()

    def counting(snap: Any, **kw: Any) -> Any:
        builds.append(snap.version)
        gate.wait(10)  # hold the read until both requests are waiting for it
        return release_graph_from_snapshot(snap, **kw)

    monkeypatch.setattr(whole_release, "release_graph_from_snapshot", counting)
    whole_release.clear_cache()

    async def two_at_once(app: App) -> list[dict[str, Any]]:
        first = asyncio.create_task(app.data(COUNT, v=V2, m=RECIPROCAL))
        second = asyncio.create_task(app.data(COUNT, v=V2, m=RECIPROCAL))
        while not builds:  # the first one is reading
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # the second one has asked too by now
        gate.set()
        return [await first, await second]

    answers = _run(neo4j_settings, two_at_once)
    assert [a["motifCount"] for a in answers] == [recip, recip]
    assert builds == [V2]

    whole_release.clear_cache()
    builds.clear()
    gate.clear()
    got: list[float] = []

    def one_loop() -> None:
        async def ask(app: App) -> None:
            got.append((await app.data(COUNT, v=V2, m=RECIPROCAL))["motifCount"])

        _run(neo4j_settings, ask)

    threads = [threading.Thread(target=one_loop) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while not builds and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    gate.set()
    for t in threads:
        t.join(60)
    assert got == [recip, recip] and builds == [V2]


# --------------------------------------------------------------------------- (c) jobs


def test_census_job_lifecycle(
    asgi: GraphQL, releases: dict[int, Expected], fresh_jobs: jobs.JobManager
) -> None:
    whole_release.clear_cache()  # the census is not kept with a graph yet
    G = _graph(releases[V1])
    job = asgi.data(START_CENSUS, v=V1)["startMotifCensus"]
    assert job["kind"] == "motifCensus" and job["version"] == V1
    assert job["state"] in ("QUEUED", "RUNNING", "DONE") and job["estimatedSeconds"] > 0
    done = _poll(asgi, job["id"], lambda j: j["state"] in ("DONE", "FAILED"))
    assert done["state"] == "DONE" and done["error"] is None and done["progress"] == 1.0
    assert done["submittedAt"] <= done["startedAt"] <= done["finishedAt"]
    census = done["census"]
    assert {t["code"]: t["count"] for t in census["triads"]} == nx.triadic_census(G)
    recip = sum(1 for a, b in G.edges if G.has_edge(b, a)) // 2
    assert (census["cells"], census["edges"], census["reciprocalPairs"]) == (
        G.number_of_nodes(), G.number_of_edges(), recip,
    )  # fmt: skip
    assert asgi.data(CENSUS, v=V1)["motifCensus"] == census  # inline: the same numbers
    again = asgi.data(START_CENSUS, v=V1)["startMotifCensus"]
    assert again["id"] == job["id"] and again["state"] == "DONE"  # joined, not restarted
    assert asgi.data(JOB, id="no-such-job")["analysisJob"] is None


def test_count_job_equals_the_inline_count(
    asgi: GraphQL, releases: dict[int, Expected], fresh_jobs: jobs.JobManager
) -> None:
    G = _graph(releases[V2])
    ffl = sum(1 for a, b in G.edges for c in G.successors(b) if c != a and G.has_edge(a, c))
    job = asgi.data(START_COUNT, v=V2, m=FFL)["startMotifCount"]
    done = _poll(asgi, job["id"], lambda j: j["state"] in ("DONE", "FAILED"))
    assert done["state"] == "DONE" and done["count"] == ffl and done["census"] is None
    assert asgi.data(COUNT, v=V2, m=FFL)["motifCount"] == ffl


def test_a_full_queue_is_refused(asgi: GraphQL, releases: dict[int, Expected]) -> None:
    mine = jobs.JobManager(jobs.pool(), max_jobs=1, keep_seconds=600, timeout=600)
    old = jobs.set_manager(mine)
    try:
        long = {"v": V1, "null": "DEGREE_PRESERVING", "samples": 1000}
        first = asgi.data(START_CENSUS, **long, seed=11)["startMotifCensus"]
        assert first["state"] in ("QUEUED", "RUNNING")
        body = asgi.post(START_CENSUS, **long, seed=12)
        assert [e["extensions"]["code"] for e in body["errors"]] == ["LIMIT_EXCEEDED"]
        assert "queued or running" in body["errors"][0]["message"]
        joined = asgi.data(START_CENSUS, **long, seed=11)["startMotifCensus"]
        assert joined["id"] == first["id"]  # the same request joins: no refusal
        done = _poll(asgi, first["id"], lambda j: j["state"] in ("DONE", "FAILED"))
        assert done["state"] == "DONE"
        assert asgi.data(START_CENSUS, **long, seed=12)["startMotifCensus"]["id"] != first["id"]
    finally:
        jobs.set_manager(old)


def test_failed_and_refused_jobs(asgi: GraphQL, releases: dict[int, Expected]) -> None:
    """A job past its time limit fails with TIMEOUT; one whose estimate is beyond it is
    refused up front; a failed job is replaced by the next request for it."""
    mine = jobs.JobManager(jobs.pool(), max_jobs=4, keep_seconds=600, timeout=1.0)
    old = jobs.set_manager(mine)
    try:
        star = "A -> B; A -> C; A -> D; A -> E; A -> F; A -> G; A -> H; H -> B"  # ~10^12 matches
        job = asgi.data(START_COUNT, v=V1, m=star)["startMotifCount"]
        failed = _poll(asgi, job["id"], lambda j: j["state"] in ("DONE", "FAILED"))
        assert failed["state"] == "FAILED" and failed["count"] is None
        assert failed["error"]["code"] == "TIMEOUT"
        retry = asgi.data(START_COUNT, v=V1, m=star)["startMotifCount"]
        assert retry["id"] != job["id"]
        _poll(asgi, retry["id"], lambda j: j["state"] == "FAILED")
        body = asgi.post(START_CENSUS, v=V1, null="DEGREE_PRESERVING", samples=1000, seed=1)
        assert [e["extensions"]["code"] for e in body["errors"]] == ["LIMIT_EXCEEDED"]
        assert "a job may run" in body["errors"][0]["message"]
    finally:
        jobs.set_manager(old)


def test_inline_work_far_over_budget_is_refused_at_once(
    neo4j_settings: ConnectionSettings, releases: dict[int, Expected]
) -> None:
    short = replace(neo4j_settings, query_timeout=1.0)

    async def scenario(app: App) -> dict[str, Any]:
        return await app.post(CENSUS, v=V1, null="DEGREE_PRESERVING", samples=1000, seed=2)

    body = _run(short, scenario)
    err = body["errors"][0]
    assert err["extensions"]["code"] == "TIMEOUT"
    assert "would take about" in err["message"] and "startMotifCensus" in err["message"]
