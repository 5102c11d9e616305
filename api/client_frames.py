"""Arrow answers of the export endpoint as caveclient-shaped DataFrames (part of the notebook
client: imports pandas, numpy and pyarrow only).

caveclient's conventions (materializationengine.py): positions as ``<name>_x/_y/_z`` columns when
``split_positions=True``, else one column per position holding an ``[x, y, z]`` array, placed
after the other columns; ``desired_resolution`` scales positions by voxel / desired; 64-bit IDs
stay int64 (``Int64`` when a column has nulls, never float).
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

#: caveclient's column order of synapses_pni_2 with split positions
SYNAPSE_ORDER = (
    ["id", "created", "superceded_id", "valid"]
    + [f"{s}_{a}" for s in ("pre_pt_position", "post_pt_position", "ctr_pt_position") for a in "xyz"]
    + ["size", "pre_pt_supervoxel_id", "pre_pt_root_id", "post_pt_supervoxel_id",
       "post_pt_root_id"]
)  # fmt: skip
ATTRIBUTION = ["pre_nucleus_id", "post_nucleus_id", "outcome"]


class IterFile(io.RawIOBase):
    """A readable file over an iterator of byte chunks (an HTTP body). Chunks are consumed
    through a memoryview: a read copies what it returns once, never the rest of the chunk."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        while not self.buf:
            try:
                self.buf = memoryview(next(self.chunks))
            except StopIteration:
                return False
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Exactly ``size`` bytes unless the body ends first (pyarrow takes a short read for
        the end of the stream); everything left for a negative or no ``size``."""
        want = -1 if size is None or size < 0 else size
        parts = []
        while want != 0 and self._fill():
            take = self.buf if want < 0 else self.buf[:want]
            self.buf = self.buf[len(take) :]
            parts.append(take)
            if want > 0:
                want -= len(take)
        return b"".join(parts)

    def readinto(self, b: Any) -> int:
        if not self._fill():
            return 0
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n


def id_list(values: Any) -> list[str] | None:
    """Root IDs as decimal strings (JSON numbers lose 64-bit integers)."""
    if values is None:
        return None
    if isinstance(values, int | str | np.integer):
        return [str(int(values))]
    return [str(int(v)) for v in values]


def box(value: Any) -> list[list[float]] | None:
    if value is None:
        return None
    return [[float(c) for c in corner] for corner in np.asarray(value, dtype=float).tolist()]


def plain(value: Any) -> Any:
    """numpy scalars and arrays as JSON-able Python values."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """int64 columns stay int64 (nullable Int64 when they have nulls), strings stay object."""
    cols = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_integer(col.type) and col.null_count:
            cols[name] = pd.array(col.to_pylist(), dtype="Int64")
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            cols[name] = pd.Series(col.to_pylist(), dtype=object)
        else:
            cols[name] = col.to_numpy(zero_copy_only=False)
    frame = pd.DataFrame(cols, columns=table.column_names)
    if (prov := provenance(table)) is not None:
        frame.attrs["provenance"] = prov
    return frame


def voxel_size(table: pa.Table) -> list[float]:
    meta = table.schema.metadata or {}
    raw = meta.get(b"cgraph.voxel_size_nm")
    return [float(v) for v in json.loads(raw)] if raw else [4.0, 4.0, 40.0]


def _scale(frame: pd.DataFrame, given: list[float], desired: Iterable[float] | None) -> None:
    """caveclient's convert_position_columns: every x/y/z column triple times given/desired;
    unscaled integer positions as int64, as the materialization service sends them."""
    if desired is None:
        for _, group in itertools.groupby(list(frame.columns), key=lambda c: c[:-2]):
            cols = list(group)
            if "".join(c[-1] for c in cols) == "xyz":
                for c in cols:
                    if frame[c].dtype.kind in "iu":
                        frame[c] = frame[c].astype("int64")
        return
    d = [float(v) for v in desired]
    if len(d) != 3:
        raise ValueError("desired resolution needs to be of length 3, for xyz")
    factor = np.asarray(given) / np.asarray(d)
    if np.all(factor == 1):
        return
    for _, group in itertools.groupby(list(frame.columns), key=lambda c: c[:-2]):
        cols = list(group)
        if "".join(c[-1] for c in cols) == "xyz":
            for c in cols:
                frame[c] = frame[c].astype("float64") * factor["xyz".index(c[-1])]


def _concatenate(frame: pd.DataFrame) -> pd.DataFrame:
    """caveclient's concatenate_position_columns: x/y/z triples -> one array column, appended."""
    for base, group in itertools.groupby(list(frame.columns), key=lambda c: c[:-2]):
        cols = list(group)
        if "".join(c[-1] for c in cols) == "xyz":
            stacked = np.stack([frame[c].to_numpy() for c in cols], axis=1)
            frame = frame.drop(columns=cols)
            frame[base] = list(stacked)
    return frame


def synapse_frame(
    table: pa.Table, *, split_positions: bool, desired_resolution: Iterable[float] | None,
    attribution: bool,
) -> pd.DataFrame:  # fmt: skip
    names = set(table.column_names)
    extras = [c for c in table.column_names
              if c not in SYNAPSE_ORDER and c not in ATTRIBUTION]  # fmt: skip
    order = [c for c in SYNAPSE_ORDER if c in names] + extras
    if attribution:
        order += [c for c in ATTRIBUTION if c in names]
    frame = to_pandas(table.select(order))
    _scale(frame, voxel_size(table), desired_resolution)
    frame = frame.sort_values("id", kind="stable", ignore_index=True)
    # caveclient's book-keeping columns, when the source had none: not superseded, valid,
    # creation time unknown (NaT), never invented
    for pos, (name, value) in enumerate(
        (("created", pd.NaT), ("superceded_id", np.nan), ("valid", True)), start=1
    ):
        if name not in frame.columns:
            frame.insert(pos, name, pd.Series([value] * len(frame), dtype=_BOOK[name]))
    return frame if split_positions else _concatenate(frame)


_BOOK = {"created": "datetime64[ns, UTC]", "superceded_id": "float64", "valid": "bool"}


def table_frame(
    table: pa.Table, *, split_positions: bool, desired_resolution: Iterable[float] | None
) -> pd.DataFrame:
    frame = to_pandas(table)
    _scale(frame, voxel_size(table), desired_resolution)
    return frame if split_positions else _concatenate(frame)


def attrs(table: pa.Table, version: int, desired: Iterable[float] | None,
          remove_autapses: bool | None) -> dict[str, Any]:  # fmt: skip
    """What caveclient puts in ``df.attrs`` that applies here."""
    vox = voxel_size(table)
    out: dict[str, Any] = {
        "materialization_version": int(version),
        "table_voxel_resolution": vox,
        "dataframe_resolution": list(desired) if desired is not None else vox,
    }
    if remove_autapses is not None:
        out["remove_autapses"] = bool(remove_autapses)
    if (prov := provenance(table)) is not None:
        out["provenance"] = prov
    return out


def provenance(table: pa.Table) -> dict[str, Any] | None:
    """The export's ``cgraph.provenance`` schema metadata (software, releases read)."""
    raw = (table.schema.metadata or {}).get(b"cgraph.provenance")
    return None if raw is None else dict(json.loads(raw))
