"""Validate and aggregate one release's tables into :class:`loaders.tables.ReleaseData`.

Attribution rules (the contract)
--------------------------------
Root -> nucleus map, from the nuclei table:

* a root held by exactly one nucleus maps to that nucleus;
* root 0 (nucleus outside the segmentation) maps to nothing;
* a root held by two or more nuclei is a *multi-nucleus root*: reported in
  ``ReleaseData.multi_nucleus_roots`` (root -> sorted nucleus IDs) and it attributes no synapse.

Each synapse row is classified by the first rule that applies:

1. pre root == post root -> ``dropped_autapse`` (CAVE's ``synapse_query`` drops them by default);
2. pre or post root is 0 -> ``dropped_root0``;
3. pre or post root is a multi-nucleus root -> ``dropped_multi_nucleus_root``;
4. pre or post root has no nucleus (a fragment) -> ``dropped_partner_without_nucleus``;
5. otherwise it is *used*: it adds to the directed edge (pre nucleus -> post nucleus).

Per-cell totals count fragments too: ``out_synapses[cell]`` = non-autapse synapses whose pre root
maps uniquely to the cell, ``in_synapses`` likewise for post.

An edge groups the used synapses of one (pre nucleus, post nucleus): ``synapses`` = count,
``size`` = sum of sizes (None when the synapse table has no size column: sizes are never
invented), ``sizes`` and ``synapse_ids`` per synapse in ascending synapse-id order.
When the synapse table has no ``id`` column, the synapse id is the 0-based data row index.
Synapse IDs are unique: a repeated one (a fully duplicated row included) is an error naming
both rows (checked with bounded memory: loaders.store.SynapseIdCheck). An edge whose summed
size would not fit in int64 is an error naming the (pre, post) nuclei, never a wrapped number.

Nuclei: ``volume`` may be empty/NaN (unknown); an infinite or negative volume is an error.
Annotation labels (``cell_type``, ``classification_system`` of the cell-type table) are text:
a Parquet/Feather/DataFrame column of another type (integers) is refused naming its type (a
CSV column is read as text as it stands), and a label longer than :data:`MAX_LABEL_CHARS` is
refused.

Annotation rows (neuron, cell-type tables) whose nucleus is not in the nuclei table are counted
(``neuron_rows_unmatched``, ``cell_type_rows_unmatched``), not fatal; a nucleus listed twice in an
annotation table is an error. Everything is validated before anything is returned, so a writer
never sees partial data.

Every synapse row also goes to the release's synapse store (loaders.store, layout in
snapshot/layout.py) with its outcome: ``used``, ``autapse``, ``root0``, ``multi_nucleus_root``
or ``partner_without_nucleus`` (the rule above that classified it), and the nucleus each root
maps to uniquely (null otherwise; an autapse on a cell's root keeps that cell on both sides).

Speed: synapses stream in batches of ``batch_rows`` (memory bounded by it); root lookup is a
vectorised open-address hash (exact, with a sorted-array fallback on collisions); the next
batch is read in a background thread while the current one is classified.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import InputError
from loaders.positions import DEFAULT_VOXEL_SIZE, parse_positions, split_columns
from loaders.readers import (
    DEFAULT_BATCH_ROWS,
    Opened,
    RowsCallback,
    Source,
    iter_batches,
    missing_column,
    open_source,
    read_frame,
    resolve_mapping,
    show,
    source_column,
    to_ids,
    to_sizes,
)
from loaders.store import StoreBuilder, SynapseIdCheck
from loaders.store_columns import StorePlan, plan_store, position_arrays, store_batch
from loaders.tables import (
    CELL_TYPES,
    NEURONS,
    NUCLEI,
    SYNAPSES,
    Annotations,
    Cells,
    Edges,
    ReleaseData,
)
from snapshot.layout import OUTCOME_TYPE, OUTCOMES, POINTS, store_schema


def spill_schema(position_type: pa.DataType, extras: list[pa.Field]) -> pa.Schema:
    """The store's schema with the outcome as int8 codes (how rows are buffered and spilled)."""
    schema = store_schema(position_type, extras)
    return schema.set(schema.get_field_index("outcome"), pa.field("outcome", pa.int8()))


ROOT0, MULTI, NONE = -3, -2, -1
DEFAULT_MEMORY = 4 << 30  # bytes: CGRAPH_LOAD_MEMORY / --memory
_MULT = np.uint64(0x9E3779B97F4A7C15)
T = TypeVar("T")


