"""Cell-type wiring of a release: for each (pre type, post type) the edges, synapses, summed size
and connection probability, computed with embedded DuckDB from the release snapshot's
``cells.parquet`` and ``edges.parquet`` (no Neo4j; the whole release in seconds at v117 size).

- ``classification`` picks the cell property that names a cell's type: ``cell_type`` (the
  release's cell-type table), ``classification_system`` or ``is_neuron`` (``neuron`` /
  ``non_neuron``). A cell without one is in the type ``None``; it is counted like any other.
- An edge counts when its synapse count is at least ``min_synapses``; with a bounding box
  (nm, inclusive, on the cells' nucleus positions) only cells inside it and edges between two of
  them count.
- ``probability`` = edges / possible ordered pairs of distinct cells: ``pre_cells * post_cells``
  between two types, ``n * (n - 1)`` within one (no autapses: the loader drops them).
- Rows are sorted by pre type then post type, ``None`` last; pairs of types without an edge
  are left out.

Every value is a ``?`` parameter; the classification is one of :data:`CLASSIFICATIONS` (the
column expression is chosen from that table, never from the caller's text).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from core.errors import BadRequest
from snapshot.layout import CELLS, EDGES, Snapshot
from snapshot.query import _box, run

#: classification name -> the SQL expression over cells.parquet that gives a cell's type
CLASSIFICATIONS = {
    "cell_type": "cell_type",
    "classification_system": "classification_system",
    "is_neuron": "CASE is_neuron WHEN true THEN 'neuron' WHEN false THEN 'non_neuron' END",
}
COLUMNS = ("pre_type", "post_type", "edges", "synapses", "size", "pre_cells", "post_cells",
           "possible_pairs", "probability")  # fmt: skip


def check_classification(name: str) -> str:
    if name not in CLASSIFICATIONS:
        raise BadRequest(
            f"classification must be one of {', '.join(CLASSIFICATIONS)}, got {name!r}"
        )
    return name


def wiring_sql(
    snap: Snapshot, classification: str = "cell_type", min_synapses: int = 1,
    bounding_box: Sequence[Sequence[float]] | None = None,
) -> tuple[str, list[object]]:  # fmt: skip
    """The statement and its parameters (see the module docstring)."""
    expr = CLASSIFICATIONS[check_classification(classification)]
    if isinstance(min_synapses, bool) or not isinstance(min_synapses, int) or min_synapses < 1:
        raise BadRequest(f"min_synapses must be an integer >= 1, got {min_synapses!r}")
    params: list[object] = [str(snap.file(CELLS))]
    where = ""
    if bounding_box is not None:
        lo, hi = _box(bounding_box)
        where = "WHERE x BETWEEN ? AND ? AND y BETWEEN ? AND ? AND z BETWEEN ? AND ?"
        params += [v for pair in zip(lo, hi, strict=True) for v in pair]
    params += [str(snap.file(EDGES)), min_synapses]
    sql = f"""
    WITH c AS (SELECT nucleus_id, {expr} AS t FROM read_parquet(?) {where}),
    n AS (SELECT t, count(*) AS cells FROM c GROUP BY t),
    e AS (
        SELECT pc.t AS pre_type, qc.t AS post_type, count(*) AS edges,
               sum(e.synapses) AS synapses, sum(e.size) AS size
        FROM read_parquet(?) e
        JOIN c pc ON e.pre = pc.nucleus_id
        JOIN c qc ON e.post = qc.nucleus_id
        WHERE e.synapses >= ?
        GROUP BY pc.t, qc.t
    )
    SELECT e.pre_type, e.post_type, e.edges, e.synapses::BIGINT AS synapses,
           e.size::BIGINT AS size, n1.cells AS pre_cells, n2.cells AS post_cells,
           (CASE WHEN e.pre_type IS NOT DISTINCT FROM e.post_type
                 THEN n1.cells * (n1.cells - 1) ELSE n1.cells * n2.cells END)::BIGINT
               AS possible_pairs,
           e.edges / NULLIF(possible_pairs, 0) AS probability
    FROM e
    JOIN n n1 ON e.pre_type IS NOT DISTINCT FROM n1.t
    JOIN n n2 ON e.post_type IS NOT DISTINCT FROM n2.t
    ORDER BY e.pre_type NULLS LAST, e.post_type NULLS LAST
    """  # noqa: S608 - expr is from CLASSIFICATIONS, where from fixed text; values are ?
    return sql, params


def type_connectivity(
    snap: Snapshot, classification: str = "cell_type", min_synapses: int = 1,
    bounding_box: Sequence[Sequence[float]] | None = None, *, seconds: float | None = None,
) -> pa.Table:  # fmt: skip
    """The release's type x type wiring as an Arrow table (:data:`COLUMNS`); QueryTimeout past
    ``seconds`` (default ``CGRAPH_QUERY_TIMEOUT``)."""
    sql, params = wiring_sql(snap, classification, min_synapses, bounding_box)
    return run(sql, params, seconds=seconds).select(list(COLUMNS))
