"""The offline bulk writer: release snapshots -> neo4j-admin CSV -> `database import full`.

For the project's own local server only (a remote or clustered Neo4j gets the online writer,
graph.releases.write_snapshot). It ends with the graph the online writer builds::

    report = bulk_import([open_snapshot(117), open_snapshot(343)], ServerSettings.from_env(),
                         ConnectionSettings.from_env())
    print(report.describe())

Steps: (1) CSV files from the Parquet snapshots in ``<home>/import-work/<stamp>/`` (edges
streamed batch by batch, memory bounded); (2) stop the server; (3) move the store aside
(``data/bulk-backup-<stamp>/``); (4) ``neo4j-admin database import full``; (5) start, create the
schema (graph.schema), check the counts against the manifests, mark the releases complete;
(6) delete the old store. A failure from (3) on puts the old store back, restarts the server
if it was running and raises :class:`BulkImportError` naming the step and the logs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.errors import CGraphError
from core.model import (
    CELL_LABEL,
    COMPLETE,
    LOADING,
    RELEASE_COUNT_KEYS,
    RELEASE_LABEL,
    RELEASE_PROPERTIES,
    check_version,
    display_label,
    prop,
    rel_type,
)
from graph import server
from graph.driver import AsyncDatabase, Database
from graph.schema import ensure_release_schema, ensure_schema
from graph.settings import ConnectionSettings, ServerSettings
from snapshot.layout import (
    CELL_SCHEMA,
    CELLS,
    EDGE_SCHEMA,
    EDGES,
    Snapshot,
    SnapshotError,
    snapshot_dataset,
)

WORK_DIR = "import-work"
BACKUP_PREFIX = server.BULK_BACKUP_PREFIX
ARRAY_DELIMITER = ";"
EDGE_BATCH = 1 << 20  # rows per Parquet batch -> CSV (about 32 MB of columns)
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
LOCAL_SCHEMES = frozenset({"bolt", "neo4j"})
IMPORT_HEAP_FRACTION = 8  # importer heap: RAM / 8, within 1-8 GiB (it works mostly off-heap)
BYTES_PER_EDGE = 48 + 80  # CSV + store, for the disk-space check (store measured at ~72 B)
IMPORT_JVM_FLAGS = (
    "-XX:-OmitStackTraceInFastThrow",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--enable-native-access=ALL-UNNAMED",
)
_CSV_TYPE = {int: "long", bool: "boolean", str: "string"}
EDGE_HEADER = f":START_ID({CELL_LABEL}),:END_ID({CELL_LABEL}),synapses:long,size:long"


class BulkRefused(CGraphError):
    """The bulk writer does not apply: not the project's local server, or bad input set."""

    code = "BAD_REQUEST"


class BulkImportError(CGraphError):
    """A bulk import step failed. `state` says where the store is (back in place, or not
    touched); `see` names the logs."""

    def __init__(self, step: str, detail: str, state: str, see: Sequence[Path]) -> None:
        where = f"; see {', '.join(str(p) for p in see)}" if see else ""
        super().__init__(f"bulk import failed at step {step!r}: {detail}; {state}{where}")
        self.step = step


# --------------------------------------------------------------------------- CSV files


@dataclass(frozen=True)
class ImportFiles:
    """The neo4j-admin input written by :func:`write_import_files`."""

    work: Path
    cells: Path
    releases: Path
    relationships: tuple[tuple[str, Path, Path], ...]  # (type, header, data)
    cell_count: int  # Cell nodes (all releases merged)
    release_cells: Mapping[int, int] = field(default_factory=dict)  # version -> cells
    edge_counts: Mapping[int, int] = field(default_factory=dict)  # version -> relationships

    @property
    def relationship_count(self) -> int:
        return sum(self.edge_counts.values())

    def admin_args(self) -> list[str]:
        args = [f"--nodes={self.cells}", f"--nodes={self.releases}"]
        args += [f"--relationships={t}={h},{d}" for t, h, d in self.relationships]
        return args

    def remove_csv(self) -> None:
        self.cells.unlink(missing_ok=True)
        self.releases.unlink(missing_ok=True)
        for _, header, data in self.relationships:
            header.unlink(missing_ok=True)
            data.unlink(missing_ok=True)


