"""Release lifecycle in the graph, and the online (transactional) writer of a release snapshot.

begin (status `loading`) -> cells and edges in bounded transactions -> finish (counts checked
against the snapshot, then `complete`) or fail; list, get, drop. Loading release V only touches
V's relationship type, V's `*_vV` properties and cells that belong to no other release.
Every function that queries is async and takes the one data layer, :class:`AsyncDatabase`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow.parquet as pq

from core.errors import CGraphError, ReleaseExists, ReleaseNotReady, UnknownRelease
from core.model import (
    CLASS_OF_SYSTEM,
    CLASS_OF_TYPE,
    COMPLETE,
    DISPLAY_LABELS,
    DROPPING,
    FAILED,
    LOADING,
    RELEASE_COUNT_KEYS,
    RELEASE_PROPERTIES,
    check_version,
    prop,
    rel_type,
)
from graph.driver import AsyncDatabase
from graph.schema import drop_release_schema, ensure_release_schema, ensure_schema
from snapshot.layout import CELLS, EDGES, Snapshot, SnapshotError

__all__ = ["COMPLETE", "FAILED", "LOADING", "ReleaseExists", "ReleaseInfo"]

CELL_BATCH = 5_000
EDGE_BATCH = 25_000
#: concurrent edge transactions of the online writer (measured on 2 cores, v117-sized store:
#: 2 x 25k-50k rows is 1.2-1.4x one writer; deadlocks between them are retried)
EDGE_WRITERS = 2
MISSING = "missing"


@dataclass(frozen=True)
class ReleaseInfo:
    version: int
    status: str
    timestamp: datetime | None
    counts: Mapping[str, int] = field(default_factory=dict)
    snapshot: str | None = None  # digest of the snapshot it was written from

    @classmethod
    def from_node(cls, node: Mapping[str, Any]) -> ReleaseInfo:
        ts: Any = node.get("timestamp")
        return cls(
            version=int(node["version"]),
            status=str(node["status"]),
            timestamp=ts.to_native() if hasattr(ts, "to_native") else ts,
            counts={k: int(node[k]) for k in RELEASE_COUNT_KEYS if node.get(k) is not None},
            snapshot=node.get("snapshot"),
        )


def gate(version: int, status: str | None) -> None:
    """The one release-status gate: raise unless the release exists and is complete."""
    if status is None or status == MISSING:
        raise UnknownRelease(version)
    if status != COMPLETE:
        raise ReleaseNotReady(version, status)


GET_RELEASES = """
UNWIND $versions AS v
MATCH (r:Release {version: v})
RETURN properties(r) AS r
"""
LIST_RELEASES = "MATCH (r:Release) RETURN properties(r) AS r ORDER BY r.version"


async def get_releases(adb: AsyncDatabase, versions: Sequence[int]) -> list[ReleaseInfo | None]:
    """Releases by version, in the order asked (None for a version not loaded)."""
    rows = await adb.read(GET_RELEASES, {"versions": [check_version(v) for v in versions]})
    found = {int(r["r"]["version"]): ReleaseInfo.from_node(r["r"]) for r in rows}
    return [found.get(v) for v in versions]


async def get_release(adb: AsyncDatabase, version: int) -> ReleaseInfo | None:
    (info,) = await get_releases(adb, [version])
    return info


async def list_releases(adb: AsyncDatabase) -> list[ReleaseInfo]:
    return [ReleaseInfo.from_node(r["r"]) for r in await adb.read(LIST_RELEASES)]


async def _clear(adb: AsyncDatabase, version: int) -> None:
    """Remove everything release `version` wrote, in bounded transactions."""
    v = check_version(version)
    await adb.run_autocommit(
        f"MATCH ()-[r:{rel_type(v)}]->() CALL (r) {{ DELETE r }} IN TRANSACTIONS OF 20000 ROWS"
    )
    removed = ", ".join(f"c.{prop(p.stem, v)}" for p in RELEASE_PROPERTIES)
    await adb.run_autocommit(
        f"MATCH (c:Cell) WHERE $version IN c.releases "
        f"CALL (c) {{ REMOVE {removed} "
        f"SET c.releases = [x IN c.releases WHERE x <> $version] }} IN TRANSACTIONS OF 20000 ROWS",
        {"version": v},
    )
    await adb.run_autocommit(
        "MATCH (c:Cell) WHERE size(c.releases) = 0 "
        "CALL (c) { DELETE c } IN TRANSACTIONS OF 20000 ROWS"
    )


BEGIN = """
MERGE (r:Release {version: $version})
SET r = {version: $version, status: $status, timestamp: $timestamp, started_at: datetime()}
"""


async def begin_load(
    adb: AsyncDatabase, version: int, timestamp: datetime | None, *, replace: bool
) -> None:
    """Mark `version` as loading, clearing an earlier attempt (or, with replace, a complete load)."""
    await ensure_schema(adb)
    existing = await get_release(adb, version)
    if existing is not None and existing.status == COMPLETE and not replace:
        raise ReleaseExists(version)
    await adb.write(BEGIN, {"version": version, "status": LOADING, "timestamp": timestamp})
    if existing is not None:
        await _clear(adb, version)
    await ensure_release_schema(adb, version)


WRITE_CELLS = """
UNWIND $rows AS row
MERGE (c:Cell {nucleus_id: row.nucleus_id})
  ON CREATE SET c.position = point({x: row.x, y: row.y, z: row.z}), c.volume = row.volume,
                c.releases = []