def aggregate_release(
    nuclei: Source,
    synapses: Source,
    neurons: Source | None = None,
    cell_types: Source | None = None,
    *,
    mapping: Mapping[str, str] | None = None,
    voxel_size: Sequence[float] = DEFAULT_VOXEL_SIZE,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    memory: int = DEFAULT_MEMORY,
    spill_dir: Path | None = None,
    on_rows: RowsCallback | None = None,
    edges: bool = True,
    store: bool = True,
) -> AggregatedRelease:
    """Read and validate one release and classify every synapse; the edges are grouped later,
    one partition at a time, by :meth:`AggregatedRelease.iter_edges`. Each source is a path or
    a DataFrame. Peak memory is set by ``memory`` (bytes), not by the input.

    Every column is read and validated either way; ``edges=False`` keeps no edges (and does not
    check synapse IDs for repeats: a store-only pass over inputs already read), ``store=False``
    keeps no store rows (a load reads the inputs a second time for the store, after serving).

    Raises :class:`core.errors.InputError` (file, column, row) on any bad input; nothing is
    returned before the whole synapse table has been read and validated.
    """
    given = {NUCLEI: nuclei, SYNAPSES: synapses, NEURONS: neurons, CELL_TYPES: cell_types}
    opened = {t: open_source(s, t) for t, s in given.items() if s is not None}
    colmaps = resolve_mapping(mapping, opened)
    cells = load_cells(opened[NUCLEI], colmaps[NUCLEI], voxel_size)
    counts: dict[str, int] = {
        "cells": len(cells),
        "neuron_rows_unmatched": 0,
        "cell_type_rows_unmatched": 0,
    }
    labels: dict[str, np.ndarray] = {}
    for table in (NEURONS, CELL_TYPES):
        if table in opened:
            got, unmatched = load_annotation(opened[table], colmaps[table], table, cells)
            labels.update(got)
            counts[f"{table[:-1]}_rows_unmatched"] = unmatched
    index = RootIndex(cells.root_id)
    expected = estimate_rows(opened[SYNAPSES])
    acc = SynapseAccumulator(index, memory=memory, expected_rows=expected, spill_dir=spill_dir)
    acc.keep_edges = edges
    store_rows = StoreBuilder(memory=memory, expected_rows=expected, spill_dir=spill_dir)
    syn_name = opened[SYNAPSES].name
    id_col = source_column(colmaps[SYNAPSES], opened[SYNAPSES], "id")
    size_col = source_column(colmaps[SYNAPSES], opened[SYNAPSES], "size")
    acc.size_source = (syn_name, size_col) if size_col else None
    ids_seen = (SynapseIdCheck(memory=memory, expected_rows=expected, spill_dir=spill_dir)
                if id_col and edges else None)  # fmt: skip
    plan = plan_store(opened[SYNAPSES], colmaps[SYNAPSES],
                      set(_synapse_columns(opened[SYNAPSES], colmaps[SYNAPSES])))  # fmt: skip
    integral = True
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="root-lookup") as pool:
            acc.pool = pool
            for pre, post, ids, sizes, extra, whole in prefetch(
                _synapse_batches(opened[SYNAPSES], colmaps[SYNAPSES], batch_rows, plan)
            ):
                if ids_seen is not None:
                    _repeated_id(ids_seen.add(ids), syn_name, id_col)
                outcome, a, b = acc.add(pre, post, ids, sizes)
                integral = integral and whole
                if store:
                    _store_table(store_rows, pre, post, ids, sizes, extra, whole, outcome, a, b,
                                 cells.nucleus_id, plan)  # fmt: skip
                if on_rows is not None:
                    on_rows(len(pre))
            acc.pool = None
        if acc.counts["synapses_total"] == 0:
            raise InputError("no data rows", file=syn_name)
        if ids_seen is not None:
            _repeated_id(ids_seen.finish(), syn_name, id_col)
    except BaseException:
        acc.cleanup()
        store_rows.cleanup()
        if ids_seen is not None:
            ids_seen.cleanup()
        raise
    counts.update(acc.counts)
    has_positions = any(spec is not None for spec in plan.points.values())
    position_type = pa.int32() if integral else pa.float64()
    c = acc.counts
    store_meta = {
        "position_unit": "voxel",
        "position_type": str(position_type) if has_positions else None,
        "voxel_size_nm": [float(v) for v in voxel_size],
        "extra_columns": [name for name, _ in plan.extras],
        "bookkeeping_columns": [name for name, _ in plan.bookkeeping],
        "outcomes": {
            "used": c["synapses_used"],
            "autapse": c["dropped_autapse"],
            "root0": c["dropped_root0"],
            "multi_nucleus_root": c["dropped_multi_nucleus_root"],
            "partner_without_nucleus": c["dropped_partner_without_nucleus"],
        },
        "sources": {
            "supervoxels": plan.supervoxels,
            "positions": {p: list(v) if v else None for p, v in plan.points.items()},
        },
    }
    return AggregatedRelease(
        cells=cells,
        annotations=Annotations(**labels),
        out_synapses=acc.out_synapses,
        in_synapses=acc.in_synapses,
        counts=counts,
        multi_nucleus_roots=index.multi_nucleus_roots(cells.nucleus_id),
        accumulator=acc,
        store=store_rows,
        store_schema=spill_schema(position_type, plan.extra_fields()),
        store_meta=store_meta,
    )


