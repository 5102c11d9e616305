"""Release lifecycle in the graph, and the online (transactional) writer of a release snapshot.

claim -> begin (status `loading`) -> cells and edges in bounded transactions -> finish (counts
checked against the snapshot, then `complete`) or fail; list, get, drop.

A load (or drop) holds an exclusive *claim* on its version for its whole run, taken in one
transaction on the Release node (which the write lock serialises): ``claim``, ``claim_holder``
(host, pid, user) and ``claim_heartbeat``, refreshed every ``HEARTBEAT_S``. A second loader of
the same version is refused with :class:`LoadInProgress` naming the holder. A claim is stale,
and taken over, when its heartbeat is older than ``STALE_AFTER_S`` or its holder is a process of
this host that no longer runs (a killed loader). Every later step of the load (begin, finish,
fail) is conditioned on the claim token, so a loader whose claim was taken over stops with
:class:`ClaimLost` and never marks anything complete. Loading release V only touches
V's relationship type, V's `*_vV` properties and cells that belong to no other release.
Every function that queries is async and takes the one data layer, :class:`AsyncDatabase`.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow.parquet as pq

from core.errors import (
    BadRequest,
    CGraphError,
    ClaimLost,
    DatasetMismatch,
    LoadInProgress,
    ReleaseExists,
    ReleaseNotReady,
    UnknownRelease,
)
from core.model import (
    CLASS_OF_SYSTEM,
    CLASS_OF_TYPE,
    COMPLETE,
    DEFAULT_DATASET,
    DISPLAY_LABELS,
    DROPPING,
    FAILED,
    LOADING,
    RELEASE_COUNT_KEYS,
    RELEASE_PROPERTIES,
    SLOTS,
    check_slot,
    check_version,
    default_dataset,
    prop,
    rel_type,
)
from graph.driver import AsyncDatabase
from graph.schema import drop_release_schema, ensure_release_schema, ensure_schema
from snapshot.layout import CELLS, EDGES, Snapshot, SnapshotError, snapshot_dataset

__all__ = ["COMPLETE", "FAILED", "LOADING", "ReleaseExists", "ReleaseInfo"]

CELL_BATCH = 5_000
#: edges per transaction of the online writer: an ad-hoc sweep on a v117-sized store (2 cores,
#: 2 writers, 10k-100k rows) was fastest at 20k-25k; the bench's online stage measures it
EDGE_BATCH = 20_000
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
    slot: int = 0  # where its graph lives (core.model.SLOTS); a replace writes the other one
    dataset: str = DEFAULT_DATASET  # the dataset (datastack) the release belongs to
    loaded_at: datetime | None = None  # when its load finished (Release.finished_at)

    @classmethod
    def from_node(cls, node: Mapping[str, Any]) -> ReleaseInfo:
        ts: Any = node.get("timestamp")
        done: Any = node.get("finished_at")
        return cls(
            version=int(node["version"]),
            status=str(node["status"]),
            timestamp=ts.to_native() if hasattr(ts, "to_native") else ts,
            counts={k: int(node[k]) for k in RELEASE_COUNT_KEYS if node.get(k) is not None},
            snapshot=node.get("snapshot"),
            slot=int(node.get("slot") or 0),
            dataset=str(node.get("dataset") or default_dataset()),
            loaded_at=done.to_native() if hasattr(done, "to_native") else done,
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


def loading_tag(version: int, slot: int) -> str:
    """The mark a cell carries in ``loading`` while a load writes it (so that no clean-up
    deletes it as an orphan before the load is complete)."""
    return f"{check_version(version)}/{check_slot(slot)}"


def target_slot(info: ReleaseInfo | None) -> int:
    """Where a load of a release writes: beside a complete release (a replace: the other
    slot, while the served one keeps answering), else in the release's own slot."""
    if info is None:
        return 0
    return 1 - info.slot if info.status == COMPLETE else info.slot


async def _delete_orphans(adb: AsyncDatabase) -> None:
    await adb.run_autocommit(
        "MATCH (c:Cell) WHERE size(c.releases) = 0 AND size(coalesce(c.loading, [])) = 0 "
        "CALL (c) { DELETE c } IN TRANSACTIONS OF 20000 ROWS"
    )


