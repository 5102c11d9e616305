"""The load pipeline: files -> read/validate/aggregate (loaders) -> release snapshot (Parquet +
manifest) -> a Neo4j writer (graph). The one place that wires loaders and graph for loading.

The synapse store is written after the release is served, from a second read of the same
inputs (:func:`store_pass`: store rows only, the inputs' sha256 checked against the snapshot's);
the first read validates every column but keeps no store rows.

A load first takes the release's exclusive claim (graph.releases: a second loader of the same
version is refused naming the holder; a killed loader's claim is taken over), then reads. No
cell or edge reaches Neo4j before the whole input is read, validated and aggregated and its
snapshot is complete, so bad input leaves the database unchanged (a Release node the claim
created is removed again). The release is `loading` while its
cells and edges are written and becomes `complete` in one final transaction after the written
counts are checked against the snapshot; a load that dies midway leaves it `loading` (or
`failed`), and running the same load again clears that attempt first.

Writers: ``bulk`` (neo4j-admin import into a fresh store: the project's own local server with
no release loaded yet) and ``online`` (transactional, into a running database others read).
``auto`` picks bulk when it applies, online otherwise.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import click
from tqdm import tqdm

from core.errors import BadRequest, DatasetMismatch, ReleaseExists
from core.model import COMPLETE, SLOTS, check_dataset, check_version, default_dataset
from graph import bulk, releases
from graph.driver import Database
from graph.settings import ServerSettings
from loaders.aggregate import DEFAULT_MEMORY, AggregatedRelease, aggregate_release
from loaders.positions import DEFAULT_VOXEL_SIZE
from loaders.readers import Source
from loaders.tables import ReleaseData
from loaders.to_snapshot import write_release_snapshot, write_release_store
from snapshot.layout import (
    Snapshot,
    SnapshotError,
    open_snapshot,
    set_served,
    snapshot_path,
    store_ready,
)
from snapshot.write import describe_source, remove_snapshot

Writer = Literal["auto", "bulk", "online"]


@dataclass(frozen=True)
class LoadSummary:
    version: int
    counts: Mapping[str, int]
    multi_nucleus_roots: Mapping[int, list[int]]
    writer: str = "online"
    snapshot: Path | None = None
    seconds: Mapping[str, float] = field(default_factory=dict)  # by stage


_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20,
          "MB": 1 << 20, "MIB": 1 << 20, "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30}  # fmt: skip


def parse_memory(text: str, *, what: str = "--memory") -> int:
    """'4GB', '512m', '2GiB' -> bytes (at least 64 MiB)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text or "")
    unit = m.group(2).upper() if m else ""
    if m is None or unit not in _UNITS:
        raise BadRequest(f"{what} takes a size like 4GB or 512MB, got {text!r}")
    value = int(float(m.group(1)) * _UNITS[unit])
    if value < 64 << 20:
        raise BadRequest(f"{what} must be at least 64MB, got {text!r}")
    return value


def default_memory() -> int:
    env = os.environ.get("CGRAPH_LOAD_MEMORY")
    return parse_memory(env, what="CGRAPH_LOAD_MEMORY") if env else DEFAULT_MEMORY


def _sources(given: Mapping[str, Source | None]) -> list[dict[str, Any]]:
    return [
        describe_source(t, s if not hasattr(s, "columns") else None)  # type: ignore[arg-type]
        for t, s in given.items()
        if s is not None
    ]


