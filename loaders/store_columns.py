"""Which source columns feed the synapse store (snapshot/layout.py), and their values per batch.

Besides the attribution columns (id, roots, size: loaders.aggregate), the store keeps the
supervoxel IDs, the three positions (any CAVE encoding: split ``_x/_y/_z`` columns, arrays,
strings; mapped names such as pinky100's ``pre_pos_x_vx`` through ``--map
pre_pt_position=pre_pos_*_vx``), every other numeric column by its source name, and CAVE's
book-keeping columns. Positions stay in source voxels; a batch reports whether its values are
integral (the store is int32 when every batch is).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.errors import InputError
from loaders.positions import parse_positions, parse_split, split_columns
from loaders.readers import Opened, sniff_types, source_column, to_ids
from snapshot.layout import BOOKKEEPING, POINTS, STORE_BASE_COLUMNS

SUPERVOXELS = ("pre_pt_supervoxel_id", "post_pt_supervoxel_id")
_INT32 = np.iinfo(np.int32)


@dataclass(frozen=True)
class StorePlan:
    """Source columns of the store's optional parts, resolved once per synapse table."""

    supervoxels: dict[str, str | None]
    points: dict[str, tuple[str, ...] | None]  # 3 split columns, (packed,), or None
    extras: list[tuple[str, pa.DataType]] = field(default_factory=list)  # numeric, by name
    bookkeeping: list[tuple[str, pa.DataType]] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        cols = [c for c in self.supervoxels.values() if c]
        cols += [c for spec in self.points.values() if spec for c in spec]
        return cols + [c for c, _ in self.extras] + [c for c, _ in self.bookkeeping]

    @property
    def int_columns(self) -> list[str]:
        return [c for c in self.supervoxels.values() if c]

    @property
    def column_types(self) -> dict[str, pa.DataType]:
        """Types to read CSV columns with (as sniffed), so every block agrees."""
        return dict(self.extras + self.bookkeeping)

    def extra_fields(self) -> list[pa.Field]:
        return [pa.field(c, t) for c, t in self.extras + self.bookkeeping]


def plan_store(opened: Opened, colmap: Mapping[str, str], used: set[str]) -> StorePlan:
    """The plan for ``opened``; ``used`` = source columns the attribution reads."""
    sv = {c: source_column(colmap, opened, c) for c in SUPERVOXELS}
    points: dict[str, tuple[str, ...] | None] = {}
    for p in POINTS:
        split = [source_column(colmap, opened, c) for c in split_columns(p)]
        packed = source_column(colmap, opened, p)
        points[p] = (tuple(c for c in split if c) if all(split)
                     else (packed,) if packed else None)  # fmt: skip
    taken = set(used) | set(colmap.values())
    taken |= {c for c in sv.values() if c} | {c for s in points.values() if s for c in s}
    rest = [c for c in opened.columns if c not in taken and c not in STORE_BASE_COLUMNS]
    types = sniff_types(opened, rest) if rest else {}
    extras, book = [], []
    for c in rest:
        t = types.get(c)
        if t is None:
            continue
        if c in BOOKKEEPING:
            book.append((c, pa.int64() if c == "superceded_id" and pa.types.is_integer(t) else t))
        elif pa.types.is_integer(t):
            extras.append((c, pa.int64()))
        elif pa.types.is_floating(t) or pa.types.is_decimal(t):
            extras.append((c, pa.float64()))
    return StorePlan(sv, points, extras, book)


def _arrow(values: Any, typ: pa.DataType | None = None) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pd.Series):
        values = pa.array(values, from_pandas=True)
    arr = values if isinstance(values, pa.Array) else pa.array(values)
    return arr if typ is None or arr.type == typ else arr.cast(typ)


def _series(values: Any) -> pd.Series:
    if isinstance(values, pd.Series):
        return values.reset_index(drop=True)
    return pd.Series(values.to_numpy(zero_copy_only=False))


Nullable = tuple[np.ndarray, np.ndarray | None]  # values, null mask (None: no nulls)


