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
from typing import Any

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
        self._spilled: dict[int, list[Path]] = {}  # partition -> its spill files, in order
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
        jobs = [(p, d / f"p{p:05d}.{self._flushes:06d}.arrow", tables)
                for p, tables in enumerate(self._parts) if tables]  # fmt: skip
        self._parts = [[] for _ in self._parts]
        self._flushes += 1
        self._buffered = 0
        self._wait()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-spill")
        self._pending = self._pool.submit(self._write_all, jobs)

    def _write_all(self, jobs: list[tuple[int, Path, list[pa.Table]]]) -> None:
        for p, path, tables in jobs:
            self._write(path, tables)
            self._spilled.setdefault(p, []).append(path)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    # ------------------------------------------------------------------ write phase

    def _files(self, p: int) -> list[Path]:
        """Partition ``p``'s spill files, oldest first (kept in a list: a glob per partition
        would list the whole folder, ~10k files at the v117 shape, each time)."""
        self._wait()
        return list(self._spilled.get(p, ()))

    def _load(self, p: int, schema: pa.Schema) -> pa.Table:
        tables = [_read(f, schema) for f in self._files(p)]
        tables += [t.cast(schema) for t in self._parts[p]]
        self._parts[p] = []
        for f in self._spilled.pop(p, ()):
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
        self._spilled.pop(p, None)
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
        self._spilled = {}
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


