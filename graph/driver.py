"""The one place that owns the Neo4j driver: one async data layer, and a sync runner over it.

Every query goes through :class:`AsyncDatabase` (``read``, ``read_auto``, ``write``, ``write_tx``,
``run_autocommit``): managed transactions, the database name always passed, reads under a
timeout that raises `QueryTimeout` instead of returning less, and driver errors mapped to the
project's named exceptions (a transaction over Neo4j's memory limit: `LimitExceeded`). Every function of ``graph/`` that queries is ``async`` and takes an
``AsyncDatabase``.

Sync code (the CLI, loaders' pipeline, tests, benchmarks) uses :class:`Database`, a runner
(datasette's pattern): it owns an event loop in a background thread with an ``AsyncDatabase``
opened in it, and runs coroutines there::

    with Database() as db:
        info = db.call(releases.get_release, 117)   # = await releases.get_release(adb, 117)
        rows = db.read("MATCH (c:Cell) RETURN count(c) AS n")
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from typing import Any, TypeVar

import neo4j
from neo4j import exceptions as nx

from core.errors import AuthFailed, CGraphError, LimitExceeded, Neo4jUnavailable, QueryTimeout
from graph.settings import ConnectionSettings

T = TypeVar("T")
Params = Mapping[str, Any]


def _is_timeout(exc: Exception) -> bool:
    code = getattr(exc, "code", None) or ""
    return "TransactionTimedOut" in code or "TransactionTimedOutClientConfiguration" in code


#: Neo4j's codes for a transaction that needs more memory than the server allows it
#: (db.memory.transaction.max, dbms.memory.transaction.total.max) or than the heap has
_MEMORY_CODES = ("MemoryPoolOutOfMemoryError", "TransactionOutOfMemoryError", "OutOfMemoryError")


def _is_memory_limit(exc: Exception) -> bool:
    code = getattr(exc, "code", None) or ""
    return code.rsplit(".", 1)[-1] in _MEMORY_CODES


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
        if _is_memory_limit(exc):
            raise LimitExceeded(
                "the query needs more memory than Neo4j allows a transaction "
                f"({exc.code}); narrow it (anchor a motif node, a smaller page) or raise "
                "dbms.memory.transaction.total.max / db.memory.transaction.max"
            ) from exc
        raise
    except nx.ConfigurationError as exc:
        raise CGraphError(f"bad Neo4j configuration: {exc}") from exc


def _auth(settings: ConnectionSettings) -> tuple[str, str]:
    return (settings.user, settings.password)


class AsyncDatabase:
    """The data layer: every read and write of the project (GraphQL service, loaders, CLI)."""

    def __init__(
        self,
        settings: ConnectionSettings | None = None,
        *,
        pool_size: int = 64,
        retry_time: float = 5.0,
    ) -> None:
        """``retry_time``: seconds a managed transaction is retried on transient errors (the
        service: short, it answers UNAVAILABLE fast; writers: longer, deadlocks between
        concurrent writers are retried)."""
        self.settings = settings or ConnectionSettings.from_env()
        #: {version: slot} of releases as last seen by a guarded read (graph.queries)
        self.release_slots: dict[int, int] = {}
        with mapped_errors(self.settings):
            # a service answers fast or says UNAVAILABLE: no 30 s waits on a dead server
            self.driver = neo4j.AsyncGraphDatabase.driver(
                self.settings.uri,
                auth=_auth(self.settings),
                # "label/property does not exist" on a first load or an unknown release is
                # expected (UNKNOWN_RELEASE): no driver warnings on the console
                notifications_min_severity="OFF",
                max_connection_pool_size=pool_size,
                connection_timeout=5.0,
                connection_acquisition_timeout=10.0,
                max_transaction_retry_time=retry_time,
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

    async def write(self, cypher: str, params: Params | None = None) -> list[dict[str, Any]]:
        async def work(tx: neo4j.AsyncManagedTransaction) -> list[dict[str, Any]]:
            result = await tx.run(cypher, dict(params or {}))  # type: ignore[arg-type]
            return [r.data() async for r in result]

        with mapped_errors(self.settings):
            async with self.driver.session(database=self.name) as s:
                return await s.execute_write(work)

    async def write_tx(self, work: Callable[[neo4j.AsyncManagedTransaction], Awaitable[T]]) -> T:
        """Run several statements in one managed write transaction."""
        with mapped_errors(self.settings):
            async with self.driver.session(database=self.name) as s:
                return await s.execute_write(work)

    async def run_autocommit(self, cypher: str, params: Params | None = None) -> None:
        """Schema statements (CREATE INDEX/CONSTRAINT) and CALL {} IN TRANSACTIONS need this."""
        with mapped_errors(self.settings):
            async with self.driver.session(database=self.name) as s:
                result = await s.run(cypher, dict(params or {}))  # type: ignore[arg-type]
                await result.consume()

    async def verify(self) -> str:
        """Check connectivity and credentials; return the server agent (e.g. 'Neo4j/5.26.30')."""
        with mapped_errors(self.settings):
            await self.driver.verify_connectivity()
            info = await self.driver.get_server_info()
        await self.read("RETURN 1 AS ok")
        return info.agent

    async def read_auto(
        self, cypher: str, params: Params | None = None, *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """One auto-commit read in a READ-mode session (the server refuses writes in it), under
        the query timeout. For the service's hot path: a managed transaction adds BEGIN/COMMIT
        round trips (4.7 ms against 1.6 ms for a 200-partner page on the 10M bench release) and
        `Record.data()` walks every value in Python; callers return plain values, so
        `dict(record)` is enough. No retries: a failed read is reported, not repeated."""
        seconds = timeout if timeout is not None else self.settings.query_timeout
        query = neo4j.Query(cypher, timeout=seconds)  # type: ignore[arg-type]
        with mapped_errors(self.settings, seconds):
            async with self.driver.session(
                database=self.name, default_access_mode=neo4j.READ_ACCESS
            ) as session:
                result = await session.run(query, dict(params or {}))
                return [dict(r) async for r in result]

    async def ping(self) -> bool:
        try:
            await self.read("RETURN 1 AS ok", timeout=5)
        except CGraphError:
            return False
        return True


class Database:
    """Sync runner over :class:`AsyncDatabase` for the CLI, the load pipeline and tests.

    One event loop in a daemon thread; ``run`` submits a coroutine to it and waits. ``call(fn,
    *args)`` is ``run(fn(self.adb, *args))`` for the async functions of ``graph/``.
    """

    def __init__(self, settings: ConnectionSettings | None = None) -> None:
        self.settings = settings or ConnectionSettings.from_env()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="neo4j-runner")  # fmt: skip
        self._thread.start()
        self.adb: AsyncDatabase = self.run(self._open())

    async def _open(self) -> AsyncDatabase:
        return AsyncDatabase(self.settings, pool_size=32, retry_time=60.0)

    @property
    def name(self) -> str:
        return self.settings.database

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the runner's loop and return its result (exceptions propagate)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def call(self, fn: Callable[..., Coroutine[Any, Any, T]], /, *args: Any, **kwargs: Any) -> T:
        """``await fn(adb, *args, **kwargs)`` on the runner."""
        return self.run(fn(self.adb, *args, **kwargs))

    def verify(self) -> str:
        return self.run(self.adb.verify())

    def read(
        self, cypher: str, params: Params | None = None, *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        return self.run(self.adb.read(cypher, params, timeout=timeout))

    def write(self, cypher: str, params: Params | None = None) -> list[dict[str, Any]]:
        return self.run(self.adb.write(cypher, params))

    def run_autocommit(self, cypher: str, params: Params | None = None) -> None:
        self.run(self.adb.run_autocommit(cypher, params))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self.run(self.adb.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
