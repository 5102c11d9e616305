"""Write a release snapshot atomically: aside, then renamed into place, then read-only.

    with SnapshotWriter(version, has_size=True) as w:
        w.write_cells(cells_table)
        for chunk in edge_chunks:                 # sorted by (pre, post), chunk after chunk
            w.write_edges(edges_table)
        snap = w.commit(counts=..., sources=..., timestamp=..., extra=...)
    write_store(snap, store_tables, schema, meta)  # sorted by (post_pt_root_id, id); later

Nothing is visible under ``snapshots/`` until ``commit`` renames the finished folder, so a
snapshot that exists is whole; a writer that dies leaves only a ``.tmp-*`` folder, removed by
the next writer of the same version. The synapse store is committed on its own
(:func:`write_store`): ``synapses.parquet`` is written under a temporary name in the snapshot
folder and renamed into place, then ``synapses.json`` (the store is there once that file is);
a writer that dies leaves a ``.synapses.tmp-*`` file, removed by the next store writer.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from core.model import check_version
from snapshot.layout import (
    CELL_SCHEMA,
    CELLS,
    EDGE_SCHEMA,
    EDGES,
    FORMAT,
    MANIFEST,
    POSITION_COLUMNS,
    STORE_MANIFEST,
    STORE_ROW_GROUP,
    STORE_SORT,
    SYNAPSES,
    Snapshot,
    SnapshotError,
    read_snapshot,
    snapshot_path,
    snapshots_dir,
    store_lock_path,
    store_meta,
    store_ready,
)

#: Parquet row-group sizes: small enough that one cell's rows are a small read
EDGE_ROW_GROUP = 128 * 1024
#: the synapse store's Parquet settings (measured at the v117 shape, bench/results/store_full.md):
#: zstd; dictionaries where values repeat (not pre_pt_root_id: plain is smaller and faster);
#: delta-coded ids (ascending within a post root); byte-stream-split positions and supervoxels
STORE_DICTIONARY = ("post_pt_root_id", "pre_nucleus_id", "post_nucleus_id", "outcome")
STORE_SPLIT = ("pre_pt_supervoxel_id", "post_pt_supervoxel_id")


@functools.cache  # per process: the package metadata is parsed once, not per GraphQL answer
def software_version() -> str:
    """The installed connectome-graph's version (the code this process runs)."""
    try:
        return metadata.version("connectome-graph")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def file_digest(path: Path, chunk: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def describe_source(table: str, path: str | Path | None) -> dict[str, Any]:
    """Name, size and sha256 of an input file (or a note for an in-memory frame)."""
    if path is None or not Path(path).exists():
        return {"table": table, "name": None if path is None else str(path), "bytes": None,
                "sha256": None}  # fmt: skip
    p = Path(path)
    return {"table": table, "name": p.name, "path": str(p.resolve()), "bytes": p.stat().st_size,
            "sha256": file_digest(p)}  # fmt: skip


class SnapshotWriter:
    """Writes one version's snapshot into a temporary folder beside its final place."""

    def __init__(
        self, version: int, *, has_size: bool, root: Path | None = None, slot: int = 0
    ) -> None:
        self.version = check_version(version)
        self.has_size = has_size
        self.final = snapshot_path(version, root, slot)
        base = snapshots_dir(root)
        base.mkdir(parents=True, exist_ok=True)
        for old in base.glob(f".v{self.version}.tmp-*"):
            _remove_stale(old)
        self.tmp = base / f".v{self.version}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        self.tmp.mkdir()
        self._edges: pq.ParquetWriter | None = None
        self.rows = {CELLS: 0, EDGES: 0}
        self._last_edge: tuple[int, int] | None = None

    # ------------------------------------------------------------------ parts

    def write_cells(self, cells: pa.Table) -> None:
        table = cells.select(CELL_SCHEMA.names).cast(CELL_SCHEMA)
        pq.write_table(table, self.tmp / CELLS, row_group_size=EDGE_ROW_GROUP)
        self.rows[CELLS] = table.num_rows

    def write_edges(self, edges: pa.Table) -> None:
        """One chunk of edges (sorted by (pre, post), after every earlier chunk)."""
        edges = edges.select(EDGE_SCHEMA.names).cast(EDGE_SCHEMA)
        if edges.num_rows == 0:
            return
        first = (edges["pre"][0].as_py(), edges["post"][0].as_py())
        if self._last_edge is not None and first <= self._last_edge:
            raise SnapshotError("edge chunks must come in (pre, post) order")
        self._last_edge = (edges["pre"][-1].as_py(), edges["post"][-1].as_py())
        if self._edges is None:
            self._edges = pq.ParquetWriter(self.tmp / EDGES, EDGE_SCHEMA, use_dictionary=["pre"])
        self._edges.write_table(edges, row_group_size=EDGE_ROW_GROUP)
        self.rows[EDGES] += edges.num_rows

    # ------------------------------------------------------------------ finish

    def _close_parts(self) -> None:
        if self._edges is not None:
            self._edges.close()
        self._edges = None
        if not (self.tmp / EDGES).exists():
            pq.write_table(EDGE_SCHEMA.empty_table(), self.tmp / EDGES)

    def commit(
        self,
        *,
        counts: Mapping[str, int],
        sources: Sequence[Mapping[str, Any]],
        timestamp: datetime | None,
        extra: Mapping[str, Any] | None = None,
    ) -> Snapshot:
        """Write the manifest, make the folder read-only and rename it into place (replacing
        an older snapshot of the same version in the same step). The synapse store follows
        with :func:`write_store`."""
        self._close_parts()
        if not (self.tmp / CELLS).exists():
            raise SnapshotError("a snapshot needs its cells")
        files = {
            name: {
                "rows": self.rows[name],
                "bytes": (self.tmp / name).stat().st_size,
                "sha256": file_digest(self.tmp / name),
            }  # fmt: skip
            for name in (CELLS, EDGES)
        }
        manifest = {
            "format": FORMAT,
            "version": self.version,
            "timestamp": timestamp.isoformat() if timestamp else None,
            "created_at": datetime.now(UTC).isoformat(),
            "software": {"name": "connectome-graph", "version": software_version()},
            "has_size": self.has_size,
            "counts": {k: int(v) for k, v in counts.items()},
            "sources": [dict(s) for s in sources],
            "files": files,
            "synapse_store": {"manifest": STORE_MANIFEST},  # written on its own, after
            **(dict(extra) if extra else {}),
        }
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        for p in self.tmp.iterdir():
            p.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        self.tmp.chmod(0o755)
        replaced = None
        if self.final.exists():
            replaced = self.final.with_name(f".{self.final.name}.old-{time.time_ns()}")
            os.rename(self.final, replaced)
        os.rename(self.tmp, self.final)
        if replaced is not None:
            _remove_stale(replaced)
        return read_snapshot(self.final)

    def abort(self) -> None:
        if self._edges is not None:
            with contextlib.suppress(Exception):  # the folder goes anyway
                self._edges.close()
        _remove_stale(self.tmp)

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None and self.tmp.exists():
            self.abort()


@contextlib.contextmanager
def store_lock(snap_path: Path) -> Iterator[None]:
    """One store writer per snapshot at a time (an exclusive lock beside its folder; a second
    writer waits, then finds the store written)."""
    import fcntl

    lock = store_lock_path(snap_path)
    with lock.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_store(
    snap: Snapshot,
    tables: Iterable[pa.Table],
    schema: pa.Schema,
    meta: Mapping[str, Any],
    on_rows: Callable[[int], object] | None = None,
) -> dict[str, Any]:
    """Commit the synapse store of ``snap``: ``tables`` sorted by (post_pt_root_id, id) within
    and across tables, written in row groups of exactly STORE_ROW_GROUP rows (the last one
    shorter), under a temporary name, renamed to synapses.parquet, then ``synapses.json``
    (``meta`` with rows, sort and row groups; see snapshot.layout). No tables (or none with
    rows): an empty store of ``schema``. Returns the store's metadata; a store already written is left as
    it is (and its metadata returned). The caller holds :func:`store_lock`."""
    if store_ready(snap):
        return store_meta(snap)
    for old in snap.path.glob(".synapses.tmp-*"):
        old.unlink(missing_ok=True)
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = snap.path / f".synapses.tmp-{tag}.parquet"
    tmp_meta = snap.path / f".synapses.tmp-{tag}.json"
    try:
        rows, digest = _write_store_file(tmp, tables, schema, on_rows)
        groups = pq.ParquetFile(tmp).metadata.num_row_groups
        store = {
            **dict(meta),
            "rows": rows,
            "sort": list(STORE_SORT),
            "row_group_rows": STORE_ROW_GROUP,
            "row_groups": groups,
            "columns": schema.names,
        }
        body = {
            "snapshot": snap.digest,
            "created_at": datetime.now(UTC).isoformat(),
            "software": {"name": "connectome-graph", "version": software_version()},
            "file": {
                "name": SYNAPSES,
                "rows": rows,
                "bytes": tmp.stat().st_size,
                "sha256": digest,
            },  # fmt: skip
            "store": store,
        }
        tmp_meta.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
        for p in (tmp, tmp_meta):
            p.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        os.replace(tmp, snap.path / SYNAPSES)
        os.replace(tmp_meta, snap.path / STORE_MANIFEST)  # the store is there from here on
    except BaseException:
        for p in (tmp, tmp_meta):
            p.unlink(missing_ok=True)
        raise
    return store


def _write_store_file(
    path: Path,
    tables: Iterable[pa.Table],
    schema: pa.Schema,
    on_rows: Callable[[int], object] | None,
) -> tuple[int, str]:
    enc = {c: "BYTE_STREAM_SPLIT" for c in STORE_SPLIT}
    enc.update({c: "BYTE_STREAM_SPLIT" for c in POSITION_COLUMNS})
    enc["id"] = "DELTA_BINARY_PACKED"
    sink = _HashingFile(path)  # hashed as written: no second pass
    writer = pq.ParquetWriter(
        sink, schema, compression="zstd",
        use_dictionary=list(STORE_DICTIONARY), column_encoding=enc,
        write_statistics=["id", "pre_pt_root_id", "post_pt_root_id", "pre_nucleus_id",
                          "post_nucleus_id", *POSITION_COLUMNS],
    )  # fmt: skip
    try:
        last: tuple[int, int] | None = None
        pending: list[pa.Table] = []
        have = 0
        rows = 0
        for t in tables:
            if t.num_rows == 0:
                continue
            t = t.select(schema.names).cast(schema)
            first = (t["post_pt_root_id"][0].as_py(), t["id"][0].as_py())
            if last is not None and first < last:
                raise SnapshotError("synapse store tables must come in (post_pt_root_id, id) order")
            last = (t["post_pt_root_id"][-1].as_py(), t["id"][-1].as_py())
            pending.append(t)
            have += t.num_rows
            if have >= STORE_ROW_GROUP:
                buf = pa.concat_tables(pending)
                cut = (have // STORE_ROW_GROUP) * STORE_ROW_GROUP
                writer.write_table(buf.slice(0, cut), row_group_size=STORE_ROW_GROUP)
                rest = buf.slice(cut)
                pending, have = ([rest] if rest.num_rows else []), rest.num_rows
                rows += cut
                if on_rows is not None:
                    on_rows(cut)
        if have:
            writer.write_table(pa.concat_tables(pending), row_group_size=STORE_ROW_GROUP)
            rows += have
            if on_rows is not None:
                on_rows(have)
    finally:
        writer.close()
        sink.close()
    return rows, sink.hexdigest()


class _HashingFile(io.RawIOBase):
    """A write-only file that feeds every byte to sha256 on its way to disk."""

    def __init__(self, path: Path) -> None:
        self._f = path.open("wb")
        self._h = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        view = memoryview(b)
        self._h.update(view)
        return self._f.write(view)

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
        super().close()

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def remove_snapshot(path: Path) -> None:
    """Remove a snapshot folder: renamed away first (so it is never seen half-removed)."""
    if not path.exists():
        return
    gone = path.with_name(f".{path.name}.old-{time.time_ns()}")
    os.rename(path, gone)
    _remove_stale(gone)


def _remove_stale(path: Path) -> None:
    """Remove a folder this module wrote (read-only files included)."""
    if not path.exists():
        return
    path.chmod(0o755)
    for p in path.iterdir():
        p.chmod(0o644)
    shutil.rmtree(path, ignore_errors=True)
