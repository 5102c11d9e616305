"""Synapse queries on a release snapshot's synapse store, with embedded DuckDB.

``synapses.parquet`` holds one row per source synapse row (fragments and dropped ones too, each
with its attribution ``outcome``), sorted by (post_pt_root_id, id) in row groups with min/max
statistics. DuckDB reads the file in place:

- a post-root lookup (``post_pt_root_id IN (?, ...)``) reads only the row groups whose
  statistics can hold one of the roots: the sort makes a cell's inputs one or two row groups;
- pre-root, nucleus (nucleus -> root through the release's ``cells.parquet``, then a root
  filter) and bounding-box queries filter the columns they need;
- every value is a ``?`` parameter; column names come only from the store's validated schema
  (:class:`Store`), never from a caller.

Reads run under ``CGRAPH_QUERY_TIMEOUT`` seconds (``CGRAPH_EXPORT_TIMEOUT`` for streamed exports):
past it the statement is interrupted and :class:`~core.errors.QueryTimeout` raised, never a
partial answer. DuckDB's memory is capped by ``CGRAPH_DUCKDB_MEMORY`` (default 2GB; above it,
sorts spill to a temporary directory).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import BadRequest, LimitExceeded, QueryTimeout
from snapshot.layout import CELLS, SYNAPSES, Snapshot, SnapshotError, store_meta

POSITIONS = ("pre_pt_position", "post_pt_position", "ctr_pt_position")
AXES = ("x", "y", "z")
OUTCOMES = ("used", "autapse", "root0", "multi_nucleus_root", "partner_without_nucleus")
#: columns of the store contract and their Arrow type test (positions: integer or float)
_INT64 = {"id", "pre_pt_root_id", "post_pt_root_id", "pre_pt_supervoxel_id",
          "post_pt_supervoxel_id", "size", "pre_nucleus_id", "post_nucleus_id"}  # fmt: skip
REQUIRED = ("id", "pre_pt_root_id", "post_pt_root_id", "outcome")
BOOKKEEPING = ("created", "superceded_id", "valid")
#: most IDs in one list of a query (more answers LIMIT_EXCEEDED: export in chunks)
MAX_IDS = 10_000
DEFAULT_BATCH_ROWS = 65_536
DEFAULT_MEMORY = "2GB"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def query_timeout() -> float:
    return float(_env("CGRAPH_QUERY_TIMEOUT", "30"))


def export_timeout() -> float:
    return float(_env("CGRAPH_EXPORT_TIMEOUT", "3600"))


# --------------------------------------------------------------------------- the store schema


@dataclass(frozen=True)
class Store:
    """The validated schema of one release's synapse store."""

    path: Path
    version: int
    columns: tuple[str, ...]  # in file order
    types: dict[str, pa.DataType] = field(hash=False)
    voxel_size_nm: tuple[float, float, float]
    positions: tuple[str, ...]  # position stems present (pre_pt_position, ...)
    extras: tuple[str, ...]  # extra numeric source columns, by their source names
    rows: int

    def has(self, column: str) -> bool:
        return column in self.types

    def position_columns(self, stem: str) -> tuple[str, str, str]:
        return (f"{stem}_x", f"{stem}_y", f"{stem}_z")


def _q(name: str) -> str:
    """A quoted identifier; only ever called with names from a validated Store."""
    return '"' + name.replace('"', '""') + '"'


def _check_type(path: Path, name: str, typ: pa.DataType) -> None:
    ok = True
    if name in _INT64:
        ok = pa.types.is_int64(typ)
    elif name == "outcome":
        ok = (
            pa.types.is_string(typ)
            or pa.types.is_large_string(typ)
            or (pa.types.is_dictionary(typ) and pa.types.is_string(typ.value_type))
        )
    elif any(name == f"{s}_{a}" for s in POSITIONS for a in AXES):
        ok = pa.types.is_integer(typ) or pa.types.is_floating(typ)
    if not ok:
        raise SnapshotError(f"{path}: column {name!r} has type {typ}, not the store's type")