@dataclass
class PreparedRelease:
    """A release read, aggregated and snapshotted (cells, edges, manifest), whose synapse store
    is still to be written (:meth:`write_store`: a second read of ``given``, after serving)."""

    snap: Snapshot
    multi_nucleus_roots: dict[int, list[int]]
    given: Mapping[str, Source | None]
    read: Mapping[str, Any]  # store_pass's voxel_size, memory, options, check_sources
    first: AggregatedRelease | None = None  # the first read, whose edge spill discard frees

    def write_store(
        self, *, progress: bool = False, seconds: dict[str, float] | None = None
    ) -> None:
        t0 = time.perf_counter()
        self.discard()  # the first read's rows are no longer needed
        release = store_pass(self.snap, self.given, progress=progress, **self.read)
        with tqdm(total=release.counts["synapses_total"], desc=f"v{self.snap.version} synapse "
                  "store", unit=" rows", unit_scale=True, disable=not progress) as bar:  # fmt: skip
            write_release_store(release, self.snap, on_store=bar.update)
        if seconds is not None:
            seconds["store"] = time.perf_counter() - t0

    def discard(self) -> None:
        """Free the first read's spilled rows (also when a load stops before its store)."""
        if self.first is not None:
            self.first.accumulator.cleanup()


#: counts the store-only pass must reproduce before it writes the store
_STORE_COUNTS = ("cells", "synapses_total", "dropped_autapse", "dropped_root0",
                 "dropped_multi_nucleus_root", "dropped_partner_without_nucleus")  # fmt: skip


def _same_sources(snap: Snapshot, now: Sequence[Mapping[str, Any]]) -> None:
    """BadRequest naming the table when an input is not the file the snapshot was made from."""
    had = {s["table"]: s for s in snap.manifest.get("sources", [])}
    for cur in now:
        before = had.get(cur["table"])
        if before is None or before.get("sha256") != cur.get("sha256"):
            raise BadRequest(
                f"release {snap.version}: its synapse store is not written, and the "
                f"{cur['table']} input ({cur.get('name')}) is not the file it was loaded from "
                f"({(before or {}).get('name')}, sha256 {str((before or {}).get('sha256'))[:12]}): "
                "give the original files to build the store, or load with --replace"
            )


def store_pass(
    snap: Snapshot,
    given: Mapping[str, Source | None],
    *,
    progress: bool = False,
    voxel_size: Sequence[float] = DEFAULT_VOXEL_SIZE,
    memory: int | None = None,
    options: Mapping[str, Any] | None = None,
    check_sources: bool = True,
) -> AggregatedRelease:
    """Read the inputs of ``snap`` again, keeping the store rows only (every column validated
    again, no edges). The inputs are hashed on the other core meanwhile (unless the caller has
    just checked them): other files than the snapshot's (sha256), or other counts, are refused
    (BadRequest) and nothing is written."""
    v = snap.version
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="source-sha256") as pool:
        sources = pool.submit(_sources, given) if check_sources else None
        agg = _read_aggregate(v, given, voxel_size=voxel_size, progress=progress, memory=memory,
                              options={**(options or {}), "edges": False},
                              what="synapses read again for the store")  # fmt: skip
        try:
            if sources is not None:
                _same_sources(snap, sources.result())
            differ = [k for k in _STORE_COUNTS
                      if k in snap.counts and int(agg.counts.get(k, -1)) != snap.counts[k]]  # fmt: skip
            if differ:
                got = ", ".join(f"{k} {agg.counts.get(k)} vs {snap.counts[k]}" for k in differ)
                raise BadRequest(
                    f"release {v}: the inputs read again for its synapse store give other "
                    f"counts than its snapshot ({got}); load with --replace"
                )
        except BaseException:
            agg.store.cleanup()
            raise
    return agg


def _read_aggregate(
    v: int,
    given: Mapping[str, Source | None],
    *,
    voxel_size: Sequence[float],
    progress: bool,
    memory: int | None,
    options: Mapping[str, Any],
    what: str = "synapses read",
) -> AggregatedRelease:
    with tqdm(desc=f"v{v} {what}", unit=" rows", unit_scale=True,
              disable=not progress) as bar:  # fmt: skip
        return aggregate_release(
            given["nuclei"], given["synapses"], given["neurons"], given["cell_types"],  # type: ignore[arg-type]
            voxel_size=voxel_size, memory=memory or default_memory(), on_rows=bar.update,
            **options,
        )  # fmt: skip