async def _clear_slot(adb: AsyncDatabase, version: int, slot: int, *, orphans: bool = True) -> None:
    """Remove what release ``version`` holds in ``slot`` (edges, cell properties, loading
    marks), in bounded transactions; then (``orphans``) cells left in no release and no load
    are deleted."""
    v, sl = check_version(version), check_slot(slot)
    await adb.run_autocommit(
        f"MATCH ()-[r:{rel_type(v, sl)}]->() CALL (r) {{ DELETE r }} IN TRANSACTIONS OF 20000 ROWS"
    )
    removed = ", ".join(f"c.{prop(p.stem, v, sl)}" for p in RELEASE_PROPERTIES)
    await adb.run_autocommit(
        f"MATCH (c:Cell) WHERE c.{prop('root_id', v, sl)} IS NOT NULL "
        f"OR $tag IN coalesce(c.loading, []) "
        f"CALL (c) {{ REMOVE {removed} "
        f"WITH c, [x IN coalesce(c.loading, []) WHERE x <> $tag] AS rest "
        f"SET c.loading = CASE WHEN size(rest) = 0 THEN null ELSE rest END }} "
        f"IN TRANSACTIONS OF 20000 ROWS",
        {"tag": loading_tag(v, sl)},
    )
    if orphans:
        await _delete_orphans(adb)


async def _clear(adb: AsyncDatabase, version: int) -> None:
    """Remove everything release ``version`` wrote, both slots, in bounded transactions."""
    v = check_version(version)
    await adb.run_autocommit(
        "MATCH (c:Cell) WHERE $version IN c.releases "
        "CALL (c) { SET c.releases = [x IN c.releases WHERE x <> $version] } "
        "IN TRANSACTIONS OF 20000 ROWS",
        {"version": v},
    )
    for sl in SLOTS:
        await _clear_slot(adb, v, sl, orphans=False)
    await _delete_orphans(adb)


# --------------------------------------------------------------------------- the load claim

#: seconds between a loader's heartbeats, and the silence after which its claim is stale
HEARTBEAT_S = 15.0
STALE_AFTER_S = 120.0
CLAIM_KEYS = ("claim", "claim_holder", "claim_host", "claim_pid", "claim_heartbeat")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


@dataclass(frozen=True)
class Claim:
    """This process's claim on one release version (``token`` is unguessable and unique)."""

    version: int
    dataset: str | None = None  # the dataset the load writes (None: a drop, any dataset)
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    #: set while the database is offline on purpose (the bulk writer stops the server to
    #: import): heartbeats wait instead of retrying against a closed port, which the driver
    #: reports on the console as failed transactions
    paused: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)

    @property
    def holder(self) -> str:
        try:
            user = getpass.getuser()
        except Exception:  # no user name (a container without passwd entry)
            user = str(os.getuid())
        return f"pid {self.pid} of {user}@{self.host}"

    def is_stale(self, props: Mapping[str, Any], age: float | None) -> bool:
        """Whether the claim recorded in ``props`` (heartbeat ``age`` seconds ago) is dead."""
        if age is None or age > STALE_AFTER_S:
            return True
        pid = props.get("claim_pid")
        return props.get("claim_host") == self.host and pid is not None and not _pid_alive(int(pid))


LOCK_RELEASE = """
MERGE (r:Release {version: $version})
  ON CREATE SET r.status = $loading, r.created_by = $token
SET r._lock = true
REMOVE r._lock
RETURN properties(r) AS r,
       CASE WHEN r.claim_heartbeat IS NULL THEN null
            ELSE duration.inSeconds(r.claim_heartbeat, datetime()).seconds END AS age
"""
SET_CLAIM = """
MATCH (r:Release {version: $version})
SET r.claim = $token, r.claim_holder = $holder, r.claim_host = $host, r.claim_pid = $pid,
    r.claim_heartbeat = datetime(),
    r.created_by = CASE WHEN r.created_by IS NOT NULL THEN $token END
"""


