"""One census request: filter a release graph, count triads and reciprocal pairs, and
compare with a null model. Pure computation on a ReleaseGraph, under a Deadline."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Literal

import numpy as np

from analysis.census import TRIAD_CODES, Progress, ReleaseGraph, census_work, graph_census
from analysis.nullmodel import (
    BURN_IN,
    NULL_CHAINS,
    SWEEPS,
    degree_preserving_null,
    er_expected,
    er_expected_reciprocal,
)
from core.budget import Deadline
from core.errors import BadRequest

NullKind = Literal["none", "er", "degree_preserving"]
MAX_SAMPLES = 1000

#: Cost model of the census on this kind of machine (bench/bench_analytics.py measures it):
#: seconds per wedge candidate of the triangle pass (analysis.census.census_work) and per edge
#: (the sorts and passes around it); a degree-preserving sample adds its swap rounds.
SECONDS_PER_CANDIDATE = 1.0e-8
SECONDS_PER_EDGE = 3.0e-7
SECONDS_PER_SWAP_EDGE = 4.8e-7  # a sweep; 4.5e-7 measured before issue 11's ~7% slower one
#: Peak bytes per edge of one degree-preserving chain at work (its copy of the edges, the swap
#: round's hash tables and temporaries, then a census of the swapped graph), measured at full
#: size; chains running side by side add up.
NULL_CHAIN_BYTES_PER_EDGE = 170


def null_chain_bytes(g: ReleaseGraph) -> int:
    """Peak memory one chain of the degree-preserving null takes on ``g`` (estimate)."""
    return g.m * NULL_CHAIN_BYTES_PER_EDGE


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
        if "cell_type" not in g.carried():  # the motif language's rule: say so, not 0 cells
            raise BadRequest(
                "cellTypes: this release's cells carry no cell type; they carry: "
                + ", ".join(sorted(g.carried()))
            )
        wanted = set(cell_types)
        types = g.cell_type if g.cell_type is not None else np.full(g.n, None, dtype=object)
        keep &= np.fromiter((t in wanted for t in types), dtype=bool, count=g.n)
    if nucleus_ids is not None:
        keep &= np.isin(g.nodes, np.asarray(list(nucleus_ids), dtype=np.int64))
    if keep.all() and min_synapses == 1:
        return g
    return g.subgraph(keep, min_synapses=min_synapses)


def check_samples(null: NullKind, samples: int) -> None:
    if null == "degree_preserving" and not 2 <= samples <= MAX_SAMPLES:
        raise BadRequest(f"samples must be between 2 and {MAX_SAMPLES}, got {samples}")


def estimate_seconds(g: ReleaseGraph, null: NullKind = "none", samples: int = 100) -> float:
    """Rough wall-clock seconds of :func:`run_census` on one core (cost model above): one
    census, plus ``samples`` censuses and their swap rounds for the degree-preserving null.
    The first call on a graph costs one O(m) pass (kept with the graph)."""
    one = census_work(g) * SECONDS_PER_CANDIDATE + g.m * SECONDS_PER_EDGE
    if null != "degree_preserving":
        return one
    chains = min(NULL_CHAINS, samples)
    sweeps = chains * BURN_IN + SWEEPS * (samples - chains)  # swap sweeps over all chains
    return one * (1 + samples) + sweeps * g.m * SECONDS_PER_SWAP_EDGE


def run_census(
    g: ReleaseGraph,
    *,
    null: NullKind = "none",
    samples: int = 100,
    seed: int | None = None,
    deadline: Deadline | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> CensusResult:
    """Triad census and reciprocal pairs of ``g`` with the chosen null model.

    ``executor`` (a shared thread pool) runs the observed census and the null model's chains
    as its tasks, side by side; the calling thread then only waits (it must not be one of the
    executor's workers). ``progress`` hears the share done."""
    check_samples(null, samples)
    expected: dict[str, float] | None = None
    z: dict[str, float] | None = None
    exp_recip: float | None = None
    if null != "degree_preserving":
        counts, mutual = graph_census(g, deadline, progress)
        if null == "er":
            expected, exp_recip = er_expected(g.n, g.m), er_expected_reciprocal(g.n, g.m)
    else:
        share = [0.0, 0.0]  # observed census, null samples

        def report(part: int, weight: float) -> Progress:
            def hear(x: float) -> None:
                share[part] = x * weight
                if progress is not None:
                    progress(min(1.0, share[0] + share[1]))

            return hear

        first = 1.0 / (samples + 1)
        observed = (
            executor.submit(graph_census, g, deadline, report(0, first))
            if executor is not None
            else None
        )
        nc = degree_preserving_null(
            g, samples, seed or 0, deadline=deadline, executor=executor,
            progress=report(1, 1.0 - first),
        )  # fmt: skip
        counts, mutual = (
            observed.result() if observed is not None else graph_census(g, deadline, None)
        )
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
