"""Where release snapshots live and what their files hold.

A snapshot is one aggregated release as Parquet files plus a manifest, in
``$CGRAPH_DATA/snapshots/v{version}/``::

    cells.parquet     one row per nucleus, sorted by nucleus_id (CELL_SCHEMA)
    edges.parquet     one row per (pre, post) cell pair, sorted by (pre, post) (EDGE_SCHEMA)
    manifest.json     sources (name, bytes, sha256), counts, files (rows, bytes, sha256 of
                      cells and edges), voxel size, timestamp, created_at, software version
    synapses.parquet  the synapse store: every row of the source synapse table (see below)
    synapses.json     the store's own manifest, written last: the store is there when it is

The synapse store is committed on its own, after the snapshot: a load serves the release from
cells and edges first and writes the store after (about half of a v117-sized load's time), so
for a while a complete snapshot has no ``synapses.json``; synapse-level readers then raise
StoreNotReady (``SYNAPSE_STORE_NOT_READY``). ``synapses.json`` holds ``snapshot`` (the digest
of the manifest it belongs to), ``file`` (rows, bytes, sha256 of synapses.parquet) and the
store's metadata (below). Snapshots written before (the store inside the manifest's
``synapse_store``, its file in ``files``) are read as they are.

The synapse store (FORMAT 2)
----------------------------
``synapses.parquet`` holds one row per source synapse row, every row kept (fragments, autapses,
root 0, multi-nucleus roots too), sorted by ``(post_pt_root_id, id)`` in row groups of
``STORE_ROW_GROUP`` (65,536) rows, so the min/max statistics of ``post_pt_root_id`` locate a
post root's rows in one or two row groups. Columns, in this order (:func:`store_schema`):

==========================================  ==============  =========================================
``id``                                      int64           source id (0-based data row when none)
``pre_pt_root_id``, ``post_pt_root_id``     int64
``pre_pt_supervoxel_id``,
``post_pt_supervoxel_id``                   int64, null     null when the source has none
``size``                                    int64, null     cleft voxels; null when the source has none
``pre_pt_position_x/_y/_z``,
``ctr_pt_position_x/_y/_z``,
``post_pt_position_x/_y/_z``                int32/float64   source VOXELS (``voxel_size_nm`` in the
                                                            manifest); int32 when every source value
                                                            is integral (``position_type``), null
                                                            when the source has no such position
``pre_nucleus_id``, ``post_nucleus_id``     int64, null     the nucleus the root maps to uniquely
                                                            in this release, else null
``outcome``                                 dictionary      the attribution rule (loaders.aggregate):
                                            <int8, string>  used, autapse, root0, multi_nucleus_root,
                                                            partner_without_nucleus
extra numeric source columns                float64/int64   by source name (e.g. ``spine_vol_um3``)
``created``, ``superceded_id``, ``valid``   as read         CAVE book-keeping, when in the source
==========================================  ==============  =========================================

An edge (pre nucleus, post nucleus)'s synapses are the rows with outcome ``used`` and those two
nuclei, in ascending id (``snapshot.read.edge_synapses``). The store's metadata
(:func:`store_meta`): ``rows``, ``sort`` (["post_pt_root_id", "id"]), ``row_group_rows``, ``row_groups``,
``position_unit`` ("voxel"), ``position_type`` ("int32" | "float64"), ``voxel_size_nm``,
``extra_columns`` (names, in order), ``bookkeeping_columns``, ``outcomes`` ({outcome: rows}),
``columns`` (every store column, in order), ``sources`` (the source columns of supervoxels and
positions). Without any position in the source the nine position columns are all-null int32 and
``position_type`` is null. An extra source column whose name is a store column's is not kept.
Row-group statistics are written for id, the roots, the nuclei and the positions; encodings are
listed in snapshot/write.py. There is no secondary pre-root file: a cell's outputs lie in about a
third of the row groups at the v117 shape (bench/results/store_full.md), so a pre-root lookup is a
scan of ``pre_pt_root_id``.
Snapshots of FORMAT 1 (synapses.parquet = only the used synapses by (pre, post, id)) are refused
with a SnapshotError that says to rebuild them (``cgraph load --replace`` of the release).

It is written aside (``.v{version}.tmp-<pid>-<random>``) and renamed into place when complete,
then made read-only: a snapshot directory that exists is whole, and the only change it sees is
its store arriving (``synapses.parquet`` renamed into place, then ``synapses.json``; one writer
at a time, under ``.v{version}.store-lock`` beside it). A release's
snapshot lives in ``v{version}`` or, when a replace wrote it beside the served one (graph slot
1, core.model.SLOTS), in ``v{version}_b``; readers find the one the Release node names by its
digest (:func:`open_snapshot` with ``digest``), and the replaced one is removed once the graph
has switched. The snapshot is the input of both Neo4j
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
from core.model import SLOTS, check_slot, check_version, default_dataset

FORMAT = 2
MANIFEST = "manifest.json"
CELLS = "cells.parquet"
EDGES = "edges.parquet"
SYNAPSES = "synapses.parquet"
STORE_MANIFEST = "synapses.json"

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
#: the synapse store (see the module docstring)
STORE_ROW_GROUP = 64 * 1024
STORE_SORT = ("post_pt_root_id", "id")
POINTS = ("pre_pt_position", "ctr_pt_position", "post_pt_position")
POSITION_COLUMNS = tuple(f"{p}_{k}" for p in POINTS for k in "xyz")
OUTCOMES = ("used", "autapse", "root0", "multi_nucleus_root", "partner_without_nucleus")
OUTCOME_TYPE = pa.dictionary(pa.int8(), pa.string())
BOOKKEEPING = ("created", "superceded_id", "valid")
STORE_HEAD = (
    ("id", pa.int64()),
    ("pre_pt_root_id", pa.int64()),
    ("post_pt_root_id", pa.int64()),
    ("pre_pt_supervoxel_id", pa.int64()),
    ("post_pt_supervoxel_id", pa.int64()),
    ("size", pa.int64()),
)
STORE_TAIL = (
    ("pre_nucleus_id", pa.int64()),
    ("post_nucleus_id", pa.int64()),
    ("outcome", OUTCOME_TYPE),
)
STORE_BASE_COLUMNS = tuple(
    [n for n, _ in STORE_HEAD] + list(POSITION_COLUMNS) + [n for n, _ in STORE_TAIL]
)


def store_schema(
    position_type: pa.DataType, extras: list[pa.Field] | tuple[pa.Field, ...] = ()
) -> pa.Schema:
    """The synapse store's schema: the fixed columns, then ``extras`` (numeric source columns,
    then book-keeping) in their order."""
    fields = [pa.field(n, t) for n, t in STORE_HEAD]
    fields += [pa.field(c, position_type) for c in POSITION_COLUMNS]
    fields += [pa.field(n, t) for n, t in STORE_TAIL]
    return pa.schema(fields + list(extras))


class SnapshotError(CGraphError):
    """A snapshot is missing, incomplete or does not match what the graph says was loaded."""

    code = "SNAPSHOT_UNAVAILABLE"


class StoreNotReady(SnapshotError):
    """A release is served but its synapse store is not written (yet)."""

    code = "SYNAPSE_STORE_NOT_READY"

    def __init__(self, version: int) -> None:
        super().__init__(
            f"the synapse store of release {version} is not written yet: a load writes it after "
            "the release is served (partner, diff and motif queries answer meanwhile); if no "
            f"load of release {version} is running, run the same `cgraph load` again to build it"
        )
        self.version = version


def data_dir() -> Path:
    """``CGRAPH_DATA`` (default: ``.data`` in the project folder)."""
    env = os.environ.get("CGRAPH_DATA")
    if env:
        return Path(env).resolve()
    return (Path(__file__).resolve().parent.parent / ".data").resolve()


def snapshots_dir(root: Path | None = None) -> Path:
    return (root or data_dir()) / "snapshots"


def snapshot_path(version: int, root: Path | None = None, slot: int = 0) -> Path:
    return snapshots_dir(root) / f"v{check_version(version)}{'_b' if check_slot(slot) else ''}"


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


def store_meta(snap: Snapshot) -> dict[str, Any]:
    """The synapse store's metadata (rows, sort, row groups, positions, ...): from
    ``synapses.json`` (or, for snapshots written with the store inside, the manifest);
    StoreNotReady when the store is not written."""
    inline = snap.manifest.get("synapse_store")
    if isinstance(inline, dict) and "rows" in inline:
        return inline
    path = snap.path / STORE_MANIFEST
    try:
        meta = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise StoreNotReady(snap.version) from None
    except ValueError as exc:
        raise SnapshotError(f"{path}: not a JSON store manifest ({exc})") from None
    if meta.get("snapshot") != snap.digest:
        raise SnapshotError(
            f"{path} belongs to another snapshot ({str(meta.get('snapshot'))[:12]}, this one is "
            f"{snap.digest[:12]}); load release {snap.version} again with `cgraph load --replace`"
        )
    return dict(meta["store"])


def store_ready(snap: Snapshot) -> bool:
    try:
        store_meta(snap)
    except StoreNotReady:
        return False
    return True


def store_lock_path(snap_path: Path) -> Path:
    """The lock a store writer holds (beside the snapshot folder, which stays read-only)."""
    return snap_path.parent / f".{snap_path.name}.store-lock"


def snapshot_dataset(snap: Snapshot) -> str:
    """The dataset a snapshot's release belongs to (snapshots made before datasets: the
    default one)."""
    return str(snap.manifest.get("dataset") or default_dataset())


def open_snapshot(version: int, root: Path | None = None, *, digest: str | None = None) -> Snapshot:
    """The complete snapshot of ``version``: the one whose manifest digest is ``digest`` (what
    the Release node names) when given, else the only one; SnapshotError when there is none
    (or, without a digest, two)."""
    found = [read_snapshot(p) for p in (snapshot_path(version, root, s) for s in SLOTS)
             if (p / MANIFEST).exists()]  # fmt: skip
    if digest is not None:
        for snap in found:
            if snap.digest == digest:
                return snap
        raise SnapshotError(f"no snapshot of release {version} with digest {digest[:12]} in "
                            f"{snapshots_dir(root)}")  # fmt: skip
    if not found:
        return read_snapshot(snapshot_path(version, root))  # raises, naming the path
    served = served_slot(version, root)
    if len(found) > 1 and served is not None:
        return read_snapshot(snapshot_path(version, root, served))
    if len(found) > 1:
        raise SnapshotError(
            f"release {version} has two snapshots ({', '.join(str(s.path) for s in found)}): a "
            "replace was interrupted; the Release node's `snapshot` digest names the served "
            "one, remove the other (or load the release again)"
        )
    return found[0]


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
        raise SnapshotError(
            f"{manifest_file}: snapshot format {manifest.get('format')!r}, this version reads "
            f"{FORMAT} (format 2 keeps every synapse row in synapses.parquet); rebuild it by "
            f"loading release {manifest.get('version', '?')} again with `cgraph load --replace`, "
            "then `cgraph rebuild`"
        )
    manifest["_digest"] = hashlib.sha256(raw).hexdigest()
    return Snapshot(path, manifest)


def _served_file(version: int, root: Path | None) -> Path:
    return snapshots_dir(root) / f"v{check_version(version)}.served"


def served_slot(version: int, root: Path | None = None) -> int | None:
    """While a replace runs (two snapshots of the release on disk), which one is served: the
    ``v{version}.served`` file names it (readers without the graph's digest follow it)."""
    try:
        text = _served_file(version, root).read_text().strip()
    except FileNotFoundError:
        return None
    return 1 if text.endswith("_b") else 0


def set_served(version: int, slot: int | None, root: Path | None = None) -> None:
    """Name the served snapshot of a release (atomically), or (None) say there is only one."""
    path = _served_file(version, root)
    if slot is None:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(snapshot_path(version, root, slot).name + "\n")
    os.replace(tmp, path)


def list_snapshots(root: Path | None = None) -> list[Snapshot]:
    base = snapshots_dir(root)
    if not base.is_dir():
        return []
    out = []
    versions = set()
    for p in sorted(base.iterdir()):
        name = p.name.removesuffix("_b")
        if p.is_dir() and name.startswith("v") and name[1:].isdigit():
            versions.add(int(name[1:]))
    out = [open_snapshot(v, root) for v in sorted(versions)]
    return sorted(out, key=lambda s: s.version)
