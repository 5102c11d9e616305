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
A destination that is no canonical column of a table (:data:`DESTINATIONS`) is refused.

A file that cannot be read (a corrupt Parquet page, gzip garbage or a truncated gzip, bytes
that are not UTF-8) raises InputError naming the file and how far it was read, never a bare
pyarrow/gzip/zlib error. Values quoted in messages are cut to a few dozen characters.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import os
import re
import zlib
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

from core.errors import BadRequest, InputError
from loaders.tables import CELL_TYPES, NEURONS, NUCLEI, SYNAPSES

Source: TypeAlias = str | os.PathLike[str] | pd.DataFrame
RowsCallback: TypeAlias = Callable[[int], None]

DEFAULT_BATCH_ROWS = 1_000_000
_CSV_BLOCK = 16 << 20
_HEADER_LIMIT = 1 << 20

#: what reading a source can raise when the file itself is bad (pyarrow's ArrowInvalid is a
#: ValueError, a corrupt Parquet page an OSError, gzip garbage BadGzipFile, a truncated gzip
#: EOFError or OSError, bytes that are not UTF-8 UnicodeDecodeError)
READ_ERRORS = (pa.ArrowException, OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error)

_POINT_DESTS = ("pre_pt_position", "ctr_pt_position", "post_pt_position")
#: the canonical columns a mapping may name as its destination, per table
DESTINATIONS: dict[str, tuple[str, ...]] = {
    NUCLEI: ("id", "pt_root_id", "pt_position", "pt_position_x", "pt_position_y",
             "pt_position_z", "volume"),
    SYNAPSES: ("id", "pre_pt_root_id", "post_pt_root_id", "size", "pre_pt_supervoxel_id",
               "post_pt_supervoxel_id",
               *(f"{p}{k}" for p in _POINT_DESTS for k in ("", "_x", "_y", "_z"))),
    NEURONS: ("target_id", "id", "cell_type", "classification_system"),
    CELL_TYPES: ("target_id", "id", "cell_type", "classification_system"),
}  # fmt: skip


def show(value: object, limit: int = 60) -> str:
    """``repr(value)`` for a message: cut to ``limit`` characters (a value may be megabytes)."""
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text):,} characters)"