def _repeated_id(found: tuple[int, int, int] | None, file: str, column: str | None) -> None:
    if found is not None:
        value, row, first = found
        raise InputError(
            f"duplicate synapse ID {value} (row {row} repeats row {first}; synapse IDs must be "
            "unique)",
            file=file,
            column=column,
            row=row,
        )


def build_release(
    nuclei: Source,
    synapses: Source,
    neurons: Source | None = None,
    cell_types: Source | None = None,
    **options: Any,
) -> ReleaseData:
    """:func:`aggregate_release` with every edge in memory (tests, small releases, live CAVE)."""
    return aggregate_release(nuclei, synapses, neurons, cell_types, **options).to_release_data()


@dataclass
class AggregatedRelease:
    """A validated release whose edges are grouped on demand, one partition at a time."""

    cells: Cells
    annotations: Annotations
    out_synapses: np.ndarray
    in_synapses: np.ndarray
    counts: dict[str, int]
    multi_nucleus_roots: dict[int, list[int]]
    accumulator: SynapseAccumulator
    store: StoreBuilder
    store_schema: pa.Schema  # as spilled: outcome as int8 codes (see iter_store)
    store_meta: dict[str, Any]

    @property
    def snapshot_store_schema(self) -> pa.Schema:
        return outcome_dictionary(self.store_schema.empty_table()).schema

    def iter_store(self) -> Iterator[pa.Table]:
        """The synapse store, sorted by (post_pt_root_id, id), one partition at a time."""
        return (outcome_dictionary(t) for t in self.store.iter_tables(self.store_schema))

    @property
    def has_size(self) -> bool:
        return bool(self.accumulator.has_size)

    def iter_edges(self) -> Iterator[Edges]:
        """Edge chunks in (pre, post) order; ``counts["edges"]`` is set when they are done."""
        total = 0
        try:
            for chunk in self.accumulator.iter_edges(self.cells.nucleus_id):
                total += len(chunk)
                yield chunk
        except Exception:  # an edge refused (sizes past int64): the store will not be written
            self.store.cleanup()
            raise
        self.counts["edges"] = total

    def to_release_data(self) -> ReleaseData:
        edges = self.accumulator.edges(self.cells.nucleus_id)
        self.counts["edges"] = len(edges)
        return ReleaseData(
            cells=self.cells,
            annotations=self.annotations,
            edges=edges,
            out_synapses=self.out_synapses,
            in_synapses=self.in_synapses,
            counts=self.counts,
            multi_nucleus_roots=self.multi_nucleus_roots,
            store=pa.concat_tables(
                [outcome_dictionary(self.store_schema.empty_table()), *self.iter_store()]
            ),  # fmt: skip
            store_meta=self.store_meta,
        )


def estimate_rows(opened: Opened) -> int:
    """Rows of a table from its metadata (Parquet, Arrow) or its size (CSV, ~40 bytes a row)."""
    try:
        if opened.kind == "frame" and opened.frame is not None:
            return len(opened.frame)
        if opened.kind == "parquet":
            return int(pq.ParquetFile(opened.path).metadata.num_rows)
        if opened.kind == "ipc":
            import pyarrow as pa
            import pyarrow.ipc as ipc

            reader = ipc.open_file(pa.memory_map(str(opened.path)))
            return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
        assert opened.path is not None
        size = opened.path.stat().st_size
        return size * (6 if opened.path.name.lower().endswith(".gz") else 1) // 40
    except (OSError, ValueError):
        return 0


# --------------------------------------------------------------------------- small tables


def _required(opened: Opened, colmap: Mapping[str, str], canonical: str) -> str:
    col = source_column(colmap, opened, canonical)
    if col is None:
        raise missing_column(opened, canonical, colmap)
    return col


def _duplicate(ids: np.ndarray, file: str, column: str, what: str) -> None:
    dup = pd.Series(ids).duplicated().to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        raise InputError(f"duplicate {what} {int(ids[i])}", file=file, column=column, row=i + 1)