_stores: dict[tuple[str, str], Store] = {}
_stores_lock = threading.Lock()


def open_store(snap: Snapshot) -> Store:
    """The synapse store of a snapshot, its schema checked against the contract (cached)."""
    key = (str(snap.path), snap.digest)
    with _stores_lock:
        hit = _stores.get(key)
    if hit is not None:
        return hit
    meta = store_meta(snap)  # StoreNotReady while a load is still writing it (not cached)
    path = snap.file(SYNAPSES)
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise SnapshotError(f"release {snap.version}: no readable synapse store ({exc})") from None
    schema = pf.schema_arrow
    types = {f.name: f.type for f in schema}
    missing = [c for c in REQUIRED if c not in types]
    if missing:
        raise SnapshotError(
            f"{path}: not a synapse store (missing {', '.join(missing)}); "
            "reload the release with this version of cgraph"
        )
    for name, typ in types.items():
        _check_type(path, name, typ)
    voxel = meta.get("voxel_size_nm") or snap.manifest.get("voxel_size_nm") or (4, 4, 40)
    positions = tuple(s for s in POSITIONS if all(f"{s}_{a}" in types for a in AXES))
    known = set(_INT64) | {"outcome", *BOOKKEEPING}
    known |= {f"{s}_{a}" for s in POSITIONS for a in AXES}
    extras = tuple(
        n for n, t in types.items()
        if n not in known and (pa.types.is_integer(t) or pa.types.is_floating(t))
    )  # fmt: skip
    store = Store(
        path=path, version=snap.version, columns=tuple(types), types=types,
        voxel_size_nm=(float(voxel[0]), float(voxel[1]), float(voxel[2])),
        positions=positions, extras=extras, rows=pf.metadata.num_rows,
    )  # fmt: skip
    with _stores_lock:
        _stores[key] = store
    return store


# --------------------------------------------------------------------------- DuckDB


class _Engine:
    """One in-process DuckDB database; every query runs on its own cursor."""

    def __init__(self, memory: str) -> None:
        self.memory = memory
        self.con = duckdb.connect(":memory:")
        try:
            self.con.execute("SET memory_limit = ?", [memory])
        except duckdb.Error as exc:
            raise BadRequest(f"CGRAPH_DUCKDB_MEMORY={memory!r}: {exc}") from None
        self.con.execute("SET GLOBAL parquet_metadata_cache = true")  # cursors are new sessions
        self.con.execute("SET GLOBAL preserve_insertion_order = true")

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.con.cursor()


_engine: _Engine | None = None
_engine_lock = threading.Lock()


def engine() -> _Engine:
    global _engine
    memory = _env("CGRAPH_DUCKDB_MEMORY", DEFAULT_MEMORY)
    with _engine_lock:
        if _engine is None or _engine.memory != memory:
            _engine = _Engine(memory)
        return _engine


class _Guard:
    """Interrupts a cursor after `seconds`; `timed_out` says whether it did."""

    def __init__(self, cur: duckdb.DuckDBPyConnection, seconds: float) -> None:
        self.seconds = seconds
        self.timed_out = False
        self.cur = cur
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True
        self.timer.start()

    def _fire(self) -> None:
        self.timed_out = True
        self.cur.interrupt()

    def cancel(self) -> None:
        self.timer.cancel()

    def error(self, exc: BaseException) -> BaseException:
        if self.timed_out or isinstance(exc, duckdb.InterruptException):
            return QueryTimeout(self.seconds)
        return exc


def run(
    sql: str, params: Sequence[Any], *, seconds: float | None = None,
    tables: Mapping[str, pa.Table] | None = None,
) -> pa.Table:  # fmt: skip
    """Run one read; the whole answer as an Arrow table, or QueryTimeout. ``tables``: Arrow
    tables the statement reads by name (registered on its cursor only)."""
    budget = query_timeout() if seconds is None else seconds
    cur = engine().cursor()
    for name, table in (tables or {}).items():
        cur.register(name, table)
    guard = _Guard(cur, budget)
    try:
        return cur.sql(sql, params=list(params)).to_arrow_table()
    except duckdb.Error as exc:
        raise guard.error(exc) from None
    finally:
        guard.cancel()
        cur.close()


