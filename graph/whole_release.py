"""A complete release as an in-memory :class:`ReleaseGraph`, cached: from its snapshot when this
machine has the one the graph was written from (Parquet, no Bolt), else read from Neo4j.

Whole-graph work (motif counts, the triad census, null models) runs on numpy arrays, not in
Cypher: reading a release once costs about as much as one whole-graph Cypher count, and every
later count is 25-40x faster than the same count in Cypher (`bench/bench_motif.py --placement`:
44k edges, read 0.46 s; FFL 0.014 s vs 0.34 s). A complete release never changes, so the
graph is cached in-process, keyed by (database, version, started_at, finished_at): a reload
(``cgraph load --replace``, or drop + load) gets a new ``started_at``/``finished_at`` and so a new
entry; every call re-reads that stamp (one indexed lookup) before using the cache.

Cells are every (:Cell) with ``root_id_vV`` set (isolated cells included); edges are the
``SYNAPSE_VV`` relationships. Edges are read in pages of pre-synaptic cells, each page one row
of parallel lists, so decoding stays cheap and no page holds more than a bounded share.

One read per release at a time: the first caller starts it, every concurrent caller (from any
event loop or thread) waits for the same read, each within its own deadline. A snapshot read
runs in a thread of its own and stores its graph in the cache when it ends, so a caller that
timed out (or whose event loop ended) does not lose it: the next request finds it cached.

    >>> g = await get_release_graph(adb, 117)   # GraphQL
    >>> g = db.call(get_release_graph, 117)     # sync runner (CLI)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from analysis.from_snapshot import release_graph_from_snapshot
from analysis.release_graph import ReleaseGraph
from core.budget import Deadline
from core.errors import QueryTimeout, ReleaseNotReady
from core.model import RELEASE_PROPERTIES, check_version, prop, rel_type
from graph.driver import AsyncDatabase
from graph.releases import gate
from snapshot.layout import Snapshot, SnapshotError, open_snapshot

#: How many release graphs the process keeps (least recently used are dropped).
MAX_CACHED = 4
#: Pre-synaptic cells per edge page.
EDGE_PAGE_CELLS = 4_000

RELEASE_STAMP = """
MATCH (r:Release {version: $version})
RETURN r.status AS status, toString(r.started_at) AS started_at,
       toString(r.finished_at) AS finished_at, r.snapshot AS snapshot,
       coalesce(r.slot, 0) AS slot
"""


def cells_cypher(version: int, slot: int = 0) -> str:
    """Every cell of the release (in ``slot``) with its node attributes, by nucleus id."""
    v = check_version(version)
    scoped = ",\n       ".join(f"c.{prop(p.stem, v, slot)} AS {p.stem}" for p in RELEASE_PROPERTIES)
    return f"""
MATCH (c:Cell) WHERE c.{prop("root_id", v, slot)} IS NOT NULL
RETURN c.nucleus_id AS nucleus_id, c.volume AS volume, c.position.x AS position_x,
       c.position.y AS position_y, c.position.z AS position_z,
       {scoped}
ORDER BY nucleus_id
"""


#: cell columns of :func:`cells_cypher` kept as further node attributes of the graph
_EXTRA = ("volume", "position_x", "position_y", "position_z") + tuple(
    p.stem for p in RELEASE_PROPERTIES if p.stem not in ("cell_type", "is_neuron",
                                                        "classification_system")
)  # fmt: skip


def edges_cypher(version: int, slot: int = 0) -> str:
    """The out-edges of a page of cells ($ids) as parallel lists (size -1 = null)."""
    return f"""
UNWIND $ids AS id
MATCH (a:Cell {{nucleus_id: id}})-[r:{rel_type(version, slot)}]->(b:Cell)
RETURN collect(a.nucleus_id) AS pre, collect(b.nucleus_id) AS post,
       collect(r.synapses) AS synapses, collect(coalesce(r.size, -1)) AS size