def _sorted_snapshots(snapshots: Sequence[Snapshot]) -> list[Snapshot]:
    if not snapshots:
        raise BulkRefused("bulk import needs at least one release snapshot")
    versions = [check_version(s.version) for s in snapshots]
    if len(set(versions)) != len(versions):
        raise BulkRefused(f"bulk import got the same release twice: {sorted(versions)}")
    return sorted(snapshots, key=lambda s: s.version)


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Name the file in Parquet read errors (a truncated file, a missing column, ...)."""
    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        raise SnapshotError(f"{path}: {exc}") from exc


def _read_cells(snap: Snapshot) -> pa.Table:
    path = snap.file(CELLS)
    with _reading(path):
        table = pq.read_table(path, columns=CELL_SCHEMA.names).cast(CELL_SCHEMA)
    ids = table["nucleus_id"]
    if ids.null_count:
        raise SnapshotError(f"{path}: null nucleus_id")
    table = table.sort_by("nucleus_id")
    sorted_ids = table["nucleus_id"].to_numpy()
    if len(sorted_ids) > 1 and not bool(np.all(np.diff(sorted_ids) > 0)):
        raise SnapshotError(f"{path}: nucleus_id is not unique")
    want = snap.counts.get("cells")
    if want is not None and want != table.num_rows:
        raise SnapshotError(f"{path}: {table.num_rows} rows, the manifest says {want} cells")
    for stem in ("cell_type", "classification_system"):
        if pc.any(pc.match_substring_regex(table[stem], r"[\r\n]")).as_py():
            raise SnapshotError(f"{path}: column {stem!r} holds a line break")
    return table


def _aligned(ids: np.ndarray, table: pa.Table) -> tuple[pa.Array, np.ndarray]:
    """Row indices of `ids` in `table` (null where absent) and the presence mask."""
    own = table["nucleus_id"].to_numpy()
    pos = np.searchsorted(own, ids)
    clipped = np.minimum(pos, max(len(own) - 1, 0))
    present = (pos < len(own)) & (own[clipped] == ids) if len(own) else np.zeros(len(ids), bool)
    return pa.array(clipped, type=pa.int64(), mask=~present), present


def _point(x: pa.ChunkedArray, y: pa.ChunkedArray, z: pa.ChunkedArray) -> pa.Array:
    """`{x:1.5, y:2, z:3}` (neo4j-admin's point syntax); floats as shortest round-trip text."""
    s = [pc.cast(c, pa.string()) for c in (x, y, z)]
    return pc.binary_join_element_wise("{x:", s[0], ", y:", s[1], ", z:", s[2], "}", "")


def _labels(per_version: list[tuple[pa.Array, pa.Array]], n: int) -> pa.Array:
    """`Cell` or `Cell;Excitatory`: the display label from the highest version with a type."""
    labels: list[str | None] = [None] * n
    decided = np.zeros(n, dtype=bool)
    for cell_type, system in reversed(per_version):  # highest version first
        has = np.asarray(cell_type.is_valid()) & ~decided
        types, systems = cell_type.to_pylist(), system.to_pylist()
        for i in np.flatnonzero(has):
            labels[i] = display_label(types[i], systems[i])
        decided |= has
    return pa.array([CELL_LABEL if lb is None else f"{CELL_LABEL};{lb}" for lb in labels])


@dataclass(frozen=True)
class CellKeys:
    """How an edge's nucleus IDs become the import IDs of its cells. One dataset: the nucleus
    ID itself (``ids`` None). Several: cells of dataset d are rows ``offset[d] + i`` for its
    sorted nucleus IDs ``ids[d]``."""

    ids: Mapping[str, np.ndarray] | None = None
    offset: Mapping[str, int] = field(default_factory=dict)

    def of(self, dataset: str, nucleus_ids: pa.Array) -> pa.Array:
        if self.ids is None:
            return nucleus_ids
        own = self.ids[dataset]
        return pa.array(np.searchsorted(own, nucleus_ids.to_numpy()) + self.offset[dataset],
                        pa.int64())  # fmt: skip


def cells_table(snapshots: Sequence[Snapshot]) -> pa.Table:
    """One row per (dataset, nucleus ID) over all snapshots, columns named by their neo4j-admin
    headers."""
    return cells_and_keys(snapshots)[0]


def cells_and_keys(snapshots: Sequence[Snapshot]) -> tuple[pa.Table, CellKeys]:
    snaps = _sorted_snapshots(snapshots)
    datasets = sorted({snapshot_dataset(s) for s in snaps})
    parts: list[pa.Table] = []
    offsets: dict[str, int] = {}
    id_sets: dict[str, np.ndarray] = {}
    for ds in datasets:
        mine = [s for s in snaps if snapshot_dataset(s) == ds]
        part = _dataset_cells(mine, ds)
        offsets[ds] = sum(p.num_rows for p in parts)
        id_sets[ds] = part["nucleus_id:long"].to_numpy()
        parts.append(part)
    names: list[str] = []  # every part's columns, in first-seen order (absent: null)
    for part in parts:
        names += [n for n in part.column_names if n not in names and n != ":LABEL"]
    names.append(":LABEL")
    table = pa.concat_tables([part.select([n for n in names if n in part.column_names])
                              for part in parts], promote_options="default")  # fmt: skip
    table = table.select(names)
    if len(datasets) <= 1:  # the nucleus ID is the import ID (and the stored property)
        table = table.rename_columns(
            [f"nucleus_id:ID({CELL_LABEL}){{id-type:long}}" if n == "nucleus_id:long" else n
             for n in table.column_names])  # fmt: skip
        return table, CellKeys()
    ids = pa.array(np.arange(table.num_rows, dtype=np.int64))
    table = table.add_column(0, f":ID({CELL_LABEL}){{id-type:long}}", ids)
    return table, CellKeys(ids=id_sets, offset=offsets)


def _dataset_cells(snaps: Sequence[Snapshot], dataset: str) -> pa.Table:
    tables = [_read_cells(s) for s in snaps]
    stacked = pa.concat_tables([t.select(["nucleus_id", "x", "y", "z", "volume"]) for t in tables])
    # np.unique's first index = the lowest version that has the cell (stacked ascending)
    ids, first = np.unique(stacked["nucleus_id"].to_numpy(), return_index=True)
    base = stacked.take(pa.array(first))
    cols: dict[str, pa.Array | pa.ChunkedArray] = {
        "nucleus_id:long": pa.array(ids, pa.int64()),
        "dataset:string": pa.array([dataset] * len(ids), pa.string()),
        "position:point{crs:cartesian-3d}": _point(base["x"], base["y"], base["z"]),
        "volume:double": base["volume"],
    }
    memberships, scoped, typed = [], {}, []
    for snap, table in zip(snaps, tables, strict=True):
        v = snap.version
        rows, present = _aligned(ids, table)
        memberships.append(pc.if_else(pa.array(present), str(v), pa.scalar(None, pa.string())))
        for p in RELEASE_PROPERTIES:
            scoped[f"{prop(p.stem, v)}:{_CSV_TYPE[p.type]}"] = table[p.stem].take(rows)
        typed.append((table["cell_type"].take(rows).combine_chunks(),
                      table["classification_system"].take(rows).combine_chunks()))  # fmt: skip
    cols["releases:long[]"] = pc.binary_join_element_wise(
        *memberships, ARRAY_DELIMITER, null_handling="skip"
    )
    cols.update(scoped)
    cols[":LABEL"] = _labels(typed, len(ids))
    return pa.table(cols)


def _iso(value: datetime) -> str:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def releases_table(snapshots: Sequence[Snapshot], started_at: datetime) -> pa.Table:
    """One Release row per snapshot, status `loading` (set `complete` once checked)."""
    snaps = _sorted_snapshots(snapshots)
    keys = [k for k in RELEASE_COUNT_KEYS if any(k in s.counts for s in snaps)]
    stamps = [s.manifest.get("timestamp") for s in snaps]
    cols: dict[str, list[object]] = {
        "version:long": [s.version for s in snaps],
        "timestamp:datetime": [_iso(datetime.fromisoformat(t)) if t else None for t in stamps],
        "status:string": [LOADING] * len(snaps),
        "started_at:datetime": [_iso(started_at)] * len(snaps),
        "snapshot:string": [s.digest for s in snaps],
        "dataset:string": [snapshot_dataset(s) for s in snaps],
        "slot:long": [0] * len(snaps),  # a fresh store: every release in slot 0
    }
    for k in keys:
        cols[f"{k}:long"] = [s.counts.get(k) for s in snaps]
    cols[":LABEL"] = [RELEASE_LABEL] * len(snaps)
    types = {name: pa.int64() if name.endswith(":long") else pa.string() for name in cols}
    return pa.table({name: pa.array(values, types[name]) for name, values in cols.items()})


def _write_table(table: pa.Table, path: Path) -> None:
    """Header line as is (no quotes), then the rows; empty fields = absent properties."""
    with path.open("wb") as fh:
        fh.write((",".join(table.column_names) + "\n").encode())
        pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False))