def load_cells(
    opened: Opened, colmap: Mapping[str, str], voxel_size: Sequence[float] = DEFAULT_VOXEL_SIZE
) -> Cells:
    """Read the nuclei table: id, pt_root_id, pt_position (any encoding), optional volume."""
    id_col = _required(opened, colmap, "id")
    root_col = _required(opened, colmap, "pt_root_id")
    pos = [source_column(colmap, opened, c) for c in split_columns("pt_position")]
    pos_cols = (
        [c for c in pos if c is not None]
        if all(pos)
        else [_required(opened, colmap, "pt_position")]
    )
    vol_col = source_column(colmap, opened, "volume")
    frame = read_frame(
        opened,
        [id_col, root_col, *pos_cols, *([vol_col] if vol_col else [])],
        int_columns=[id_col, root_col],
    )
    name = opened.name
    nucleus_id = to_ids(frame[id_col], file=name, column=id_col)
    root_id = to_ids(frame[root_col], file=name, column=root_col)
    _duplicate(nucleus_id, name, id_col, "nucleus ID")
    renamed = frame.rename(
        columns={
            c: k
            for c, k in zip(
                pos_cols,
                split_columns("pt_position") if len(pos_cols) == 3 else ["pt_position"],
                strict=True,
            )
        }
    )
    xyz = parse_positions(renamed, "pt_position", voxel_size=voxel_size, file=name)
    if vol_col:
        volume = pd.to_numeric(frame[vol_col], errors="coerce").to_numpy(
            np.float64, na_value=np.nan
        )
        checks = (
            (frame[vol_col].notna().to_numpy() & np.isnan(volume), "volume is not a number"),
            (np.isinf(volume), "infinite volume"),
            (volume < 0, "negative volume"),
        )
        for bad, what in checks:

            def say(i: int, what: str = what) -> str:
                return f"{what}: {show(frame[vol_col].iloc[i])} (um^3; leave it empty when unknown)"

            refuse_first(bad, name, vol_col, say)
    else:
        volume = np.full(len(nucleus_id), np.nan)
    order = np.argsort(nucleus_id, kind="stable")
    return Cells(
        nucleus_id[order],
        root_id[order],
        xyz[order, 0].copy(),
        xyz[order, 1].copy(),
        xyz[order, 2].copy(),
        volume[order],
    )


def load_annotation(
    opened: Opened, colmap: Mapping[str, str], table: str, cells: Cells
) -> tuple[dict[str, np.ndarray], int]:
    """Read a neuron or cell-type table; return per-cell label arrays and unmatched row count."""
    key_col = source_column(colmap, opened, "target_id") or _required(opened, colmap, "id")
    type_col = _required(opened, colmap, "cell_type")
    cls_col = source_column(colmap, opened, "classification_system")
    cols = [key_col, type_col, *([cls_col] if cls_col else [])]
    frame = read_frame(opened, cols, int_columns=[key_col], str_columns=cols[1:])
    name = opened.name
    keys = to_ids(frame[key_col], file=name, column=key_col)
    _duplicate(keys, name, key_col, "nucleus")
    pos = np.searchsorted(cells.nucleus_id, keys).clip(0, max(len(cells) - 1, 0))
    matched = (cells.nucleus_id[pos] == keys) if len(cells) else np.zeros(len(keys), bool)
    target = pos[matched]
    types = frame[type_col].to_numpy(dtype=object)
    out: dict[str, np.ndarray] = {}
    if table == NEURONS:
        ok = np.isin(types, np.array(["neuron", "not-neuron"], dtype=object))
        if not ok.all():
            i = int(np.argmax(~ok))
            raise InputError(
                f"cell_type must be 'neuron' or 'not-neuron', got {show(types[i])}",
                file=name,
                column=type_col,
                row=i + 1,
            )
        out["is_neuron"] = _aligned(len(cells), target, types[matched] == "neuron")
    else:
        missing = pd.isna(frame[type_col]).to_numpy()
        if missing.any():
            i = int(np.argmax(missing))
            raise InputError("missing cell_type", file=name, column=type_col, row=i + 1)
        types = _labels(frame[type_col], name, type_col)
        out["cell_type"] = _aligned(len(cells), target, types[matched])
        if cls_col:
            cls = _labels(frame[cls_col], name, cls_col)[matched]
            out["classification_system"] = _aligned(len(cells), target, cls)
    return out, int((~matched).sum())


#: the longest annotation label accepted (CAVE's are a few dozen characters; Neo4j indexes
#: ``cell_type_vV`` and refuses index keys over 8 KB)
MAX_LABEL_CHARS = 1000


def _labels(series: pd.Series, file: str, column: str) -> np.ndarray:
    """An annotation column as an object array of str (None where missing), refused unless
    every value is text of at most MAX_LABEL_CHARS characters. Memory follows the values
    (no fixed-width numpy strings: one long label times every row)."""
    values = series.to_numpy(dtype=object)
    missing = pd.isna(series).to_numpy()
    text = np.fromiter((isinstance(v, str) for v in values), bool, len(values))
    refuse_first(~text & ~missing, file, column, lambda i: (
        f"labels must be text, got a column of {series.dtype} ({type(values[i]).__name__} "
        f"{show(values[i])}); store them as strings"))  # fmt: skip
    lengths = np.fromiter((len(v) if t else 0 for v, t in zip(values, text, strict=True)),
                          np.int64, len(values))  # fmt: skip
    refuse_first(lengths > MAX_LABEL_CHARS, file, column, lambda i: (
        f"label of {lengths[i]:,} characters (at most {MAX_LABEL_CHARS:,}): {show(values[i])}"))  # fmt: skip
    values[missing] = None
    return values


