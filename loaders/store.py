"""The synapse store of a release, built with bounded memory (layout: snapshot/layout.py).

Every classified synapse batch is range-partitioned by ``post_pt_root_id`` (split points: the
quantiles of the first batch), buffered, and spilled as zstd-compressed Arrow IPC files once the
buffers outgrow their share of the memory budget. :meth:`StoreBuilder.iter_tables` then sorts one
partition at a time by ``(post_pt_root_id, id)`` and yields it, so the store streams to Parquet
in order while at most two partitions are in memory. A partition that came out larger than
planned (a skewed first batch, an input sorted by post root) is split again by its own quantiles
before it is sorted.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

#: share of the memory budget: buffered rows before a spill (one more share may be in flight
#: to disk), and one partition while sorted (two are in memory while the store is written:
#: one sorted in a thread while the other is encoded), measured at the v117 shape
BUFFER_SHARE = 10
PARTITION_SHARE = 16
MAX_PARTITIONS = 4096
_IPC = ipc.IpcWriteOptions(compression="zstd")  # measured: faster than lz4 here, half the bytes


class StoreBuilder:
    """Collects the store's rows; see the module docstring."""

    def __init__(
        self, *, memory: int, expected_rows: int = 0, spill_dir: Path | None = None
    ) -> None:
        self.memory = memory
        self.expected_rows = expected_rows
        self.part_bytes = max(memory // PARTITION_SHARE, 1 << 20)
        self.bounds: np.ndarray | None = None  # post roots splitting the partitions
        self._parts: list[list[pa.Table]] = []
        self._buffered = 0
        self._spill_root = spill_dir
        self._spill: Path | None = None
        self._flushes = 0
        self._pending: Future[None] | None = None  # the spill being written, in a thread
        self._pool: ThreadPoolExecutor | None = None
        self.spilled_bytes = 0
        self.rows = 0
        self.ids_ascending = True
        self._last_id: int | None = None

    # ------------------------------------------------------------------ read phase

    def _plan(self, post: np.ndarray, row_bytes: float) -> None:
        need = max(self.expected_rows, len(post)) * row_bytes
        n = int(min(max(1, -(-int(need) // self.part_bytes)), MAX_PARTITIONS))
        sample = np.sort(post)
        self.bounds = np.unique(sample[(len(sample) * np.arange(1, n)) // n]) if n > 1 else \
            np.zeros(0, np.int64)  # fmt: skip
        self._parts = [[] for _ in range(len(self.bounds) + 1)]

    def partition(
        self, post: np.ndarray, ids: np.ndarray, row_bytes: float
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """The order that groups a batch by partition (None: already grouped) and the offsets
        of the partitions in it (len = partitions + 1). Plans the partitions on the first call
        (``row_bytes``: the batch's bytes per row); keeps the input order within a partition."""
        n = len(post)
        if self.ids_ascending and n:
            ok = n < 2 or bool((ids[1:] > ids[:-1]).all())
            ok = ok and (self._last_id is None or int(ids[0]) > self._last_id)
            self.ids_ascending = ok
            self._last_id = int(ids[-1])
        if self.bounds is None:
            self._plan(post, row_bytes)
        assert self.bounds is not None
        parts = len(self.bounds) + 1
        if parts == 1:
            return None, np.array([0, n], np.int64)
        part = np.searchsorted(self.bounds, post, "right").astype(np.int64)
        key = part * n + np.arange(n, dtype=np.int64)  # unique: a plain (SIMD) sort
        key.sort()
        part_sorted = key // n
        order = key - part_sorted * n
        return order, np.searchsorted(part_sorted, np.arange(parts + 1))

    def add(self, table: pa.Table, offsets: np.ndarray) -> None:
        """One batch of store rows grouped by partition (:meth:`partition`)."""
        self.rows += table.num_rows
        for p in np.flatnonzero(np.diff(offsets)):
            self._keep(int(p), table.slice(int(offsets[p]), int(offsets[p + 1] - offsets[p])))
        if self._buffered > self.memory // BUFFER_SHARE:
            self._flush()

    def _keep(self, p: int, table: pa.Table) -> None:
        self._parts[p].append(table)
        self._buffered += table.nbytes

    def _dir(self) -> Path:
        if self._spill is None:
            self._spill = Path(tempfile.mkdtemp(prefix="cgraph-store-", dir=self._spill_root))
        return self._spill

    def _write(self, path: Path, tables: list[pa.Table]) -> None:
        with ipc.new_file(path, tables[0].schema, options=_IPC) as w:
            for t in tables:
                w.write_table(t)
        self.spilled_bytes += path.stat().st_size

    def _flush(self) -> None:
        """Each buffered partition to a new spill file (schemas may differ between flushes),
        written in a thread (Arrow compresses without the GIL) while the next rows come in;
        at most one flush is in flight."""
        d = self._dir()
        jobs = [(d / f"p{p:05d}.{self._flushes:06d}.arrow", tables)
                for p, tables in enumerate(self._parts) if tables]  # fmt: skip
        self._parts = [[] for _ in self._parts]
        self._flushes += 1
        self._buffered = 0
        self._wait()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-spill")
        self._pending = self._pool.submit(self._write_all, jobs)

    def _write_all(self, jobs: list[tuple[Path, list[pa.Table]]]) -> None:
        for path, tables in jobs:
            self._write(path, tables)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    # ------------------------------------------------------------------ write phase

    def _files(self, p: int) -> list[Path]:
        self._wait()
        if self._spill is None:
            return []
        return sorted(self._spill.glob(f"p{p:05d}.*.arrow"))

    def _load(self, p: int, schema: pa.Schema) -> pa.Table:
        tables = [_read(f, schema) for f in self._files(p)]
        tables += [t.cast(schema) for t in self._parts[p]]
        self._parts[p] = []
        for f in self._files(p):
            f.unlink()
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def _oversized(self, p: int) -> bool:
        """Over twice its planned size (a skewed first batch, an input sorted by post root)."""
        files = self._files(p)
        size = sum(f.stat().st_size for f in files) * 2  # zstd on Arrow: ~1/2
        size += sum(t.nbytes for t in self._parts[p])
        return bool(files) and size > 2 * self.part_bytes

    def _split(self, p: int, schema: pa.Schema) -> Iterator[pa.Table] | None:
        """An oversized partition split by its own post-root quantiles into sub-partitions
        read back one at a time (None when there is nothing to split by: one post root)."""
        files = self._files(p)
        sample = np.concatenate(
            [_read(f, schema).column("post_pt_root_id").to_numpy()[::16] for f in files]
            + [t.column("post_pt_root_id").to_numpy()[::16] for t in self._parts[p]]
        )
        sample.sort()
        size = sum(f.stat().st_size for f in files) * 2 + sum(t.nbytes for t in self._parts[p])
        n = int(min(-(-size // self.part_bytes), MAX_PARTITIONS))
        bounds = np.unique(sample[(len(sample) * np.arange(1, n)) // n])
        if len(bounds) == 0:
            return None
        sub = StoreBuilder(memory=self.memory, spill_dir=self._dir())
        sub.bounds = bounds
        sub._parts = [[] for _ in range(len(bounds) + 1)]
        for t in [*files, *self._parts[p]]:
            table = _read(t, schema) if isinstance(t, Path) else t.cast(schema)
            post = table.column("post_pt_root_id").to_numpy()
            order, offsets = sub.partition(post, table.column("id").to_numpy(), 1.0)
            sub.add(table if order is None else take_rows(table, order), offsets)
            if isinstance(t, Path):
                t.unlink()
        self._parts[p] = []
        sub._flush()
        return sub.iter_tables(schema, ids_ascending=self.ids_ascending)

    def iter_tables(
        self, schema: pa.Schema, *, ids_ascending: bool | None = None
    ) -> Iterator[pa.Table]:
        """The rows cast to ``schema``, one partition at a time, sorted by (post_pt_root_id,
        id); the spill folder is removed at the end (or on an error)."""
        asc = self.ids_ascending if ids_ascending is None else ids_ascending
        try:
            for p in range(len(self._parts)):
                pieces = self._split(p, schema) if self._oversized(p) else None
                if pieces is not None:
                    yield from pieces
                    continue
                table = self._load(p, schema)
                if table.num_rows:
                    yield sort_store(table, ids_ascending=asc)
        finally:
            self.cleanup()

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):  # the folder goes anyway; the error was raised
            self._wait()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self._parts = [[] for _ in self._parts]
        if self._spill is not None:
            shutil.rmtree(self._spill, ignore_errors=True)
            self._spill = None


def _read(path: Path, schema: pa.Schema) -> pa.Table:
    with ipc.open_file(path) as r:
        return r.read_all().cast(schema)


def sort_store(table: pa.Table, *, ids_ascending: bool) -> pa.Table:
    """``table`` sorted by (post_pt_root_id, id). When the rows are in ascending id order
    (the usual case) and the post roots of the table span less than 2**63 / rows, one plain
    (SIMD) sort of ``(post - min) * n + position`` gives the order; else a lexsort."""
    n = table.num_rows
    post = table.column("post_pt_root_id").to_numpy()
    if n < 2:
        return table
    lo, hi = int(post.min()), int(post.max())
    if ids_ascending and (hi - lo + 1) < (2**63 - 1) // n:
        composite = (post - lo) * n + np.arange(n, dtype=np.int64)
        composite.sort()
        order = composite % n
    else:
        ids = table.column("id").to_numpy()
        order = np.lexsort((ids, post))
    if bool((order[1:] > order[:-1]).all()):
        return table
    return take_rows(table, order)


def take_rows(table: pa.Table, order: np.ndarray) -> pa.Table:
    """``table.take(order)``, through numpy for fixed-width columns (several times faster than
    Arrow's take here); validity taken alongside."""
    cols = []
    for col in table.columns:
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        t = arr.type
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            if arr.null_count == len(arr):
                cols.append(pa.nulls(len(order), t))
            elif arr.null_count:
                values = arr.fill_null(0).to_numpy()[order]
                cols.append(pa.array(values, type=t, mask=np.asarray(arr.is_null())[order]))
            else:
                cols.append(pa.array(arr.to_numpy()[order], type=t))
        else:
            cols.append(arr.take(pa.array(order)))
    return pa.Table.from_arrays(cols, schema=table.schema)