"""


Stamp = tuple[str | None, str | None, int]  # started_at, finished_at, slot

_cache: OrderedDict[tuple[str, str, int], tuple[Stamp, ReleaseGraph]] = OrderedDict()
_lock = threading.RLock()


def _stamp(version: int, rows: list[dict[str, Any]]) -> tuple[Stamp, str | None]:
    gate(version, str(rows[0]["status"]) if rows else None)
    r = rows[0]
    return (r["started_at"], r["finished_at"], int(r["slot"])), r["snapshot"]


def _cached(key: tuple[str, str, int], stamp: Stamp) -> ReleaseGraph | None:
    with _lock:
        hit = _cache.get(key)
        if hit is None or hit[0] != stamp:
            return None
        _cache.move_to_end(key)
        return hit[1]


def _store(key: tuple[str, str, int], stamp: Stamp, g: ReleaseGraph) -> None:
    with _lock:
        _cache[key] = (stamp, g)
        _cache.move_to_end(key)
        while len(_cache) > MAX_CACHED:
            _cache.popitem(last=False)


def clear_cache() -> None:
    """Forget every cached release graph."""
    with _lock:
        _cache.clear()


def build_graph(
    cells: Sequence[Mapping[str, Any]], pages: Sequence[Mapping[str, Any]]
) -> ReleaseGraph:
    """A ReleaseGraph from the rows of :func:`cells_cypher` and the pages of :func:`edges_cypher`."""
    ids = np.fromiter((r["nucleus_id"] for r in cells), dtype=np.int64, count=len(cells))

    def col(name: str) -> list[Any]:
        return [r[name] for r in cells]

    def cat(name: str) -> np.ndarray[Any, Any]:
        parts = [np.asarray(p[name], dtype=np.int64) for p in pages]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    size = cat("size").astype(np.float64)
    size[size < 0] = np.nan
    return ReleaseGraph.from_ids(
        ids, cat("pre"), cat("post"), synapses=cat("synapses"), size=size,
        cell_type=col("cell_type"), is_neuron=col("is_neuron"),
        classification_system=col("classification_system"),
        attributes={k: _values(col(k)) for k in _EXTRA},
    )  # fmt: skip


def _values(values: list[Any]) -> np.ndarray[Any, Any]:
    """Floats with NaN for null; anything else typed when complete, else object with None."""
    if any(isinstance(x, float) for x in values):
        return np.array([np.nan if x is None else x for x in values], dtype=np.float64)
    if values and all(x is not None for x in values):
        return np.asarray(values)
    return np.asarray(values, dtype=object)


def _pages(ids: list[int]) -> list[list[int]]:
    return [ids[i : i + EDGE_PAGE_CELLS] for i in range(0, len(ids), EDGE_PAGE_CELLS)]


def _left(dl: Deadline) -> float:
    """Seconds a Neo4j read may take within the deadline."""
    dl.check()
    return max(0.001, dl.remaining())


Flight = tuple[str, str, int, Stamp]
#: Bolt reads in progress (bound to the event loop that started them)
_inflight: dict[Flight, asyncio.Future[ReleaseGraph]] = {}
#: snapshot reads in progress (any loop or thread may wait for them)
_snapshot_reads: dict[Flight, concurrent.futures.Future[ReleaseGraph]] = {}


async def get_release_graph(
    adb: AsyncDatabase, version: int, *, deadline: Deadline | None = None
) -> ReleaseGraph:
    """The release as a ReleaseGraph (cached); raises UnknownRelease, ReleaseNotReady, or
    QueryTimeout when reading it outlasts ``deadline`` (default: the query timeout from now).

    Read from the release's snapshot when this machine has it (the digest on the Release node
    names it), in a worker thread so the event loop keeps serving; else over Bolt. Concurrent
    calls for the same release wait for one read instead of starting another."""
    v = check_version(version)
    dl = deadline or Deadline.after(adb.settings.query_timeout)
    stamp, digest = _stamp(v, await adb.read(RELEASE_STAMP, {"version": v}, timeout=_left(dl)))
    key = (adb.settings.uri, adb.name, v)
    if (g := _cached(key, stamp)) is not None:
        return g
    flight: Flight = (*key, stamp)
    snap = find_snapshot(v, digest)
    if snap is not None:  # each waiter its own wrapper: giving up cancels only that wrapper
        read: asyncio.Future[ReleaseGraph] = asyncio.wrap_future(_snapshot_read(flight, snap))
    else:
        if flight not in _inflight:
            _inflight[flight] = asyncio.ensure_future(_read_graph(adb, v, key, stamp, dl))
            _inflight[flight].add_done_callback(lambda _: _inflight.pop(flight, None))
        read = asyncio.shield(_inflight[flight])
    try:
        return await asyncio.wait_for(read, timeout=_left(dl))
    except TimeoutError:  # the read goes on and is cached for the next request
        raise QueryTimeout(dl.seconds) from None


def _snapshot_read(flight: Flight, snap: Snapshot) -> concurrent.futures.Future[ReleaseGraph]:
    """The read of ``snap`` for ``flight``: the one in progress, else a new one (a thread)."""
    with _lock:
        if (g := _cached(flight[:3], flight[3])) is not None:  # stored while we looked
            done: concurrent.futures.Future[ReleaseGraph] = concurrent.futures.Future()
            done.set_result(g)
            return done
        read = _snapshot_reads.get(flight)
        if read is None:
            read = _snapshot_reads[flight] = concurrent.futures.Future()
            read.set_running_or_notify_cancel()  # a waiter that gives up cannot cancel it
            name = f"cgraph-read-v{flight[2]}"
            threading.Thread(target=_run_read, args=(flight, snap, read), name=name,
                             daemon=True).start()  # fmt: skip
        return read


def _run_read(
    flight: Flight, snap: Snapshot, read: concurrent.futures.Future[ReleaseGraph]
) -> None:
    try:
        g = release_graph_from_snapshot(snap)
    except BaseException as exc:  # noqa: BLE001 - handed to every waiter
        with _lock:
            _snapshot_reads.pop(flight, None)
        read.set_exception(exc)
        return
    with _lock:
        _store(flight[:3], flight[3], g)  # cached before the flight ends: no gap
        _snapshot_reads.pop(flight, None)
    read.set_result(g)


async def _read_graph(
    adb: AsyncDatabase, v: int, key: tuple[str, str, int], stamp: Stamp, dl: Deadline
) -> ReleaseGraph:
    async def read(cypher: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        dl.check()
        return await adb.read(cypher, params, timeout=_left(dl))

    for _ in range(2):  # a reload that finished while we read: read again
        slot = stamp[2]
        cells = await read(cells_cypher(v, slot), {})
        ids = [r["nucleus_id"] for r in cells]
        pages = [(await read(edges_cypher(v, slot), {"ids": p}))[0] for p in _pages(ids)]
        again, _digest = _stamp(v, await read(RELEASE_STAMP, {"version": v}))
        if again == stamp:
            g = build_graph(cells, pages)
            _store(key, stamp, g)
            return g
        stamp = again
    raise ReleaseNotReady(v, "reloading")


def find_snapshot(version: int, digest: str | None) -> Snapshot | None:
    """This machine's snapshot of the release when it is the one the graph was written from."""
    if digest is None:
        return None
    try:
        return open_snapshot(version, digest=digest)
    except SnapshotError:
        return None