class SynapseIdCheck:
    """Finds a repeated synapse ID with memory bounded by ``memory``, not by the input (no set
    of every ID).

    While IDs arrive strictly ascending (CAVE dumps, ``cgraph synth``) a batch costs one
    comparison and its IDs are appended raw to one spill file (8 bytes a row, deleted at the
    end); a repeat in such a file is the row just before it and raises at once. From the first
    batch that is not ascending on, (ID, row) pairs are range-partitioned by ID (split points:
    quantiles of that batch and of the IDs so far), the ascending prefix first; :meth:`finish`
    then sorts one partition at a time. A partition that came out larger than planned is split
    again by its own quantiles.
    """

    def __init__(
        self, *, memory: int, expected_rows: int = 0, spill_dir: Path | None = None
    ) -> None:
        self.memory = memory
        self.expected_rows = expected_rows
        self.part_bytes = max(memory // PARTITION_SHARE, 1 << 20)  # 16 bytes a row buffered
        self.rows = 0
        self.ascending = True
        self._last: int | None = None
        self._spill_root = spill_dir
        self._spill: Path | None = None
        self._prefix: Any = None  # the open raw file of the ascending prefix
        self.bounds: np.ndarray | None = None
        self._parts: list[list[tuple[np.ndarray, np.ndarray]]] = []
        self._buffered = 0

    def _dir(self) -> Path:
        if self._spill is None:
            self._spill = Path(tempfile.mkdtemp(prefix="cgraph-ids-", dir=self._spill_root))
        return self._spill

    def add(self, ids: np.ndarray) -> tuple[int, int, int] | None:
        """One batch (the next rows of the input). Returns ``(id, row, first_row)`` (1-based
        data rows) when it finds a repeat at once (ascending input), else None."""
        start, n = self.rows, len(ids)
        self.rows += n
        if not n:
            return None
        if self.ascending:
            steps = ids[1:] > ids[:-1]
            if bool(steps.all()) and (self._last is None or int(ids[0]) > self._last):
                self._last = int(ids[-1])
                if self._prefix is None:
                    self._prefix = (self._dir() / "prefix.ids").open("wb")
                np.ascontiguousarray(ids, dtype=np.int64).tofile(self._prefix)
                return None
            after = self._last is None or int(ids[0]) >= self._last
            if after and bool((ids[1:] >= ids[:-1]).all()):
                # non-decreasing: the first repeat is of the row just before it
                if self._last is not None and int(ids[0]) == self._last:
                    return int(ids[0]), start + 1, start
                i = int(np.argmax(~steps)) + 1
                return int(ids[i]), start + i + 1, start + i
            self._unordered(ids)
        self._route(ids, np.arange(start, start + n, dtype=np.int64))
        return None

    def _unordered(self, ids: np.ndarray) -> None:
        """Leave the ascending mode: plan the ID partitions, then route the prefix to them."""
        self.ascending = False
        prefix = self._close_prefix()
        seen = np.array(np.memmap(prefix, np.int64, "r")[:: max(1, self.rows // len(ids))]) \
            if prefix is not None else np.zeros(0, np.int64)  # fmt: skip
        sample = np.sort(np.concatenate([ids, seen]))
        need = max(self.expected_rows, self.rows) * 16
        n = int(min(max(1, -(-need // self.part_bytes)), MAX_PARTITIONS))
        self.bounds = np.unique(sample[(len(sample) * np.arange(1, n)) // n]) if n > 1 else \
            np.zeros(0, np.int64)  # fmt: skip
        self._parts = [[] for _ in range(len(self.bounds) + 1)]
        if prefix is not None:
            total = prefix.stat().st_size // 8
            step = 1 << 20
            for lo in range(0, total, step):
                chunk = np.fromfile(prefix, dtype=np.int64, count=step, offset=lo * 8)
                self._route(chunk, np.arange(lo, lo + len(chunk), dtype=np.int64))
            prefix.unlink()

    def _close_prefix(self) -> Path | None:
        if self._prefix is None:
            return None
        self._prefix.close()
        self._prefix = None
        return self._dir() / "prefix.ids"

    def _route(self, ids: np.ndarray, rows: np.ndarray) -> None:
        assert self.bounds is not None
        n = len(ids)
        if len(self.bounds) == 0:
            self._keep(0, ids, rows)
        else:
            part = np.searchsorted(self.bounds, ids, "right").astype(np.int64)
            key = part * n + np.arange(n, dtype=np.int64)  # unique: a plain (SIMD) sort
            key.sort()
            part_sorted = key // n
            order = key - part_sorted * n
            offsets = np.searchsorted(part_sorted, np.arange(len(self.bounds) + 2))
            for p in np.flatnonzero(np.diff(offsets)):
                sel = order[offsets[p] : offsets[p + 1]]
                self._keep(int(p), ids[sel], rows[sel])
        if self._buffered > self.memory // BUFFER_SHARE:
            self._flush()

    def _keep(self, p: int, ids: np.ndarray, rows: np.ndarray) -> None:
        self._parts[p].append((ids, rows))
        self._buffered += ids.nbytes + rows.nbytes

    def _flush(self) -> None:
        d = self._dir()
        for p, chunks in enumerate(self._parts):
            if not chunks:
                continue
            for i, what in enumerate(("ids", "rows")):
                with (d / f"p{p:05d}.{what}").open("ab") as fh:
                    for chunk in chunks:
                        np.ascontiguousarray(chunk[i], dtype=np.int64).tofile(fh)
            self._parts[p] = []
        self._buffered = 0

    def _load(self, p: int) -> tuple[np.ndarray, np.ndarray]:
        files = [self._dir() / f"p{p:05d}.{w}" for w in ("ids", "rows")]
        ids = [np.fromfile(files[0], np.int64)] if files[0].exists() else []
        rows = [np.fromfile(files[1], np.int64)] if files[1].exists() else []
        ids += [c[0] for c in self._parts[p]]
        rows += [c[1] for c in self._parts[p]]
        self._parts[p] = []
        for f in files:
            f.unlink(missing_ok=True)
        empty = np.zeros(0, np.int64)
        return (np.concatenate(ids) if ids else empty), (np.concatenate(rows) if rows else empty)

    def _size(self, p: int) -> int:
        f = self._dir() / f"p{p:05d}.ids"
        return (f.stat().st_size * 2 if f.exists() else 0) + sum(
            c[0].nbytes * 2 for c in self._parts[p]
        )

    def finish(self) -> tuple[int, int, int] | None:
        """After the last batch: the repeat with the smallest row, as ``(id, row, first_row)``
        (1-based data rows; ``first_row`` the row it repeats), or None. Removes the spill."""
        try:
            if self.ascending:
                return None
            best: tuple[int, int, int] | None = None
            for p in range(len(self._parts)):
                found = self._finish_part(p)
                if found is not None and (best is None or found[1] < best[1]):
                    best = found
            return best
        finally:
            self.cleanup()

    def _chunks(self, p: int, step: int = 1 << 20) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Partition ``p`` as (ids, rows) pieces of at most ``step`` rows, its files removed."""
        files = [self._dir() / f"p{p:05d}.{w}" for w in ("ids", "rows")]
        if files[0].exists():
            total = files[0].stat().st_size // 8
            for lo in range(0, total, step):
                yield tuple(np.fromfile(f, np.int64, count=step, offset=lo * 8) for f in files)  # type: ignore[misc]
        chunks, self._parts[p] = self._parts[p], []
        yield from chunks
        for f in files:
            f.unlink(missing_ok=True)

    def _finish_part(self, p: int) -> tuple[int, int, int] | None:
        if self._size(p) > 2 * self.part_bytes:  # a skewed plan: split this one again
            f = self._dir() / f"p{p:05d}.ids"
            pieces = [np.array(np.memmap(f, np.int64, "r")[::16])] if f.exists() else []
            sample = np.sort(np.concatenate(pieces + [c[0][::16] for c in self._parts[p]]))
            n = int(min(-(-self._size(p) // self.part_bytes), MAX_PARTITIONS))
            bounds = np.unique(sample[(len(sample) * np.arange(1, n)) // n])
            if len(sample) > 1 and sample[0] == sample[-1]:  # one ID fills the sample: it repeats
                return self._first_rows(p, int(sample[0]))
            sub = SynapseIdCheck(memory=self.memory, spill_dir=self._dir())
            sub.ascending, sub.bounds = False, bounds
            sub._parts = [[] for _ in range(len(bounds) + 1)]
            for ids, rows in self._chunks(p):
                sub._route(ids, rows)
            sub._flush()
            return sub.finish()
        ids, rows = self._load(p)
        if len(ids) < 2:
            return None
        s = np.sort(ids)
        repeated = s[1:][s[1:] == s[:-1]]
        if not len(repeated):
            return None
        hit = np.flatnonzero(np.isin(ids, repeated))  # the rows of repeated IDs (error path)
        order = np.lexsort((rows[hit], ids[hit]))
        hid, hrow = ids[hit][order], rows[hit][order]
        later = np.flatnonzero(hid[1:] == hid[:-1]) + 1  # each row that repeats the one before
        j = int(later[np.argmin(hrow[later])])
        first = int(hrow[np.searchsorted(hid, hid[j])])  # the ID's first row
        return int(hid[j]), int(hrow[j]) + 1, first + 1

    def _first_rows(self, p: int, value: int) -> tuple[int, int, int]:
        """The second and first rows of ``value`` in partition ``p``, streamed."""
        rows = np.zeros(0, np.int64)
        for ids, r in self._chunks(p):
            rows = np.sort(np.concatenate([rows, r[ids == value]]))[:2]
        return value, int(rows[1]) + 1, int(rows[0]) + 1

    def cleanup(self) -> None:
        if self._prefix is not None:
            self._prefix.close()
            self._prefix = None
        self._parts = []
        if self._spill is not None:
            shutil.rmtree(self._spill, ignore_errors=True)
            self._spill = None