def _supervoxels(values: Any, file: str, column: str, offset: int) -> Nullable:
    arr = _arrow(values)
    if arr.null_count == 0:
        return to_ids(arr, file=file, column=column, row_offset=offset), None
    valid = np.asarray(arr.is_valid())
    ids = to_ids(arr.filter(pa.array(valid)), file=file, column=column, row_offset=offset)
    out = np.zeros(len(arr), np.int64)
    out[valid] = ids
    return out, ~valid


def _point(values: list[Any], cols: tuple[str, ...], file: str, offset: int) -> list[np.ndarray]:
    """x, y, z voxels: integer arrays when the source columns are integer-typed, else float64."""
    if len(cols) == 3:
        arrs = [_arrow(v) for v in values]
        if all(pa.types.is_integer(a.type) and a.null_count == 0 for a in arrs):
            return [a.to_numpy() for a in arrs]
        xyz = parse_split([_series(v) for v in values], cols, file, offset)
        return [np.ascontiguousarray(xyz[:, k]) for k in range(3)]
    arr = _arrow(values[0]) if not isinstance(values[0], pd.Series) else None
    if (
        arr is not None
        and pa.types.is_list(arr.type)
        or (arr is not None and pa.types.is_fixed_size_list(arr.type))
    ):
        assert arr is not None
        flat = arr.flatten()
        if (arr.null_count == 0 and flat.null_count == 0 and len(flat) == 3 * len(arr)
                and bool(pc.all(pc.equal(pc.list_value_length(arr), 3)).as_py())):  # fmt: skip
            xyz = flat.to_numpy(zero_copy_only=False).reshape(-1, 3)
            if not np.issubdtype(xyz.dtype, np.integer):
                xyz = xyz.astype(np.float64)
                bad = ~np.isfinite(xyz).all(axis=1)
                if bad.any():
                    i = int(np.argmax(bad))
                    raise InputError(f"cannot parse position {xyz[i].tolist()!r}", file=file,
                                     column=cols[0], row=offset + i + 1)  # fmt: skip
            return [np.ascontiguousarray(xyz[:, k]) for k in range(3)]
    frame = pd.DataFrame({cols[0]: _series(values[0])})
    xyz = parse_positions(frame, cols[0], voxel_size=(1, 1, 1), file=file, row_offset=offset)
    return [np.ascontiguousarray(xyz[:, k]) for k in range(3)]


def store_batch(
    plan: StorePlan, b: Mapping[str, Any], n: int, *, file: str, offset: int
) -> tuple[dict[str, Any], bool]:
    """The optional store columns of one batch and whether its positions are integral int32."""
    out: dict[str, Any] = {}
    for name, col in plan.supervoxels.items():
        out[name] = None if col is None else _supervoxels(b[col], file, col, offset)
    integral = True
    for p, spec in plan.points.items():
        if spec is None:
            out[p] = None
            continue
        xyz = _point([b[c] for c in spec], spec, file, offset)
        for v in xyz:
            if not np.issubdtype(v.dtype, np.integer):
                integral = integral and bool(np.array_equal(v, np.rint(v)))
            if integral and len(v):
                integral = int(v.min()) >= _INT32.min and int(v.max()) <= _INT32.max
        out[p] = xyz
    for name, typ in plan.extras + plan.bookkeeping:
        try:
            out[name] = _arrow(b[name], typ)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise InputError(f"cannot read as {typ}: {e}", file=file, column=name) from e
    return out, integral


def position_arrays(
    xyz: list[np.ndarray] | None, n: int, integral: bool, order: np.ndarray | None
) -> list[pa.Array]:
    """The x, y, z store columns of one point in ``order``: int32 if ``integral`` else float64;
    nulls when the source has no such position."""
    typ = pa.int32() if integral else pa.float64()
    if xyz is None:
        return [pa.nulls(n, typ)] * 3
    dt = np.int32 if integral else np.float64
    return [pa.array((v if order is None else v[order]).astype(dt, copy=False)) for v in xyz]
