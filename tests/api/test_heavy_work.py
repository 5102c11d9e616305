"""Heavy work on the one bounded pool (issue 12): a queue limit with a coded refusal. Partner
throughput beside degree-preserving censuses is measured by bench/bench_concurrency.py (its
heavy-work phase), not by a timed test."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from api import jobs
from core.budget import Deadline
from core.errors import LimitExceeded
from graph.settings import ConnectionSettings
from tests.api.conftest import V1, Expected
from tests.api.test_jobs import CENSUS, COUNT, App, _run


@pytest.fixture
def small_pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[jobs.WorkerPool]:
    """The process's pool replaced by one with a queue of two inline requests."""
    mine = jobs.WorkerPool(2, 1, max_inline=2)
    monkeypatch.setattr(jobs, "_pool", mine)
    yield mine


def test_inline_requests_beyond_the_queue_are_refused_at_once(
    small_pool: jobs.WorkerPool,
) -> None:
    release = threading.Event()

    async def scenario() -> list[Any]:
        budget = Deadline.after(30)
        waiting = [asyncio.create_task(jobs.run_inline(budget, release.wait)) for _ in range(2)]
        await asyncio.sleep(0.1)
        with pytest.raises(LimitExceeded, match="CGRAPH_WORK_QUEUE"):
            await jobs.run_inline(budget, release.wait)
        with pytest.raises(LimitExceeded):
            await jobs.run_coordinated(release.wait)
        # refused while the two queued requests still wait: not queued behind them
        assert not any(t.done() for t in waiting) and not release.is_set()
        release.set()
        done = await asyncio.gather(*waiting)
        assert await jobs.run_inline(budget, lambda: 7) == 7  # slots are given back
        return done

    assert asyncio.run(scenario()) == [True, True]


def test_a_full_queue_answers_limit_exceeded_over_http(
    neo4j_settings: ConnectionSettings, releases: dict[int, Expected], small_pool: jobs.WorkerPool
) -> None:
    patient = replace(neo4j_settings, query_timeout=600.0)

    async def scenario(app: App) -> list[list[str]]:
        await app.data(COUNT, v=V1, m="A -> B")  # the graph is read and cached
        bodies = await asyncio.gather(
            *(
                app.post(CENSUS, v=V1, null="DEGREE_PRESERVING", samples=300, seed=s)
                for s in range(4)
            )  # fmt: skip
        )
        return [[e["extensions"]["code"] for e in b.get("errors") or ()] for b in bodies]

    codes = _run(patient, scenario)
    assert codes.count([]) >= 1 and ["LIMIT_EXCEEDED"] in codes, codes
    assert all(c in ([], ["LIMIT_EXCEEDED"]) for c in codes), codes
