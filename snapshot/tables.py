"""Table reads of a release snapshot with DuckDB: partner tables, CAVE-named cell tables and
whole files, for the export endpoint, ``cgraph export`` and the notebook client's
``query_table``. Values are ``?`` parameters; column names come from fixed lists.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from core.errors import BadRequest
from snapshot.layout import CELLS, EDGES, SYNAPSES, Snapshot, store_meta
from snapshot.query import DEFAULT_BATCH_ROWS, _placeholders, check_page, paged, run, stream

# --------------------------------------------------------------------------- partners

_PARTNER_ORDER = {
    "SYNAPSES": "e.synapses DESC, partner_nucleus_id",
    "SIZE": "coalesce(e.size, -1) DESC, partner_nucleus_id",
    "NUCLEUS_ID": "partner_nucleus_id",
}
PARTNER_COLUMNS = ("nucleus_id", "partner_nucleus_id", "partner_root_id", "partner_cell_type",
                   "synapses", "size")  # fmt: skip


def partner_sql(
    snap: Snapshot,
    nucleus_id: int,
    direction: str = "outputs",
    *,
    min_synapses: int = 1,
    min_size: float | None = None,
    partner_cell_type: str | None = None,
    order_by: str = "SYNAPSES",
) -> tuple[str, list[Any]]:
    """A cell's partner table from the snapshot's edges, in the order of the GraphQL pages
    (ties broken by partner nucleus ID)."""
    if direction not in ("outputs", "inputs"):
        raise BadRequest(f"direction must be 'outputs' or 'inputs', got {direction!r}")
    if order_by not in _PARTNER_ORDER:
        raise BadRequest(f"order_by must be one of {', '.join(_PARTNER_ORDER)}, got {order_by!r}")
    if min_synapses < 1:
        raise BadRequest(f"min_synapses must be >= 1, got {min_synapses}")
    own, other = ("pre", "post") if direction == "outputs" else ("post", "pre")
    sql = f"""SELECT e.{own} AS nucleus_id, e.{other} AS partner_nucleus_id,
  c.root_id AS partner_root_id, c.cell_type AS partner_cell_type, e.synapses, e.size
FROM read_parquet(?) e JOIN read_parquet(?) c ON c.nucleus_id = e.{other}
WHERE e.{own} = ? AND e.synapses >= ? AND (?::DOUBLE IS NULL OR e.size >= ?::DOUBLE)
  AND (?::VARCHAR IS NULL OR c.cell_type = ?::VARCHAR)