SET c += row.props,
    c.releases = CASE WHEN $version IN c.releases THEN c.releases ELSE c.releases + $version END
"""


async def write_cells(adb: AsyncDatabase, version: int, rows: list[dict[str, Any]]) -> int:
    """rows: {nucleus_id, x, y, z (nm), volume, props: {root_id_vV: ..., cell_type_vV: ...}}."""
    await adb.write(WRITE_CELLS, {"rows": rows, "version": check_version(version)})
    return len(rows)


def write_edges_cypher(version: int) -> str:
    """Edges grouped by presynaptic cell: $groups = [[pre, [[post, synapses, size], ...]], ...]
    (one index seek per presynaptic cell, plain lists instead of maps on the wire)."""
    return f"""
UNWIND $groups AS g
MATCH (a:Cell {{nucleus_id: g[0]}})
UNWIND g[1] AS e
MATCH (b:Cell {{nucleus_id: e[0]}})
CREATE (a)-[:{rel_type(version)} {{synapses: e[1], size: e[2]}}]->(b)
"""


EdgeGroups = list[list[Any]]


def group_edges(
    pre: list[int], post: list[int], synapses: list[int], size: list[Any]
) -> EdgeGroups:
    """Columns of edges sorted by pre -> the $groups of :func:`write_edges_cypher`."""
    groups: EdgeGroups = []
    last = None
    for a, b, n, z in zip(pre, post, synapses, size, strict=True):
        if a != last:
            current: list[list[Any]] = []
            groups.append([a, current])
            last = a
        current.append([b, n, z])
    return groups


async def write_edges(adb: AsyncDatabase, version: int, groups: EdgeGroups) -> int:
    """Write edge groups (see :func:`group_edges`); returns the number of edges."""
    await adb.write(write_edges_cypher(version), {"groups": groups})
    return sum(len(g[1]) for g in groups)


FINISH = """
MATCH (r:Release {version: $version})
SET r += $counts, r.status = $status, r.snapshot = $snapshot, r.finished_at = datetime()
"""


def display_labels_cypher(versions: Sequence[int]) -> str:
    """Set every cell's display label from the newest of ``versions`` that gives it a cell type
    (the bulk writer's rule, graph.bulk._labels); only cells whose label changes are written."""
    newest_first = sorted({check_version(v) for v in versions}, reverse=True)
    whens = "\n".join(
        f"                WHEN c.{prop('cell_type', v)} IS NOT NULL"
        f" THEN [c.{prop('cell_type', v)}, c.{prop('classification_system', v)}]"
        for v in newest_first
    )
    typed = f"CASE\n{whens}\n           END" if newest_first else "null"
    return f"""
MATCH (c:Cell)
WITH c, {typed} AS t
WITH c, CASE WHEN t IS NOT NULL THEN
          coalesce($by_system[coalesce(t[1], '')],
                   CASE WHEN t[0] IN $exc THEN 'Excitatory'
                        WHEN t[0] IN $inh THEN 'Inhibitory'
                        WHEN t[0] IN $non THEN 'NonNeuron' END) END AS label
WITH c, label, [x IN labels(c) WHERE x IN $display] AS now
WHERE now <> [x IN [label] WHERE x IS NOT NULL]
REMOVE c:Excitatory:Inhibitory:NonNeuron
WITH c, label WHERE label IS NOT NULL
SET c:$(label)
"""


async def update_display_labels(adb: AsyncDatabase, also: Sequence[int] = ()) -> None:
    """Recompute the display labels from the complete releases (and ``also``: a release about to
    be marked complete): each cell's comes from the highest version that types it."""
    versions = [i.version for i in await list_releases(adb) if i.status == COMPLETE]
    await adb.write(
        display_labels_cypher([*versions, *also]),
        {"by_system": CLASS_OF_SYSTEM, "exc": CLASS_OF_TYPE["Excitatory"],
         "inh": CLASS_OF_TYPE["Inhibitory"], "non": CLASS_OF_TYPE["NonNeuron"],
         "display": list(DISPLAY_LABELS)},
    )  # fmt: skip


def written_counts_cypher(version: int) -> str:
    return f"""
CALL () {{ MATCH ()-[r:{rel_type(version)}]->() RETURN count(r) AS edges }}
CALL () {{ MATCH (c:Cell) WHERE c.{prop("root_id", version)} IS NOT NULL RETURN count(c) AS cells }}
RETURN cells, edges
"""


class WriteMismatch(CGraphError):
    """The graph does not hold what the snapshot says (a concurrent or broken write)."""

    def __init__(self, version: int, detail: str) -> None:
        super().__init__(f"release {version} was not marked complete: {detail}")
        self.version = version


async def finish_load(
    adb: AsyncDatabase, version: int, counts: Mapping[str, int], *, snapshot: str | None = None
) -> None:
    """Check the written cells and edges against `counts`, then mark complete. Cells' display
    labels follow the newest (highest) complete release that types them, whatever the load
    order."""
    (got,) = await adb.read(written_counts_cypher(version), timeout=600)
    want = {"cells": int(counts["cells"]), "edges": int(counts["edges"])}
    if {k: int(got[k]) for k in want} != want:
        raise WriteMismatch(version, f"the graph holds {dict(got)}, the snapshot says {want}")
    await update_display_labels(adb, also=[version])
    await adb.write(FINISH, {"version": version, "counts": dict(counts), "status": COMPLETE,
                             "snapshot": snapshot})  # fmt: skip


MARK_FAILED = "MATCH (r:Release {version: $version}) SET r.status = $status, r.error = $error"


async def mark_failed(adb: AsyncDatabase, version: int, error: str) -> None:
    await adb.write(MARK_FAILED, {"version": version, "status": FAILED, "error": error[:500]})


async def drop_release(adb: AsyncDatabase, version: int) -> None:
    if await get_release(adb, version) is None:
        raise UnknownRelease(version)
    await adb.write(MARK_FAILED, {"version": version, "status": DROPPING, "error": ""})
    await _clear(adb, version)
    await drop_release_schema(adb, version)
    await adb.write("MATCH (r:Release {version: $version}) DELETE r", {"version": version})
    await update_display_labels(adb)  # the labels the dropped release gave fall back


# --------------------------------------------------------------------------- online writer

Progress = Callable[[int], object]


def cell_rows(snap: Snapshot, batch: int = CELL_BATCH) -> Iterator[list[dict[str, Any]]]:
    """Rows for WRITE_CELLS from the snapshot's cells.parquet, one batch at a time; null
    annotation values are left out (absent, as the bulk importer leaves them)."""
    v = snap.version
    names = {p.stem: prop(p.stem, v) for p in RELEASE_PROPERTIES}
    for b in pq.ParquetFile(snap.file(CELLS)).iter_batches(batch_size=batch):
        rows = []
        for r in b.to_pylist():
            props = {names[k]: r[k] for k in names if r[k] is not None}
            rows.append({"nucleus_id": r["nucleus_id"], "x": r["x"], "y": r["y"], "z": r["z"],
                         "volume": r["volume"], "props": props})  # fmt: skip
        yield rows


def edge_rows(snap: Snapshot, batch: int = EDGE_BATCH) -> Iterator[EdgeGroups]:
    """Edge groups for write_edges from edges.parquet, built lazily one batch at a time."""
    f = pq.ParquetFile(snap.file(EDGES), pre_buffer=False)
    for b in f.iter_batches(batch_size=batch):
        yield group_edges(*(b.column(c).to_pylist() for c in ("pre", "post", "synapses", "size")))


async def _pipelined(
    rows: Iterator[Any],
    write: Callable[[Any], Any],
    on_rows: Progress | None,
    *,
    writers: int = 1,
) -> None:
    """Write batches with up to ``writers`` transactions in flight while the next batch is
    decoded in a thread (memory: ``writers + 1`` batches). Deadlocks between concurrent writers
    are transient errors: the managed transaction is retried whole."""
    done = object()
    inflight: set[asyncio.Future[Any]] = set()

    async def one(batch: Any) -> None:
        n = await write(batch)
        if on_rows is not None:
            on_rows(n)

    try:
        while True:
            batch = await asyncio.to_thread(next, rows, done)
            if batch is done:
                break
            inflight.add(asyncio.ensure_future(one(batch)))
            if len(inflight) >= writers:
                finished, inflight = await asyncio.wait(
                    inflight, return_when=asyncio.FIRST_COMPLETED
                )
                for f in finished:
                    f.result()
        if inflight:
            await asyncio.gather(*inflight)
    except BaseException:
        for f in inflight:
            f.cancel()
        raise


async def write_snapshot(
    adb: AsyncDatabase,
    snap: Snapshot,
    *,
    replace: bool = False,
    on_cells: Progress | None = None,
    on_edges: Progress | None = None,
    seconds: dict[str, float] | None = None,
) -> None:
    """The online writer: add the snapshot's release to a running database in bounded
    transactions. A load that dies leaves the release `loading`/`failed`, never `complete`;
    running it again clears that attempt first. ``seconds`` receives the time of each step."""
    clock = time.perf_counter
    times = seconds if seconds is not None else {}
    v = snap.version
    counts = snap.counts
    if not snap.file(EDGES).exists() or not snap.file(CELLS).exists():
        raise SnapshotError(f"snapshot {snap.path} lacks {CELLS} or {EDGES}")
    ts = snap.manifest.get("timestamp")
    timestamp = datetime.fromisoformat(ts) if ts else None
    t = clock()
    await begin_load(adb, v, timestamp, replace=replace)
    times["begin"] = clock() - t
    try:
        t = clock()
        await _pipelined(cell_rows(snap), lambda r: write_cells(adb, v, r), on_cells,
                         writers=EDGE_WRITERS)  # fmt: skip
        times["cells"], t = clock() - t, clock()
        await _pipelined(edge_rows(snap), lambda r: write_edges(adb, v, r), on_edges,
                         writers=EDGE_WRITERS)  # fmt: skip
        times["edges"], t = clock() - t, clock()
        release = {k: counts[k] for k in RELEASE_COUNT_KEYS if k in counts}
        await finish_load(adb, v, release, snapshot=snap.digest)
        times["finish"] = clock() - t
    except BaseException as exc:
        # connection gone: the release stays `loading`, never `complete`
        with contextlib.suppress(Exception):  # the original error is what matters
            await asyncio.shield(mark_failed(adb, v, f"{type(exc).__name__}: {exc}"))
        raise
