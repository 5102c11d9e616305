"""Motif search in Neo4j: the compiled Cypher (graph.motif.cypher), paged, under the
query timeout (a slow search raises QueryTimeout, never returns part of a page).

Pages are ordered by the matched cells' nucleus IDs in motif node order, so an offset
names the same matches on every call against a complete (immutable) release.
"""

from __future__ import annotations

from analysis.motif.ir import Motif
from graph.driver import AsyncDatabase
from graph.motif.cypher import compile_motif

Match = dict[str, int]


def _rows_to_matches(motif: Motif, rows: list[dict[str, int]]) -> list[Match]:
    return [{v: int(r[v]) for v in motif.nodes} for r in rows]


async def search_motif(
    adb: AsyncDatabase,
    version: int,
    motif: Motif,
    *,
    induced: bool = False,
    skip: int = 0,
    limit: int = 100,
) -> list[Match]:
    """Matches ``skip`` .. ``skip + limit`` as {node: nucleus_id}."""
    cypher, params = compile_motif(motif, version, induced=induced, skip=skip, limit=limit)
    return _rows_to_matches(motif, await adb.read(cypher, params))


async def count_motif_cypher(
    adb: AsyncDatabase, version: int, motif: Motif, *, induced: bool = False
) -> int:
    """The ordered match count computed by Neo4j (the reference the in-memory count is
    checked against; slower on whole releases)."""
    cypher, params = compile_motif(motif, version, induced=induced, mode="count")
    return int((await adb.read(cypher, params))[0]["n"])
