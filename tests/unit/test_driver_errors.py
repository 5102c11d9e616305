"""graph.driver.mapped_errors: driver failures become the project's named errors (no database:
the errors are built as the driver builds them from a server's FAILURE message)."""

from __future__ import annotations

import pytest
from neo4j import exceptions as nx

from core.errors import LimitExceeded, QueryTimeout
from graph.driver import mapped_errors
from graph.settings import ConnectionSettings

SETTINGS = ConnectionSettings(uri="bolt://127.0.0.1:7687", password="connectome-local")


def _server_error(code: str, message: str) -> nx.Neo4jError:
    return nx.Neo4jError._hydrate_neo4j(code=code, message=message)


@pytest.mark.parametrize(
    "code",
    [
        # the README's unanchored motifSearch before issue 11 (sorting 475,571 matches)
        "Neo.TransientError.General.MemoryPoolOutOfMemoryError",
        "Neo.TransientError.General.TransactionOutOfMemoryError",
        "Neo.TransientError.General.OutOfMemoryError",
    ],
)
def test_memory_limits_are_limit_exceeded(code: str) -> None:
    exc = _server_error(code, "dbms.memory.transaction.total.max threshold reached")
    assert isinstance(exc, nx.TransientError)
    with (
        pytest.raises(LimitExceeded, match="more memory than Neo4j allows") as info,
        mapped_errors(SETTINGS),
    ):
        raise exc
    assert info.value.code == "LIMIT_EXCEEDED" and code in str(info.value)


def test_timeouts_and_other_errors() -> None:
    with pytest.raises(QueryTimeout), mapped_errors(SETTINGS, 3):
        raise _server_error("Neo.ClientError.Transaction.TransactionTimedOut", "timed out")
    other = _server_error("Neo.ClientError.Statement.SyntaxError", "bad")
    with pytest.raises(nx.ClientError), mapped_errors(SETTINGS):
        raise other