def _why(err: BaseException, limit: int = 200) -> str:
    """An exception as printable text for a one-line message: non-printable bytes escaped,
    newlines folded, cut to ``limit`` characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    if not isinstance(err, pa.ArrowException | ValueError):
        text = f"{type(err).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unreadable(name: str, err: BaseException, rows: int | None = None) -> InputError:
    """The InputError for a file that could not be read (after ``rows`` data rows, if known)."""
    where = f" after {rows:,} data rows" if rows else ""
    return InputError(f"cannot read the file{where}: {_why(err)}", file=name)


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
                try:
                    header = _read_header_file(header_file)
                except READ_ERRORS as e:
                    raise unreadable(str(header_file), e) from e
                return Opened(name, header, "csv", path=path, header=header)
        try:
            return Opened(name, _csv_header(path), "csv", path=path)
        except READ_ERRORS as e:
            raise unreadable(name, e) from e
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
    with opener(path, "rb") as fh:  # type: ignore[operator]
        line = fh.readline(_HEADER_LIMIT)  # the header line only: what follows is pyarrow's
    if len(line) == _HEADER_LIMIT and not line.endswith(b"\n"):
        raise InputError(f"no header line (none within the first {_HEADER_LIMIT:,} bytes)",
                         file=str(path))  # fmt: skip
    try:
        first = line.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"the header line is not UTF-8 text ({e})", file=str(path)) from e
    if not first.strip():
        raise InputError("empty file (no header, no data rows)", file=str(path))
    return [c.strip() for c in next(csv.reader([first]))]


# --------------------------------------------------------------------------- mapping


def resolve_mapping(
    mapping: Mapping[str, str] | None, opened: Mapping[str, Opened]
) -> dict[str, dict[str, str]]:
    """Return ``{table: {canonical_dest: source_column}}`` for the tables in ``opened``.

    A plain key applies to every table holding ``source_column``; ``"table.dest"`` to that table.
    A source column found in no (or not in the named) table raises InputError naming it; an
    unknown destination raises BadRequest (:func:`check_destinations`).
    """
    check_destinations(mapping or {})
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


def check_destinations(mapping: Mapping[str, str], *, what: str = "mapping") -> None:
    """Refuse a destination that no table has (``sise=size`` would drop every size silently):
    BadRequest naming the pair and listing the valid destinations. ``what``: how the caller
    calls the mapping in the message (``--map`` on the command line)."""
    for key, src in mapping.items():
        table, _, dest = key.rpartition(".")
        if table and table not in DESTINATIONS:
            raise BadRequest(
                f"{what} {key}={src}: unknown table {table!r}; tables: {', '.join(DESTINATIONS)}"
            )
        tables = [table] if table else list(DESTINATIONS)
        if not any(dest in DESTINATIONS[t] for t in tables):
            valid = "; ".join(f"{t}: {', '.join(DESTINATIONS[t])}" for t in tables)
            raise BadRequest(
                f"{what} {key}={src}: unknown destination {dest!r} (DEST is a CAVE column name); "
                f"valid destinations: {valid}"
            )


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
        "IDs exactly)" + (f"; first non-number {show(raw[row - row_offset - 1])}" if row else ""),
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
                f"size must be a whole number, got {show(series.iloc[i])}",
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
    str_columns: Sequence[str] = (),
) -> pd.DataFrame:
    """Read the named source ``columns`` whole (small tables). ``int_columns`` are read as
    int64 from CSV (validate them with :func:`to_ids`), ``str_columns`` as text (a CSV column
    of digits stays text). Raises InputError when empty or unreadable."""
    cols = list(dict.fromkeys(columns))
    try:
        if opened.kind == "frame":
            assert opened.frame is not None
            frame = opened.frame.loc[:, cols].reset_index(drop=True)
        elif opened.kind == "parquet":
            frame = pq.read_table(opened.path, columns=cols).to_pandas()
        elif opened.kind == "ipc":
            table = ipc.open_file(pa.memory_map(str(opened.path))).read_all()
            frame = table.select(cols).to_pandas()
        else:
            text = {c: pa.string() for c in str_columns}
            frame = pd.concat(
                [b.to_pandas() for b in _csv_batches(opened, cols, int_columns, text, True)]
                or [pd.DataFrame({c: [] for c in cols})],
                ignore_index=True,
            )
    except READ_ERRORS as e:
        raise unreadable(opened.name, e) from e
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
        head = opened.frame.loc[:, cols].head(10_000)
        out = {}
        for c in cols:  # a column Arrow cannot type (mixed objects) is no numeric extra
            with contextlib.suppress(pa.ArrowException):
                out[c] = pa.Schema.from_pandas(head[[c]], preserve_index=False).field(c).type
        return out
    try:
        if opened.kind == "parquet":
            schema = pq.ParquetFile(opened.path).schema_arrow
        elif opened.kind == "ipc":
            schema = ipc.open_file(pa.memory_map(str(opened.path))).schema
        else:
            ro, co = _csv_options(opened, cols, {})
            with pacsv.open_csv(str(opened.path), read_options=ro, convert_options=co) as r:
                schema = r.schema
    except READ_ERRORS as e:
        raise unreadable(opened.name, e) from e
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
    A file that turns out unreadable midway raises InputError naming it and the rows read.
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
    try:
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
    except READ_ERRORS as e:
        raise unreadable(opened.name, e) from e
    batches = _rechunk(source, batch_rows)
    while True:
        try:  # only the reading: what the consumer raises at the yield is not wrapped
            batch = next(batches)
        except StopIteration:
            return
        except READ_ERRORS as e:
            raise unreadable(opened.name, e, offset) from e
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
    opened: Opened, cols: list[str], types: Mapping[str, pa.DataType], text_null: bool = False
) -> tuple[pacsv.ReadOptions, pacsv.ConvertOptions]:
    ro = (
        pacsv.ReadOptions(column_names=opened.header, block_size=_CSV_BLOCK)
        if opened.header
        else pacsv.ReadOptions(block_size=_CSV_BLOCK)
    )
    co = pacsv.ConvertOptions(include_columns=cols, column_types=dict(types),
                              strings_can_be_null=text_null)  # fmt: skip
    return ro, co


def _csv_batches(
    opened: Opened,
    cols: list[str],
    int_columns: Sequence[str],
    column_types: Mapping[str, pa.DataType] | None = None,
    text_null: bool = False,  # an empty text cell is missing (annotation labels)
) -> Iterator[pa.RecordBatch]:
    types = {c: pa.int64() for c in int_columns if c in cols}
    other = {c: t for c, t in (column_types or {}).items() if c in cols and c not in types}
    ro, co = _csv_options(opened, cols, {**other, **types}, text_null)
    rows = 0
    try:
        reader = pacsv.open_csv(str(opened.path), read_options=ro, convert_options=co)
        for batch in reader:
            yield batch
            rows += batch.num_rows
    except pa.ArrowInvalid as e:
        raise _locate_csv_error(opened, cols, types, e, rows) from e


def _locate_csv_error(
    opened: Opened, cols: list[str], types: Mapping[str, pa.DataType], err: Exception, rows: int
) -> InputError:
    """Error path: name the row pyarrow could not convert or parse. A parse error is read again
    on one thread (pyarrow then says which line); a conversion error again with the columns as
    bytes, to find the int column value that is no integer or the text that is not UTF-8."""
    if "parse error" in str(err):
        ro, co = _csv_options(opened, cols, {c: pa.binary() for c in cols})
        ro.use_threads = False
        try:
            for _ in pacsv.open_csv(str(opened.path), read_options=ro, convert_options=co):
                pass
        except pa.ArrowInvalid as again:
            line = re.search(r"Row #(\d+)", str(again))
            if line:  # a physical line: the header is line 1 unless it is in a _header.csv
                row = int(line.group(1)) - (0 if opened.header else 1)
                return InputError(f"cannot read CSV: {_why(again)}", file=opened.name, row=row)
        except READ_ERRORS:
            pass
    found = _find_bad_value(opened, cols, types)
    if found is not None:
        return found
    m = re.search(r"column #(\d+)", str(err))
    column = None
    if m and opened.header is None:
        idx = int(m.group(1))
        column = opened.columns[idx] if idx < len(opened.columns) else None
    where = f" after {rows:,} data rows" if rows else ""
    return InputError(f"cannot read CSV{where}: {_why(err)}", file=opened.name, column=column)


def _find_bad_value(
    opened: Opened, cols: list[str], types: Mapping[str, pa.DataType]
) -> InputError | None:
    ro, co = _csv_options(opened, cols, {c: pa.binary() for c in cols})
    offset = 0
    try:
        for batch in pacsv.open_csv(str(opened.path), read_options=ro, convert_options=co):
            for c in cols:
                raw = batch.column(c)
                if c in types:
                    ok = pc.match_substring_regex(raw, r"^\s*[-+]?\d+\s*$")
                    bad = np.asarray(pc.and_(pc.invert(ok), pc.invert(pc.is_null(raw))))
                    what = "wrong type: not an integer ID"
                else:
                    try:
                        raw.cast(pa.string())
                        continue
                    except pa.ArrowInvalid:
                        bad = np.array([not _utf8(v) for v in raw.to_pylist()])
                        what = "not UTF-8 text"
                if bad.any():
                    i = _first_true(bad)
                    value = raw[i].as_py().decode("utf-8", "backslashreplace")
                    return InputError(f"{what}: {show(value)}", file=opened.name, column=c,
                                      row=offset + i + 1)  # fmt: skip
            offset += batch.num_rows
    except READ_ERRORS:
        pass
    return None


def _utf8(value: bytes | None) -> bool:
    if value is None:
        return True
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
