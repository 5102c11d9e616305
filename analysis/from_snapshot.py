"""A :class:`ReleaseGraph` straight from a release snapshot's Parquet files (no database).

Edges in a snapshot are sorted by (pre, post) nucleus ID and cells by nucleus ID, so the order
the graph needs is the file order: no sort, one linear check. Only ``pre`` and ``post`` are read
up front, in slices of row groups that are mapped to cell indices at once (so the file's columns
are never all in memory next to the index arrays); ``synapses`` and ``size`` are read on first
use (a motif with edge constraints, a ``min_synapses`` filter) from a memory map of the file
opened now, so a later replacement of the snapshot (renamed away, see snapshot.layout) cannot
change what this graph reads. Nucleus IDs become cell indices through a dense lookup table
when they are small (CAVE nucleus IDs have 6-7 digits), else by binary search.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.release_graph import FloatArray, IntArray, ReleaseGraph
from snapshot.layout import CELLS, EDGES, Snapshot

#: largest nucleus ID for which a dense id -> index table is used (int64, 8 bytes an entry)
DENSE_MAX_ID = 1 << 26
#: rows decoded per slice (whole row groups; bounds the Parquet buffers held at once)
SLICE_ROWS = 1 << 23


class CellIndex:
    """Maps nucleus IDs to positions in the sorted unique ``nodes``; unknown IDs raise."""

    def __init__(self, nodes: IntArray) -> None:
        self.nodes = nodes
        self.dense = bool(nodes.size and int(nodes[0]) >= 0 and int(nodes[-1]) < DENSE_MAX_ID)
        if self.dense:
            self.table = np.full(int(nodes[-1]) + 1, -1, dtype=np.int64)
            self.table[nodes] = np.arange(nodes.size, dtype=np.int64)

    def into(self, ids: IntArray, out: IntArray) -> None:
        """Write the positions of ``ids`` into ``out`` (same length)."""
        if not ids.size:
            return
        if self.dense:
            if int(ids.min()) < 0 or int(ids.max()) >= self.table.size:
                raise ValueError("an edge end is not among the cells of the snapshot")
            np.take(self.table, ids, out=out, mode="clip")  # in range: checked above
            if int(out.min()) < 0:
                raise ValueError("an edge end is not among the cells of the snapshot")
            return
        pos = np.searchsorted(self.nodes, ids)
        pos[pos == self.nodes.size] = 0
        if not np.array_equal(self.nodes[pos], ids):
            raise ValueError("an edge end is not among the cells of the snapshot")
        out[:] = pos


def index_of(nodes: IntArray, ids: IntArray) -> IntArray:
    """Positions of ``ids`` (all present) in the sorted unique ``nodes``."""
    out = np.empty(ids.size, dtype=np.int64)
    CellIndex(nodes).into(np.asarray(ids, dtype=np.int64), out)
    return out


def _slices(pf: pq.ParquetFile, columns: list[str]) -> Iterator[tuple[int, pa.Table]]:
    """(first row, table) for runs of whole row groups of about SLICE_ROWS rows."""
    meta = pf.metadata
    row, group = 0, 0
    while group < meta.num_row_groups:
        first, rows = group, 0
        while group < meta.num_row_groups and (rows == 0 or rows < SLICE_ROWS):
            rows += meta.row_group(group).num_rows
            group += 1
        yield row, pf.read_row_groups(list(range(first, group)), columns=columns, use_threads=True)
        row += rows


def _fill(out: np.ndarray, lo: int, column: pa.ChunkedArray) -> None:
    for chunk in column.chunks:
        a = chunk.to_numpy(zero_copy_only=False)
        out[lo : lo + a.size] = a
        lo += a.size


def read_edge_columns(source: pa.NativeFile | str, m: int) -> tuple[IntArray, FloatArray]:
    """``synapses`` (int64) and ``size`` (float64, NaN for null) of every edge, in file order."""
    pf = pq.ParquetFile(source)
    if pf.metadata.num_rows != m:
        raise ValueError(f"edges file has {pf.metadata.num_rows} rows, the graph {m}")
    syn = np.empty(m, dtype=np.int64)
    size = np.empty(m, dtype=np.float64)
    for lo, t in _slices(pf, ["synapses", "size"]):
        _fill(syn, lo, t["synapses"])
        _fill(size, lo, t["size"])
    return syn, size


#: snapshot cell columns that are motif node attributes under another name
ATTRIBUTE_OF_COLUMN = {"x": "position_x", "y": "position_y", "z": "position_z"}
_FIXED = ("nucleus_id", "cell_type", "is_neuron", "classification_system")


def column_values(column: pa.ChunkedArray) -> np.ndarray:
    """A cell column as numpy: typed when it has no nulls (or is float: NaN), else an object
    array with None (64-bit IDs keep every digit)."""
    if column.null_count == 0 or pa.types.is_floating(column.type):
        return np.asarray(column.to_numpy(zero_copy_only=False))
    return np.asarray(column.to_pylist(), dtype=object)


def cell_attributes(cells: pa.Table) -> dict[str, np.ndarray]:
    """Every further cell column of a snapshot (root_id, volume, x/y/z as position_x/y/z, the
    synapse totals, annotation columns), by motif attribute name."""
    return {
        ATTRIBUTE_OF_COLUMN.get(name, name): column_values(cells[name])
        for name in cells.column_names
        if name not in _FIXED
    }


def release_graph_from_snapshot(
    snap: Snapshot, *, lazy_columns: bool = True, seconds: dict[str, float] | None = None
) -> ReleaseGraph:
    """The release graph of ``snap``; with ``lazy_columns`` the edge columns synapses and size
    are read when first used, else now. ``seconds`` (if given) gets the time of each step:
    cells, edges (read pre/post and map them to cell indices), columns (eager only), build
    (the sortedness check)."""
    clock = [time.perf_counter()]

    def lap(step: str) -> None:
        now = time.perf_counter()
        if seconds is not None:
            seconds[step] = now - clock[0]
        clock[0] = now

    cells = pq.read_table(snap.file(CELLS))
    nodes = np.ascontiguousarray(cells["nucleus_id"].to_numpy(), dtype=np.int64)
    index = CellIndex(nodes)
    lap("cells")
    source = pa.memory_map(str(snap.file(EDGES)))
    pf = pq.ParquetFile(source)
    m = pf.metadata.num_rows
    src = np.empty(m, dtype=np.int64)
    dst = np.empty(m, dtype=np.int64)
    for lo, t in _slices(pf, ["pre", "post"]):
        for name, out in (("pre", src), ("post", dst)):
            at = lo
            for chunk in t[name].chunks:
                ids = chunk.to_numpy()
                index.into(ids, out[at : at + ids.size])
                at += ids.size
    del pf
    lap("edges")

    lock = threading.Lock()

    def load() -> tuple[IntArray, FloatArray]:
        with lock:
            columns = read_edge_columns(source, m)
            source.close()  # read once: the graph keeps the arrays
            return columns

    def attr(name: str) -> np.ndarray:
        return cells[name].to_numpy(zero_copy_only=False)

    extra = cell_attributes(cells)

    if not lazy_columns:
        syn, size = load()
        lap("columns")
        g = ReleaseGraph.build(
            nodes, src, dst, synapses=syn, size=size, cell_type=attr("cell_type"),
            is_neuron=attr("is_neuron"), classification_system=attr("classification_system"),
            attributes=extra,
        )  # fmt: skip
    else:
        g = ReleaseGraph.build(
            nodes, src, dst, load_columns=load, cell_type=attr("cell_type"),
            is_neuron=attr("is_neuron"), classification_system=attr("classification_system"),
            attributes=extra,
        )  # fmt: skip
    lap("build")
    return g
