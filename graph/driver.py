"""The one place that owns Neo4j drivers (sync and async).

Every query goes through `Database.read`/`write` (or the async twins): managed transactions,
the database name always passed, reads under a timeout that raises `QueryTimeout` instead of
returning less, and driver errors mapped to the project's named exceptions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import neo4j
from neo4j import exceptions as nx

from graph.errors import AuthFailed, CGraphError, Neo4jUnavailable, QueryTimeout
from graph.settings import ConnectionSettings

T = TypeVar("T")
Params = Mapping[str, Any]


def _is_timeout(exc: Exception) -> bool:
    code = getattr(exc, "code", None) or ""
    return "TransactionTimedOut" in code or "TransactionTimedOutClientConfiguration" in code


@contextlib.contextmanager
def mapped_errors(settings: ConnectionSettings, timeout: float | None = None) -> Iterator[None]:
    """Translate driver exceptions into named project errors."""
    try:
        yield
    except nx.AuthError as exc:
        raise AuthFailed(
            f"Neo4j at {settings.uri} refused user {settings.user!r}: wrong password? "
            "(set NEO4J_PASSWORD)"
        ) from exc
    except (nx.ServiceUnavailable, nx.SessionExpired, OSError) as exc:
        raise Neo4jUnavailable(
            f"cannot reach Neo4j at {settings.uri} ({type(exc).__name__}); is it running? "
            "(`cgraph neo4j start`, or set NEO4J_URI)"
        ) from exc
    except nx.Neo4jError as exc:
        if _is_timeout(exc):
            raise QueryTimeout(timeout or settings.query_timeout) from exc
        raise
    except nx.ConfigurationError as exc:
        raise CGraphError(f"bad Neo4j configuration: {exc}") from exc


def _auth(settings: ConnectionSettings) -> tuple[str, str]:
    return (settings.user, settings.password)


class Database:
    """Synchronous access: CLI, loaders, tests."""

    def __init__(self, settings: ConnectionSettings | None = None) -> None:
        self.settings = settings or ConnectionSettings.from_env()
        with mapped_errors(self.settings):
            self.driver = neo4j.GraphDatabase.driver(
                self.settings.uri, auth=_auth(self.settings), max_connection_pool_size=32
            )

    @property
    def name(self) -> str:
        return self.settings.database

    def close(self) -> None:
        self.driver.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def verify(self) -> str:
        """Check connectivity and credentials; return the server agent (e.g. 'Neo4j/5.26.30')."""
        with mapped_errors(self.settings):
            self.driver.verify_connectivity()
            info = self.driver.get_server_info()
            self.read("RETURN 1 AS ok")
            return info.agent

    def read(
        self, cypher: str, params: Params | None = None, *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        seconds = timeout if timeout is not None else self.settings.query_timeout

        @neo4j.unit_of_work(timeout=seconds)
        def work(tx: neo4j.ManagedTransaction) -> list[dict[str, Any]]:
            return [r.data() for r in tx.run(cypher, dict(params or {}))]  # type: ignore[arg-type]

        with mapped_errors(self.settings, seconds), self.driver.session(database=self.name) as s:
            return s.execute_read(work)

    def write(self, cypher: str, params: Params | None = None) -> list[dict[str, Any]]:
        def work(tx: neo4j.ManagedTransaction) -> list[dict[str, Any]]:
            return [r.data() for r in tx.run(cypher, dict(params or {}))]  # type: ignore[arg-type]

        with mapped_errors(self.settings), self.driver.session(database=self.name) as s:
            return s.execute_write(work)

    def write_tx(self, work: Callable[[neo4j.ManagedTransaction], T]) -> T:
        """Run several statements in one managed write transaction."""
        with mapped_errors(self.settings), self.driver.session(database=self.name) as s:
            return s.execute_write(work)

    def run_autocommit(self, cypher: str, params: Params | None = None) -> None:
        """Schema statements (CREATE INDEX/CONSTRAINT) and CALL {} IN TRANSACTIONS need this."""
        with mapped_errors(self.settings), self.driver.session(database=self.name) as s:
            s.run(cypher, dict(params or {})).consume()  # type: ignore[arg-type]


class AsyncDatabase:
    """Asynchronous read access for the GraphQL service."""

    def __init__(self, settings: ConnectionSettings | None = None) -> None:
        self.settings = settings or ConnectionSettings.from_env()
        with mapped_errors(self.settings):
            self.driver = neo4j.AsyncGraphDatabase.driver(
                self.settings.uri, auth=_auth(self.settings), max_connection_pool_size=64
            )

    @property
    def name(self) -> str:
        return self.settings.database

    async def close(self) -> None:
        await self.driver.close()

    async def read(
        self, cypher: str, params: Params | None = None, *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        seconds = timeout if timeout is not None else self.settings.query_timeout

        @neo4j.unit_of_work(timeout=seconds)
        async def work(tx: neo4j.AsyncManagedTransaction) -> list[dict[str, Any]]:
            result = await tx.run(cypher, dict(params or {}))  # type: ignore[arg-type]
            return [r.data() async for r in result]

        with mapped_errors(self.settings, seconds):
            async with self.driver.session(database=self.name) as s:
                return await s.execute_read(work)

    async def ping(self) -> bool:
        try:
            await self.read("RETURN 1 AS ok", timeout=5)
        except CGraphError:
            return False
        return True