def _as_edge_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    if batch.schema == EDGE_SCHEMA:
        return batch
    return pa.Table.from_batches([batch]).cast(EDGE_SCHEMA).combine_chunks().to_batches()[0]


def _edge_batches(snap: Snapshot) -> Iterator[pa.RecordBatch]:
    """edges.parquet one batch at a time (memory: one batch, whatever the release size)."""
    path = snap.file(EDGES)
    with _reading(path):
        pf = pq.ParquetFile(path, pre_buffer=False)  # pre-buffering keeps every row group
        want = snap.counts.get("edges")
        if want is not None and want != pf.metadata.num_rows:
            raise SnapshotError(
                f"{path}: {pf.metadata.num_rows} rows, the manifest says {want} edges"
            )
        for batch in pf.iter_batches(batch_size=EDGE_BATCH, columns=EDGE_SCHEMA.names):
            yield _as_edge_batch(batch)


def write_edges_csv(
    snap: Snapshot, header: Path, data: Path, *, progress: bool = False,
    keys: CellKeys = CellKeys(),  # noqa: B008 - frozen, shared safely
) -> int:  # fmt: skip
    """The snapshot's edges as a header file and a data file, streamed batch by batch (the
    cells' import IDs from ``keys``)."""
    ds = snapshot_dataset(snap)
    header.write_text(EDGE_HEADER + "\n")
    rows = 0
    options = pacsv.WriteOptions(include_header=False)
    with (
        pa.OSFile(str(data), "wb") as sink,
        pacsv.CSVWriter(sink, EDGE_SCHEMA, write_options=options) as w,
    ):
        for batch in _edge_batches(snap):
            if keys.ids is not None:
                batch = pa.RecordBatch.from_arrays(
                    [keys.of(ds, batch.column(0)), keys.of(ds, batch.column(1)),
                     batch.column(2), batch.column(3)], schema=EDGE_SCHEMA)  # fmt: skip
            w.write_batch(batch)
            rows += batch.num_rows
            if progress and rows % (16 * EDGE_BATCH) < batch.num_rows:
                _say(f"  v{snap.version}: {rows:,} edges written")
    return rows


