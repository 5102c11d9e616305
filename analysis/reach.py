"""Bounded k-hop reachability on a release held in memory (analysis.release_graph): every cell
reachable from one cell in at most ``max_hops`` directed edges of at least ``min_synapses``
synapses, with its hop distance (breadth-first, one vectorised CSR gather per hop).

``via`` (a boolean mask over the cells, or None for every cell) says which cells a path may pass
through: a cell outside it is still reached (as the end of a path) but not expanded. The start
cell is always expanded. ``direction`` "outputs" follows edges pre -> post, "inputs" the other
way (who reaches this cell).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from analysis.release_graph import IntArray, ReleaseGraph
from core.budget import Deadline, check

MAX_HOPS = 6


def _gather(ptr: IntArray, frontier: IntArray) -> IntArray:
    """The concatenated CSR ranges ptr[i]:ptr[i + 1] of the frontier cells (edge positions)."""
    starts, ends = ptr[frontier], ptr[frontier + 1]
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return np.arange(total, dtype=np.int64) + offsets


def reachable(
    g: ReleaseGraph, start: int, max_hops: int, *, min_synapses: int = 1,
    direction: str = "outputs", via: npt.NDArray[np.bool_] | None = None,
    deadline: Deadline | None = None,
) -> tuple[IntArray, IntArray]:  # fmt: skip
    """(cell indices, hops) of every cell reachable from cell index ``start`` within
    ``max_hops`` (the start itself excluded), ordered by hops then nucleus ID."""
    if not 1 <= max_hops <= MAX_HOPS:
        raise ValueError(f"max_hops must be 1..{MAX_HOPS}, got {max_hops}")
    if direction not in ("outputs", "inputs"):
        raise ValueError(f"direction must be outputs or inputs, got {direction!r}")
    syn = g.synapses
    if direction == "outputs":
        ptr, order, other = g.out_ptr, None, g.dst
    else:
        ptr, order, other = g.in_ptr, g.in_order, g.src
    hops = np.full(g.n, -1, dtype=np.int64)
    hops[start] = 0
    frontier = np.array([start], dtype=np.int64)
    for h in range(1, max_hops + 1):
        check(deadline)
        pos = _gather(ptr, frontier)
        edges = pos if order is None else order[pos]
        if min_synapses > 1:
            edges = edges[syn[edges] >= min_synapses]
        nxt = np.unique(other[edges])
        nxt = nxt[hops[nxt] < 0]
        hops[nxt] = h
        frontier = nxt if via is None else nxt[via[nxt]]
        if frontier.size == 0:
            break
    found = np.flatnonzero(hops > 0)
    # cells are sorted by nucleus ID, so index order is nucleus-ID order within a hop
    ranked = found[np.argsort(hops[found], kind="stable")]
    return ranked, hops[ranked]
