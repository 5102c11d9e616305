"""The null models against independent computations: the degree-preserving sampler against the
whole ensemble of tiny graphs (enumerated) and against independent networkx draws; the ER
expectations against independent random graphs. Seeds are fixed: the outcomes are
deterministic, and the tolerances below were chosen from the sampling error, not fitted."""

from __future__ import annotations

import contextlib
import itertools
from functools import cache

import networkx as nx
import numpy as np
import pytest
from scipy.stats import chisquare

from analysis.census import TRIAD_CODES, ReleaseGraph, census_with_pairs, triad_census
from analysis.nullmodel import _swap_round, degree_preserving_null, er_expected


def _ensemble(n: int, edges: list[tuple[int, int]]) -> list[frozenset[tuple[int, int]]]:
    """Every simple digraph (no autapse, no multi-edge) on n cells with the in- and
    out-degrees of ``edges``: brute force over all edge sets of that size."""
    out = np.bincount([a for a, _ in edges], minlength=n)
    inn = np.bincount([b for _, b in edges], minlength=n)
    pairs = [(a, b) for a in range(n) for b in range(n) if a != b]
    found = []
    for chosen in itertools.combinations(pairs, len(edges)):
        if np.array_equal(np.bincount([a for a, _ in chosen], minlength=n), out) and (
            np.array_equal(np.bincount([b for _, b in chosen], minlength=n), inn)
        ):
            found.append(frozenset(chosen))
    return found


TINY = {
    # a directed 3-cycle: its reversal is the only other graph, out of reach of double swaps
    "3-cycle": (3, [(0, 1), (1, 2), (2, 0)], 400, 1),
    # 64 graphs; the old sweep (pairs only, one-sided rejections) was off by chi2 p = 6e-7
    "5 cells, 7 edges": (5, [(0, 1), (1, 2), (2, 0), (0, 3), (3, 4), (4, 1), (2, 3)], 1500, 8),
}


@pytest.mark.parametrize("case", list(TINY))
def test_swap_chain_samples_the_whole_ensemble_uniformly(case: str) -> None:
    """(a) Visit frequencies of every graph of the ensemble fit the uniform distribution
    (chi-square, p > 0.01), sampling every ``spacing`` sweeps (far enough apart that the
    samples are near independent on this graph)."""
    n, edges, samples, spacing = TINY[case]
    ensemble = _ensemble(n, edges)
    index = {g: i for i, g in enumerate(ensemble)}
    src = np.array([a for a, _ in edges], dtype=np.int64)
    dst = np.array([b for _, b in edges], dtype=np.int64)
    rng = np.random.default_rng(0)
    counts = np.zeros(len(ensemble))
    for _ in range(samples):
        for _ in range(spacing):
            _swap_round(src, dst, n, rng)
        counts[index[frozenset(zip(src.tolist(), dst.tolist(), strict=True))]] += 1
    assert counts.min() > 0, "some graphs of the ensemble were never reached"
    assert chisquare(counts).pvalue > 0.01


def _small_graph() -> nx.DiGraph:
    """40 cells, about 180 edges, with reciprocal edges and a hub: every class but 300 occurs."""
    G = nx.gnp_random_graph(40, 0.08, directed=True, seed=21)
    rng = np.random.default_rng(21)
    for a, b in list(G.edges()):
        if rng.random() < 0.25:
            G.add_edge(b, a)
    G.add_edges_from((0, v) for v in range(1, 40, 3))
    return G


def _rows(G: nx.DiGraph) -> list[int]:
    c = nx.triadic_census(G)
    return [c[k] for k in TRIAD_CODES]


DRAWS, SAMPLES = 200, 1000


@cache
def _independent_draws() -> tuple[np.ndarray, dict[str, int]]:
    """200 independent draws: networkx.directed_edge_swap restarted from the observed graph
    each time, for a fixed 20 tries per edge (nswap = max_tries; it stops by raising). A fixed
    number of *tries* is a Metropolis chain, uniform in the limit; a fixed number of accepted
    swaps (nswap alone) samples its jump chain, which favours graphs with more possible swaps
    (here reciprocal pairs 9.57 against 9.73, 2.7 standard errors, over 1,500 draws)."""
    G = _small_graph()
    rng = np.random.default_rng(5)
    rows = []
    for _ in range(DRAWS):
        H = G.copy()
        tries = 20 * H.number_of_edges()
        with contextlib.suppress(nx.NetworkXAlgorithmError):
            nx.directed_edge_swap(H, nswap=tries, max_tries=tries, seed=int(rng.integers(2**31)))
        rows.append(_rows(H))
    return np.array(rows, dtype=np.float64), nx.triadic_census(G)