def write_import_files(
    snapshots: Sequence[Snapshot],
    work: Path,
    *,
    started_at: datetime | None = None,
    progress: bool = False,
) -> ImportFiles:
    """neo4j-admin CSV input for `snapshots` in `work`: cells (merged by nucleus_id, in
    memory), releases, and one relationship header + data file per release (streamed)."""
    snaps = _sorted_snapshots(snapshots)
    work.mkdir(parents=True, exist_ok=True)
    cells, keys = cells_and_keys(snaps)
    cells_csv, releases_csv = work / "cells.csv", work / "releases.csv"
    _write_table(cells, cells_csv)
    _write_table(releases_table(snaps, started_at or datetime.now(UTC)), releases_csv)
    rels, edges = [], {}
    for snap in snaps:
        name = rel_type(snap.version)
        header, data = work / f"{name}.header.csv", work / f"{name}.csv"
        edges[snap.version] = write_edges_csv(snap, header, data, progress=progress, keys=keys)
        rels.append((name, header, data))
    release_cells = {s.version: pq.read_metadata(s.file(CELLS)).num_rows for s in snaps}
    return ImportFiles(work, cells_csv, releases_csv, tuple(rels), cells.num_rows,
                       release_cells, edges)  # fmt: skip


# --------------------------------------------------------------------------- target checks


def is_local(conn: ConnectionSettings, settings: ServerSettings) -> bool:
    """True when `conn` points at the project's own local server (127.0.0.1/localhost:port)."""
    try:
        url = urlsplit(conn.uri)
        port = url.port or 7687
    except ValueError:
        return False
    return (
        url.scheme in LOCAL_SCHEMES and url.hostname in LOCAL_HOSTS and port == settings.bolt_port
    )


