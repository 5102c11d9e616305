"""Whole-release change and stability, computed with embedded DuckDB from release snapshots'
``edges.parquet`` and ``cells.parquet`` (no Neo4j). Cells are matched by nucleus ID, so this holds
across root-ID churn.

Between two releases (``from``, ``to``), an edge is a (pre, post) cell pair with at least
``min_synapses`` synapses in a release, and it is

- ``added``: an edge of ``to`` only; ``removed``: of ``from`` only;
- ``changed``: in both with a different synapse count; ``unchanged``: in both with the same.

Per (pre type, post type) a cell's type is its type in ``to``, or in ``from`` for a cell that is
not in ``to`` (``classification`` as in snapshot/wiring.py). Edge pages are in (pre, post) order.

Across a list of releases (stability), each edge of any of them gets its synapse count in each
(null: not an edge there) and the number of releases it is an edge in; the summary counts edges
by that number.

Every value is a ``?`` parameter; the SQL text is built only from fixed pieces, the
:data:`CLASSIFICATIONS` table and a count of releases (each an integer the caller checked).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from core.budget import Deadline
from core.errors import BadRequest, DatasetMismatch, QueryTimeout
from snapshot.layout import CELLS, EDGES, Snapshot, snapshot_dataset
from snapshot.query import query_timeout, run, stream
from snapshot.wiring import CLASSIFICATIONS, check_classification

CHANGES = ("added", "removed", "changed", "unchanged")
TOTALS = (*CHANGES, "synapses_before", "synapses_after")
EDGE_COLUMNS = ("pre", "post", "before", "after", "change")
EDGE_PAGE_SCHEMA = pa.schema([("pre", pa.int64()), ("post", pa.int64()), ("before", pa.int64()),
                              ("after", pa.int64()), ("change", pa.string())])  # fmt: skip
TYPE_COLUMNS = ("pre_type", "post_type", *CHANGES)
MAX_RELEASES = 16
#: pre cells of the first window of an edge page (then doubling): ~0.35M edges at v117
WINDOW_CELLS = 512


def _min(min_synapses: int) -> int:
    if isinstance(min_synapses, bool) or not isinstance(min_synapses, int) or min_synapses < 1:
        raise BadRequest(f"min_synapses must be an integer >= 1, got {min_synapses!r}")
    return min_synapses


def same_dataset(snaps: Sequence[Snapshot]) -> str:
    """The one dataset of these snapshots; DatasetMismatch naming the first that differs."""
    ds = snapshot_dataset(snaps[0])
    for s in snaps[1:]:
        if (other := snapshot_dataset(s)) != ds:
            raise DatasetMismatch(s.version, other, ds)
    return ds


def _joined(
    a: Snapshot, b: Snapshot, min_synapses: int, pre_range: tuple[int, int] | None = None
) -> tuple[str, list[object]]:
    """The full outer join of both releases' edges with each edge's change (only pre within
    ``pre_range``, inclusive, when given: pushed into both reads, whose files are sorted by
    pre, so a range reads a few row groups)."""
    same_dataset([a, b])
    m = _min(min_synapses)
    lo = "" if pre_range is None else " AND pre BETWEEN ? AND ?"
    sql = f"""
    SELECT pre, post, a.synapses AS before, b.synapses AS after,
           CASE WHEN a.synapses IS NULL THEN 'added'
                WHEN b.synapses IS NULL THEN 'removed'
                WHEN a.synapses <> b.synapses THEN 'changed'
                ELSE 'unchanged' END AS change
    FROM (SELECT pre, post, synapses FROM read_parquet(?) WHERE synapses >= ?{lo}) a
    FULL OUTER JOIN (SELECT pre, post, synapses FROM read_parquet(?) WHERE synapses >= ?{lo}) b
    USING (pre, post)
    """  # noqa: S608 - fixed text only
    extra = [] if pre_range is None else list(pre_range)
    return sql, [str(a.file(EDGES)), m, *extra, str(b.file(EDGES)), m, *extra]


def _cell_ids(snaps: Sequence[Snapshot]) -> npt.NDArray[np.int64]:
    """Every nucleus ID of any of the releases, sorted (the possible pre values of an edge)."""
    ids = [pq.read_table(s.file(CELLS), columns=["nucleus_id"]).column(0).to_numpy()
           for s in snaps]  # fmt: skip
    return np.unique(np.concatenate(ids)).astype(np.int64)


PageRead = Callable[[tuple[int, int], int, float], pa.Table]


def _windowed(
    snaps: Sequence[Snapshot], after: tuple[int, int] | None, limit: int,
    seconds: float | None, read: PageRead,
) -> list[pa.Table]:  # fmt: skip
    """The parts of one page read window by window of pre cells: ``read((lo, hi), rows
    wanted, seconds left)`` for pre in lo..hi, from the window holding ``after``'s pre, the
    window doubling (from :data:`WINDOW_CELLS`) until the page is full or the cells end; the
    whole page under one time budget (QueryTimeout past it)."""
    total = query_timeout() if seconds is None else seconds
    budget = Deadline.after(total)
    ids = _cell_ids(snaps)
    start = 0 if after is None else int(np.searchsorted(ids, after[0]))
    window, parts, found = WINDOW_CELLS, [], 0
    while start < ids.size and found < limit:
        hi = min(start + window, int(ids.size)) - 1
        if budget.remaining() <= 0:
            raise QueryTimeout(total)
        part = read((int(ids[start]), int(ids[hi])), limit - found, budget.remaining())
        parts.append(part)
        found += part.num_rows
        start, window = hi + 1, window * 2
    return parts


def _after(after: tuple[int, int] | None, where: list[str], more: list[object]) -> None:
    if after is not None:
        where.append("(pre > ? OR (pre = ? AND post > ?))")
        more += [after[0], after[0], after[1]]


def diff_totals(
    a: Snapshot, b: Snapshot, min_synapses: int = 1, *, seconds: float | None = None
) -> dict[str, int]:
    """Edges added, removed, changed, unchanged and the synapses on the edges of each side."""
    joined, params = _joined(a, b, min_synapses)
    counts = ", ".join(f"count(*) FILTER (WHERE change = '{c}') AS {c}" for c in CHANGES)
    sql = f"""SELECT {counts}, coalesce(sum(before), 0)::BIGINT AS synapses_before,
                     coalesce(sum(after), 0)::BIGINT AS synapses_after
              FROM ({joined}) d"""  # noqa: S608 - fixed text only
    row = run(sql, params, seconds=seconds).to_pylist()[0]
    return {k: int(row[k]) for k in TOTALS}


def diff_by_type(
    a: Snapshot, b: Snapshot, classification: str = "cell_type", min_synapses: int = 1, *,
    seconds: float | None = None,
) -> pa.Table:  # fmt: skip
    """Per (pre type, post type): edges added, removed, changed, unchanged; sorted by pre then
    post type (null last); type pairs without any edge in either release are left out."""
    expr = CLASSIFICATIONS[check_classification(classification)]
    joined, params = _joined(a, b, min_synapses)
    counts = ", ".join(f"count(*) FILTER (WHERE d.change = '{c}') AS {c}" for c in CHANGES)
    sql = f"""
    WITH t AS (
        SELECT coalesce(tb.nucleus_id, ta.nucleus_id) AS nucleus_id,
               CASE WHEN tb.nucleus_id IS NOT NULL THEN tb.t ELSE ta.t END AS t
        FROM (SELECT nucleus_id, {expr} AS t FROM read_parquet(?)) ta
        FULL OUTER JOIN (SELECT nucleus_id, {expr} AS t FROM read_parquet(?)) tb
        USING (nucleus_id)
    )
    SELECT pt.t AS pre_type, qt.t AS post_type, {counts}
    FROM ({joined}) d
    JOIN t pt ON d.pre = pt.nucleus_id
    JOIN t qt ON d.post = qt.nucleus_id
    GROUP BY pt.t, qt.t
    ORDER BY pt.t NULLS LAST, qt.t NULLS LAST
    """  # noqa: S608 - expr from CLASSIFICATIONS, the rest fixed text; values are ?
    cells = [str(a.file(CELLS)), str(b.file(CELLS))]
    return run(sql, [*cells, *params], seconds=seconds).select(list(TYPE_COLUMNS))


def diff_edges(
    a: Snapshot, b: Snapshot, *, min_synapses: int = 1, change: str | None = None,
    after: tuple[int, int] | None = None, limit: int = 100, seconds: float | None = None,
) -> pa.Table:  # fmt: skip
    """One page of changed edges in (pre, post) order: pre, post, before, after (null: not an
    edge there), change; only ``change`` when given, after the (pre, post) key ``after``.

    Read in windows of pre cells (:data:`WINDOW_CELLS`, doubling while the page is short), so
    a page costs a few row groups of each file, not a join of both releases."""
    if change is not None and change not in CHANGES:
        raise BadRequest(f"change must be one of {', '.join(CHANGES)}, got {change!r}")
    same_dataset([a, b])
    _min(min_synapses)

    def read(pre: tuple[int, int], rows: int, left: float) -> pa.Table:
        joined, params = _joined(a, b, min_synapses, pre)
        where: list[str] = []
        more: list[object] = []
        if change is not None:
            where.append("change = ?")
            more.append(change)
        _after(after, where, more)
        cond = f"WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT * FROM ({joined}) d {cond} ORDER BY pre, post LIMIT ?"  # noqa: S608
        return run(sql, [*params, *more, rows], seconds=left).select(list(EDGE_COLUMNS))

    parts = _windowed([a, b], after, limit, seconds, read)
    if not parts:  # after the last cell
        return EDGE_PAGE_SCHEMA.empty_table()
    return pa.concat_tables([p.cast(EDGE_PAGE_SCHEMA) for p in parts]).slice(0, limit)


def stream_changes(
    a: Snapshot, b: Snapshot, *, min_synapses: int = 1, changes: Sequence[str] = CHANGES[:3],
    batch_rows: int = 1 << 16,
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:  # fmt: skip
    """Every edge of the given kinds of change (default: added, removed, changed) in (pre, post)
    order, streamed in record batches (memory: one batch; time: the export timeout)."""
    bad = [c for c in changes if c not in CHANGES]
    if bad or not changes:
        raise BadRequest(f"changes must be some of {', '.join(CHANGES)}, got {list(changes)}")
    joined, params = _joined(a, b, min_synapses)
    marks = ", ".join("?" * len(changes))
    sql = f"SELECT * FROM ({joined}) d WHERE change IN ({marks}) ORDER BY pre, post"  # noqa: S608
    return stream(sql, [*params, *changes], batch_rows=batch_rows)


def _stability_from(
    snaps: Sequence[Snapshot], min_synapses: int, pre_range: tuple[int, int] | None = None
) -> tuple[str, list[object]]:
    """Every edge of any release with its synapses in each (s0, s1, ...) and ``releases`` (only
    pre within ``pre_range`` when given)."""
    if not 2 <= len(snaps) <= MAX_RELEASES:
        raise BadRequest(f"give 2 to {MAX_RELEASES} releases, got {len(snaps)}")
    versions = [s.version for s in snaps]
    if len(set(versions)) != len(versions):
        raise BadRequest(f"releases must be distinct, got {versions}")
    same_dataset(snaps)
    m = _min(min_synapses)
    lo = "" if pre_range is None else " AND pre BETWEEN ? AND ?"
    extra = [] if pre_range is None else list(pre_range)
    parts: list[str] = []
    params: list[object] = []
    for i, s in enumerate(snaps):
        parts.append(f"(SELECT pre, post, synapses AS s{i} FROM read_parquet(?) "
                     f"WHERE synapses >= ?{lo}) e{i}")  # fmt: skip
        params += [str(s.file(EDGES)), m, *extra]
    body = parts[0] + "".join(f" FULL OUTER JOIN {p} USING (pre, post)" for p in parts[1:])
    present = " + ".join(f"(s{i} IS NOT NULL)::INT" for i in range(len(snaps)))
    cols = ", ".join(f"s{i}" for i in range(len(snaps)))
    return f"SELECT pre, post, {cols}, {present} AS releases FROM {body}", params


def stability_summary(
    snaps: Sequence[Snapshot], min_synapses: int = 1, *, seconds: float | None = None
) -> list[tuple[int, int]]:
    """(number of releases an edge is in, edges) for 1..len(snaps), every count listed."""
    inner, params = _stability_from(snaps, min_synapses)
    sql = f"SELECT releases, count(*) AS edges FROM ({inner}) s GROUP BY releases"  # noqa: S608
    rows = run(sql, params, seconds=seconds).to_pylist()
    got = {int(r["releases"]): int(r["edges"]) for r in rows}
    return [(k, got.get(k, 0)) for k in range(1, len(snaps) + 1)]


def stability_edges(
    snaps: Sequence[Snapshot], *, min_synapses: int = 1, min_releases: int = 1,
    nucleus_id: int | None = None, after: tuple[int, int] | None = None, limit: int = 100,
    seconds: float | None = None,
) -> list[tuple[int, int, list[int | None], int]]:  # fmt: skip
    """One page of edges in (pre, post) order: (pre, post, synapses per release in the order
    given, releases it is an edge in); at least ``min_releases``; touching ``nucleus_id``.
    Read in windows of pre cells, as :func:`diff_edges`."""
    _stability_from(snaps, min_synapses)  # checks the releases and min_synapses
    if isinstance(min_releases, bool) or not 1 <= min_releases <= len(snaps):
        raise BadRequest(f"min_releases must be 1..{len(snaps)}, got {min_releases!r}")

    def read(pre: tuple[int, int], rows: int, left: float) -> pa.Table:
        inner, params = _stability_from(snaps, min_synapses, pre)
        where = ["releases >= ?"]
        more: list[object] = [min_releases]
        if nucleus_id is not None:
            where.append("(pre = ? OR post = ?)")
            more += [nucleus_id, nucleus_id]
        _after(after, where, more)
        sql = (f"SELECT * FROM ({inner}) s WHERE {' AND '.join(where)} "
               "ORDER BY pre, post LIMIT ?")  # fmt: skip  # noqa: S608
        return run(sql, [*params, *more, rows], seconds=left)

    n = len(snaps)
    out = []
    for part in _windowed(snaps, after, limit, seconds, read):
        out += [(int(r["pre"]), int(r["post"]), [r[f"s{i}"] for i in range(n)],
                 int(r["releases"])) for r in part.to_pylist()]  # fmt: skip
    return out[:limit]