def prepare_snapshot(
    version: int,
    *,
    nuclei: Source,
    synapses: Source,
    neurons: Source | None = None,
    cell_types: Source | None = None,
    voxel_size: Sequence[float] = DEFAULT_VOXEL_SIZE,
    timestamp: datetime | None = None,
    progress: bool = False,
    memory: int | None = None,
    seconds: dict[str, float] | None = None,
    slot: int = 0,
    dataset: str | None = None,
    **options: Any,
) -> PreparedRelease:
    """Read, validate, aggregate and write the snapshot of one release (cells, edges, manifest);
    its synapse store is written by :meth:`PreparedRelease.write_store`. ``options`` go to
    :func:`loaders.aggregate.aggregate_release` (mapping, batch_rows, spill_dir)."""
    v = check_version(version)
    t0 = time.perf_counter()
    given = {"nuclei": nuclei, "synapses": synapses, "neurons": neurons, "cell_types": cell_types}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="source-sha256") as pool:
        sources = pool.submit(_sources, given)  # hashed on the other core meanwhile
        agg = _read_aggregate(v, given, voxel_size=voxel_size, progress=progress, memory=memory,
                              options={**options, "store": False})  # fmt: skip
        t1 = time.perf_counter()
        steps: dict[str, float] = {}
        try:
            with tqdm(total=agg.counts["synapses_used"], desc=f"v{v} snapshot edges",
                      unit=" synapses", unit_scale=True, disable=not progress) as bar:  # fmt: skip
                snap = write_release_snapshot(agg, v, timestamp=timestamp,
                                              sources=sources.result(), voxel_size=voxel_size,
                                              on_edges=bar.update, seconds=steps, slot=slot,
                                              dataset=dataset or default_dataset())  # fmt: skip
        except BaseException:
            agg.accumulator.cleanup()
            raise
    if seconds is not None:
        seconds["read_aggregate"] = t1 - t0
        seconds["snapshot"] = time.perf_counter() - t1
        seconds.update({f"snapshot_{k}": x for k, x in steps.items()})
    read = {"voxel_size": voxel_size, "memory": memory, "options": options}
    return PreparedRelease(snap, agg.multi_nucleus_roots, given, read, agg)


def aggregate_to_snapshot(
    version: int,
    *,
    progress: bool = False,
    seconds: dict[str, float] | None = None,
    **inputs: Any,
) -> tuple[Snapshot, dict[int, list[int]]]:
    """:func:`prepare_snapshot` and the synapse store, in one go (no graph is written):
    ``seconds`` gets read_aggregate, snapshot and snapshot_store."""
    prepared = prepare_snapshot(version, progress=progress, seconds=seconds, **inputs)
    steps: dict[str, float] = {}
    prepared.write_store(progress=progress, seconds=steps)
    if seconds is not None:
        seconds["snapshot_store"] = steps["store"]
    return prepared.snap, prepared.multi_nucleus_roots


@contextlib.contextmanager
def holding_claim(
    db: Database, version: int, *, replace: bool, dataset: str | None = None
) -> Iterator[releases.Claim]:
    """Hold release ``version``'s load claim (heartbeats on the runner's loop) for the block;
    a load names its ``dataset`` (refused when the release belongs to another)."""
    c = releases.Claim(check_version(version), dataset=dataset)
    cm = releases.claimed(db.adb, c, replace=replace)
    db.run(cm.__aenter__())
    try:
        yield c
    except BaseException as exc:
        db.run(cm.__aexit__(type(exc), exc, exc.__traceback__))
        raise
    db.run(cm.__aexit__(None, None, None))


def _slot_of(snap: Snapshot) -> int:
    return 1 if snap.path.name.endswith("_b") else 0


def _serve(snap: Snapshot) -> None:
    """Point digest-less snapshot readers at ``snap`` while the replaced one still exists."""
    if any(snapshot_path(snap.version, snap.path.parent.parent, s).exists() for s in SLOTS
           if s != _slot_of(snap)):  # fmt: skip
        set_served(snap.version, _slot_of(snap), snap.path.parent.parent)


