"""Write a release snapshot atomically: aside, then renamed into place, then read-only.

    with SnapshotWriter(version, has_size=True) as w:
        w.write_cells(cells_table)
        for chunk in edge_chunks:                 # sorted by (pre, post), chunk after chunk
            w.write_edges(edges_table)
        w.write_store(store_tables, schema, meta)  # sorted by (post_pt_root_id, id)
        snap = w.commit(counts=..., sources=..., timestamp=..., extra=...)

Nothing is visible under ``snapshots/`` until ``commit`` renames the finished folder, so a
snapshot that exists is whole; a writer that dies leaves only a ``.tmp-*`` folder, removed by
the next writer of the same version.
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
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    STORE_ROW_GROUP,
    STORE_SORT,
    SYNAPSES,
    Snapshot,
    SnapshotError,
    read_snapshot,
    snapshot_path,
    snapshots_dir,
    store_schema,
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
        self._synapses: pq.ParquetWriter | None = None
        self.rows = {CELLS: 0, EDGES: 0, SYNAPSES: 0}
        self._last_edge: tuple[int, int] | None = None
        self.store: dict[str, Any] | None = None  # the manifest's synapse_store
        self._digests: dict[str, str] = {}  # sha256 of files hashed while written

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

    def write_store(
        self,
        tables: Iterable[pa.Table],
        schema: pa.Schema,
        meta: Mapping[str, Any],
        on_rows: Callable[[int], object] | None = None,
    ) -> None:
        """The synapse store: ``tables`` sorted by (post_pt_root_id, id) within and across
        tables, written in row groups of exactly STORE_ROW_GROUP rows (the last one shorter).
        ``meta`` goes into the manifest's ``synapse_store`` with rows, sort and row groups."""
        enc = {c: "BYTE_STREAM_SPLIT" for c in STORE_SPLIT}
        enc.update({c: "BYTE_STREAM_SPLIT" for c in POSITION_COLUMNS})
        enc["id"] = "DELTA_BINARY_PACKED"
        sink = _HashingFile(self.tmp / SYNAPSES)  # hashed as written: no second pass
        writer = self._synapses = pq.ParquetWriter(
            sink, schema, compression="zstd",
            use_dictionary=list(STORE_DICTIONARY), column_encoding=enc,
            write_statistics=["id", "pre_pt_root_id", "post_pt_root_id", "pre_nucleus_id",
                              "post_nucleus_id", *POSITION_COLUMNS],
        )  # fmt: skip
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
        writer.close()
        sink.close()
        self._digests[SYNAPSES] = sink.hexdigest()
        self._synapses = None
        self.rows[SYNAPSES] = rows
        groups = pq.ParquetFile(self.tmp / SYNAPSES).metadata.num_row_groups
        self.store = {
            **dict(meta),
            "rows": rows,
            "sort": list(STORE_SORT),
            "row_group_rows": STORE_ROW_GROUP,
            "row_groups": groups,
            "columns": schema.names,
        }

    # ------------------------------------------------------------------ finish

    def _close_parts(self) -> None:
        for w in (self._edges, self._synapses):
            if w is not None:
                w.close()
        self._edges = self._synapses = None
        if not (self.tmp / EDGES).exists():
            pq.write_table(EDGE_SCHEMA.empty_table(), self.tmp / EDGES)
        if not (self.tmp / SYNAPSES).exists():  # no synapse rows given: an empty store
            self.write_store([], store_schema(pa.int32()), {"position_unit": "voxel",
                             "position_type": None, "extra_columns": [], "outcomes": {}})  # fmt: skip

    def commit(
        self,
        *,
        counts: Mapping[str, int],
        sources: Sequence[Mapping[str, Any]],
        timestamp: datetime | None,
        extra: Mapping[str, Any] | None = None,
    ) -> Snapshot:
        """Write the manifest, make the folder read-only and rename it into place (replacing
        an older snapshot of the same version in the same step)."""
        self._close_parts()
        if not (self.tmp / CELLS).exists():
            raise SnapshotError("a snapshot needs its cells")
        files = {
            name: {
                "rows": self.rows[name],
                "bytes": (self.tmp / name).stat().st_size,
                "sha256": self._digests.get(name) or file_digest(self.tmp / name),
            }  # fmt: skip
            for name in (CELLS, EDGES, SYNAPSES)
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
            "synapse_store": self.store,
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
        for w in (self._edges, self._synapses):
            if w is not None:
                with contextlib.suppress(Exception):  # the folder goes anyway
                    w.close()
        _remove_stale(self.tmp)

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None and self.tmp.exists():
            self.abort()


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
