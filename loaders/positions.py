"""Parse CAVE point positions (voxels) into an ``(n, 3)`` float64 array in nanometres.

Accepted encodings of a position column ``pt_position``:

* three numeric columns ``pt_position_x``, ``pt_position_y``, ``pt_position_z``
  (``query_table(split_positions=True)``); these win when present;
* an array column: each cell a list / tuple / ndarray of 3 numbers (caveclient DataFrame,
  Parquet ``list`` column);
* strings: numpy print ``"[103860  44385    891]"``, ``"[1.5e3 2 3]"``, ``"(x, y, z)"``,
  ``"[x, y, z]"`` (CSV dumps). Parsed with one vectorised regex (``pyarrow.compute.extract_regex``).

Anything else raises :class:`core.errors.InputError` naming file, column and 1-based row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.errors import InputError

DEFAULT_VOXEL_SIZE: tuple[float, float, float] = (4.0, 4.0, 40.0)

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_SEP = r"(?:\s*,\s*|\s+)"
_POINT_RE = rf"^\s*[\[\(]?\s*(?P<x>{_NUM}){_SEP}(?P<y>{_NUM}){_SEP}(?P<z>{_NUM})\s*,?\s*[\]\)]?\s*$"


def split_columns(column: str) -> tuple[str, str, str]:
    return (f"{column}_x", f"{column}_y", f"{column}_z")


def parse_positions(
    frame: pd.DataFrame,
    column: str = "pt_position",
    *,
    voxel_size: Sequence[float] = DEFAULT_VOXEL_SIZE,
    file: str | None = None,
    row_offset: int = 0,
) -> np.ndarray:
    """Return positions of ``frame`` as an ``(n, 3)`` float64 array in nm (voxels * voxel_size).

    ``row_offset`` is added to the 1-based row numbers in error messages.
    """
    scale = np.asarray(voxel_size, dtype=np.float64)
    if scale.shape != (3,):
        raise ValueError(f"voxel_size must have 3 values, got {voxel_size!r}")
    split = split_columns(column)
    if all(c in frame.columns for c in split):
        xyz = np.column_stack([_numeric(frame[c], file, c, row_offset) for c in split])
    elif column in frame.columns:
        xyz = _parse_column(frame[column], file, column, row_offset)
    else:
        raise InputError(
            f"missing position column (need {column!r} or {', '.join(split)}); "
            f"columns found: {', '.join(map(str, frame.columns))}",
            file=file,
            column=column,
        )
    return xyz * scale


def parse_split(
    series: Sequence[pd.Series], columns: Sequence[str], file: str | None, row_offset: int = 0
) -> np.ndarray:
    """Three numeric columns (x, y, z; named ``columns`` in messages) as an (n, 3) float64
    array, unscaled; a missing or non-numeric value raises InputError (file, column, row)."""
    return np.column_stack(
        [_numeric(s, file, c, row_offset) for s, c in zip(series, columns, strict=True)]
    )


def _fail(file: str | None, column: str, index: int, value: object, row_offset: int) -> InputError:
    return InputError(
        f"cannot parse position {value!r} (expected 3 numbers such as '[x y z]' or '(x, y, z)')",
        file=file,
        column=column,
        row=row_offset + index + 1,
    )


def _numeric(series: pd.Series, file: str | None, column: str, row_offset: int) -> np.ndarray:
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        raise _fail(file, column, i, series.iloc[i], row_offset)
    return values


def _parse_column(series: pd.Series, file: str | None, column: str, row_offset: int) -> np.ndarray:
    n = len(series)
    if n == 0:
        return np.empty((0, 3), dtype=np.float64)
    values = series.to_numpy(dtype=object)
    is_str = np.fromiter((isinstance(v, str) for v in values), dtype=bool, count=n)
    out = np.full((n, 3), np.nan, dtype=np.float64)
    if is_str.any():
        out[is_str] = _parse_strings(values[is_str])
    if not is_str.all():
        out[~is_str] = _stack_arrays(values, np.flatnonzero(~is_str), file, column, row_offset)
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise _fail(file, column, i, values[i], row_offset)
    return out


def _parse_strings(strings: np.ndarray) -> np.ndarray:
    """Vectorised: one pyarrow regex over all strings; rows that do not match become NaN."""
    text = pa.array(strings, type=pa.string())
    ok = np.asarray(pc.fill_null(pc.match_substring_regex(text, _POINT_RE), False))
    out = np.full((len(strings), 3), np.nan)
    parts = pc.extract_regex(text.filter(pa.array(ok)), _POINT_RE)
    for j, k in enumerate("xyz"):
        out[ok, j] = pc.cast(parts.field(k), pa.float64()).to_numpy(zero_copy_only=False)
    return out


def _stack_arrays(
    values: np.ndarray, where: np.ndarray, file: str | None, column: str, row_offset: int
) -> np.ndarray:
    items = values[where]
    try:
        stacked = np.asarray(np.stack([np.asarray(v, dtype=np.float64) for v in items]))
        if stacked.shape == (len(items), 3):
            return stacked
    except (TypeError, ValueError):
        pass
    for i, v in zip(where.tolist(), items, strict=True):  # error path only: find the bad row
        try:
            if np.asarray(v, dtype=np.float64).shape == (3,):
                continue
        except (TypeError, ValueError):
            pass
        raise _fail(file, column, i, v, row_offset)
    raise _fail(file, column, int(where[0]), items[0], row_offset)  # pragma: no cover
