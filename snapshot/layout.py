"""Where release snapshots live and what their files hold.

A snapshot is one aggregated release as Parquet files plus a manifest, in
``$CGRAPH_DATA/snapshots/v{version}/``::

    cells.parquet     one row per nucleus, sorted by nucleus_id (CELL_SCHEMA)
    edges.parquet     one row per (pre, post) cell pair, sorted by (pre, post) (EDGE_SCHEMA)
    synapses.parquet  the synapses on those edges, sorted by (pre, post, id) (SYNAPSE_SCHEMA)
    manifest.json     sources (name, bytes, sha256), counts, files (rows, bytes),
                      voxel size, timestamp, created_at, software version

It is written aside (``.v{version}.tmp-<pid>-<random>``) and renamed into place when complete,
then made read-only: a snapshot directory that exists is whole and never changes. Replacing a
version renames the old directory away in the same step. The snapshot is the input of both Neo4j
writers and of whole-release analytics; pandas, DuckDB, Spark read it as it is.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from core.errors import CGraphError
from core.model import check_version

FORMAT = 1
MANIFEST = "manifest.json"
CELLS = "cells.parquet"
EDGES = "edges.parquet"
SYNAPSES = "synapses.parquet"

#: release-independent columns first, then the release-scoped ones (core.model.RELEASE_PROPERTIES)
CELL_SCHEMA = pa.schema(
    [
        ("nucleus_id", pa.int64()),
        ("x", pa.float64()),  # nm
        ("y", pa.float64()),
        ("z", pa.float64()),
        ("volume", pa.float64()),  # um^3, null when unknown
        ("root_id", pa.int64()),
        ("is_neuron", pa.bool_()),
        ("cell_type", pa.string()),
        ("classification_system", pa.string()),
        ("out_synapses", pa.int64()),
        ("in_synapses", pa.int64()),
    ]
)
EDGE_SCHEMA = pa.schema(
    [
        ("pre", pa.int64()),  # nucleus IDs
        ("post", pa.int64()),
        ("synapses", pa.int64()),
        ("size", pa.int64()),  # summed size (voxels); null when the source had no sizes
    ]
)
SYNAPSE_SCHEMA = pa.schema(
    [
        ("pre", pa.int64()),
        ("post", pa.int64()),
        ("id", pa.int64()),
        ("size", pa.int64()),
    ]
)


class SnapshotError(CGraphError):
    """A snapshot is missing, incomplete or does not match what the graph says was loaded."""

    code = "SNAPSHOT_UNAVAILABLE"


def data_dir() -> Path:
    """``CGRAPH_DATA`` (default: ``.data`` in the project folder)."""
    env = os.environ.get("CGRAPH_DATA")
    if env:
        return Path(env).resolve()
    return (Path(__file__).resolve().parent.parent / ".data").resolve()


def snapshots_dir(root: Path | None = None) -> Path:
    return (root or data_dir()) / "snapshots"


def snapshot_path(version: int, root: Path | None = None) -> Path:
    return snapshots_dir(root) / f"v{check_version(version)}"


@dataclass(frozen=True)
class Snapshot:
    """A complete snapshot on disk."""

    path: Path
    manifest: dict[str, Any]

    @property
    def version(self) -> int:
        return int(self.manifest["version"])

    @property
    def digest(self) -> str:
        """sha256 of the manifest file: names this snapshot (stored on the Release node)."""
        return str(self.manifest["_digest"])

    @property
    def counts(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.manifest["counts"].items()}

    @property
    def has_size(self) -> bool:
        return bool(self.manifest["has_size"])

    def file(self, name: str) -> Path:
        return self.path / name


def open_snapshot(version: int, root: Path | None = None) -> Snapshot:
    """The complete snapshot of ``version``; SnapshotError when there is none."""
    path = snapshot_path(version, root)
    return read_snapshot(path)


def read_snapshot(path: Path) -> Snapshot:
    import hashlib

    manifest_file = path / MANIFEST
    try:
        raw = manifest_file.read_bytes()
    except FileNotFoundError:
        raise SnapshotError(f"no release snapshot at {path} (no {MANIFEST})") from None
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise SnapshotError(f"{manifest_file}: not a JSON manifest ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise SnapshotError(f"{manifest_file}: snapshot format {manifest.get('format')!r}, "
                            f"this version reads {FORMAT}")  # fmt: skip
    manifest["_digest"] = hashlib.sha256(raw).hexdigest()
    return Snapshot(path, manifest)


def list_snapshots(root: Path | None = None) -> list[Snapshot]:
    base = snapshots_dir(root)
    if not base.is_dir():
        return []
    out = []
    for p in sorted(base.iterdir()):
        if p.is_dir() and p.name.startswith("v") and p.name[1:].isdigit():
            out.append(read_snapshot(p))
    return sorted(out, key=lambda s: s.version)