def refuse_first(bad: np.ndarray, file: str, column: str, message: Callable[[int], str]) -> None:
    """InputError at the first row where ``bad`` holds (``message(i)``, i 0-based), if any."""
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(message(i), file=file, column=column, row=i + 1)


def _aligned(n: int, where: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.full(n, None, dtype=object)
    out[where] = values.astype(object)
    return out


# --------------------------------------------------------------------------- synapses


Batch = tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, dict[str, Any], bool
]  # pre, post, ids, sizes, the store's other columns, positions integral


def _synapse_columns(opened: Opened, colmap: Mapping[str, str]) -> list[str]:
    """Source columns of pre root, post root, id (optional) and size (optional)."""
    pre_col = _required(opened, colmap, "pre_pt_root_id")
    post_col = _required(opened, colmap, "post_pt_root_id")
    id_col = source_column(colmap, opened, "id")
    size_col = source_column(colmap, opened, "size")
    return [pre_col, post_col, *([id_col] if id_col else []), *([size_col] if size_col else [])]


def _synapse_batches(
    opened: Opened, colmap: Mapping[str, str], batch_rows: int, plan: StorePlan
) -> Iterator[Batch]:
    pre_col = _required(opened, colmap, "pre_pt_root_id")
    post_col = _required(opened, colmap, "post_pt_root_id")
    id_col = source_column(colmap, opened, "id")
    size_col = source_column(colmap, opened, "size")
    ints = _synapse_columns(opened, colmap)
    cols = ints + [c for c in plan.columns if c not in ints]
    ints += plan.int_columns
    name = opened.name
    for offset, b in iter_batches(opened, cols, int_columns=ints, batch_rows=batch_rows,
                                  column_types=plan.column_types):  # fmt: skip
        pre = to_ids(b[pre_col], file=name, column=pre_col, row_offset=offset)
        post = to_ids(b[post_col], file=name, column=post_col, row_offset=offset)
        ids = (
            to_ids(b[id_col], file=name, column=id_col, row_offset=offset)
            if id_col
            else np.arange(offset, offset + len(pre), dtype=np.int64)
        )
        sizes = (
            to_sizes(b[size_col], file=name, column=size_col, row_offset=offset)
            if size_col
            else None
        )
        extra, integral = store_batch(plan, b, len(pre), file=name, offset=offset)
        yield pre, post, ids, sizes, extra, integral


_OUTCOME_DICT = pa.array(list(OUTCOMES), pa.string())
_WORST_OUTCOME = np.array([2, 3, 4], dtype=np.int8)  # ROOT0, MULTI, NONE -> outcome code


def _store_table(
    store: StoreBuilder,
    pre: np.ndarray,
    post: np.ndarray,
    ids: np.ndarray,
    sizes: np.ndarray | None,
    extra: dict[str, Any],
    integral: bool,
    outcome: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    nucleus_id: np.ndarray,
    plan: StorePlan,
) -> None:
    """One batch of store rows, grouped by the store's post-root partitions, into ``store``
    (columns in store order; ``outcome`` as int8 codes until the store is written)."""
    n = len(pre)
    order, offsets = store.partition(post, ids, _ROW_BYTES)

    def take(x: np.ndarray) -> np.ndarray:
        return x if order is None else x[order]

    def nullable(values: np.ndarray, null: np.ndarray | None) -> pa.Array:
        return pa.array(take(values), mask=None if null is None else take(null))

    cols: dict[str, Any] = {
        "id": pa.array(take(ids)),
        "pre_pt_root_id": pa.array(take(pre)),
        "post_pt_root_id": pa.array(take(post)),
    }
    for name in ("pre_pt_supervoxel_id", "post_pt_supervoxel_id"):
        sv = extra[name]
        cols[name] = pa.nulls(n, pa.int64()) if sv is None else nullable(*sv)
    cols["size"] = pa.array(take(sizes)) if sizes is not None else pa.nulls(n, pa.int64())
    for p in POINTS:
        for k, arr in zip("xyz", position_arrays(extra[p], n, integral, order), strict=True):
            cols[f"{p}_{k}"] = arr
    for name, idx in (("pre_nucleus_id", a), ("post_nucleus_id", b)):
        idx = take(idx)
        values = nucleus_id[np.maximum(idx, 0)] if len(nucleus_id) else np.zeros(n, np.int64)
        cols[name] = pa.array(values, mask=idx < 0)
    cols["outcome"] = pa.array(take(outcome), pa.int8())
    taken = None if order is None else pa.array(order)
    for name, _ in plan.extras + plan.bookkeeping:
        cols[name] = extra[name] if taken is None else extra[name].take(taken)
    store.add(pa.table(cols), offsets)