def stream(
    sql: str, params: Sequence[Any], *, batch_rows: int = DEFAULT_BATCH_ROWS,
    seconds: float | None = None, tables: Mapping[str, pa.Table] | None = None,
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:  # fmt: skip
    """Run one read and stream its answer in record batches of at most ``batch_rows`` rows
    (memory stays bounded by the batch size). The schema is known before the first batch."""
    budget = export_timeout() if seconds is None else seconds
    cur = engine().cursor()
    for name, table in (tables or {}).items():
        cur.register(name, table)
    guard = _Guard(cur, budget)
    try:
        reader = cur.sql(sql, params=list(params)).to_arrow_reader(batch_rows)
    except duckdb.Error as exc:
        guard.cancel()
        cur.close()
        raise guard.error(exc) from None

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except (duckdb.Error, pa.ArrowException) as exc:
                    raise guard.error(exc) from None
                if guard.timed_out:
                    raise QueryTimeout(guard.seconds)
                yield batch
        finally:
            guard.cancel()
            cur.close()

    return reader.schema, batches()


# --------------------------------------------------------------------------- synapse queries


Box = tuple[tuple[float, float, float], tuple[float, float, float]]


@dataclass(frozen=True)
class SynapseQuery:
    """Filters of a synapse query; every given filter must hold (AND).

    Root lists and nucleus lists of one side are united (a nucleus stands for its root in the
    release). ``bounding_box`` is [[min x, y, z], [max x, y, z]] in voxels of the store,
    inclusive, on ``bounding_box_column``. ``include_dropped=False`` keeps only synapses on
    cell-to-cell edges (outcome ``used``); ``remove_autapses`` and ``include_zeros`` are
    caveclient's defaults."""

    pre_root_ids: tuple[int, ...] | None = None
    post_root_ids: tuple[int, ...] | None = None
    pre_nucleus_ids: tuple[int, ...] | None = None
    post_nucleus_ids: tuple[int, ...] | None = None
    bounding_box: Box | None = None
    bounding_box_column: str = "post_pt_position"
    include_dropped: bool = True
    remove_autapses: bool = True
    include_zeros: bool = True

    @classmethod
    def of(
        cls,
        *,
        pre_root_ids: Sequence[int | str] | None = None,
        post_root_ids: Sequence[int | str] | None = None,
        pre_nucleus_ids: Sequence[int] | None = None,
        post_nucleus_ids: Sequence[int] | None = None,
        bounding_box: Sequence[Sequence[float]] | None = None,
        bounding_box_column: str = "post_pt_position",
        include_dropped: bool = True,
        remove_autapses: bool = True,
        include_zeros: bool = True,
        max_ids: int | None = MAX_IDS,
        require_filter: bool = True,
    ) -> SynapseQuery:
        """Validated arguments (BadRequest / LimitExceeded naming the argument)."""
        lists = {
            "pre_root_ids": _id_list("pre_root_ids", pre_root_ids, max_ids),
            "post_root_ids": _id_list("post_root_ids", post_root_ids, max_ids),
            "pre_nucleus_ids": _id_list("pre_nucleus_ids", pre_nucleus_ids, max_ids),
            "post_nucleus_ids": _id_list("post_nucleus_ids", post_nucleus_ids, max_ids),
        }
        box = None if bounding_box is None else _box(bounding_box)
        if bounding_box_column not in POSITIONS:
            raise BadRequest(
                f"bounding_box_column must be one of {', '.join(POSITIONS)}, "
                f"got {bounding_box_column!r}"
            )
        given = {k: v for k, v in lists.items() if v is not None}
        if given and all(len(v) == 0 for v in given.values()) and box is None:
            raise BadRequest(f"{' and '.join(given)} are all empty: give at least one ID")
        if require_filter and not given and box is None:
            raise BadRequest(
                "give pre/post root IDs, pre/post nucleus IDs or a bounding_box; a whole "
                "release's synapses stream from the export endpoint"
            )
        return cls(**lists, bounding_box=box, bounding_box_column=bounding_box_column,
                   include_dropped=bool(include_dropped), remove_autapses=bool(remove_autapses),
                   include_zeros=bool(include_zeros))  # fmt: skip


def _id_list(name: str, values: Sequence[int | str] | None, cap: int | None) -> tuple[int, ...] | None:  # fmt: skip
    if values is None:
        return None
    if isinstance(values, int | str):
        values = [values]
    out = []
    for v in values:
        try:
            i = int(v)
        except (TypeError, ValueError):
            raise BadRequest(f"{name}: {v!r} is not an integer ID") from None
        if isinstance(v, bool) or i < 0 or i >= 2**63:
            raise BadRequest(f"{name}: {v!r} is not a non-negative 64-bit ID")
        out.append(i)
    if cap is not None and len(out) > cap:
        raise LimitExceeded(f"{name}: at most {cap} IDs per query, got {len(out)}; "
                            "split the list or use the export endpoint")  # fmt: skip
    return tuple(sorted(set(out)))


def _box(value: Sequence[Sequence[float]]) -> Box:
    try:
        lo, hi = (tuple(float(c) for c in corner) for corner in value)
    except (TypeError, ValueError):
        raise BadRequest(
            "bounding_box must be [[min_x, min_y, min_z], [max_x, max_y, max_z]]"
        ) from None
    if len(lo) != 3 or len(hi) != 3 or not all(math.isfinite(c) for c in (*lo, *hi)):
        raise BadRequest("bounding_box must be [[min_x, min_y, min_z], [max_x, max_y, max_z]] "
                         "with finite numbers")  # fmt: skip
    for axis, a, b in zip(AXES, lo, hi, strict=True):
        if a > b:
            raise BadRequest(f"bounding_box is inverted on {axis}: min {a:g} > max {b:g}")
    return (lo, hi)  # type: ignore[return-value]


def _bounds(typ: pa.DataType, lo: float, hi: float) -> tuple[float, float] | tuple[int, int]:
    """An inclusive range on a column of type ``typ``: on integer positions, the integers
    ceil(lo)..floor(hi) (the same rows; DuckDB then compares the column as it is and pushes
    the filter into the Parquet scan instead of casting every value to DOUBLE; ~1.25x on a
    24M-row store, ad hoc)."""
    if pa.types.is_integer(typ):
        return math.ceil(lo), math.floor(hi)
    return lo, hi


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


def roots_of_nuclei(snap: Snapshot, nucleus_ids: Sequence[int]) -> list[int]:
    """Root IDs of these nuclei in the release (root 0: outside the segmentation, skipped)."""
    if not nucleus_ids:
        return []
    sql = (f"SELECT DISTINCT root_id FROM read_parquet(?) WHERE nucleus_id IN "
           f"({_placeholders(len(nucleus_ids))}) AND root_id <> 0")  # fmt: skip
    table = run(sql, [str(snap.file(CELLS)), *nucleus_ids])
    return sorted(int(r) for r in table.column(0).to_pylist())


def where_clause(snap: Snapshot, store: Store, q: SynapseQuery) -> tuple[str, list[Any]]:
    """The WHERE condition (DuckDB SQL with ? parameters) of a synapse query."""
    conds: list[str] = []
    params: list[Any] = []
    for side in ("pre", "post"):
        roots: tuple[int, ...] | None = getattr(q, f"{side}_root_ids")
        nuclei: tuple[int, ...] | None = getattr(q, f"{side}_nucleus_ids")
        if roots is None and nuclei is None:
            continue
        ids = set(roots or ())
        if nuclei:
            ids.update(roots_of_nuclei(snap, nuclei))
        if not ids:
            conds.append("FALSE")
            continue
        conds.append(f"{_q(side + '_pt_root_id')} IN ({_placeholders(len(ids))})")
        params.extend(sorted(ids))
    if q.bounding_box is not None:
        if q.bounding_box_column not in store.positions:
            raise BadRequest(f"bounding_box_column {q.bounding_box_column!r}: release "
                             f"{store.version} has no such positions "
                             f"(it has {', '.join(store.positions) or 'none'})")  # fmt: skip
        lo, hi = q.bounding_box
        for col, a, b in zip(store.position_columns(q.bounding_box_column), lo, hi, strict=True):
            conds.append(f"{_q(col)} BETWEEN ? AND ?")
            params.extend(_bounds(store.types[col], a, b))
    if not q.include_dropped:
        conds.append("outcome = ?")
        params.append("used")
    if q.remove_autapses:
        conds.append("pre_pt_root_id <> post_pt_root_id")
    if not q.include_zeros:
        conds.append("pre_pt_root_id <> 0 AND post_pt_root_id <> 0")
    return (" AND ".join(conds) or "TRUE"), params


def select_list(store: Store, columns: Sequence[str] | None) -> str:
    if columns is None:
        return ", ".join(_q(c) for c in store.columns)
    unknown = [c for c in columns if not store.has(c)]
    if unknown:
        raise BadRequest(f"columns: unknown column(s) {', '.join(map(repr, unknown))}; "
                         f"the store has {', '.join(store.columns)}")  # fmt: skip
    return ", ".join(_q(c) for c in columns)


def check_page(limit: int | None, offset: int, *, cap: int | None = None) -> None:
    if limit is not None and (isinstance(limit, bool) or limit < 0):
        raise BadRequest(f"limit must be >= 0, got {limit}")
    if cap is not None and limit is not None and limit > cap:
        raise LimitExceeded(f"limit must be <= {cap}, got {limit}")
    if limit is not None and limit >= 2**63:
        raise LimitExceeded(f"limit {limit} does not fit in 64 bits")
    if isinstance(offset, bool) or offset < 0:
        raise BadRequest(f"offset must be >= 0, got {offset}")
    if offset >= 2**63:
        raise LimitExceeded(f"offset {offset} does not fit in 64 bits")


def synapse_sql(
    snap: Snapshot,
    store: Store,
    q: SynapseQuery,
    *,
    columns: Sequence[str] | None = None,
    after_id: int | None = None,
    order_by_id: bool = False,
    limit: int | None = None,
    offset: int = 0,
    source: str | None = None,
) -> tuple[str, list[Any]]:
    """SELECT of a synapse query. Rows come in store order (post root, id) unless
    ``order_by_id`` (always when paging: ``after_id``, ``limit``, ``offset``). ``source``:
    :data:`NARROWED` to read the rows :func:`narrowed` gave instead of the whole file."""
    check_page(limit, offset)
    where, params = where_clause(snap, store, q)
    if source is None:
        sql = f"SELECT {select_list(store, columns)} FROM read_parquet(?) WHERE {where}"
        params = [str(store.path), *params]
    else:
        assert source == NARROWED  # a fixed name, never the caller's text
        sql = f"SELECT {select_list(store, columns)} FROM {NARROWED} WHERE {where}"  # noqa: S608
    if after_id is not None:
        sql += " AND id > ?"
        params.append(int(after_id))
    if order_by_id or after_id is not None or limit is not None or offset:
        sql += " ORDER BY id"
    return paged(sql, params, limit, offset)


def paged(
    sql: str, params: list[Any], limit: int | None, offset: int | None
) -> tuple[str, list[Any]]:
    """``sql`` with its LIMIT / OFFSET as parameters."""
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    if offset:
        sql += " OFFSET ?"
        params.append(int(offset))
    return sql, params


#: the name a narrowed read registers its rows under (see :func:`narrowed`)
NARROWED = "narrowed_store_rows"
#: a query touching more row groups than this reads the file through DuckDB instead
NARROW_MAX_GROUPS = 64
_footers: dict[str, tuple[pq.FileMetaData, npt.NDArray[np.int64], npt.NDArray[np.int64]]] = {}


def _footer(store: Store) -> tuple[pq.FileMetaData, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The store's footer and each row group's min/max post root (cached per file)."""
    key = str(store.path)
    with _stores_lock:
        hit = _footers.get(key)
    if hit is not None:
        return hit
    md = pq.ParquetFile(store.path).metadata
    ci = md.schema.to_arrow_schema().get_field_index("post_pt_root_id")
    stats = [md.row_group(i).column(ci).statistics for i in range(md.num_row_groups)]
    lo = hi = np.empty(0, dtype=np.int64)  # no statistics or not sorted: never narrowed
    if all(st is not None and st.has_min_max for st in stats):
        mins = np.array([st.min for st in stats], dtype=np.int64)
        maxs = np.array([st.max for st in stats], dtype=np.int64)
        if np.all(mins[1:] >= mins[:-1]) and np.all(maxs[1:] >= maxs[:-1]):
            lo, hi = mins, maxs
    with _stores_lock:
        _footers[key] = (md, lo, hi)
    return md, lo, hi


def narrowed(snap: Snapshot, store: Store, q: SynapseQuery) -> pa.Table | None:
    """The rows of the row groups that can hold the query's post roots, read with pyarrow
    (the store is sorted by post root, so a cell's inputs lie in one or two row groups), or
    None when the query has no post-side filter or touches many row groups. DuckDB then runs
    the same statement over these rows: on a v117-sized store (5,147 row groups) this skips
    its scan set-up over every row group (bench/results/synapses_full.md: 122 ms a cell
    lookup through read_parquet), which costs more than reading the one or two groups."""
    if q.post_root_ids is None and q.post_nucleus_ids is None:
        return None
    md, lo, hi = _footer(store)
    if lo.size == 0:
        return None
    ids = set(q.post_root_ids or ())
    if q.post_nucleus_ids:
        ids.update(roots_of_nuclei(snap, q.post_nucleus_ids))
    want = np.array(sorted(ids), dtype=np.int64)
    first = np.searchsorted(hi, want, side="left")
    last = np.searchsorted(lo, want, side="right")
    groups = sorted({g for a, b in zip(first, last, strict=True) for g in range(int(a), int(b))})
    if len(groups) > NARROW_MAX_GROUPS:
        return None
    f = pq.ParquetFile(store.path, metadata=md)
    table = f.read_row_groups(groups) if groups else f.schema_arrow.empty_table()
    i = table.schema.get_field_index("outcome")
    if pa.types.is_dictionary(table.schema.field(i).type):  # as DuckDB reads the file
        table = table.set_column(i, "outcome", table.column(i).cast(pa.string()))
    return table


def plan_synapses(snap: Snapshot, q: SynapseQuery, kw: dict[str, Any]) -> tuple[str, list[Any], dict[str, pa.Table]]:  # fmt: skip
    store = open_store(snap)
    rows = narrowed(snap, store, q)
    if rows is None:
        sql, params = synapse_sql(snap, store, q, **kw)
        return sql, params, {}
    sql, params = synapse_sql(snap, store, q, source=NARROWED, **kw)
    return sql, params, {NARROWED: rows}


def query_synapses(snap: Snapshot, q: SynapseQuery, **kw: Any) -> pa.Table:
    """The synapses matching ``q`` as one Arrow table (see :func:`synapse_sql` for ``kw``)."""
    sql, params, tables = plan_synapses(snap, q, kw)
    return run(sql, params, tables=tables)


def stream_synapses(
    snap: Snapshot, q: SynapseQuery, *, batch_rows: int = DEFAULT_BATCH_ROWS, **kw: Any
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    sql, params, tables = plan_synapses(snap, q, kw)
    return stream(sql, params, batch_rows=batch_rows, tables=tables)


def store_metadata(store: Store) -> dict[bytes, bytes]:
    """Arrow schema metadata of exported synapses: release and voxel size of the positions."""
    import json

    return {
        b"cgraph.version": str(store.version).encode(),
        b"cgraph.position_unit": b"voxel",
        b"cgraph.voxel_size_nm": json.dumps(list(store.voxel_size_nm)).encode(),
    }
