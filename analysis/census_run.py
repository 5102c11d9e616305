"""One census request: filter a release graph, count triads and reciprocal pairs, and
compare with a null model. Pure computation on a ReleaseGraph, under a Deadline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from analysis.census import TRIAD_CODES, ReleaseGraph, census_with_pairs
from analysis.nullmodel import degree_preserving_null, er_expected, er_expected_reciprocal
from core.budget import Deadline
from core.errors import BadRequest

NullKind = Literal["none", "er", "degree_preserving"]
MAX_SAMPLES = 1000


@dataclass(frozen=True)
class TriadRow:
    code: str
    count: int
    expected: float | None
    z_score: float | None  # None: no null model, ER, or zero variance


@dataclass(frozen=True)
class CensusResult:
    cells: int
    edges: int
    reciprocal_pairs: int
    expected_reciprocal_pairs: float | None
    triads: tuple[TriadRow, ...]


def select(
    g: ReleaseGraph,
    *,
    min_synapses: int = 1,
    cell_types: Sequence[str] | None = None,
    nucleus_ids: Sequence[int] | None = None,
) -> ReleaseGraph:
    """The cells kept by the filters (all of them when none is given; isolated cells
    stay) and their edges with at least ``min_synapses`` synapses."""
    if min_synapses < 1:
        raise BadRequest(f"minSynapses must be >= 1, got {min_synapses}")
    keep = np.ones(g.n, dtype=bool)
    if cell_types is not None:
        wanted = set(cell_types)
        types = g.cell_type if g.cell_type is not None else np.full(g.n, None, dtype=object)
        keep &= np.fromiter((t in wanted for t in types), dtype=bool, count=g.n)
    if nucleus_ids is not None:
        keep &= np.isin(g.nodes, np.asarray(list(nucleus_ids), dtype=np.int64))
    if keep.all() and min_synapses == 1:
        return g
    return g.subgraph(keep, min_synapses=min_synapses)


def run_census(
    g: ReleaseGraph,
    *,
    null: NullKind = "none",
    samples: int = 100,
    seed: int | None = None,
    deadline: Deadline | None = None,
) -> CensusResult:
    """Triad census and reciprocal pairs of ``g`` with the chosen null model."""
    counts, mutual = census_with_pairs(g.n, g.src, g.dst, deadline)
    expected: dict[str, float] | None = None
    z: dict[str, float] | None = None
    exp_recip: float | None = None
    if null == "er":
        expected, exp_recip = er_expected(g.n, g.m), er_expected_reciprocal(g.n, g.m)
    elif null == "degree_preserving":
        if not 2 <= samples <= MAX_SAMPLES:
            raise BadRequest(f"samples must be between 2 and {MAX_SAMPLES}, got {samples}")
        nc = degree_preserving_null(g, samples, seed or 0, deadline=deadline)
        expected, exp_recip = nc.mean, nc.reciprocal_mean
        z = {c: v for c, v in nc.z_scores(counts).items() if np.isfinite(v)}
    return CensusResult(
        cells=g.n,
        edges=g.m,
        reciprocal_pairs=mutual,
        expected_reciprocal_pairs=exp_recip,
        triads=tuple(
            TriadRow(
                c,
                counts[c],
                None if expected is None else expected[c],
                None if z is None else z.get(c),
            )
            for c in TRIAD_CODES
        ),
    )
