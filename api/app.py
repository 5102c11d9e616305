"""ASGI app factory: GraphQL at /graphql (GET in a browser: GraphiQL, its files served from
/graphiql-assets/ by this server: api/graphiql.py), bulk export under
/export (api/export.py, the same token), /healthz. Every route answers only requests whose
Host header is a loopback name or in CGRAPH_ALLOWED_HOSTS (no DNS rebinding).

    uvicorn --factory api.app:create_app          # or: cgraph serve

The async Neo4j driver is opened on first use in the serving event loop (so the app also works
under httpx's ASGITransport, which runs no lifespan) and closed at shutdown.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from api import graphiql
from api.context import Context
from api.export import routes as export_routes
from api.schema import build_schema
from api.settings import LOOPBACK_HOSTS, ApiSettings
from graph.driver import AsyncDatabase
from graph.settings import ConnectionSettings

HEALTH_TIMEOUT = 3.0  # seconds


class Backend:
    """Owns (or borrows) the AsyncDatabase; opens it lazily inside the running loop."""

    def __init__(self, conn: ConnectionSettings | None, adb: AsyncDatabase | None) -> None:
        self.conn = conn
        self._adb = adb
        self.owned = adb is None

    @property
    def adb(self) -> AsyncDatabase:
        if self._adb is None:
            self._adb = AsyncDatabase(self.conn or ConnectionSettings.from_env())
        return self._adb

    async def close(self) -> None:
        if self.owned and self._adb is not None:
            await self._adb.close()
            self._adb = None


class GraphQLApp(GraphQL[Context, None]):
    def __init__(self, backend: Backend, settings: ApiSettings) -> None:
        super().__init__(
            build_schema(settings),
            graphql_ide="graphiql" if settings.graphiql else None,
            allow_queries_via_get=True,
        )
        self.backend = backend

    async def render_graphql_ide(self, request: Any) -> Response:
        """GraphiQL with its files from this server (offline), not from a CDN."""
        return HTMLResponse(graphiql.page())

    def decode_json(self, data: str | bytes) -> object:
        return orjson.loads(data)  # its JSONDecodeError is json's: a bad body is still a 400

    def encode_json(self, data: object) -> bytes:
        """orjson (json.dumps was ~2 ms of a warm 2,000-partner answer, py-spy at v117)."""
        return orjson.dumps(data)

    async def get_context(self, request: Any, response: Any) -> Context:
        return Context(adb=self.backend.adb, request=request, response=response)

    async def process_result(self, request: Any, result: ExecutionResult) -> GraphQLHTTPResponse:
        data = await super().process_result(request, result)
        for error in data.get("errors") or ():  # safety net: errors raised outside the hooks
            extensions = error.setdefault("extensions", {})  # type: ignore[attr-defined]
            extensions.setdefault("code", "BAD_REQUEST")
        return data


class BearerAuth:
    """Pure ASGI middleware: with a token configured, /graphql and /export need `Bearer <token>`.
    The GraphiQL page itself (a browser GET asking for HTML, no query) stays open."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] != "http" or not self._protected(scope):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"authorization", b"")
        scheme, _, value = given.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), self.token):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {
                "errors": [
                    {
                        "message": "missing or wrong bearer token",
                        "extensions": {"code": "UNAUTHENTICATED"},
                    }
                ]
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b'Bearer realm="cgraph"'),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _protected(scope: Scope) -> bool:
        if scope["path"].startswith("/export"):
            return True
        if not scope["path"].startswith("/graphql"):
            return False
        if scope["method"] != "GET" or scope.get("query_string"):
            return True
        accept = dict(scope["headers"]).get(b"accept", b"")
        return b"text/html" not in accept


def _host_name(value: bytes) -> str:
    """The name of a Host header without its port: `[::1]:8000` -> `::1`."""
    text = value.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1:].split("]", 1)[0]
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


class HostCheck:
    """Pure ASGI middleware: serve only requests whose Host header names this server (loopback
    names, plus CGRAPH_ALLOWED_HOSTS), so that a web page whose DNS name was rebound to
    127.0.0.1 cannot read the API from a browser (400 otherwise)."""

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...]) -> None:
        self.app = app
        self.allowed = frozenset((*LOOPBACK_HOSTS, *(h.lower() for h in allowed)))
        self.any = "*" in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.any or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = dict(scope["headers"]).get(b"host", b"")
        name = _host_name(host)
        if name in self.allowed:
            await self.app(scope, receive, send)
            return
        message = (f"Host {name!r} is not served here; allowed: {', '.join(sorted(self.allowed))} "
                   "(CGRAPH_ALLOWED_HOSTS)")  # fmt: skip
        body = json.dumps({"errors": [{"message": message,
                                       "extensions": {"code": "BAD_REQUEST"}}]}).encode()  # fmt: skip
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


def served_app() -> ASGIApp:
    """What `cgraph serve` runs (uvicorn's factory, once per worker process): the app, then
    everything alive after start-up (modules, the schema, the driver) moved out of the
    garbage collector's generations (``gc.freeze``). A partner page allocates tens of
    thousands of objects; without this, the collections they trigger also walk the ~120k
    start-up objects again and again (bench/bench_load.py serve stage: warm p99 ~170 ms
    against ~80 ms frozen, ad hoc on a v117-sized store)."""
    app = create_app()
    gc.collect()
    gc.freeze()
    return app


def create_app(
    settings: ApiSettings | None = None,
    *,
    connection: ConnectionSettings | None = None,
    adb: AsyncDatabase | None = None,
) -> ASGIApp:
    """The service. Pass `adb` to share a driver you own (tests); else one is made from
    `connection` (default: the environment) and closed at shutdown."""
    api = settings or ApiSettings.from_env()
    backend = Backend(connection, adb)
    graphql = GraphQLApp(backend, api)

    async def healthz(request: Request) -> Response:
        try:  # the driver retries an unreachable server for ~30 s; a probe wants an answer
            ok = await asyncio.wait_for(backend.adb.ping(), HEALTH_TIMEOUT)
        except TimeoutError:
            ok = False
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "neo4j": ok}, status_code=200 if ok else 503
        )

    async def graphiql_asset(request: Request) -> Response:
        found = graphiql.asset_file(request.path_params["path"]) if api.graphiql else None
        if found is None:
            return Response("not found", status_code=404, media_type="text/plain")
        return FileResponse(found, headers={"Cache-Control": "public, max-age=86400"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await backend.close()

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/graphql", graphql),
            Route(graphiql.PREFIX + "{path:path}", graphiql_asset),
            *export_routes(),
        ],  # fmt: skip
        lifespan=lifespan,
    )
    return HostCheck(BearerAuth(app, api.token), api.allowed_hosts)