_ROW_BYTES = 110.0  # a store row while buffered (plans the partitions)


def outcome_dictionary(table: pa.Table) -> pa.Table:
    """The store's int8 outcome codes as the dictionary column of the snapshot."""
    i = table.schema.get_field_index("outcome")
    codes = table.column(i).combine_chunks()
    return table.set_column(i, pa.field("outcome", OUTCOME_TYPE),
                            pa.DictionaryArray.from_arrays(codes, _OUTCOME_DICT))  # fmt: skip


def prefetch(it: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Run ``it`` in a background thread, ``depth`` items ahead (I/O and decode overlap compute)."""
    q: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in it:
                if stop.is_set():
                    return
                q.put(("item", item))
            q.put(("done", None))
        except BaseException as e:  # re-raised in the consumer
            q.put(("error", e))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "done":
                return
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                q.get(timeout=0.05)


class RootIndex:
    """Exact vectorised lookup: root ID -> cell index (>= 0), NONE, MULTI or ROOT0 (int32).

    An open-address table (multiplicative hash, one slot per bucket) holds each root ID and its
    value; root 0 is a key like any other. Buckets holding two or more roots are marked and their
    queries fall back to a binary search in the sorted roots (a few percent of queries).
    """

    _EMPTY, _SHARED = -1, -2  # slot keys that no root (validated >= 0) can equal

    def __init__(self, roots: np.ndarray) -> None:
        self.roots = roots
        nz = roots != 0
        uniq, first, counts = np.unique(roots[nz], return_index=True, return_counts=True)
        vals = np.where(counts == 1, np.flatnonzero(nz)[first], MULTI)
        self.multi = uniq[counts > 1]
        pos0 = int(np.searchsorted(uniq, 0))  # root 0 -> ROOT0 (uniq holds no 0)
        self.keys = np.insert(uniq, pos0, 0).astype(np.int64)
        self.vals = np.insert(vals, pos0, ROOT0).astype(np.int32)
        bits = int(np.clip(np.ceil(np.log2(len(self.keys))) + 3, 10, 24))
        self.shift = np.uint64(64 - bits)
        self.slot_key = np.full(1 << bits, self._EMPTY, dtype=np.int64)
        self.slot_val = np.full(1 << bits, NONE, dtype=np.int32)
        slots = self._slots(self.keys)
        self.slot_key[slots] = self.keys
        self.slot_val[slots] = self.vals
        self.slot_key[np.bincount(slots, minlength=1 << bits) > 1] = self._SHARED

    def _slots(self, q: np.ndarray) -> np.ndarray:
        h = q.view(np.uint64) * _MULT
        h >>= self.shift
        return h.view(np.int64)

    def lookup(self, q: np.ndarray) -> np.ndarray:
        slots = self._slots(q)
        key = np.take(self.slot_key, slots)
        out = np.where(key == q, np.take(self.slot_val, slots), np.int32(NONE))
        shared = np.flatnonzero(key == self._SHARED)
        if len(shared):
            qs = q[shared]
            pos = np.searchsorted(self.keys, qs).clip(0, len(self.keys) - 1)
            found = self.keys[pos] == qs
            out[shared[found]] = self.vals[pos[found]]
        return out

    def multi_nucleus_roots(self, nucleus_id: np.ndarray) -> dict[int, list[int]]:
        hit = np.isin(self.roots, self.multi)
        roots, nuclei = self.roots[hit], nucleus_id[hit]
        order = np.lexsort((nuclei, roots))
        out: dict[int, list[int]] = {}
        for root, nucleus in zip(roots[order].tolist(), nuclei[order].tolist(), strict=True):
            out.setdefault(root, []).append(nucleus)
        return out


class SynapseAccumulator:
    """Classifies synapse batches (rules in the module docstring) and keeps the used ones,
    range-partitioned by presynaptic cell, spilling partitions to disk when the buffered rows
    outgrow ``memory`` bytes. :meth:`iter_edges` then aggregates one partition at a time, so
    peak memory is set by ``memory`` and not by the input; edges come out sorted by (pre, post).
    """

    #: bytes per used synapse in a partition while it is sorted and grouped
    SORT_BYTES = 72

    def __init__(
        self,
        index: RootIndex,
        pool: Executor | None = None,
        *,
        memory: int = DEFAULT_MEMORY,
        expected_rows: int = 0,
        spill_dir: Path | None = None,
    ) -> None:
        self.index = index
        self.pool = pool
        self.n = len(index.roots)
        self.memory = memory
        self.out_synapses = np.zeros(self.n, dtype=np.int64)
        self.in_synapses = np.zeros(self.n, dtype=np.int64)
        self.counts = dict.fromkeys(
            (
                "synapses_total",
                "synapses_used",
                "dropped_autapse",
                "dropped_root0",
                "dropped_multi_nucleus_root",
                "dropped_partner_without_nucleus",
            ),
            0,
        )
        self.has_size: bool | None = None
        self.size_source: tuple[str, str] | None = None  # (file, column) for messages
        # partitions: each must sort within half the memory budget
        need = expected_rows * self.SORT_BYTES
        self.partitions = int(min(max(1, -(-need // max(memory // 2, 1))), 1024))
        self._parts: list[list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]] = [
            [] for _ in range(self.partitions)
        ]
        self._buffered = 0
        self._spill_root = spill_dir
        self._spill: Path | None = None
        self.spilled_bytes = 0
        self.keep_edges = True  # False: classify and count only (a store-only pass)

    def add(
        self, pre: np.ndarray, post: np.ndarray, ids: np.ndarray, sizes: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Classify and keep one batch; returns each row's outcome code (index into
        snapshot.layout.OUTCOMES, int8) and the pre and post roots' lookups (cell index >= 0
        when the root maps to one nucleus)."""
        self.has_size = sizes is not None
        if self.pool is None:
            a, b = self.index.lookup(pre), self.index.lookup(post)
        else:  # numpy releases the GIL: the two lookups run on two cores
            pending = self.pool.submit(self.index.lookup, pre)
            b = self.index.lookup(post)
            a = pending.result()
        a0, b0 = a, b
        aut = pre == post
        n_aut = int(np.count_nonzero(aut))
        if n_aut:  # autapses leave every count below
            a, b = a.copy(), b.copy()
            a[aut] = ROOT0
            b[aut] = ROOT0
        n = self.n
        self.out_synapses += np.bincount(a + 3, minlength=n + 3)[3:]
        self.in_synapses += np.bincount(b + 3, minlength=n + 3)[3:]
        worst = np.minimum(a, b)  # ROOT0 < MULTI < NONE < cell: the order of the rules
        outcome = np.where(worst >= 0, np.int8(0), _WORST_OUTCOME[np.clip(worst + 3, 0, 2)])
        if n_aut:
            outcome[aut] = 1
        used = np.flatnonzero(worst >= 0)
        kinds = np.bincount(worst + 3, minlength=3)[:3]
        c = self.counts
        c["synapses_total"] += len(pre)
        c["dropped_autapse"] += n_aut
        c["dropped_root0"] += int(kinds[0]) - n_aut
        c["dropped_multi_nucleus_root"] += int(kinds[1])
        c["dropped_partner_without_nucleus"] += int(kinds[2])
        c["synapses_used"] += len(used)
        if not self.keep_edges:
            return outcome, a0, b0
        ua = a[used].astype(np.int64)
        keys = ua * n + b[used]
        uid = ids[used]
        usz = sizes[used] if sizes is not None else None
        if self.partitions == 1:
            self._keep(0, keys, uid, usz)
        else:
            part = ua * self.partitions // max(n, 1)
            order = np.argsort(part, kind="stable")
            bounds = np.searchsorted(part[order], np.arange(self.partitions + 1))
            for p in np.flatnonzero(np.diff(bounds)):
                sel = order[bounds[p] : bounds[p + 1]]
                self._keep(int(p), keys[sel], uid[sel], None if usz is None else usz[sel])
        if self._buffered > self.memory // 4:
            self._flush()
        return outcome, a0, b0

    def _keep(self, p: int, keys: np.ndarray, ids: np.ndarray, sizes: np.ndarray | None) -> None:
        self._parts[p].append((keys, ids, sizes))
        self._buffered += keys.nbytes * (3 if sizes is not None else 2)

    def _spill_path(self, p: int, what: str) -> Path:
        if self._spill is None:
            self._spill = Path(tempfile.mkdtemp(prefix="cgraph-spill-", dir=self._spill_root))
        return self._spill / f"part{p:04d}.{what}"

    def _flush(self) -> None:
        """Append every buffered partition to its spill files and forget the buffers."""
        for p, chunks in enumerate(self._parts):
            if not chunks:
                continue
            for i, what in enumerate(("keys", "ids", "sizes")):
                if what == "sizes" and not self.has_size:
                    continue
                with self._spill_path(p, what).open("ab") as fh:
                    for chunk in chunks:
                        arr = chunk[i]
                        assert arr is not None
                        np.ascontiguousarray(arr, dtype=np.int64).tofile(fh)
                        self.spilled_bytes += arr.nbytes
            self._parts[p] = []
        self._buffered = 0

    def _partition(self, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        empty = np.zeros(0, dtype=np.int64)
        chunks = self._parts[p]
        self._parts[p] = []
        keys = [c[0] for c in chunks]
        ids = [c[1] for c in chunks]
        sizes = [c[2] for c in chunks if c[2] is not None]
        if self._spill is not None and self._spill_path(p, "keys").exists():
            keys.insert(0, np.fromfile(self._spill_path(p, "keys"), dtype=np.int64))
            ids.insert(0, np.fromfile(self._spill_path(p, "ids"), dtype=np.int64))
            if self.has_size:
                sizes.insert(0, np.fromfile(self._spill_path(p, "sizes"), dtype=np.int64))
            for what in ("keys", "ids", "sizes"):
                self._spill_path(p, what).unlink(missing_ok=True)
        k = np.concatenate(keys) if keys else empty
        i = np.concatenate(ids) if ids else empty
        sz = (np.concatenate(sizes) if sizes else empty) if self.has_size else None
        return k, i, sz

    def iter_edges(self, nucleus_id: np.ndarray) -> Iterator[Edges]:
        """The edges, one partition at a time, in (pre, post) order (see :class:`Edges`)."""
        try:
            for p in range(self.partitions):
                keys, ids, sizes = self._partition(p)
                if len(keys):
                    yield _group(keys, ids, sizes, nucleus_id, self.n, self.size_source)
        finally:
            self.cleanup()

    def edges(self, nucleus_id: np.ndarray) -> Edges:
        """All edges at once (in-memory use: tests, live CAVE)."""
        chunks = list(self.iter_edges(nucleus_id))
        if not chunks:
            return _group(*(np.zeros(0, np.int64),) * 2,
                          np.zeros(0, np.int64) if self.has_size else None, nucleus_id, self.n)  # fmt: skip
        return chunks[0] if len(chunks) == 1 else Edges.concat(chunks)

    def cleanup(self) -> None:
        if self._spill is not None:
            shutil.rmtree(self._spill, ignore_errors=True)
            self._spill = None


_I64 = np.iinfo(np.int64).max


def _check_sums(
    sizes: np.ndarray,
    offsets: np.ndarray,
    pre: np.ndarray,
    post: np.ndarray,
    source: tuple[str, str] | None,
) -> None:
    """Raise when an edge's sizes (each >= 0) sum past int64. Cheap bound first (largest size
    times most synapses of an edge: true for any real data); else the sums exactly, as 32-bit
    halves (no overflow while an edge has fewer than 2**31 synapses)."""
    if not len(sizes):
        return
    most = int(np.diff(offsets).max())
    top = int(sizes.max())
    if top == 0 or most <= _I64 // top:
        return
    starts = offsets[:-1]
    hi = np.add.reduceat(sizes >> 32, starts)
    lo = np.add.reduceat(sizes & 0xFFFFFFFF, starts)
    over = (hi + (lo >> 32)) >= (1 << 31)  # the sum is (hi + carry) * 2**32 + low bits
    if over.any():
        i = int(np.argmax(over))
        total = sum(int(v) for v in sizes[offsets[i] : offsets[i + 1]])
        file, column = source if source is not None else (None, None)
        raise InputError(
            f"the sizes of the {int(offsets[i + 1] - offsets[i]):,} synapses from nucleus "
            f"{int(pre[i])} to nucleus {int(post[i])} sum to {total:,}, more than int64 holds "
            f"({_I64:,})",
            file=file,
            column=column,
        )


def _group(
    keys: np.ndarray,
    ids: np.ndarray,
    sizes: np.ndarray | None,
    nucleus_id: np.ndarray,
    n: int,
    size_source: tuple[str, str] | None = None,
) -> Edges:
    """Group used synapses by (pre, post) cell index key; synapses of an edge in id order.
    An edge whose sizes sum past int64 raises InputError (``size_source``: file, column)."""
    empty = np.zeros(0, dtype=np.int64)
    m = len(keys)
    in_id_order = m < 2 or bool((ids[1:] > ids[:-1]).all())  # the usual case
    if in_id_order and m and int(keys.max()) < (2**63 - 1) // m:
        # unique composite key * m + position: a plain (SIMD) sort of values, 2-3x faster
        # than argsort; the position comes back as the remainder
        composite = np.sort(keys * m + np.arange(m, dtype=np.int64))
        keys, order = np.divmod(composite, m)
        del composite
    else:
        order = np.lexsort((ids, keys))
        keys = keys[order]
    ids = ids[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else empty
    offsets = np.r_[starts, len(keys)].astype(np.int64)
    pre = nucleus_id[keys[starts] // max(n, 1)]
    post = nucleus_id[keys[starts] % max(n, 1)]
    size = None
    if sizes is not None:
        sizes = sizes[order].astype(np.int64)
        size = np.add.reduceat(sizes, starts) if len(starts) else empty
        _check_sums(sizes, offsets, pre, post, size_source)
    return Edges(
        pre=pre,
        post=post,
        synapses=np.diff(offsets),
        size=size,
        offsets=offsets,
        synapse_ids=ids,
        sizes=sizes,
    )