async def claim(adb: AsyncDatabase, c: Claim, *, replace: bool) -> bool:
    """Take (or renew) the exclusive load claim on ``c.version``; True when this call created
    the Release node. Raises LoadInProgress (a live holder), ReleaseExists (complete and not
    ``replace``)."""
    await ensure_schema(adb)

    async def work(tx: Any) -> bool:
        result = await tx.run(LOCK_RELEASE, {"version": c.version, "loading": LOADING,
                                             "token": c.token})  # fmt: skip
        row = await result.single()
        props, age = dict(row["r"]), row["age"]
        held = props.get("claim")
        if held is not None and held != c.token and not c.is_stale(props, age):
            raise LoadInProgress(c.version, str(props.get("claim_holder")), float(age))
        has = props.get("dataset")
        if c.dataset is not None and has is not None and has != c.dataset:
            raise DatasetMismatch(c.version, str(has), c.dataset)
        if props.get("status") == COMPLETE and not replace and held != c.token:
            raise ReleaseExists(c.version)
        await tx.run(SET_CLAIM, {"version": c.version, "token": c.token, "holder": c.holder,
                                 "host": c.host, "pid": c.pid})  # fmt: skip
        return bool(props.get("created_by") == c.token and held is None)

    return await adb.write_tx(work)


HEARTBEAT = """
MATCH (r:Release {version: $version}) WHERE r.claim = $token
SET r.claim_heartbeat = datetime()
RETURN count(r) AS n
"""


async def heartbeat(adb: AsyncDatabase, c: Claim) -> None:
    """Refresh the claim; ClaimLost when it is no longer this loader's."""
    (row,) = await adb.write(HEARTBEAT, {"version": c.version, "token": c.token})
    if int(row["n"]) == 0:
        raise ClaimLost(c.version, "another loader took it over or the release was removed")


UNCLAIM = f"""
MATCH (r:Release {{version: $version}}) WHERE r.claim = $token
WITH r, coalesce(r.created_by = $token, false) AS unused
FOREACH (_ IN CASE WHEN unused THEN [] ELSE [1] END |
  REMOVE {", ".join(f"r.{k}" for k in CLAIM_KEYS)})
FOREACH (_ IN CASE WHEN unused THEN [1] ELSE [] END | DELETE r)
"""


async def unclaim(adb: AsyncDatabase, c: Claim) -> None:
    """Give the claim up. A Release node the claim created and no load began on (``BEGIN``
    resets the node, ``created_by`` with it) is removed: bad input leaves the database as it
    was."""
    await adb.write(UNCLAIM, {"version": c.version, "token": c.token})


@contextlib.asynccontextmanager
async def claimed(adb: AsyncDatabase, c: Claim, *, replace: bool) -> Any:
    """Hold the claim (with heartbeats) for the block; given up at the end, whatever happens.
    A lost claim cancels nothing by itself: every conditioned step raises ClaimLost."""
    await claim(adb, c, replace=replace)

    async def beat() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            if c.paused.is_set():
                continue
            with contextlib.suppress(CGraphError):  # lost or unreachable: the next step says so
                await heartbeat(adb, c)

    task = asyncio.ensure_future(beat())
    try:
        yield c
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        with contextlib.suppress(Exception):  # the original error is what matters
            await asyncio.shield(unclaim(adb, c))


BEGIN = """
MATCH (r:Release {version: $version}) WHERE r.claim = $token
WITH r, r.status = $complete AS serving
SET r.writing_slot = $slot, r.write_started_at = datetime(), r.claim_heartbeat = datetime()
FOREACH (_ IN CASE WHEN serving THEN [] ELSE [1] END |
  SET r = {version: $version, status: $loading, timestamp: $timestamp, started_at: datetime(),
           dataset: $dataset, slot: $slot, writing_slot: $slot, write_started_at: datetime(),
           claim: r.claim, claim_holder: r.claim_holder, claim_host: r.claim_host,
           claim_pid: r.claim_pid, claim_heartbeat: datetime()})
RETURN count(r) AS n
"""


