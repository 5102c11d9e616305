"""Motif search in Neo4j: the compiled Cypher (graph.motif.cypher), paged, under the
query timeout (a slow search raises QueryTimeout, never returns part of a page).

Pages are ordered by the matched cells' nucleus IDs in motif node order, so an offset or the
last match of a page (keyset paging, what motifSearch's cursors hold) names the same matches on
every call against a complete (immutable) release. An unanchored search streams: Neo4j walks
the first node's cells in order and stops after the page (graph.motif.cypher).
"""

from __future__ import annotations

from analysis.motif.attributes import ALWAYS_CARRIED, used_node_attributes
from analysis.motif.ir import Motif
from graph.driver import AsyncDatabase
from graph.motif.cypher import carried_cypher, compile_motif

Match = dict[str, int]


def _rows_to_matches(motif: Motif, rows: list[dict[str, int]]) -> list[Match]:
    return [{v: int(r[v]) for v in motif.nodes} for r in rows]


SLOT = "MATCH (r:Release {version: $version}) RETURN coalesce(r.slot, 0) AS slot"


async def release_slot(adb: AsyncDatabase, version: int) -> int:
    """The slot the release is served from (a replace switches it; the replaced slot stays
    readable for the grace period, so a search started on it finishes on it)."""
    rows = await adb.read(SLOT, {"version": version})
    return int(rows[0]["slot"]) if rows else 0


async def carried_attributes(adb: AsyncDatabase, version: int, slot: int = 0) -> frozenset[str]:
    """The node attributes at least one cell of the release has (one pass over its cells)."""
    rows = await adb.read(carried_cypher(version, slot), {})
    return ALWAYS_CARRIED | {k for k, v in (rows[0] if rows else {}).items() if v}


async def _carried_for(
    adb: AsyncDatabase, version: int, motif: Motif, slot: int
) -> frozenset[str] | None:
    """What the motif needs to know of the release (None when it reads no optional attribute)."""
    if all(a in ALWAYS_CARRIED for a in used_node_attributes(motif)):
        return None
    return await carried_attributes(adb, version, slot)


async def search_motif(
    adb: AsyncDatabase,
    version: int,
    motif: Motif,
    *,
    induced: bool = False,
    skip: int = 0,
    limit: int = 100,
    after: Match | None = None,
) -> list[Match]:
    """Matches ``skip`` .. ``skip + limit`` as {node: nucleus_id}, counted from the start or,
    with ``after`` (the last match of the previous page), from the match after it: a keyset
    page reads no match before it, so every page costs what the first does.

    One auto-commit read: a query that needs more memory than the server allows a transaction
    raises LimitExceeded at once (a managed transaction would retry it as transient)."""
    slot = await release_slot(adb, version)
    carried = await _carried_for(adb, version, motif, slot)
    key = None if after is None else [after[n] for n in motif.nodes]
    cypher, params = compile_motif(
        motif,
        version,
        induced=induced,
        skip=skip,
        limit=limit,
        after=key,
        carried=carried,
        slot=slot,
    )
    return _rows_to_matches(motif, await adb.read_auto(cypher, params))


async def count_motif_cypher(
    adb: AsyncDatabase, version: int, motif: Motif, *, induced: bool = False
) -> int:
    """The ordered match count computed by Neo4j (the reference the in-memory count is
    checked against; slower on whole releases)."""
    slot = await release_slot(adb, version)
    carried = await _carried_for(adb, version, motif, slot)
    cypher, params = compile_motif(
        motif, version, induced=induced, mode="count", carried=carried, slot=slot
    )
    return int((await adb.read(cypher, params))[0]["n"])