@cache
def _sampled() -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    G = _small_graph()
    nodes = np.array(sorted(G.nodes()), dtype=np.int64)
    e = np.array(list(G.edges()), dtype=np.int64)
    g = ReleaseGraph.from_ids(nodes, e[:, 0], e[:, 1])
    null = degree_preserving_null(g, samples=SAMPLES, seed=3, workers=1)
    return null.mean, null.std, null.z_scores(triad_census(g))


#: Codes whose spread is large enough to compare (sd of the independent draws >= 1).
def _spread_codes(ref: np.ndarray) -> list[str]:
    return [c for i, c in enumerate(TRIAD_CODES) if ref[:, i].std(ddof=1) >= 1.0]


#: Correlation of the sampler's samples (3 sweeps apart) inflates its variances about 1.5x.
INFLATION = 1.5
#: Relative standard error of the two spread estimates together (normal approximation).
SD_ERROR = float(np.sqrt(1 / (2 * DRAWS) + INFLATION / (2 * SAMPLES)))


def test_degree_preserving_means_and_spreads_match_independent_draws() -> None:
    """(b) Sampled means within 4 standard errors of the independent draws' and standard
    deviations within 3 relative standard errors (SD_ERROR, about 5.7%: +-17%)."""
    ref, _ = _independent_draws()
    mean, std, _ = _sampled()
    codes = _spread_codes(ref)
    assert len(codes) >= 12
    for c in codes:
        i = TRIAD_CODES.index(c)
        r_mean, r_sd = ref[:, i].mean(), ref[:, i].std(ddof=1)
        se = np.sqrt(r_sd**2 / DRAWS + INFLATION * std[c] ** 2 / SAMPLES)
        assert abs(mean[c] - r_mean) <= 4 * se, (c, mean[c], r_mean, se)
        assert std[c] / r_sd == pytest.approx(1.0, abs=3 * SD_ERROR), (c, std[c], r_sd)


def test_degree_preserving_z_scores_match_independent_draws() -> None:
    """(c) z-scores within 0.3 + 3 SD_ERROR |z| of the independent draws' (a z-score's error
    is its mean's, about 0.1 here, plus the spread's relative error times z)."""
    ref, observed = _independent_draws()
    _, _, z = _sampled()
    big = 0
    for c in _spread_codes(ref):
        i = TRIAD_CODES.index(c)
        z_ref = (observed[c] - ref[:, i].mean()) / ref[:, i].std(ddof=1)
        tol = 0.3 + 3 * SD_ERROR * abs(z_ref)
        assert z[c] == pytest.approx(z_ref, abs=tol), (c, z[c], z_ref)
        big += abs(z_ref) > 2
    assert big >= 3  # the graph is far from its null in several classes: z-scores are tested


@pytest.mark.parametrize("model", ["gnp", "gnm"])
def test_er_expectation_matches_random_graphs_on_every_code(model: str) -> None:
    """ER expectations of all 16 classes within 4 standard errors of the mean over 2,000
    independent random digraphs of the same size (networkx generators; counts by our census,
    which tests/unit/test_census.py checks against networkx)."""
    n, m = 30, 120
    rng = np.random.default_rng(11 if model == "gnp" else 12)
    rows = []
    for _ in range(2000):
        s = int(rng.integers(2**31))
        if model == "gnp":
            H = nx.gnp_random_graph(n, m / (n * (n - 1)), directed=True, seed=s)
        else:
            H = nx.gnm_random_graph(n, m, directed=True, seed=s)
        e = np.array(list(H.edges()), dtype=np.int64).reshape(-1, 2)
        counts, _ = census_with_pairs(n, e[:, 0], e[:, 1])
        rows.append([counts[c] for c in TRIAD_CODES])
    draws = np.array(rows, dtype=np.float64)
    exp = er_expected(n, m, model)  # type: ignore[arg-type]
    for i, c in enumerate(TRIAD_CODES):
        se = draws[:, i].std(ddof=1) / np.sqrt(len(draws))
        assert abs(exp[c] - draws[:, i].mean()) <= 4 * se + 1e-9, (c, exp[c], draws[:, i].mean())
