"""Per-request context: the database handle and DataLoaders (new for every request)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from strawberry.dataloader import DataLoader

from api.export import release_snapshot
from graph import queries
from graph.driver import AsyncDatabase
from graph.queries import CellRecord
from graph.releases import ReleaseInfo, gate, get_releases
from snapshot.layout import Snapshot, SnapshotError, open_snapshot
from snapshot.read import EdgeSynapses, edge_synapses

EdgeKey = tuple[int, int, int]  # version, pre nucleus ID, post nucleus ID


@dataclass
class Context:
    """What every resolver sees as `info.context`."""

    adb: AsyncDatabase
    request: Any = None
    response: Any = None
    cells: DataLoader[tuple[str, int], CellRecord | None] = field(init=False)  # (dataset, id)
    releases: DataLoader[int, ReleaseInfo | None] = field(init=False)
    edge_synapses: DataLoader[EdgeKey, EdgeSynapses] = field(init=False)
    complete: set[int] = field(default_factory=set)  # releases seen complete in this request
    #: releases whose data this request read (the provenance extension reports them), with the
    #: digest of the snapshot read when the answer came from one
    read: dict[int, str | None] = field(default_factory=dict)
    snapshots: dict[int, Snapshot] = field(default_factory=dict)  # the snapshots it read
    prefetched: dict[Any, asyncio.Future[Any]] = field(default_factory=dict)  # api.partners

    def __post_init__(self) -> None:
        adb = self.adb

        async def load_cells(keys: Sequence[tuple[str, int]]) -> list[CellRecord | None]:
            cells, complete = await queries.get_cells(adb, keys)
            for info in complete:  # provenance then needs no read of its own
                self.releases.prime(info.version, info)
            self.complete.update(info.version for info in complete)
            return cells

        async def load_releases(versions: Sequence[int]) -> list[ReleaseInfo | None]:
            return await get_releases(adb, versions)

        self.cells = DataLoader(load_fn=load_cells)  # type: ignore[arg-type]
        self.releases = DataLoader(load_fn=load_releases)  # type: ignore[arg-type]
        self.edge_synapses = DataLoader(load_fn=self._load_edge_synapses)  # type: ignore[arg-type]

    async def _load_edge_synapses(self, keys: Sequence[EdgeKey]) -> list[EdgeSynapses]:
        """Per-synapse IDs and sizes of edges, from each release's snapshot (one read of a few
        row groups per release, in a worker thread)."""
        by_version: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for v, pre, post in keys:
            by_version[v].append((pre, post))
        found: dict[EdgeKey, EdgeSynapses] = {}
        for v, pairs in by_version.items():
            info = await self.releases.load(v)
            gate(v, None if info is None else info.status)
            assert info is not None
            try:
                snap = open_snapshot(v, digest=info.snapshot) if info.snapshot else None
            except SnapshotError:
                snap = None
            if snap is None:
                raise SnapshotError(
                    f"per-synapse values of release {v} need its snapshot on the server "
                    "(CGRAPH_DATA); it is not there"
                )
            self.read[v] = snap.digest
            got = await asyncio.to_thread(edge_synapses, snap, pairs)
            found.update({(v, *pair): value for pair, value in got.items()})
        return [found[k] for k in keys]

    def seen_complete(self, *versions: int) -> None:
        """A guarded query succeeded: these releases are complete for the rest of the request
        (and were read by it)."""
        self.complete.update(versions)
        self.mark_read(*versions)

    def mark_read(self, *versions: int) -> None:
        for v in versions:
            self.read.setdefault(v, None)

    def snapshot(self, version: int) -> Snapshot:
        """The served snapshot of a release (UNKNOWN_RELEASE when there is none), recorded as
        read by this request."""
        snap = release_snapshot(version)
        self.read[snap.version] = snap.digest
        self.snapshots[snap.version] = snap
        return snap

    def releases_known(self, version: int) -> bool:
        """Whether this request already holds the release's node (no further read needed)."""
        return self.releases.cache_map.get(version) is not None

    def prime_cells(self, records: Sequence[CellRecord]) -> None:
        for r in records:
            self.cells.prime(r.key, r)

    async def dataset_of(self, version: int) -> str:
        """The dataset a (complete) release belongs to."""
        await self.require_complete(version)
        info = await self.releases.load(version)
        assert info is not None
        return info.dataset

    async def require_complete(self, version: int) -> None:
        if version in self.complete:
            self.mark_read(version)
            return
        info = await self.releases.load(version)
        gate(version, None if info is None else info.status)
        self.complete.add(version)
        self.mark_read(version)
