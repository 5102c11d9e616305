"""Fixtures of the API tests: two synthetic releases loaded under this package's own versions,
the expected connectivity computed independently with pandas from the loader's input files,
the app in-process (httpx ASGITransport) and on a real uvicorn on a loopback port.

tests/api owns releases 9401, 9402 (data) and 9403 (left `loading` on purpose).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import uvicorn

from api.app import create_app
from api.settings import ApiSettings
from cgraph.load import load_release
from graph.driver import AsyncDatabase, Database
from graph.releases import begin_load
from graph.settings import ConnectionSettings
from loaders.synth import generate
from tests import expected as shared_expected
from tests.helpers import drop_releases

V1, V2, V_LOADING = 9401, 9402, 9403
OWNED = (V1, V2, V_LOADING)
#: one without fractional seconds, one with (as `cgraph load --timestamp` takes them): the
#: notebook client and the quickstart notebook must read both
TIMESTAMPS = {
    V1: datetime(2020, 1, 1, tzinfo=UTC),
    V2: datetime(2021, 6, 1, 12, 30, 15, 250_000, tzinfo=UTC),
}


def _drop_owned(db: Database) -> None:
    drop_releases(db, *OWNED)


# --------------------------------------------------------------------------- expected values


@dataclass(frozen=True)
class Expected:
    """Independent pandas computation of one release (attribution rules of loaders/aggregate)."""

    version: int
    nuclei: pd.DataFrame  # id, pt_root_id, ...
    edges: pd.DataFrame  # pre, post, synapses, size, sizes (list), ids (list), by synapse id
    synapses: pd.DataFrame  # used synapses: id, pre_pt_root_id, post_pt_root_id, size, pre, post
    source: pd.DataFrame  # the source synapse table as generated (every row)

    def root_of(self, nucleus_id: int) -> int:
        return int(self.nuclei.loc[self.nuclei["id"] == nucleus_id, "pt_root_id"].iloc[0])

    def partners(self, nucleus_id: int, direction: str) -> pd.DataFrame:
        """partner, synapses, size, sizes, ids of a cell (direction 'outputs' or 'inputs')."""
        own, other = ("pre", "post") if direction == "outputs" else ("post", "pre")
        rows = self.edges[self.edges[own] == nucleus_id]
        return rows.rename(columns={other: "partner"})[
            ["partner", "synapses", "size", "sizes", "ids"]
        ]


def expected_release(version: int, nuclei_path: Path, synapses_path: Path) -> Expected:
    """The shared pandas computation (tests/expected.py), shaped for the API tests."""
    nuclei = pd.read_parquet(nuclei_path)
    source = pd.read_parquet(synapses_path)
    shared = shared_expected.expected_release(nuclei, source)
    edges = shared.edges.rename(columns={"synapse_ids": "ids"})
    edges["sizes"] = edges["sizes"].map(list)
    edges["ids"] = edges["ids"].map(list)
    return Expected(version, nuclei, edges, shared.used, source)


@pytest.fixture(scope="session")
def releases(
    db: Database, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[int, Expected]]:
    """Both synthetic releases loaded; expected values keyed by version."""
    out = tmp_path_factory.mktemp("api_synth")
    summary = generate(
        out, cells=300, synapses=30_000, versions=[V1, V2], seed=4242, nucleus_id_base=2_000_000
    )
    _drop_owned(db)
    expected = {}
    for v in (V1, V2):
        vs = summary.version(v)
        load_release(db, v, nuclei=vs.nuclei, synapses=vs.synapses, neurons=vs.neurons,
                     cell_types=vs.cell_types, timestamp=TIMESTAMPS[v])  # fmt: skip
        expected[v] = expected_release(v, vs.nuclei, vs.synapses)
    db.call(begin_load, V_LOADING, None, replace=False)  # a release that never completes
    yield expected
    _drop_owned(db)


# --------------------------------------------------------------------------- transports


class AsgiClient:
    """Sync facade over httpx.AsyncClient + ASGITransport, all on one private event loop."""

    def __init__(self, settings: ApiSettings, connection: ConnectionSettings) -> None:
        self.runner = asyncio.Runner()
        self.adb = self.runner.run(self._adb(connection))
        self.app = create_app(settings, adb=self.adb)
        transport = httpx.ASGITransport(app=self.app)
        self.http = httpx.AsyncClient(transport=transport, base_url="http://localhost")

    @staticmethod
    async def _adb(connection: ConnectionSettings) -> AsyncDatabase:
        return AsyncDatabase(connection)

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.runner.run(self.http.request(method, path, **kw))

    def close(self) -> None:
        self.runner.run(self.http.aclose())
        self.runner.run(self.adb.close())
        self.runner.close()


class LiveServer:
    """The app on a real uvicorn, loopback, free port, in a background thread."""

    def __init__(self, settings: ApiSettings, connection: ConnectionSettings) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        app = create_app(settings, connection=connection)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on")  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.url, timeout=60)

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, path, **kw)

    def close(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(timeout=20)


class GraphQL:
    """POST /graphql helper over either transport."""

    def __init__(self, transport: AsgiClient | LiveServer, name: str) -> None:
        self.transport = transport
        self.name = name

    def post(
        self, query: str, headers: dict[str, str] | None = None, **variables: Any
    ) -> dict[str, Any]:
        r = self.transport.request("POST", "/graphql", json={"query": query, "variables": variables},
                                   headers=headers or {})  # fmt: skip
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def data(self, query: str, **variables: Any) -> dict[str, Any]:
        body = self.post(query, **variables)
        assert not body.get("errors"), body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    def codes(self, query: str, **variables: Any) -> list[str]:
        body = self.post(query, **variables)
        return [e["extensions"]["code"] for e in body.get("errors") or ()]


@pytest.fixture(scope="session")
def asgi(neo4j_settings: ConnectionSettings, releases: dict[int, Expected]) -> Iterator[GraphQL]:
    client = AsgiClient(ApiSettings(), neo4j_settings)
    yield GraphQL(client, "asgi")
    client.close()


@pytest.fixture(scope="session")
def live(neo4j_settings: ConnectionSettings, releases: dict[int, Expected]) -> Iterator[GraphQL]:
    server = LiveServer(ApiSettings(), neo4j_settings)
    yield GraphQL(server, "uvicorn")
    server.close()


@pytest.fixture(params=["asgi", "uvicorn"])
def gql(request: pytest.FixtureRequest) -> GraphQL:
    """Every test using it runs over both transports."""
    fixture = "asgi" if request.param == "asgi" else "live"
    client: GraphQL = request.getfixturevalue(fixture)
    return client


@contextlib.contextmanager
def asgi_app(settings: ApiSettings, connection: ConnectionSettings) -> Iterator[AsgiClient]:
    client = AsgiClient(settings, connection)
    try:
        yield client
    finally:
        client.close()
