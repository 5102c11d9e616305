"""Weighted paths between two cells of a release.

- ``HOPS``: the fewest edges (graph.queries.shortest_paths).
- ``STRONGEST``: the paths whose weakest edge has the most synapses (a widest or bottleneck
  path), and among those the fewest edges, within ``max_length``. Found by a binary search
  over the synapse threshold t, each step one shortest-path search over edges of at least t
  synapses: the answer is the shortest paths at the largest t that still connects the cells.
  The first search (t = ``min_synapses``) bounds t from below by its best path's weakest edge;
  the strongest edge out of the first cell and into the last bounds it from above. About
  log2(max synapses) searches, all under one deadline (TIMEOUT, never a weaker answer).
"""

from __future__ import annotations

from core.budget import Deadline
from core.criteria import CellCriteria
from core.errors import QueryTimeout
from core.model import prop, rel_type
from graph.driver import AsyncDatabase
from graph.queries import GUARD, Path, _guarded, shortest_paths

WEIGHTS = ("hops", "strongest")


def bound_cypher(version: int, slot: int = 0) -> str:
    """Guarded: the most synapses on an edge out of $from_id and on an edge into $to_id."""
    root, rel = prop("root_id", version, slot), rel_type(version, slot)
    return (
        GUARD
        + f"""
CALL (ok) {{
  OPTIONAL MATCH (a:Cell {{nucleus_id: $from_id}})-[e:{rel}]->() WHERE ok AND a.{root} IS NOT NULL
  WITH max(e.synapses) AS out_max
  OPTIONAL MATCH (b:Cell {{nucleus_id: $to_id}})<-[e:{rel}]-() WHERE ok AND b.{root} IS NOT NULL
  RETURN out_max, max(e.synapses) AS in_max
}}
RETURN statuses, slots, out_max, in_max
"""
    )


def _weakest(paths: list[Path]) -> int:
    return max(min(p.synapses) for p in paths)


async def strongest_paths(
    adb: AsyncDatabase, version: int, from_id: int, to_id: int, *, min_synapses: int = 1,
    max_length: int = 4, first: int = 10,
    via: CellCriteria = CellCriteria(),  # noqa: B008 - frozen, shared safely
    deadline: Deadline | None = None,
) -> list[Path]:  # fmt: skip
    """The strongest paths (see the module docstring); [] when none within ``max_length``."""
    budget = deadline or Deadline.after(adb.settings.query_timeout)

    async def at(t: int) -> list[Path]:
        if budget.remaining() <= 0:
            raise QueryTimeout(adb.settings.query_timeout)
        return await shortest_paths(adb, version, from_id, to_id, min_synapses=t,
                                    max_length=max_length, first=first, via=via)  # fmt: skip

    best, best_t = await at(min_synapses), min_synapses
    if not best:
        return []
    row, _ = await _guarded(adb, lambda s: bound_cypher(version, s), [version],
                            {"from_id": from_id, "to_id": to_id})  # fmt: skip
    lo = _weakest(best)  # a path whose edges all have >= lo synapses exists
    hi = min(int(row["out_max"] or lo), int(row["in_max"] or lo))
    for _ in range(64):  # bounded: hi - lo at least halves each round
        if lo >= hi:
            break
        mid = (lo + hi + 1) // 2
        found = await at(mid)
        if found:
            best, best_t, lo = found, mid, _weakest(found)
        else:
            hi = mid - 1
    # lo is now the largest threshold that connects the cells: the shortest paths over edges
    # of >= lo synapses all have exactly lo as their weakest edge
    return best if best_t == lo else await at(lo)