def _begin_snapshots(db: Database, version: int) -> int:
    """The slot a load writes (graph and snapshot); during a replace, snapshot readers are
    told that the served snapshot is the old one until the switch."""
    served = db.call(releases.get_release, version)
    slot = releases.target_slot(served)
    if served is not None and served.status == COMPLETE and served.slot != slot:
        set_served(version, served.slot)
    return slot


def _tidy_served(version: int) -> None:
    """A failed load: the served-snapshot note goes when one snapshot is left."""
    if sum(snapshot_path(version, slot=s).exists() for s in SLOTS) < 2:
        set_served(version, None)


def _drop_unserved(db: Database, snap: Snapshot) -> None:
    """After a failed replace, remove its new snapshot (the served one stays alone)."""
    with contextlib.suppress(Exception):  # the load's own error is what matters
        served = db.call(releases.get_release, snap.version)
        if served is not None and served.status == COMPLETE and served.snapshot != snap.digest:
            remove_snapshot(snap.path)
            set_served(snap.version, None, snap.path.parent.parent)


def remove_other_snapshots(snap: Snapshot) -> None:
    """Once the graph serves ``snap``, remove the release's other snapshot (the replaced one)."""
    for slot in SLOTS:
        path = snapshot_path(snap.version, snap.path.parent.parent, slot)
        if path != snap.path and path.exists():
            remove_snapshot(path)
    set_served(snap.version, None, snap.path.parent.parent)


def write_snapshot(
    db: Database,
    snap: Snapshot,
    *,
    replace: bool = False,
    progress: bool = False,
    seconds: dict[str, float] | None = None,
    claim: releases.Claim | None = None,
) -> None:
    """The online writer with progress bars (edges/s and ETA). Once the graph has switched to
    ``snap``, the snapshot readers are pointed at it too (snapshot.layout.set_served)."""
    v = snap.version
    counts = snap.counts
    with tqdm(total=counts["cells"], desc=f"v{v} cells", unit=" cells", unit_scale=True,
              disable=not progress) as cells, \
         tqdm(total=counts["edges"], desc=f"v{v} edges", unit=" edges", unit_scale=True,
              disable=not progress) as edges:  # fmt: skip
        db.call(releases.write_snapshot, snap, replace=replace, claim_of=claim,
                on_cells=cells.update, on_edges=edges.update, seconds=seconds,
                on_switch=lambda: _serve(snap))  # fmt: skip


def choose_writer(
    db: Database, writer: Writer, claim: releases.Claim | None = None
) -> tuple[str, str]:
    """(writer, why): bulk for the project's own empty local database (empty but for this
    load's own claim), online otherwise."""
    srv = ServerSettings.from_env()
    token = claim.token if claim is not None else None
    local = bulk.is_local(db.settings, srv) and db.settings.database == "neo4j"
    if writer == "bulk":
        if not local:
            raise BadRequest(
                f"--writer bulk needs the project's own local server "
                f"(bolt://127.0.0.1:{srv.bolt_port}); {db.settings.uri} takes only the online "
                "writer (a remote or clustered Neo4j, Aura: transactional writes)"
            )
        if not db.call(bulk.is_local_empty, srv, db.settings, token):
            raise BadRequest(
                "--writer bulk replaces the whole store and this database already holds data; "
                "use --writer online to add a release, or `cgraph rebuild` to re-import every "
                "snapshot"
            )
        return "bulk", "forced with --writer bulk"
    if writer == "online":
        return "online", "forced with --writer online"
    if not local:
        return "online", f"{db.settings.uri} is not the project's local server (online only)"
    if db.call(bulk.is_local_empty, srv, db.settings, token):
        return "bulk", "the project's local database is empty"
    return "online", "the database already holds releases"


