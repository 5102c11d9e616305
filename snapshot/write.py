"""Write a release snapshot atomically: aside, then renamed into place, then read-only.

    with SnapshotWriter(version, has_size=True) as w:
        w.write_cells(cells_table)
        for chunk in edge_chunks:                 # sorted by (pre, post), chunk after chunk
            w.write_edges(edges_table, synapses_table)
        snap = w.commit(counts=..., sources=..., timestamp=..., extra=...)

Nothing is visible under ``snapshots/`` until ``commit`` renames the finished folder, so a
snapshot that exists is whole; a writer that dies leaves only a ``.tmp-*`` folder, removed by
the next writer of the same version.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import stat
import time
from collections.abc import Mapping, Sequence
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
    SYNAPSE_SCHEMA,
    SYNAPSES,
    Snapshot,
    SnapshotError,
    read_snapshot,
    snapshot_path,
    snapshots_dir,
)

#: Parquet row-group sizes: small enough that one cell's rows are a small read
EDGE_ROW_GROUP = 128 * 1024
SYNAPSE_ROW_GROUP = 32 * 1024


def software_version() -> str:
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

    def __init__(self, version: int, *, has_size: bool, root: Path | None = None) -> None:
        self.version = check_version(version)
        self.has_size = has_size
        self.final = snapshot_path(version, root)
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

    # ------------------------------------------------------------------ parts

    def write_cells(self, cells: pa.Table) -> None:
        table = cells.select(CELL_SCHEMA.names).cast(CELL_SCHEMA)
        pq.write_table(table, self.tmp / CELLS, row_group_size=EDGE_ROW_GROUP)
        self.rows[CELLS] = table.num_rows

    def write_edges(self, edges: pa.Table, synapses: pa.Table | None) -> None:
        """One chunk of edges (sorted by (pre, post), after every earlier chunk) and, when
        given, their synapses (sorted by (pre, post, id))."""
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
        if synapses is not None:
            synapses = synapses.select(SYNAPSE_SCHEMA.names).cast(SYNAPSE_SCHEMA)
            if self._synapses is None:
                self._synapses = pq.ParquetWriter(
                    self.tmp / SYNAPSES, SYNAPSE_SCHEMA, use_dictionary=["pre", "post"]
                )
            self._synapses.write_table(synapses, row_group_size=SYNAPSE_ROW_GROUP)
            self.rows[SYNAPSES] += synapses.num_rows

    # ------------------------------------------------------------------ finish

    def _close_parts(self) -> None:
        for w in (self._edges, self._synapses):
            if w is not None:
                w.close()
        self._edges = self._synapses = None
        if not (self.tmp / EDGES).exists():
            pq.write_table(EDGE_SCHEMA.empty_table(), self.tmp / EDGES)
        if not (self.tmp / SYNAPSES).exists():
            pq.write_table(SYNAPSE_SCHEMA.empty_table(), self.tmp / SYNAPSES)

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
                "sha256": file_digest(self.tmp / name),
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


def _remove_stale(path: Path) -> None:
    """Remove a folder this module wrote (read-only files included)."""
    if not path.exists():
        return
    path.chmod(0o755)
    for p in path.iterdir():
        p.chmod(0o644)
    shutil.rmtree(path, ignore_errors=True)