async def begin_load(
    adb: AsyncDatabase,
    version: int,
    timestamp: datetime | None,
    *,
    replace: bool,
    claim_of: Claim | None = None,
) -> tuple[Claim, int]:
    """Start writing `version` under this loader's claim (taken here when ``claim_of`` is
    None); returns the claim and the slot written (:func:`target_slot`). A complete release
    (``replace``) stays complete and served while the other slot is written; anything else
    becomes `loading`. What an earlier attempt left in the slot is cleared first."""
    c = claim_of or Claim(check_version(version), dataset=default_dataset())
    await claim(adb, c, replace=replace)
    slot = target_slot(await get_release(adb, version))
    (row,) = await adb.write(BEGIN, {"version": version, "loading": LOADING,
                                     "complete": COMPLETE, "timestamp": timestamp,
                                     "token": c.token, "slot": slot,
                                     "dataset": c.dataset or default_dataset()})  # fmt: skip
    if int(row["n"]) == 0:
        raise ClaimLost(version, "taken over before the load began")
    await _clear_slot(adb, version, slot)  # an earlier attempt's leftovers
    await ensure_release_schema(adb, version, slot)
    return c, slot


WRITE_CELLS = """
UNWIND $rows AS row
MERGE (c:Cell {dataset: $dataset, nucleus_id: row.nucleus_id})
  ON CREATE SET c.position = point({x: row.x, y: row.y, z: row.z}), c.volume = row.volume,
                c.releases = []
SET c += row.props,
    c.loading = CASE WHEN $tag IN coalesce(c.loading, []) THEN c.loading
                     ELSE coalesce(c.loading, []) + $tag END
RETURN row.nucleus_id AS n, elementId(c) AS e
"""

#: nucleus ID -> elementId of its Cell node, filled by write_cells: edges are then written
#: by node lookups instead of two index seeks each (2 cores: ~1.25x edges/s on a mid-sized
#: release, ~1.1x at v117; bench/results/load_full.md)
NodeIds = dict[int, str]


async def write_cells(
    adb: AsyncDatabase, version: int, rows: list[dict[str, Any]], slot: int = 0,
    dataset: str = DEFAULT_DATASET, node_ids: NodeIds | None = None,
) -> int:  # fmt: skip
    """rows: {nucleus_id, x, y, z (nm), volume, props: {root_id_vV: ..., cell_type_vV: ...}}
    (the property names of ``slot``), cells of ``dataset``. Cells join the release's
    ``releases`` at the switch. ``node_ids`` receives each cell's elementId (for
    :func:`edge_rows`)."""
    out = await adb.write(WRITE_CELLS, {"rows": rows, "tag": loading_tag(version, slot),
                                        "dataset": dataset})  # fmt: skip
    if node_ids is not None:
        node_ids.update((r["n"], r["e"]) for r in out)
    return len(rows)


def write_edges_cypher(version: int, slot: int = 0) -> str:
    """Edges grouped by presynaptic cell: $groups = [[pre, [[post, synapses, size], ...]], ...]
    with pre and post the elementIds of Cell nodes of $dataset (:data:`NodeIds`: one node
    lookup per cell instead of an index seek; plain lists instead of maps on the wire). An
    edge whose node is gone is not written, and the count check of finish_load says so."""
    return f"""
UNWIND $groups AS g
MATCH (a:Cell) WHERE elementId(a) = g[0] AND a.dataset = $dataset
UNWIND g[1] AS e
MATCH (b:Cell) WHERE elementId(b) = e[0] AND b.dataset = $dataset
CREATE (a)-[:{rel_type(version, slot)} {{synapses: e[1], size: e[2]}}]->(b)
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


async def write_edges(
    adb: AsyncDatabase, version: int, groups: EdgeGroups, slot: int = 0,
    dataset: str = DEFAULT_DATASET,
) -> int:  # fmt: skip
    """Write edge groups (see :func:`group_edges`) between cells of ``dataset``; returns the
    number of edges."""
    await adb.write(write_edges_cypher(version, slot), {"groups": groups, "dataset": dataset})
    return sum(len(g[1]) for g in groups)


FINISH = """
MATCH (r:Release {version: $version}) WHERE r.claim = $token
SET r += $counts, r.status = $complete, r.snapshot = $snapshot, r.finished_at = datetime(),
    r.slot = $slot, r.timestamp = $timestamp,
    r.started_at = coalesce(r.write_started_at, r.started_at)