def write_release_snapshot_to_graph(
    db: Database,
    snap: Snapshot,
    *,
    replace: bool = False,
    progress: bool = False,
    writer: Writer = "auto",
    seconds: dict[str, float] | None = None,
    claim: releases.Claim | None = None,
) -> str:
    """Write a snapshot with the chosen writer (under ``claim``, when the caller holds the
    release's); returns the writer used."""
    chosen, why = choose_writer(db, writer, claim)
    if progress:
        click.echo(f"release {snap.version}: {chosen} writer ({why})", err=True)
    t = time.perf_counter()
    if chosen == "bulk":
        srv = ServerSettings.from_env()
        token = claim.token if claim is not None else None

        def still_empty() -> None:  # another loader may have written since choose_writer
            if not db.call(bulk.is_local_empty, srv, db.settings, token):
                raise bulk.BulkRefused(
                    "the local database stopped being empty while this release was read; "
                    "load it again (it will take the online writer)"
                )

        if claim is not None:
            claim.paused.set()  # the import stops the server; its new store has no claim
        try:
            report = bulk.bulk_import([snap], srv, db.settings, progress=progress,
                                      check=still_empty)  # fmt: skip
        finally:
            if claim is not None:
                claim.paused.clear()
        if seconds is not None:
            seconds.update({f"bulk_{k}": v for k, v in report.seconds.items()})
    else:
        steps: dict[str, float] = {}
        write_snapshot(db, snap, replace=replace, progress=progress, seconds=steps, claim=claim)
        if seconds is not None:
            seconds.update({f"online_{k}": v for k, v in steps.items()})
    if seconds is not None:
        seconds["neo4j_write"] = time.perf_counter() - t
    return chosen


def load_release(
    db: Database,
    version: int,
    *,
    replace: bool = False,
    progress: bool = False,
    writer: Writer = "online",
    skip_existing: bool = False,
    dataset: str | None = None,
    **inputs: Any,
) -> LoadSummary | None:
    """Load one release from DataFrames or files (Parquet, Feather, CSV, CSV.gz, CAVE dumps)
    through its snapshot. ``inputs`` are those of :func:`aggregate_to_snapshot` (nuclei,
    synapses, neurons, cell_types, mapping, voxel_size, timestamp, batch_rows, memory).
    ``writer``: online (the default for library use), bulk, or auto (the CLI's default).
    Raises ReleaseExists when complete and not `replace` (before reading anything); with
    ``skip_existing`` a complete release is left alone and None returned. A complete release
    whose load stopped after serving it, before its synapse store was written, gets its store
    (:func:`build_missing_store`; the same inputs, the graph untouched). The release belongs
    to ``dataset`` (default: core.model.default_dataset; DatasetMismatch, before anything is
    read, when it already belongs to another)."""
    v, ds = check_version(version), check_dataset(dataset or default_dataset())
    existing = db.call(releases.get_release, v)  # begin_load checks again before writing
    if existing is not None and existing.dataset != ds:
        raise DatasetMismatch(v, existing.dataset, ds)
    if existing is not None and existing.status == COMPLETE and not replace:
        waiting = _snapshot_without_store(existing)
        if waiting is not None:  # an earlier load served it and stopped before its store
            return build_missing_store(db, waiting, progress=progress, dataset=ds, **inputs)
        if skip_existing:
            return None
        raise ReleaseExists(v)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    with holding_claim(db, v, replace=replace, dataset=ds) as claim:
        # a replace writes its snapshot beside the served one (which goes once switched)
        slot = _begin_snapshots(db, v)
        prepared: PreparedRelease | None = None
        try:
            prepared = prepare_snapshot(v, progress=progress, seconds=seconds, slot=slot,
                                        dataset=ds, **inputs)  # fmt: skip
            used = write_release_snapshot_to_graph(db, prepared.snap, replace=replace,
                                                   progress=progress, writer=writer,
                                                   seconds=seconds, claim=claim)  # fmt: skip
        except BaseException:
            if prepared is not None:
                prepared.discard()
                _drop_unserved(db, prepared.snap)
            _tidy_served(v)
            raise
        snap = prepared.snap
        remove_other_snapshots(snap)
        seconds["served"] = time.perf_counter() - t0
        if progress:
            click.echo(
                f"release {v}: served after {seconds['served']:.0f} s; writing its synapse "
                "store (synapse-level queries answer SYNAPSE_STORE_NOT_READY until it is done)",
                err=True,
            )
        _write_store_of_served(prepared, progress=progress, seconds=seconds)
    return LoadSummary(v, snap.counts, prepared.multi_nucleus_roots, used, snap.path, seconds)


