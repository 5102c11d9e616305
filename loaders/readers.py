"""Read CAVE tables from DataFrames and files, with exact 64-bit IDs and named errors.

Sources: a pandas DataFrame (as returned by caveclient), or a path ending in ``.parquet``,
``.feather`` / ``.arrow``, ``.csv``, ``.csv.gz``. A CAVE static dump ``{table}_merged.csv.gz``
is headerless; when ``{table}_header.csv`` lies beside it, that file supplies the column names
(one comma-separated line or one name per line).

ID columns are read as int64 without ever passing through float64 (CSV: explicit pyarrow column
types; Parquet/Arrow/DataFrame: a float column is rejected as the wrong type). Every problem
raises :class:`core.errors.InputError` naming the file, the column and the 1-based data row.

Column mapping: ``{canonical_dest: source_column}`` applies to every table that has
``source_column``; a key ``"synapses.size"`` applies to that table only (see
:func:`resolve_mapping`). A ``*`` in the source names the three split columns of a position:
``pre_pt_position=pre_pos_*_vx`` maps ``pre_pt_position_x`` to ``pre_pos_x_vx`` and so on.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from core.errors import InputError

Source: TypeAlias = str | os.PathLike[str] | pd.DataFrame
RowsCallback: TypeAlias = Callable[[int], None]

DEFAULT_BATCH_ROWS = 1_000_000
_CSV_BLOCK = 16 << 20


@dataclass(frozen=True)
class Opened:
    """A source with its columns known (schema only; no data read yet)."""

    name: str  # for messages: the path, or "<table> DataFrame"
    columns: list[str]
    kind: str  # "frame" | "parquet" | "ipc" | "csv"
    frame: pd.DataFrame | None = None
    path: Path | None = None
    header: list[str] | None = field(default=None)  # column names of a headerless dump


def open_source(source: Source, table: str) -> Opened:
    """Identify ``source`` and read its column names."""
    if isinstance(source, pd.DataFrame):
        return Opened(f"<{table} DataFrame>", [str(c) for c in source.columns], "frame", source)
    path = Path(source)
    name = str(path)
    if not path.is_file():
        raise InputError("file not found", file=name)
    lower = path.name.lower()
    if lower.endswith(".parquet"):
        try:
            names = pq.ParquetFile(path).schema_arrow.names
        except (pa.ArrowException, OSError) as e:
            raise InputError(f"not a readable Parquet file ({e})", file=name) from e
        return Opened(name, list(names), "parquet", path=path)
    if lower.endswith((".feather", ".arrow")):
        try:
            names = ipc.open_file(pa.memory_map(str(path))).schema.names
        except (pa.ArrowException, OSError) as e:
            raise InputError(f"not a readable Arrow/Feather file ({e})", file=name) from e
        return Opened(name, list(names), "ipc", path=path)
    if lower.endswith((".csv", ".csv.gz")):
        if lower.endswith("_merged.csv.gz"):
            header_file = path.with_name(path.name[: -len("_merged.csv.gz")] + "_header.csv")
            if header_file.is_file():
                header = _read_header_file(header_file)
                return Opened(name, header, "csv", path=path, header=header)
        return Opened(name, _csv_header(path), "csv", path=path)
    raise InputError(
        "unknown file type (expected .parquet, .feather, .arrow, .csv or .csv.gz)", file=name
    )


def _read_header_file(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8-sig").strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise InputError("empty header file", file=str(path))
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    names = rows[0] if len(rows) == 1 else [r[0] for r in rows if r]
    return [n.strip().strip('"') for n in names]


def _csv_header(path: Path) -> list[str]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:  # type: ignore[operator]
        first = fh.readline()
    if not first.strip():
        raise InputError("empty file (no header, no data rows)", file=str(path))
    return [c.strip() for c in next(csv.reader([first]))]


# --------------------------------------------------------------------------- mapping


def resolve_mapping(
    mapping: Mapping[str, str] | None, opened: Mapping[str, Opened]
) -> dict[str, dict[str, str]]:
    """Return ``{table: {canonical_dest: source_column}}`` for the tables in ``opened``.

    A plain key applies to every table holding ``source_column``; ``"table.dest"`` to that table.
    A source column found in no (or not in the named) table raises InputError naming it.
    """
    out: dict[str, dict[str, str]] = {t: {} for t in opened}
    items: list[tuple[str, str]] = []
    for key, src in (mapping or {}).items():
        if "*" in src:  # a split position: one mapping per axis
            items += [(f"{key}_{k}", src.replace("*", k)) for k in "xyz"]
        else:
            items.append((key, src))
    for key, src in items:
        table, _, dest = key.rpartition(".")
        targets = [table] if table else list(opened)
        if table and table not in opened:
            raise InputError(f"mapping {key!r}: no {table!r} table was given", column=src)
        hit = [t for t in targets if src in opened[t].columns]
        if not hit:
            where = ", ".join(f"{opened[t].name}" for t in targets)
            raise InputError(
                f"mapping {key!r}: source column {src!r} is in none of: {where}", column=src
            )
        for t in hit:
            out[t][dest] = src
    return out


def source_column(colmap: Mapping[str, str], opened: Opened, canonical: str) -> str | None:
    """The source column that supplies ``canonical`` in ``opened``, or None if absent."""
    if canonical in colmap:
        return colmap[canonical]
    if canonical in opened.columns and canonical not in colmap.values():
        return canonical
    return None


def missing_column(opened: Opened, canonical: str, colmap: Mapping[str, str]) -> InputError:
    hint = f" (mapped from {colmap[canonical]!r})" if canonical in colmap else ""
    return InputError(
        f"missing required column{hint}; columns found: {', '.join(opened.columns)}",
        file=opened.name,
        column=canonical,
    )


# --------------------------------------------------------------------------- validation


def to_ids(
    values: pa.Array | pa.ChunkedArray | pd.Series | np.ndarray,
    *,
    file: str,
    column: str,
    row_offset: int = 0,
) -> np.ndarray:
    """Validate an ID column (no missing values, integer type, >= 0) and return int64."""
    if isinstance(values, pa.ChunkedArray | pa.Array):
        if values.null_count:
            i = _first_true(np.asarray(values.is_null()))
            raise InputError(
                "missing ID (NaN/empty)", file=file, column=column, row=row_offset + i + 1
            )
        if not pa.types.is_integer(values.type):
            return _wrong_type(
                values.to_numpy(zero_copy_only=False), str(values.type), file, column, row_offset
            )
        arr = np.asarray(values.to_numpy(zero_copy_only=False))
    else:
        series = values if isinstance(values, pd.Series) else pd.Series(values)
        na = series.isna().to_numpy()
        if na.any():
            i = _first_true(na)
            raise InputError(
                "missing ID (NaN/empty)", file=file, column=column, row=row_offset + i + 1
            )
        if not pd.api.types.is_integer_dtype(series.dtype):
            return _wrong_type(series.to_numpy(), str(series.dtype), file, column, row_offset)
        arr = series.to_numpy()
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        i = _first_true(arr > np.iinfo(np.int64).max)
        raise InputError("ID too large for int64", file=file, column=column, row=row_offset + i + 1)
    arr = arr.astype(np.int64, copy=False)
    neg = arr < 0
    if neg.any():
        i = _first_true(neg)
        raise InputError(
            f"negative ID {int(arr[i])}", file=file, column=column, row=row_offset + i + 1
        )
    return arr


def _wrong_type(raw: np.ndarray, dtype: str, file: str, column: str, row_offset: int) -> np.ndarray:
    nums = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    bad = ~np.isfinite(nums)
    row = row_offset + _first_true(bad) + 1 if bad.any() else None
    raise InputError(
        f"wrong type {dtype}: IDs must be stored as integers (float64 cannot hold 64-bit root "
        "IDs exactly)" + (f"; first non-number {raw[row - row_offset - 1]!r}" if row else ""),
        file=file,
        column=column,
        row=row,
    )


def to_sizes(
    values: pa.Array | pa.ChunkedArray | pd.Series | np.ndarray,
    *,
    file: str,
    column: str,
    row_offset: int = 0,
) -> np.ndarray:
    """Validate synapse sizes: present (no NaN), whole numbers, >= 0. Returns int64."""
    if isinstance(values, pa.ChunkedArray | pa.Array):
        values = pd.Series(values.to_numpy(zero_copy_only=False))
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    if pd.api.types.is_integer_dtype(series.dtype) and not series.hasnans:
        arr = series.to_numpy().astype(np.int64, copy=False)
    else:
        nums = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(nums) | (nums != np.floor(nums))
        if bad.any():
            i = _first_true(bad)
            raise InputError(
                f"size must be a whole number, got {series.iloc[i]!r}",
                file=file,
                column=column,
                row=row_offset + i + 1,
            )
        arr = nums.astype(np.int64)
    neg = arr < 0
    if neg.any():
        i = _first_true(neg)
        raise InputError(
            f"negative size {int(arr[i])}", file=file, column=column, row=row_offset + i + 1
        )
    return arr


def _first_true(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


# --------------------------------------------------------------------------- reading


def read_frame(
    opened: Opened,
    columns: Sequence[str],
    *,
    int_columns: Sequence[str] = (),
) -> pd.DataFrame:
    """Read the named source ``columns`` whole (small tables). ``int_columns`` are read as
    int64 from CSV (validate them with :func:`to_ids`). Raises InputError when empty."""
    cols = list(dict.fromkeys(columns))
    if opened.kind == "frame":
        assert opened.frame is not None
        frame = opened.frame.loc[:, cols].reset_index(drop=True)
    elif opened.kind == "parquet":
        frame = pq.read_table(opened.path, columns=cols).to_pandas()
    elif opened.kind == "ipc":
        frame = ipc.open_file(pa.memory_map(str(opened.path))).read_all().select(cols).to_pandas()
    else:
        frame = pd.concat(
            [b.to_pandas() for b in _csv_batches(opened, cols, int_columns)]
            or [pd.DataFrame({c: [] for c in cols})],
            ignore_index=True,
        )
    if len(frame) == 0:
        raise InputError("no data rows", file=opened.name)
    return frame


def sniff_types(opened: Opened, columns: Sequence[str]) -> dict[str, pa.DataType]:
    """Arrow types of ``columns``: from the schema (Parquet, Arrow, DataFrame), or as pyarrow
    infers them from the first block of a CSV file."""
    cols = [c for c in dict.fromkeys(columns) if c in opened.columns]
    if not cols:
        return {}
    if opened.kind == "frame":
        assert opened.frame is not None
        schema = pa.Schema.from_pandas(opened.frame.loc[:, cols].head(10_000), preserve_index=False)
    elif opened.kind == "parquet":
        schema = pq.ParquetFile(opened.path).schema_arrow
    elif opened.kind == "ipc":
        schema = ipc.open_file(pa.memory_map(str(opened.path))).schema
    else:
        ro, co = _csv_options(opened, cols, {})
        try:
            with pacsv.open_csv(str(opened.path), read_options=ro, convert_options=co) as r:
                schema = r.schema
        except pa.ArrowInvalid as e:
            raise InputError(f"cannot read CSV: {e}", file=opened.name) from e
    return {c: schema.field(c).type for c in cols if c in schema.names}


def iter_batches(
    opened: Opened,
    columns: Sequence[str],
    *,
    int_columns: Sequence[str] = (),
    batch_rows: int = DEFAULT_BATCH_ROWS,
    column_types: Mapping[str, pa.DataType] | None = None,
) -> Iterator[tuple[int, dict[str, pa.Array | pd.Series]]]:
    """Stream ``columns`` in batches of at most ``batch_rows`` rows.

    Yields ``(row_offset, {column: values})``; ``row_offset`` = data rows before this batch.
    Memory is bounded by ``batch_rows`` (plus one 16 MB CSV block), not by the file size.
    """
    cols = list(dict.fromkeys(columns))
    offset = 0
    if opened.kind == "frame":
        assert opened.frame is not None
        frame = opened.frame
        for start in range(0, len(frame), batch_rows):
            part = frame.iloc[start : start + batch_rows]
            yield start, {c: part[c].reset_index(drop=True) for c in cols}
        return
    if opened.kind == "parquet":
        # pre_buffer=False: otherwise pyarrow buffers row groups ahead (memory grows with file)
        source: Iterator[pa.RecordBatch] = pq.ParquetFile(
            opened.path, pre_buffer=False
        ).iter_batches(batch_size=batch_rows, columns=cols)
    elif opened.kind == "ipc":
        reader = ipc.open_file(pa.memory_map(str(opened.path)))
        source = (reader.get_batch(i).select(cols) for i in range(reader.num_record_batches))
    else:
        source = _csv_batches(opened, cols, int_columns, column_types)
    for batch in _rechunk(source, batch_rows):
        yield offset, {c: batch.column(c) for c in cols}
        offset += batch.num_rows


def _rechunk(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    pending: list[pa.RecordBatch] = []
    have = 0
    for b in batches:
        while b.num_rows:
            take = min(rows - have, b.num_rows)
            pending.append(b.slice(0, take))
            have += take
            b = b.slice(take)
            if have == rows:
                yield _concat(pending)
                pending, have = [], 0
    if have:
        yield _concat(pending)


def _concat(parts: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(parts) == 1:
        return parts[0]
    return pa.Table.from_batches(parts).combine_chunks().to_batches()[0]


def _csv_options(
    opened: Opened, cols: list[str], types: Mapping[str, pa.DataType]
) -> tuple[pacsv.ReadOptions, pacsv.ConvertOptions]:
    ro = (
        pacsv.ReadOptions(column_names=opened.header, block_size=_CSV_BLOCK)
        if opened.header
        else pacsv.ReadOptions(block_size=_CSV_BLOCK)
    )
    co = pacsv.ConvertOptions(include_columns=cols, column_types=dict(types))
    return ro, co


def _csv_batches(
    opened: Opened,
    cols: list[str],
    int_columns: Sequence[str],
    column_types: Mapping[str, pa.DataType] | None = None,
) -> Iterator[pa.RecordBatch]:
    types = {c: pa.int64() for c in int_columns if c in cols}
    other = {c: t for c, t in (column_types or {}).items() if c in cols and c not in types}
    ro, co = _csv_options(opened, cols, {**other, **types})
    try:
        reader = pacsv.open_csv(str(opened.path), read_options=ro, convert_options=co)
        yield from reader
    except pa.ArrowInvalid as e:
        raise _locate_csv_error(opened, cols, types, e) from e


def _locate_csv_error(
    opened: Opened, cols: list[str], types: Mapping[str, pa.DataType], err: Exception
) -> InputError:
    """Error path: re-read the int columns as text to name the row pyarrow could not convert."""
    m = re.search(r"column #(\d+)", str(err))
    ro, co = _csv_options(opened, cols, {c: pa.string() for c in types})
    offset = 0
    try:
        for batch in pacsv.open_csv(str(opened.path), read_options=ro, convert_options=co):
            for c in types:
                text = batch.column(c)
                ok = pc.match_substring_regex(text, r"^\s*[-+]?\d+\s*$")
                bad = np.asarray(pc.and_(pc.invert(ok), pc.invert(pc.is_null(text))))
                if bad.any():
                    i = _first_true(bad)
                    return InputError(
                        f"wrong type: not an integer ID: {text[i].as_py()!r}",
                        file=opened.name,
                        column=c,
                        row=offset + i + 1,
                    )
            offset += batch.num_rows
    except pa.ArrowInvalid:
        pass
    column = None
    if m and opened.header is None:
        idx = int(m.group(1))
        column = opened.columns[idx] if idx < len(opened.columns) else None
    return InputError(f"cannot read CSV: {err}", file=opened.name, column=column)
