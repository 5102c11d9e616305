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

from collections.abc import Sequence

import pyarrow as pa

from core.errors import BadRequest, DatasetMismatch
from snapshot.layout import CELLS, EDGES, Snapshot, snapshot_dataset
from snapshot.query import run
from snapshot.wiring import CLASSIFICATIONS, check_classification

CHANGES = ("added", "removed", "changed", "unchanged")
TOTALS = (*CHANGES, "synapses_before", "synapses_after")
EDGE_COLUMNS = ("pre", "post", "before", "after", "change")
TYPE_COLUMNS = ("pre_type", "post_type", *CHANGES)
MAX_RELEASES = 16


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
    a: Snapshot, b: Snapshot, min_synapses: int, from_pre: int | None = None
) -> tuple[str, list[object]]:
    """The full outer join of both releases' edges with each edge's change (only pre >=
    ``from_pre`` when given: pushed into both reads, whose files are sorted by pre)."""
    same_dataset([a, b])
    m = _min(min_synapses)
    lo = "" if from_pre is None else " AND pre >= ?"
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
    extra = [] if from_pre is None else [from_pre]
    return sql, [str(a.file(EDGES)), m, *extra, str(b.file(EDGES)), m, *extra]


def diff_totals(a: Snapshot, b: Snapshot, min_synapses: int = 1) -> dict[str, int]:
    """Edges added, removed, changed, unchanged and the synapses on the edges of each side."""
    joined, params = _joined(a, b, min_synapses)
    counts = ", ".join(f"count(*) FILTER (WHERE change = '{c}') AS {c}" for c in CHANGES)
    sql = f"""SELECT {counts}, coalesce(sum(before), 0)::BIGINT AS synapses_before,
                     coalesce(sum(after), 0)::BIGINT AS synapses_after
              FROM ({joined}) d"""  # noqa: S608 - fixed text only
    row = run(sql, params).to_pylist()[0]
    return {k: int(row[k]) for k in TOTALS}


def diff_by_type(
    a: Snapshot, b: Snapshot, classification: str = "cell_type", min_synapses: int = 1
) -> pa.Table:
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
    return run(sql, [str(a.file(CELLS)), str(b.file(CELLS)), *params]).select(list(TYPE_COLUMNS))


def diff_edges(
    a: Snapshot, b: Snapshot, *, min_synapses: int = 1, change: str | None = None,
    after: tuple[int, int] | None = None, limit: int = 100,
) -> pa.Table:  # fmt: skip
    """One page of changed edges in (pre, post) order: pre, post, before, after (null: not an
    edge there), change; only ``change`` when given, after the (pre, post) key ``after``."""
    joined, params = _joined(a, b, min_synapses, None if after is None else after[0])
    where: list[str] = []
    more: list[object] = []
    if change is not None:
        if change not in CHANGES:
            raise BadRequest(f"change must be one of {', '.join(CHANGES)}, got {change!r}")
        where.append("change = ?")
        more.append(change)
    if after is not None:
        where.append("(pre > ? OR (pre = ? AND post > ?))")
        more += [after[0], after[0], after[1]]
    cond = f"WHERE {' AND '.join(where)}" if where else ""
    sql = f"SELECT * FROM ({joined}) d {cond} ORDER BY pre, post LIMIT ?"  # noqa: S608
    return run(sql, [*params, *more, int(limit)]).select(list(EDGE_COLUMNS))


def _stability_from(snaps: Sequence[Snapshot], min_synapses: int) -> tuple[str, list[object]]:
    """Every edge of any release with its synapses in each (s0, s1, ...) and ``releases``."""
    if not 2 <= len(snaps) <= MAX_RELEASES:
        raise BadRequest(f"give 2 to {MAX_RELEASES} releases, got {len(snaps)}")
    versions = [s.version for s in snaps]
    if len(set(versions)) != len(versions):
        raise BadRequest(f"releases must be distinct, got {versions}")
    same_dataset(snaps)
    m = _min(min_synapses)
    parts, params = [], []
    for i, s in enumerate(snaps):
        parts.append(f"(SELECT pre, post, synapses AS s{i} FROM read_parquet(?) "
                     f"WHERE synapses >= ?) e{i}")  # fmt: skip
        params += [str(s.file(EDGES)), m]
    body = parts[0] + "".join(f" FULL OUTER JOIN {p} USING (pre, post)" for p in parts[1:])
    present = " + ".join(f"(s{i} IS NOT NULL)::INT" for i in range(len(snaps)))
    cols = ", ".join(f"s{i}" for i in range(len(snaps)))
    return f"SELECT pre, post, {cols}, {present} AS releases FROM {body}", params


def stability_summary(snaps: Sequence[Snapshot], min_synapses: int = 1) -> list[tuple[int, int]]:
    """(number of releases an edge is in, edges) for 1..len(snaps), every count listed."""
    inner, params = _stability_from(snaps, min_synapses)
    sql = f"SELECT releases, count(*) AS edges FROM ({inner}) s GROUP BY releases"  # noqa: S608
    got = {int(r["releases"]): int(r["edges"]) for r in run(sql, params).to_pylist()}
    return [(k, got.get(k, 0)) for k in range(1, len(snaps) + 1)]


def stability_edges(
    snaps: Sequence[Snapshot], *, min_synapses: int = 1, min_releases: int = 1,
    nucleus_id: int | None = None, after: tuple[int, int] | None = None, limit: int = 100,
) -> list[tuple[int, int, list[int | None], int]]:  # fmt: skip
    """One page of edges in (pre, post) order: (pre, post, synapses per release in the order
    given, releases it is an edge in); at least ``min_releases``; touching ``nucleus_id``."""
    inner, params = _stability_from(snaps, min_synapses)
    if isinstance(min_releases, bool) or not 1 <= min_releases <= len(snaps):
        raise BadRequest(f"min_releases must be 1..{len(snaps)}, got {min_releases!r}")
    where = ["releases >= ?"]
    more: list[object] = [min_releases]
    if nucleus_id is not None:
        where.append("(pre = ? OR post = ?)")
        more += [nucleus_id, nucleus_id]
    if after is not None:
        where.append("(pre > ? OR (pre = ? AND post > ?))")
        more += [after[0], after[0], after[1]]
    sql = (f"SELECT * FROM ({inner}) s WHERE {' AND '.join(where)} "
           "ORDER BY pre, post LIMIT ?")  # fmt: skip  # noqa: S608
    rows = run(sql, [*params, *more, int(limit)]).to_pylist()
    n = len(snaps)
    return [(int(r["pre"]), int(r["post"]), [r[f"s{i}"] for i in range(n)], int(r["releases"]))
            for r in rows]  # fmt: skip