def _write_store_of_served(
    prepared: PreparedRelease, *, progress: bool, seconds: dict[str, float]
) -> None:
    try:
        prepared.write_store(progress=progress, seconds=seconds)
    except Exception as exc:
        v = prepared.snap.version
        raise SnapshotError(
            f"release {v} is loaded and served, but its synapse store was not written ({exc}); "
            f"run the same `cgraph load` of release {v} again to build it"
        ) from exc


def _snapshot_without_store(release: releases.ReleaseInfo) -> Snapshot | None:
    """The served snapshot of a complete release when it is here and has no store yet."""
    if not release.snapshot:
        return None
    try:
        snap = open_snapshot(release.version, digest=release.snapshot)
    except SnapshotError:
        return None  # loaded from another machine, or its snapshot is gone: nothing to build
    return None if store_ready(snap) else snap


def build_missing_store(
    db: Database,
    snap: Snapshot,
    *,
    progress: bool = False,
    dataset: str | None = None,
    voxel_size: Sequence[float] = DEFAULT_VOXEL_SIZE,
    timestamp: datetime | None = None,  # the snapshot's already
    memory: int | None = None,
    **inputs: Any,
) -> LoadSummary:
    """A complete release whose load stopped after serving it, before its synapse store was
    written: read the same inputs again (refused, naming the table, when they are not the ones
    the snapshot was made from) and write the store. The graph is not touched."""
    v = snap.version
    given = {t: inputs.pop(t, None) for t in ("nuclei", "synapses", "neurons", "cell_types")}
    seconds: dict[str, float] = {}
    with holding_claim(db, v, replace=True, dataset=dataset):  # no other load meanwhile
        _same_sources(snap, _sources(given))  # at once, before the inputs are read
        if progress:
            click.echo(f"release {v}: complete, but its synapse store was never written; "
                       "reading the inputs again to write it (the graph is not touched)",
                       err=True)  # fmt: skip
        read = {
            "voxel_size": voxel_size,
            "memory": memory,
            "options": inputs,
            "check_sources": False,
        }  # checked just above
        prepared = PreparedRelease(snap, {}, given, read)
        _write_store_of_served(prepared, progress=progress, seconds=seconds)
    multi = {int(k): list(x) for k, x in snap.manifest.get("multi_nucleus_roots", {}).items()}
    return LoadSummary(v, snap.counts, multi, "store", snap.path, seconds)


def write_release(
    db: Database,
    version: int,
    data: ReleaseData,
    *,
    timestamp: datetime | None = None,
    replace: bool = False,
    progress: bool = False,
    voxel_size: Sequence[float] = DEFAULT_VOXEL_SIZE,
    sources: Sequence[Mapping[str, Any]] = (),
    dataset: str | None = None,
) -> LoadSummary:
    """Snapshot and write an aggregated in-memory release (live CAVE) of ``dataset``."""
    v, ds = check_version(version), check_dataset(dataset or default_dataset())
    existing = db.call(releases.get_release, v)
    if existing is not None and existing.dataset != ds:
        raise DatasetMismatch(v, existing.dataset, ds)
    with holding_claim(db, v, replace=replace, dataset=ds) as claim:
        slot = _begin_snapshots(db, v)
        snap = write_release_snapshot(data, v, timestamp=timestamp, sources=sources,
                                      voxel_size=voxel_size, slot=slot,
                                      dataset=ds)  # fmt: skip
        try:
            write_snapshot(db, snap, replace=replace, progress=progress, claim=claim)
        except BaseException:
            _drop_unserved(db, snap)
            _tidy_served(v)
            raise
        remove_other_snapshots(snap)
        write_release_store(data, snap)  # in memory already: small (live CAVE)
    return LoadSummary(v, snap.counts, data.multi_nucleus_roots, "online", snap.path)
