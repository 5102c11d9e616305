"""Triad census against networkx and the published MICrONS pinky100 numbers; null models."""

from __future__ import annotations

from math import comb
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from analysis.census import TRIAD_CODES, ReleaseGraph, reciprocal_pairs, triad_census
from analysis.nullmodel import KeyTable, _swap_round, degree_preserving_null, er_expected, repeated


def _from_nx(G: nx.DiGraph) -> ReleaseGraph:
    nodes = np.array(sorted(G.nodes()), dtype=np.int64)
    e = np.array(list(G.edges()), dtype=np.int64).reshape(-1, 2)
    return ReleaseGraph.from_ids(nodes, e[:, 0], e[:, 1])


def _random_digraph(seed: int) -> nx.DiGraph:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 50))
    G = nx.gnp_random_graph(n, float(rng.uniform(0.02, 0.5)), directed=True, seed=seed)
    for a, b in list(G.edges()):
        if rng.random() < 0.3:
            G.add_edge(b, a)  # reciprocal edges
    G.add_nodes_from(range(n, n + int(rng.integers(0, 4))))  # isolated cells
    return nx.relabel_nodes(G, {v: 1000 + 7 * v for v in G})  # ids are not indices


@pytest.mark.parametrize("seed", range(12))
def test_census_equals_networkx(seed: int) -> None:
    G = _random_digraph(seed)
    assert triad_census(_from_nx(G)) == nx.triadic_census(G)


def test_node_mask_is_the_induced_subgraph() -> None:
    G = _random_digraph(99)
    g = _from_nx(G)
    mask = np.arange(g.n) % 3 != 0
    sub = G.subgraph(int(v) for v in g.nodes[mask])
    assert triad_census(g, node_mask=mask) == nx.triadic_census(sub)


def test_reciprocal_pairs_and_tiny_graphs() -> None:
    g = ReleaseGraph.build(np.arange(4), [0, 1, 1, 2, 3], [1, 0, 2, 1, 3])  # 3 -> 3 dropped
    assert (g.m, reciprocal_pairs(g)) == (4, 2)
    assert sum(triad_census(g).values()) == comb(4, 3)
    empty = ReleaseGraph.build(np.arange(2), [], [])
    assert triad_census(empty) == dict.fromkeys(TRIAD_CODES, 0)


def _pinky(shared_data: Path) -> tuple[ReleaseGraph, pd.DataFrame]:
    pinky = shared_data / "microns_pinky100_v185"
    soma = pd.read_csv(pinky / "motifs_pyc_soma.csv")
    syn = pd.read_csv(pinky / "motifs_pyc_synapses.csv").drop_duplicates()
    syn = syn[syn.pre != syn.post]
    return ReleaseGraph.from_ids(soma.segment_id.to_numpy(), syn.pre, syn.post), soma


# PUBLISHED_STATS.md (Turner et al. 2022, MicronsBinder motif notebooks).
PUBLISHED = {
    "full": (363, 1750, 31, "003=7321192 012=541017 102=9724 021D=18707 021U=4267 021C=8821 "
             "111D=287 111U=1071 201=13 030T=1002 030C=79 120D=17 120C=23 120U=39 210=2 300=0"),
    "th100": (111, 659, 29, "003=161442 012=50074 102=2478 021D=2362 021U=1509 021C=2854 "
              "111D=255 111U=353 201=12 030T=352 030C=75 120D=16 120C=23 120U=8 210=2 300=0"),
}  # fmt: skip


@pytest.mark.shared_data
@pytest.mark.parametrize("subset", ["full", "th100"])
def test_pinky100_published_census(subset: str, shared_data: Path) -> None:
    g, soma = _pinky(shared_data)
    if subset == "th100":
        g = g.subgraph(soma.set_index("segment_id").loc[g.nodes, "axon_len"].to_numpy() > 100)
    cells, edges, recip, census = PUBLISHED[subset]
    expected = {k: int(v) for k, v in (kv.split("=") for kv in census.split())}
    assert (g.n, g.m, reciprocal_pairs(g)) == (cells, edges, recip)
    assert triad_census(g) == expected


@pytest.mark.parametrize("model", ["gnp", "gnm"])
def test_er_expectation_sums_to_all_triads(model: str) -> None:
    exp = er_expected(363, 1750, model)  # type: ignore[arg-type]
    assert sum(exp.values()) == pytest.approx(comb(363, 3), rel=1e-12)
    # 012 under G(n,p): C(n,3) * 6 p (1-p)^5 (one of the 6 ordered pairs present)
    p = 1750 / (363 * 362)
    if model == "gnp":
        assert exp["012"] == pytest.approx(comb(363, 3) * 6 * p * (1 - p) ** 5)


def test_degree_preserving_null_keeps_degrees() -> None:
    G = _random_digraph(5)
    g = _from_nx(G)
    src, dst = g.src.copy(), g.dst.copy()
    rng = np.random.default_rng(0)
    accepted = sum(_swap_round(src, dst, g.n, rng) for _ in range(20))
    assert accepted > 0
    assert np.array_equal(np.bincount(src, minlength=g.n), np.bincount(g.src, minlength=g.n))
    assert np.array_equal(np.bincount(dst, minlength=g.n), np.bincount(g.dst, minlength=g.n))
    keys = src * g.n + dst
    assert np.all(src != dst) and np.unique(keys).size == keys.size
    assert not np.array_equal(np.sort(keys), np.sort(g.src * g.n + g.dst))


def test_degree_preserving_null_z_scores_are_finite() -> None:
    G = _random_digraph(7)
    g = _from_nx(G)
    null = degree_preserving_null(g, samples=20, seed=1, workers=1)
    z = null.z_scores(triad_census(g))
    assert set(z) == set(TRIAD_CODES)
    assert all(np.isfinite(v) for v in z.values())
    again = degree_preserving_null(g, samples=20, seed=1, workers=1)
    assert again.mean == null.mean  # seeded


def test_key_table_is_an_exact_set() -> None:
    rng = np.random.default_rng(3)
    keys = np.unique(rng.integers(0, 5_000, 3_000))  # dense: many slot collisions
    table = KeyTable(keys)
    q = np.arange(-3, 6_000)
    assert np.array_equal(table.contains(q), np.isin(q, keys))
    rep = rng.integers(0, 400, 600)
    values, counts = np.unique(rep, return_counts=True)
    assert np.array_equal(repeated(rep), values[counts > 1])


def test_degree_preserving_null_is_the_same_in_worker_processes() -> None:
    """Chains, not workers, fix the result: 2 processes give what 1 gives."""
    G = nx.gnm_random_graph(600, 12_000, directed=True, seed=4)
    g = _from_nx(G)
    one = degree_preserving_null(g, samples=6, seed=3, workers=1)
    two = degree_preserving_null(g, samples=6, seed=3, workers=2)
    assert one == two
    assert sum(one.mean.values()) == pytest.approx(comb(600, 3))


def test_null_model_times_out() -> None:
    from core.budget import Deadline
    from core.errors import QueryTimeout

    g = _from_nx(_random_digraph(3))
    with pytest.raises(QueryTimeout):
        degree_preserving_null(g, samples=50, seed=0, workers=1, deadline=Deadline(0.001, 0.0))