ORDER BY {_PARTNER_ORDER[order_by]}"""
    params = [str(snap.file(EDGES)), str(snap.file(CELLS)), int(nucleus_id), int(min_synapses),
              min_size, min_size, partner_cell_type, partner_cell_type]  # fmt: skip
    return sql, params


def query_partners(snap: Snapshot, nucleus_id: int, direction: str = "outputs", **kw: Any) -> pa.Table:  # fmt: skip
    return run(*partner_sql(snap, nucleus_id, direction, **kw))


# --------------------------------------------------------------------------- cell tables


@dataclass(frozen=True)
class CellTable:
    """A CAVE-named view of cells.parquet: (name, SQL expression) per column."""

    kind: str  # nuclei | neurons | cell_types
    columns: tuple[tuple[str, str], ...]
    where: str
    needs: str | None  # manifest annotation it needs

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.columns)


def _pos() -> tuple[tuple[str, str], ...]:
    return (("pt_position_x", "x / ?"), ("pt_position_y", "y / ?"), ("pt_position_z", "z / ?"))


NUCLEI = CellTable("nuclei", (("id", "nucleus_id"), ("volume", "volume"),
                              ("pt_root_id", "root_id"), *_pos()), "TRUE", None)  # fmt: skip
NEURONS = CellTable(
    "neurons",
    (("id", "nucleus_id"), ("target_id", "nucleus_id"),
     ("classification_system", "'is_neuron'"),
     ("cell_type", "CASE WHEN is_neuron THEN 'neuron' ELSE 'not-neuron' END"),
     ("pt_root_id", "root_id"), *_pos()),
    "is_neuron IS NOT NULL", "is_neuron",
)  # fmt: skip
CELL_TYPES = CellTable(
    "cell_types",
    (("id", "nucleus_id"), ("classification_system", "classification_system"),
     ("cell_type", "cell_type"), ("pt_root_id", "root_id"), *_pos()),
    "cell_type IS NOT NULL", "cell_type",
)  # fmt: skip
TABLE_NAMES = {
    "nucleus_detection_v0": NUCLEI, "nuclei": NUCLEI,
    "nucleus_neuron_svm": NEURONS, "nucleus_ref_neuron_svm": NEURONS, "neurons": NEURONS,
    "allen_soma_coarse_cell_class_model_v1": CELL_TYPES,
    "aibs_metamodel_celltypes_v661": CELL_TYPES, "cell_types": CELL_TYPES,
}  # fmt: skip


def cell_table(snap: Snapshot, table: str) -> CellTable:
    """The view behind a table name: the CAVE names above, or the file name (without
    extension) a table was loaded from."""
    names = dict(TABLE_NAMES)
    kinds = {"nuclei": NUCLEI, "neurons": NEURONS, "cell_types": CELL_TYPES}
    for src in snap.manifest.get("sources") or ():
        stem = Path(str(src.get("name", ""))).name.split(".")[0]
        if src.get("table") in kinds and stem:
            names.setdefault(stem, kinds[src["table"]])
    found = names.get(table)
    if found is None:
        raise BadRequest(f"table: unknown table {table!r}; release {snap.version} has "
                         f"{', '.join(sorted(names))}")  # fmt: skip
    if found.needs and found.needs not in (snap.manifest.get("annotations") or ()):
        raise BadRequest(f"table {table!r}: release {snap.version} was loaded without it")
    return found


def _voxel(snap: Snapshot) -> tuple[float, float, float]:
    v = snap.manifest.get("voxel_size_nm") or (4, 4, 40)
    return (float(v[0]), float(v[1]), float(v[2]))


def cell_table_sql(
    snap: Snapshot,
    table: str,
    *,
    filter_equal_dict: Mapping[str, Any] | None = None,
    filter_in_dict: Mapping[str, Sequence[Any]] | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[str, list[Any]]:
    """caveclient's ``query_table`` on a cell table: equal and IN filters (AND), rows by id;
    positions in voxels (``pt_position_x/_y/_z``)."""
    view = cell_table(snap, table)
    check_page(limit, offset)
    vx = _voxel(snap)
    cols = []
    params: list[Any] = []
    for name, expr in view.columns:
        cols.append(f"{expr} AS {name}")
        if expr.endswith("?"):
            params.append(vx["xyz".index(name[-1])])
    sql = f"SELECT * FROM (SELECT {', '.join(cols)} FROM read_parquet(?) WHERE {view.where}) t"
    params.append(str(snap.file(CELLS)))
    conds = []
    filterable = [n for n in view.names if not n.startswith("pt_position")]
    for arg, filters in (("filter_equal_dict", filter_equal_dict), ("filter_in_dict", filter_in_dict)):  # fmt: skip
        for col, value in (filters or {}).items():
            if col not in filterable:
                raise BadRequest(f"{arg}: unknown column {col!r} of {table}; "
                                 f"filterable: {', '.join(filterable)}")  # fmt: skip
            if arg == "filter_equal_dict":
                conds.append(f"{col} = ?")
                params.append(_scalar(arg, col, value))
            else:
                if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
                    raise BadRequest(f"filter_in_dict[{col!r}] must be a list of values")
                values = [_scalar(arg, col, v) for v in value]
                if not values:
                    conds.append("FALSE")
                    continue
                conds.append(f"{col} IN ({_placeholders(len(values))})")
                params.extend(values)
    if conds:
        sql += " WHERE " + " AND ".join(conds)
    sql += " ORDER BY id"
    return paged(sql, params, limit, offset)


def _scalar(arg: str, col: str, value: Any) -> Any:
    if isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    raise BadRequest(f"{arg}[{col!r}]: {value!r} is not a number or string")


def query_cell_table(snap: Snapshot, table: str, **kw: Any) -> pa.Table:
    return run(*cell_table_sql(snap, table, **kw))


# --------------------------------------------------------------------------- whole files

RELEASE_FILES = {"cells": CELLS, "edges": EDGES, "synapses": SYNAPSES}


def stream_file(
    snap: Snapshot, what: str, *, batch_rows: int = DEFAULT_BATCH_ROWS
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """A whole snapshot file (cells, edges or synapses) in record batches, in file order."""
    return file_batches(_release_file(snap, what), batch_rows)


def file_batches(path: Path, batch_rows: int) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """A Parquet file's schema and its record batches, holding about one row group at a time.
    ``pre_buffer=False``: pyarrow's default pre-buffering keeps what it read for the life of
    the file object, so a whole-release export grew to the size of the store (14.8 GB RSS for
    the v117-sized one; 1.3 GB of Arrow memory for a 1.3 GB store, 0.2 GB without)."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path, pre_buffer=False)

    def batches() -> Iterator[pa.RecordBatch]:
        yield from pf.iter_batches(batch_size=batch_rows, use_threads=True)

    return pf.schema_arrow, batches()


def file_sql(snap: Snapshot, what: str) -> tuple[str, list[Any]]:
    return "SELECT * FROM read_parquet(?)", [str(_release_file(snap, what))]


def _release_file(snap: Snapshot, what: str) -> Path:
    name = RELEASE_FILES.get(what)
    if name is None:
        raise BadRequest(f"what must be one of {', '.join(RELEASE_FILES)}, got {what!r}")
    if name == SYNAPSES:
        store_meta(snap)  # StoreNotReady while a load is still writing it
    return snap.file(name)


__all__ = ["stream", "PARTNER_COLUMNS"]
