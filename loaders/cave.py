"""Read one materialization version from a live CAVE service (``caveclient.CAVEclient``).

Only three client calls are used::

    client.materialize.get_version_metadata(version)["time_stamp"]
    client.materialize.query_table(table, materialization_version=version, split_positions=True,
                                   filter_in_dict=..., limit=...)
    client.materialize.synapse_query(pre_ids=[...] | post_ids=[...],
                                     materialization_version=version, remove_autapses=False,
                                     include_zeros=True, split_positions=True, limit=...)

Row caps: the service truncates large answers (non-deterministically) at a server-side cap.
Every query here passes ``limit=row_limit``; an answer of ``row_limit`` rows or more is treated as
truncated: the batch of root (or nucleus) IDs is split in two and both halves are retried. A single
ID that still hits the cap raises :class:`core.errors.LimitExceeded`. ``row_limit`` must be no
larger than the server's own cap (200,000 is safe for minnie65_public).
``remove_autapses=False`` matters: caveclient removes autapses *after* the limit, which would hide
a truncation; the aggregator drops and counts them itself.

Which synapses: all synapses whose pre root is a nucleus root (queried by batches of pre roots),
plus those whose post root is a nucleus root and whose pre root is not (batches of post roots).
That is everything the cell-level data needs (edges, in/out totals). Synapses between two
fragments are never fetched, so ``synapses_total`` and the drop counts are smaller than with the
full synapse table.

Non-synapse tables are read whole in one query. The nucleus table must fit under ``row_limit``
(else LimitExceeded). An annotation table that hits the cap is re-read in batches of nucleus IDs
(``filter_in_dict`` on ``target_id``, else ``id``); its rows that match no nucleus are then not
fetched, so ``*_rows_unmatched`` counts only what was fetched.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import InputError, LimitExceeded
from loaders.aggregate import build_release
from loaders.tables import ReleaseData

SYNAPSE_COLUMNS = ["id", "pre_pt_root_id", "post_pt_root_id", "size"]


@dataclass(frozen=True)
class CaveRelease:
    """Tables of one materialization version, ready for :func:`loaders.aggregate.build_release`.

    ``synapses`` is a DataFrame, or the path of a Parquet file when ``synapse_path`` was given.
    """

    version: int
    timestamp: Any  # as returned by get_version_metadata (datetime or ISO string)
    nuclei: pd.DataFrame
    synapses: pd.DataFrame | Path
    neurons: pd.DataFrame | None = None
    cell_types: pd.DataFrame | None = None

    def build(self, **kwargs: Any) -> ReleaseData:
        """``build_release`` over these tables; ``kwargs`` go to it (voxel_size, on_rows...)."""
        return build_release(self.nuclei, self.synapses, self.neurons, self.cell_types, **kwargs)


def read_cave_release(
    client: Any,
    version: int,
    *,
    nucleus_table: str = "nucleus_detection_v0",
    synapse_table: str = "synapses_pni_2",
    neuron_table: str | None = None,
    cell_type_table: str | None = None,
    batch_size: int = 500,
    row_limit: int = 200_000,
    synapse_path: Path | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> CaveRelease:
    """Fetch the tables of materialization ``version``; ``batch_size`` roots per synapse query.

    With ``synapse_path`` the synapses stream to that Parquet file instead of memory.
    ``on_rows(n)`` is called after each synapse query with its row count.
    """
    mat = client.materialize
    timestamp = mat.get_version_metadata(version)["time_stamp"]

    def table(name: str) -> pd.DataFrame:
        return _query_table(mat, name, version, row_limit)

    nuclei = table(nucleus_table)
    if "pt_root_id" not in nuclei.columns:
        raise InputError(f"no pt_root_id in {nucleus_table} v{version}", column="pt_root_id")
    nucleus_ids = nuclei["id"].to_numpy(np.int64) if "id" in nuclei.columns else None
    neurons = _query_annotation(mat, neuron_table, version, row_limit, nucleus_ids, batch_size)
    cell_types = _query_annotation(
        mat, cell_type_table, version, row_limit, nucleus_ids, batch_size
    )

    roots = np.unique(nuclei["pt_root_id"].to_numpy(np.int64))
    roots = roots[roots != 0]
    sink = _Sink(synapse_path)

    def fetch(side: str, ids: np.ndarray) -> pd.DataFrame:
        kw = {"pre_ids" if side == "pre" else "post_ids": [int(r) for r in ids]}
        return mat.synapse_query(
            **kw,
            synapse_table=synapse_table,
            materialization_version=version,
            remove_autapses=False,
            include_zeros=True,
            split_positions=True,
            limit=row_limit,
        )

    for side in ("pre", "post"):
        for start in range(0, len(roots), batch_size):
            for part in _split_until_complete(
                functools.partial(fetch, side),
                roots[start : start + batch_size],
                row_limit,
                f"{synapse_table} ({side}_ids)",
            ):
                if side == "post":  # already fetched in the pre pass
                    part = part[~np.isin(part["pre_pt_root_id"].to_numpy(np.int64), roots)]
                sink.add(part)
                if on_rows is not None:
                    on_rows(len(part))
    return CaveRelease(version, timestamp, nuclei, sink.result(), neurons, cell_types)


def _query_table(
    mat: Any,
    name: str,
    version: int,
    row_limit: int,
    filter_in_dict: dict[str, list[int]] | None = None,
) -> pd.DataFrame:
    df = mat.query_table(
        name,
        materialization_version=version,
        split_positions=True,
        filter_in_dict=filter_in_dict,
        limit=row_limit,
    )
    if filter_in_dict is None and len(df) >= row_limit:
        raise LimitExceeded(
            f"{name} v{version} has at least {row_limit} rows (the row cap); it cannot be read "
            "whole through the API: raise row_limit up to the server cap or load the static dump"
        )
    return pd.DataFrame(df)


def _query_annotation(
    mat: Any,
    name: str | None,
    version: int,
    row_limit: int,
    nucleus_ids: np.ndarray | None,
    batch_size: int,
) -> pd.DataFrame | None:
    if name is None:
        return None
    df = pd.DataFrame(
        mat.query_table(
            name, materialization_version=version, split_positions=True, limit=row_limit
        )
    )
    if len(df) < row_limit:
        return df
    if nucleus_ids is None:
        raise LimitExceeded(f"{name} v{version} hits the row cap {row_limit}")
    key = "target_id" if "target_id" in df.columns else "id"
    parts = []
    for start in range(0, len(nucleus_ids), batch_size):
        parts += _split_until_complete(
            lambda ids: _query_table(mat, name, version, row_limit, {key: [int(i) for i in ids]}),
            nucleus_ids[start : start + batch_size],
            row_limit,
            name,
        )
    return pd.concat(parts, ignore_index=True)


def _split_until_complete(
    fetch: Callable[[np.ndarray], pd.DataFrame], ids: np.ndarray, row_limit: int, what: str
) -> list[pd.DataFrame]:
    """Fetch ``ids``; when an answer reaches the cap, split the IDs in halves and retry."""
    out: list[pd.DataFrame] = []
    todo: list[np.ndarray] = [ids]
    while todo:
        batch = todo.pop()
        if len(batch) == 0:
            continue
        df = fetch(batch)
        if len(df) < row_limit:
            out.append(df)
        elif len(batch) == 1:
            raise LimitExceeded(
                f"{what}: ID {int(batch[0])} alone returns {row_limit} rows (the row cap); "
                "raise row_limit up to the server cap or load the static dump"
            )
        else:
            half = len(batch) // 2
            todo += [batch[half:], batch[:half]]
    return out


class _Sink:
    """Collects synapse parts in memory, or streams them into one Parquet file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.parts: list[pd.DataFrame] = []
        self.writer: pq.ParquetWriter | None = None
        self.columns: Sequence[str] | None = None

    def add(self, part: pd.DataFrame) -> None:
        cols = [c for c in SYNAPSE_COLUMNS if c in part.columns]
        self.columns = self.columns or cols
        part = part[list(self.columns)].reset_index(drop=True)
        if self.path is None:
            self.parts.append(part)
            return
        table = pa.Table.from_pandas(part, preserve_index=False)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema)
        self.writer.write_table(table.cast(self.writer.schema))

    def result(self) -> pd.DataFrame | Path:
        if self.path is None:
            if not self.parts:
                return pd.DataFrame({c: pd.Series([], dtype=np.int64) for c in SYNAPSE_COLUMNS})
            return pd.concat(self.parts, ignore_index=True)
        if self.writer is None:
            empty = {c: pa.array([], pa.int64()) for c in SYNAPSE_COLUMNS}
            pq.write_table(pa.table(empty), self.path)
        else:
            self.writer.close()
        return self.path
