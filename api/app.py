"""ASGI app factory: GraphQL at /graphql (GET in a browser: GraphiQL), /healthz.

    uvicorn --factory api.app:create_app          # or: cgraph serve

The async Neo4j driver is opened on first use in the serving event loop (so the app also works
under httpx's ASGITransport, which runs no lifespan) and closed at shutdown.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from api.context import Context
from api.schema import build_schema
from api.settings import ApiSettings
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

    async def get_context(self, request: Any, response: Any) -> Context:
        return Context(adb=self.backend.adb, request=request, response=response)

    async def process_result(self, request: Any, result: ExecutionResult) -> GraphQLHTTPResponse:
        data = await super().process_result(request, result)
        for error in data.get("errors") or ():  # safety net: errors raised outside the hooks
            extensions = error.setdefault("extensions", {})  # type: ignore[attr-defined]
            extensions.setdefault("code", "BAD_REQUEST")
        return data


class BearerAuth:
    """Pure ASGI middleware: with a token configured, /graphql needs `Bearer <token>`.
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
        if not scope["path"].startswith("/graphql"):
            return False
        if scope["method"] != "GET" or scope.get("query_string"):
            return True
        accept = dict(scope["headers"]).get(b"accept", b"")
        return b"text/html" not in accept


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

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await backend.close()

    app = Starlette(
        routes=[Route("/healthz", healthz), Route("/graphql", graphql)],
        lifespan=lifespan,
    )
    return BearerAuth(app, api.token)