REMOVE r.writing_slot, r.write_started_at, r.error
WITH r
CALL (r) {
  MATCH (c:Cell) WHERE $tag IN coalesce(c.loading, []) OR $version IN c.releases
  WITH c, c[$root] IS NOT NULL AS member
  WITH c, member, [x IN coalesce(c.loading, []) WHERE x <> $tag] AS rest
  SET c.loading = CASE WHEN size(rest) = 0 THEN null ELSE rest END,
      c.releases = CASE WHEN NOT member THEN [x IN c.releases WHERE x <> $version]
                        WHEN $version IN c.releases THEN c.releases
                        ELSE c.releases + $version END
}
RETURN count(r) AS n
"""


def display_labels_cypher(versions: Sequence[int] | Mapping[int, int]) -> str:
    """Set every cell's display label from the newest of ``versions`` ({version: slot}, or
    versions in slot 0) that gives it a cell type (the bulk writer's rule, graph.bulk._labels);
    only cells whose label changes are written."""
    slots = dict(versions) if isinstance(versions, Mapping) else {v: 0 for v in versions}
    newest_first = sorted(((check_version(v), s) for v, s in slots.items()), reverse=True)
    whens = "\n".join(
        f"                WHEN c.{prop('cell_type', v, s)} IS NOT NULL"
        f" THEN [c.{prop('cell_type', v, s)}, c.{prop('classification_system', v, s)}]"
        for v, s in newest_first
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


async def update_display_labels(adb: AsyncDatabase) -> None:
    """Recompute the display labels from the complete releases (each in its slot): each cell's
    comes from the highest version that types it."""
    slots = {i.version: i.slot for i in await list_releases(adb) if i.status == COMPLETE}
    await adb.write(
        display_labels_cypher(slots),
        {"by_system": CLASS_OF_SYSTEM, "exc": CLASS_OF_TYPE["Excitatory"],
         "inh": CLASS_OF_TYPE["Inhibitory"], "non": CLASS_OF_TYPE["NonNeuron"],
         "display": list(DISPLAY_LABELS)},
    )  # fmt: skip


def written_counts_cypher(version: int, slot: int = 0) -> str:
    root = prop("root_id", version, slot)
    return f"""
CALL () {{ MATCH ()-[r:{rel_type(version, slot)}]->() RETURN count(r) AS edges }}
CALL () {{ MATCH (c:Cell) WHERE c.{root} IS NOT NULL RETURN count(c) AS cells }}
RETURN cells, edges
"""


class WriteMismatch(CGraphError):
    """The graph does not hold what the snapshot says (a concurrent or broken write)."""

    def __init__(self, version: int, detail: str) -> None:
        super().__init__(f"release {version} was not marked complete: {detail}")
        self.version = version


async def finish_load(
    adb: AsyncDatabase,
    version: int,
    counts: Mapping[str, int],
    *,
    claim_of: Claim,
    slot: int = 0,
    snapshot: str | None = None,
    timestamp: datetime | None = None,
) -> int | None:
    """Check the cells and edges written to ``slot`` against `counts`, then switch the release
    to them and mark it complete, in one transaction (a replace: readers get the old answers
    before it and the new ones after). Cells' display labels follow the newest (highest)
    complete release that types them, whatever the load order. Returns the slot given up (to
    :func:`retire_slot` once no reader can still be in it), or None."""
    (got,) = await adb.read(written_counts_cypher(version, slot), timeout=600)
    want = {"cells": int(counts["cells"]), "edges": int(counts["edges"])}
    if {k: int(got[k]) for k in want} != want:
        raise WriteMismatch(version, f"the graph holds {dict(got)}, the snapshot says {want}")
    before = await get_release(adb, version)
    await heartbeat(adb, claim_of)
    every = {k: counts.get(k) for k in RELEASE_COUNT_KEYS}  # a key not counted now: removed
    (row,) = await adb.write(FINISH, {"version": version, "counts": every, "slot": slot,
                                      "complete": COMPLETE, "snapshot": snapshot,
                                      "timestamp": timestamp, "token": claim_of.token,
                                      "tag": loading_tag(version, slot),
                                      "root": prop("root_id", version, slot)})  # fmt: skip
    if int(row["n"]) == 0:
        raise ClaimLost(version, "taken over before it was marked complete")
    await update_display_labels(adb)
    if before is not None and before.status == COMPLETE and before.slot != slot:
        return before.slot
    return None


def replace_grace() -> float:
    """Seconds a replaced slot is kept after the switch, for reads that began before it
    (``CGRAPH_REPLACE_GRACE``; default: the query timeout and 5 s)."""
    from graph.settings import ConnectionSettings

    env = os.environ.get("CGRAPH_REPLACE_GRACE")
    if env:
        try:
            value = float(env)
        except ValueError:
            raise BadRequest(f"CGRAPH_REPLACE_GRACE takes seconds, got {env!r}") from None
        if not value >= 0:
            raise BadRequest(f"CGRAPH_REPLACE_GRACE must be >= 0, got {env!r}")
        return value
    return ConnectionSettings.from_env().query_timeout + 5.0


async def retire_slot(adb: AsyncDatabase, c: Claim, slot: int, *, grace: float) -> None:
    """After a replace: wait ``grace`` seconds (heartbeats go on), then remove what the old
    slot holds and its indexes."""
    await asyncio.sleep(grace)
    await heartbeat(adb, c)
    await _clear_slot(adb, c.version, slot)
    await drop_release_schema(adb, c.version, slot)


MARK_FAILED = """
MATCH (r:Release {version: $version}) WHERE r.claim = $token
WITH r, r.status = $complete AS serving
SET r.error = $error, r.failed_at = datetime()
REMOVE r.writing_slot, r.write_started_at
FOREACH (_ IN CASE WHEN serving THEN [] ELSE [1] END | SET r.status = $status)
"""


async def mark_failed(adb: AsyncDatabase, c: Claim, error: str) -> None:
    """Record a failed load (only while this loader holds its claim): the release becomes
    `failed`, unless it is complete (a failed replace: the served release stays as it was)."""
    await adb.write(MARK_FAILED, {"version": c.version, "status": FAILED, "error": error[:500],
                                  "token": c.token, "complete": COMPLETE})  # fmt: skip


async def drop_release(adb: AsyncDatabase, version: int) -> None:
    """Remove a release whole, under its claim (refused while a load of it runs)."""
    v = check_version(version)
    if await get_release(adb, v) is None:
        raise UnknownRelease(v)
    c = Claim(v)
    async with claimed(adb, c, replace=True):
        await adb.write("MATCH (r:Release {version: $version}) WHERE r.claim = $token "
                        "SET r.status = $status", {"version": v, "status": DROPPING,
                                                   "token": c.token})  # fmt: skip
        await _clear(adb, v)
        await drop_release_schema(adb, v)
        await adb.write("MATCH (r:Release {version: $version}) WHERE r.claim = $token DELETE r",
                        {"version": v, "token": c.token})  # fmt: skip
    await update_display_labels(adb)  # the labels the dropped release gave fall back


# --------------------------------------------------------------------------- online writer

Progress = Callable[[int], object]


def cell_rows(
    snap: Snapshot, batch: int = CELL_BATCH, slot: int = 0
) -> Iterator[list[dict[str, Any]]]:
    """Rows for WRITE_CELLS from the snapshot's cells.parquet, one batch at a time, with the
    property names of ``slot``; null annotation values are left out (absent, as the bulk
    importer leaves them)."""
    v = snap.version
    names = {p.stem: prop(p.stem, v, slot) for p in RELEASE_PROPERTIES}
    for b in pq.ParquetFile(snap.file(CELLS), pre_buffer=False).iter_batches(batch_size=batch):
        rows = []
        for r in b.to_pylist():
            props = {names[k]: r[k] for k in names if r[k] is not None}
            rows.append({"nucleus_id": r["nucleus_id"], "x": r["x"], "y": r["y"], "z": r["z"],
                         "volume": r["volume"], "props": props})  # fmt: skip
        yield rows


def edge_rows(snap: Snapshot, node_ids: NodeIds, batch: int = EDGE_BATCH) -> Iterator[EdgeGroups]:
    """Edge groups for write_edges from edges.parquet, built lazily one batch at a time, cells
    given by their elementIds (``node_ids``, from write_cells)."""
    f = pq.ParquetFile(snap.file(EDGES), pre_buffer=False)
    for b in f.iter_batches(batch_size=batch):
        pre, post, synapses, size = (
            b.column(c).to_pylist() for c in ("pre", "post", "synapses", "size")
        )
        try:
            pre, post = [node_ids[n] for n in pre], [node_ids[n] for n in post]
        except KeyError as exc:
            raise SnapshotError(f"{snap.file(EDGES)}: edge of nucleus {exc.args[0]}, which is "
                                f"not in {CELLS}") from None  # fmt: skip
        yield group_edges(pre, post, synapses, size)


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
    claim_of: Claim | None = None,
    on_cells: Progress | None = None,
    on_edges: Progress | None = None,
    seconds: dict[str, float] | None = None,
    on_switch: Callable[[], object] | None = None,
) -> None:
    """The online writer: add the snapshot's release to a running database in bounded
    transactions, under the release's claim (``claim_of``: one the caller holds, with its
    heartbeats; else one taken and given up here). A replace writes the other slot and
    switches to it in one transaction; ``on_switch`` runs right after, then the replaced slot
    is removed once no read can still be in it (:func:`replace_grace`). A load that dies leaves the release
    `loading`/`failed`, never `complete`; running it again clears that attempt first.
    ``seconds`` receives the time of each step."""
    if not snap.file(EDGES).exists() or not snap.file(CELLS).exists():
        raise SnapshotError(f"snapshot {snap.path} lacks {CELLS} or {EDGES}")
    if claim_of is None:
        c = Claim(snap.version, dataset=snapshot_dataset(snap))
        async with claimed(adb, c, replace=replace):
            await _write_claimed(adb, snap, c, replace, on_cells, on_edges, seconds, on_switch)
    else:
        await _write_claimed(adb, snap, claim_of, replace, on_cells, on_edges, seconds, on_switch)


async def _write_claimed(
    adb: AsyncDatabase,
    snap: Snapshot,
    c: Claim,
    replace: bool,
    on_cells: Progress | None,
    on_edges: Progress | None,
    seconds: dict[str, float] | None,
    on_switch: Callable[[], object] | None,
) -> None:
    clock = time.perf_counter
    times = seconds if seconds is not None else {}
    v = snap.version
    counts = snap.counts
    ts = snap.manifest.get("timestamp")
    timestamp = datetime.fromisoformat(ts) if ts else None
    ds = snapshot_dataset(snap)
    if c.dataset is not None and c.dataset != ds:
        raise DatasetMismatch(v, ds, c.dataset)  # the snapshot was made for another dataset
    t = clock()
    _, slot = await begin_load(adb, v, timestamp, replace=replace, claim_of=c)
    times["begin"] = clock() - t
    try:
        t = clock()
        nodes: NodeIds = {}
        await _pipelined(cell_rows(snap, slot=slot),
                         lambda r: write_cells(adb, v, r, slot, ds, nodes), on_cells,
                         writers=EDGE_WRITERS)  # fmt: skip
        times["cells"], t = clock() - t, clock()
        await _pipelined(edge_rows(snap, nodes), lambda r: write_edges(adb, v, r, slot, ds),
                         on_edges, writers=EDGE_WRITERS)  # fmt: skip
        times["edges"], t = clock() - t, clock()
        release = {k: counts[k] for k in RELEASE_COUNT_KEYS if k in counts}
        old = await finish_load(adb, v, release, snapshot=snap.digest, claim_of=c, slot=slot,
                                timestamp=timestamp)  # fmt: skip
        times["finish"] = clock() - t
    except BaseException as exc:
        # connection gone: the release stays `loading` (or, replaced, as it was served)
        with contextlib.suppress(Exception):  # the original error is what matters
            await asyncio.shield(mark_failed(adb, c, f"{type(exc).__name__}: {exc}"))
        raise
    if on_switch is not None:
        on_switch()
    if old is not None:
        t = clock()
        await retire_slot(adb, c, old, grace=replace_grace())
        times["retire"] = clock() - t