def _require_local(conn: ConnectionSettings, settings: ServerSettings) -> None:
    if not is_local(conn, settings):
        raise BulkRefused(
            f"bulk import writes the store of the project's local server only "
            f"(bolt://127.0.0.1:{settings.bolt_port}); {conn.uri} gets the online writer"
        )
    if conn.database != "neo4j":
        raise BulkRefused(f"bulk import fills the local server's default database 'neo4j', "
                          f"not {conn.database!r}")  # fmt: skip


COUNT_NODES = """
MATCH (n) WHERE NOT (n:Release AND n.created_by = $token AND n.claim = $token)
RETURN count(n) AS n
"""


async def is_local_empty(
    adb: AsyncDatabase,
    server_settings: ServerSettings,
    conn: ConnectionSettings,
    claim_token: str | None = None,
) -> bool:
    """True when the target is the project's own local server and its database holds no node
    at all (so no Release either; the untouched Release node of this loader's own claim,
    ``claim_token``, aside): then `cgraph load` may take the bulk path."""
    if not is_local(conn, server_settings) or conn.database != "neo4j":
        return False
    rows = await adb.read(COUNT_NODES, {"token": claim_token})
    return int(rows[0]["n"]) == 0


# --------------------------------------------------------------------------- the import


@dataclass(frozen=True)
class BulkReport:
    versions: tuple[int, ...]
    nodes: int  # Cell + Release
    relationships: int
    seconds: Mapping[str, float]  # per stage: csv, stop, aside, import, start, indexes, check
    store_bytes: int

    @property
    def edges_per_s(self) -> float:
        return self.relationships / max(self.seconds.get("import", 0.0), 1e-9)

    def describe(self) -> str:
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        return (f"bulk import of releases {list(self.versions)}: {self.nodes:,} nodes, "
                f"{self.relationships:,} relationships ({self.edges_per_s:,.0f} edges/s), "
                f"store {server.human_size(self.store_bytes)}; {stages}")  # fmt: skip


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _import_heap() -> str:
    heap = server.ram_bytes() // IMPORT_HEAP_FRACTION
    return server.format_size(max(server.GiB, min(8 * server.GiB, heap)) // server.MiB * server.MiB)


def _checked_java(settings: ServerSettings) -> str:
    java = server._java(settings)
    need, have = server.required_java(settings.version), server.java_major(java)
    if have < need:
        raise BulkRefused(f"Neo4j {settings.version} needs Java {need}+, {java} is {have}")
    return java


def _check_disk(settings: ServerSettings, edges: int) -> None:
    need = edges * BYTES_PER_EDGE + 512 * server.MiB
    free = shutil.disk_usage(settings.home).free
    if free < need:
        raise BulkRefused(f"bulk import needs about {server.human_size(need)} free under "
                          f"{settings.home}, {server.human_size(free)} are free")  # fmt: skip


def _store_dirs(settings: ServerSettings, database: str) -> tuple[Path, Path]:
    return (settings.data_dir / "databases" / database,
            settings.data_dir / "transactions" / database)  # fmt: skip


def _move_aside(settings: ServerSettings, database: str, backup: Path) -> None:
    for current in _store_dirs(settings, database):
        if current.exists():
            target = backup / current.parent.name / database
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(current, target)
    backup.mkdir(parents=True, exist_ok=True)
    (backup / server.BULK_BACKUP_DONE).touch()  # every part of the old store is here now


def _admin_command(
    java: str, settings: ServerSettings, files: ImportFiles, database: str
) -> list[str]:
    return [
        java, f"-Xmx{_import_heap()}", *IMPORT_JVM_FLAGS, "-cp", f"{settings.lib}/*",
        "org.neo4j.cli.AdminTool", "database", "import", "full", database, "--verbose",
        "--overwrite-destination=true", f"--threads={_threads()}",
        f"--array-delimiter={ARRAY_DELIMITER}", "--skip-bad-relationships=false",
        "--skip-duplicate-nodes=false", f"--report-file={files.work / 'import.report'}",
        *files.admin_args(),
    ]  # fmt: skip


class _StepFailed(Exception):
    """A step's own failure, before it is reported as a BulkImportError."""


def _tee(stream: IO[str], log: IO[str], progress: bool) -> None:
    for line in stream:
        log.write(line)
        if progress and line.strip() and not line.startswith(("\tat ", "Caused by")):
            sys.stderr.write(line)


def _import_failure(log: Path) -> str:
    """The importer's own reason: its 'original error' line, else the last exception line."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    for ln in lines:
        if ln.startswith("original error:"):
            return ln.removeprefix("original error:").strip()
    causes = [ln for ln in lines if "Exception:" in ln and not ln.startswith("at ")]
    return causes[-1][:300] if causes else (lines[-1][:300] if lines else "no output")


def run_admin_import(
    java: str, settings: ServerSettings, files: ImportFiles, database: str, *, progress: bool
) -> Path:
    """neo4j-admin database import full, run in files.work; its output goes to import.log
    (and to stderr with progress). Killed when we are interrupted."""
    log = files.work / "import.log"
    cmd = _admin_command(java, settings, files, database)
    with log.open("w") as fh:
        proc = subprocess.Popen(
            cmd, cwd=files.work, env=server._java_env(settings), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            _tee(proc.stdout, fh, progress)
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if code != 0:
        how = f"killed by signal {-code}" if code < 0 else f"exit {code}"
        raise _StepFailed(f"neo4j-admin {how}: {_import_failure(log)}")
    return log


CELLS_IN_RELEASES = """
UNWIND $versions AS v
CALL (v) { MATCH (c:Cell) WHERE v IN c.releases RETURN count(c) AS cells }
RETURN v AS version, cells
"""
COUNT_CELLS = "MATCH (c:Cell) RETURN count(c) AS n"
COUNT_RELEASES = "MATCH (r:Release) RETURN count(r) AS n"
MARK_COMPLETE = """
MATCH (r:Release) WHERE r.version IN $versions
SET r.status = $status, r.finished_at = datetime()
"""


def _count_rels_cypher(version: int) -> str:
    return f"MATCH ()-[r:{rel_type(version)}]->() RETURN count(r) AS n"


def check_counts(db: Database, files: ImportFiles) -> None:
    """The imported graph against the files (whose rows were checked against the manifests):
    cells and relationships per release, Cell and Release nodes."""
    versions = sorted(files.release_cells)
    rows = db.read(CELLS_IN_RELEASES, {"versions": versions}, timeout=600)
    cells_in = {int(r["version"]): int(r["cells"]) for r in rows}
    wrong = []
    for v in versions:
        if cells_in.get(v) != files.release_cells[v]:
            wrong.append(f"v{v}: {cells_in.get(v)} cells, want {files.release_cells[v]}")
        edges = int(db.read(_count_rels_cypher(v), timeout=600)[0]["n"])
        if edges != files.edge_counts[v]:
            wrong.append(f"v{v}: {edges} {rel_type(v)}, want {files.edge_counts[v]}")
    cells = int(db.read(COUNT_CELLS, timeout=600)[0]["n"])
    if cells != files.cell_count:
        wrong.append(f"{cells} Cell nodes, want {files.cell_count}")
    releases = int(db.read(COUNT_RELEASES)[0]["n"])
    if releases != len(versions):
        wrong.append(f"{releases} Release nodes, want {len(versions)}")
    if wrong:
        raise _StepFailed("the imported graph does not match the snapshots: " + "; ".join(wrong))


class _Stages:
    """Seconds per stage, and the stage running now (named in errors)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.current = ""

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.current = name
        t0 = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - t0


def _swap_store(
    java: str, settings: ServerSettings, conn: ConnectionSettings, files: ImportFiles,
    backup: Path, stages: _Stages, progress: bool,
) -> None:  # fmt: skip
    """Steps (3)-(5), server stopped: old store aside, import, start, schema, counts."""
    with stages.stage("aside"):
        server.write_conf(settings)
        server._set_initial_password(settings, java, conn.password)  # a never-started home
        _move_aside(settings, conn.database, backup)
    with stages.stage("import"):
        if progress:
            _say(f"bulk: neo4j-admin import of {files.relationship_count:,} relationships")
        run_admin_import(java, settings, files, conn.database, progress=progress)
    with stages.stage("start"):
        server.start(settings, conn, restore_interrupted=False)
    with Database(conn) as db:
        with stages.stage("indexes"):
            db.call(ensure_schema)
            for v in sorted(files.release_cells):
                db.call(ensure_release_schema, v)
        with stages.stage("check"):
            check_counts(db, files)
            db.write(MARK_COMPLETE, {"versions": sorted(files.release_cells), "status": COMPLETE})


def _one_line(exc: BaseException) -> str:
    named = isinstance(exc, (_StepFailed, CGraphError))
    text = (str(exc) if named else f"{type(exc).__name__}: {exc}").strip().rstrip(".")
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def exclusive(settings: ServerSettings) -> Iterator[None]:
    """One bulk import (or rebuild) of the local store at a time: an advisory lock on
    ``<home>/bulk.lock`` (released by the kernel when its process dies). A second one is
    refused naming the holder's pid."""
    settings.home.mkdir(parents=True, exist_ok=True)
    path = settings.home / "bulk.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise BulkRefused(
                f"another bulk import of {settings.home} is running (pid {holder}, lock "
                f"{path}); wait for it, or load with --writer online"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def bulk_import(
    snapshots: Sequence[Snapshot],
    server_settings: ServerSettings,
    conn: ConnectionSettings,
    *,
    progress: bool = True,
    check: Callable[[], None] | None = None,
) -> BulkReport:
    """Replace the local server's database with `snapshots` through neo4j-admin (see the
    module doc), holding :func:`exclusive`; ``check`` runs once the lock is held, before
    anything is touched (the load pipeline: "the store is still empty"). Leaves the server
    running; on failure the previous store is back as it was."""
    _require_local(conn, server_settings)  # before the lock file is made in its home
    with exclusive(server_settings):
        if check is not None:
            check()
        return _bulk_import(snapshots, server_settings, conn, progress=progress)


def _bulk_import(
    snapshots: Sequence[Snapshot],
    server_settings: ServerSettings,
    conn: ConnectionSettings,
    *,
    progress: bool,
) -> BulkReport:
    settings, snaps = server_settings, _sorted_snapshots(snapshots)
    _require_local(conn, settings)
    if sorted(settings.data_dir.glob(f"{BACKUP_PREFIX}*")):  # an earlier import was killed
        server.stop(settings)
        restored = server.restore_interrupted_import(settings, conn.database)
        _say(f"bulk: put back the store an interrupted import had left in {restored}")
    server.install(settings, quiet=True)
    java = _checked_java(settings)
    was_running = server.status(settings, conn).running
    if not was_running and server.port_taken(settings.bolt_port):
        raise BulkRefused(f"port {settings.bolt_port} is served by a Neo4j that is not the "
                          f"project's local server in {settings.home}")  # fmt: skip
    _check_disk(settings, sum(s.counts.get("edges", 0) for s in snaps))
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    work, backup = settings.home / WORK_DIR / stamp, settings.data_dir / f"{BACKUP_PREFIX}{stamp}"
    stages = _Stages()
    try:
        with stages.stage("csv"):
            if progress:
                _say(f"bulk: neo4j-admin CSV for releases {[s.version for s in snaps]} in {work}")
            files = write_import_files(snaps, work, started_at=datetime.now(UTC), progress=progress)
    except (OSError, ValueError, KeyError, pa.ArrowException, SnapshotError) as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise BulkImportError("csv", _one_line(exc), "the store was not touched", []) from exc
    with stages.stage("stop"):
        server.stop(settings)
    try:
        _swap_store(java, settings, conn, files, backup, stages, progress)
    except BaseException as exc:
        state = _restore(settings, conn, backup, was_running)
        files.remove_csv()
        if not isinstance(exc, Exception):
            raise  # KeyboardInterrupt and the like: store restored, then up the stack
        logs = [files.work / "import.log", files.work / "import.report",
                settings.logs_dir / "neo4j.log"]  # fmt: skip
        see = [p for p in logs if p.exists()]
        raise BulkImportError(stages.current, _one_line(exc), state, see) from exc
    shutil.rmtree(backup, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    return BulkReport(tuple(s.version for s in snaps), files.cell_count + len(snaps),
                      files.relationship_count, dict(stages.seconds),
                      server.store_bytes(settings))  # fmt: skip


def _restore(
    settings: ServerSettings, conn: ConnectionSettings, backup: Path, was_running: bool
) -> str:
    """Put the previous store back, restart the server if it was running; say how it went."""
    with contextlib.suppress(CGraphError):
        server.stop(settings)
    try:
        if backup.exists():
            server.restore_interrupted_import(settings, conn.database, backup)
    except OSError as exc:
        return f"the previous store could not be put back ({exc}): it is in {backup}"
    if not was_running:
        return "the previous store is back in place"
    try:
        server.start(settings, conn)
    except CGraphError as exc:
        return f"the previous store is back in place but the server did not start ({exc})"
    return "the previous store is back in place and the server runs"
