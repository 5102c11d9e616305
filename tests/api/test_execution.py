"""The list fast path (api/execution.py) against graphql-core's reference executor.

The same schema is built twice: as served (fast lists) and with strawberry's own execution
context; every query shape must give the same data and the same errors. A counter proves the
fast path ran where it should and stepped aside where it should not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import strawberry
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

import api.execution
from api.context import Context
from api.schema import build_schema
from api.settings import ApiSettings
from graph.driver import AsyncDatabase
from graph.settings import ConnectionSettings
from tests.api.conftest import V1, Expected


@pytest.fixture(scope="module")
def run(neo4j_settings: ConnectionSettings, releases: dict[int, Expected]) -> Iterator[Any]:
    served = build_schema(ApiSettings())
    assert served.execution_context_class is api.execution.ExecutionContext
    reference = build_schema(ApiSettings())
    reference.execution_context_class = StrawberryGraphQLCoreExecutionContext
    runner = asyncio.Runner()
    adb = runner.run(_adb(neo4j_settings))

    def execute(schema: strawberry.Schema, query: str) -> tuple[Any, list[str]]:
        ctx = Context(adb=adb, request=None, response=None)
        result = runner.run(schema.execute(query, context_value=ctx))
        return result.data, sorted(f"{e.path}: {e.message}" for e in result.errors or ())

    yield lambda q: (execute(served, q), execute(reference, q))
    runner.run(adb.close())
    runner.close()


async def _adb(settings: ConnectionSettings) -> AsyncDatabase:
    return AsyncDatabase(settings)


@pytest.fixture
def fast_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = api.execution._complete

    def counting(items: list[Any], *args: Any) -> list[Any]:
        calls.append(len(items))
        return original(items, *args)

    monkeypatch.setattr(api.execution, "_complete", counting)
    return calls


def _cell(releases: dict[int, Expected]) -> int:
    exp = releases[V1]
    counts = exp.edges.groupby("pre").size()
    return int(counts.idxmax())  # the cell with the most output partners


def _query(cell: int, selection: str) -> str:
    page = f"outputs(version: {V1}, first: 50) {{ {selection} }}"
    query = f"{{ cell(nucleusId: {cell}) {{ {page} }} }}"
    if "...P" in selection:
        query += " fragment P on Partner { nucleusId synapses }"
    return query


FAST = [
    "nodes { nucleusId synapses size }",
    "nodes { __typename id: nucleusId n: synapses rootId cellType }",
    "nodes { ...P size }",
    "nodes { nucleusId size @skip(if: true) synapses @include(if: true) }",
]
REFERENCE = [
    "nodes { nucleusId meanSize }",  # a resolver of ours
    "nodes { nucleusId cell { nucleusId } }",  # an object field
    "nodes { synapseIds nucleusId }",  # an async resolver
]


@pytest.mark.parametrize("selection", FAST)
def test_fast_lists_equal_the_reference(
    run: Any, releases: dict[int, Expected], fast_calls: list[int], selection: str
) -> None:
    (fast, fast_errors), (ref, ref_errors) = run(_query(_cell(releases), selection))
    assert fast_errors == ref_errors == []
    assert fast == ref
    assert len(fast["cell"]["outputs"]["nodes"]) > 10
    assert fast_calls, "the fast path did not run"


@pytest.mark.parametrize("selection", REFERENCE)
def test_other_lists_take_the_reference_path(
    run: Any, releases: dict[int, Expected], fast_calls: list[int], selection: str
) -> None:
    (fast, fast_errors), (ref, ref_errors) = run(_query(_cell(releases), selection))
    assert fast_errors == ref_errors == []
    assert fast == ref
    assert not fast_calls


def test_null_in_a_non_null_field_fails_as_the_reference(
    run: Any, releases: dict[int, Expected], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad item (here: a partner whose non-null `synapses` is None) falls back, and the
    reference executor reports it with the same path and message."""
    import api.types

    original = api.types.Partner.__init__

    def broken(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if self.nucleus_id % 2:
            self.synapses = None

    monkeypatch.setattr(api.types.Partner, "__init__", broken)
    (fast, fast_errors), (ref, ref_errors) = run(
        _query(_cell(releases), "nodes { nucleusId synapses }")
    )
    assert fast_errors and fast_errors == ref_errors
    assert fast == ref
