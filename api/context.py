"""Per-request context: the database handle and DataLoaders (new for every request)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from strawberry.dataloader import DataLoader

from core.errors import ReleaseNotReady, UnknownRelease
from graph import queries
from graph.driver import AsyncDatabase
from graph.queries import CellRecord
from graph.releases import COMPLETE, ReleaseInfo


@dataclass
class Context:
    """What every resolver sees as `info.context`."""

    adb: AsyncDatabase
    request: Any = None
    response: Any = None
    cells: DataLoader[int, CellRecord | None] = field(init=False)
    releases: DataLoader[int, ReleaseInfo | None] = field(init=False)
    complete: set[int] = field(default_factory=set)  # releases seen complete in this request
    prefetched: dict[Any, asyncio.Future[Any]] = field(default_factory=dict)  # api.partners

    def __post_init__(self) -> None:
        adb = self.adb

        async def load_cells(ids: Sequence[int]) -> list[CellRecord | None]:
            cells, complete = await queries.get_cells(adb, ids)
            self.complete.update(complete)
            return cells

        async def load_releases(versions: Sequence[int]) -> list[ReleaseInfo | None]:
            return await queries.get_releases(adb, versions)

        self.cells = DataLoader(load_fn=load_cells)  # type: ignore[arg-type]
        self.releases = DataLoader(load_fn=load_releases)  # type: ignore[arg-type]

    def seen_complete(self, *versions: int) -> None:
        """A guarded query succeeded: these releases are complete for the rest of the request."""
        self.complete.update(versions)

    def prime_cells(self, records: Sequence[CellRecord]) -> None:
        for r in records:
            self.cells.prime(r.nucleus_id, r)

    async def require_complete(self, version: int) -> None:
        if version in self.complete:
            return
        info = await self.releases.load(version)
        if info is None:
            raise UnknownRelease(version)
        if info.status != COMPLETE:
            raise ReleaseNotReady(version, info.status)
        self.complete.add(version)
