"""The release graph read from a snapshot written by the real pipeline (synthetic inputs ->
cgraph.load.aggregate_to_snapshot) equals the one built from the same edges by
ReleaseGraph.from_ids and counts like networkx; the lazy parts of ReleaseGraph (edge columns,
keys, CSR, in-edge order, KeySet) equal their eager definitions. No database."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from analysis.census import (
    census_work,
    graph_census,
    reciprocal_count,
    reciprocal_pairs,
    sorted_reciprocal_count,
    triad_census,
)
from analysis.census_run import estimate_seconds, run_census
from analysis.from_snapshot import CellIndex, index_of, release_graph_from_snapshot
from analysis.motif import count_motif, parse_motif
from analysis.release_graph import KeySet, ReleaseGraph, stable_order, strictly_sorted
from cgraph.load import aggregate_to_snapshot
from loaders.synth import generate
from snapshot.layout import CELLS, EDGES, Snapshot
from tests.expected import expected_release

V = 9611


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Snapshot, Path]]:
    """(snapshot, folder of the synthetic inputs) of one release, CGRAPH_DATA in a temp dir."""
    root = tmp_path_factory.mktemp("from_snapshot")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CGRAPH_DATA", str(root / "data"))
        summary = generate(root / "in", cells=600, synapses=60_000, versions=[V], seed=21,
                           nucleus_id_base=3_000_000)  # fmt: skip
        vs = summary.version(V)
        snap, _ = aggregate_to_snapshot(V, nuclei=vs.nuclei, synapses=vs.synapses,
                                        neurons=vs.neurons, cell_types=vs.cell_types)  # fmt: skip
        yield snap, root / "in"


def _from_ids(snap: Snapshot) -> ReleaseGraph:
    """The same release through ReleaseGraph.from_ids, from pandas reads of the files
    (edges shuffled, so the sort path is used)."""
    cells = pd.read_parquet(snap.file(CELLS))
    e = pd.read_parquet(snap.file(EDGES)).sample(frac=1.0, random_state=1)
    return ReleaseGraph.from_ids(
        cells.nucleus_id.to_numpy()[::-1], e.pre, e.post, synapses=e.synapses,
        size=e["size"].astype("float64"),
        cell_type=cells.cell_type.to_numpy(dtype=object)[::-1],
        is_neuron=cells.is_neuron.astype(object).where(cells.is_neuron.notna(), None)
        .to_numpy()[::-1],
        classification_system=cells.classification_system.to_numpy(dtype=object)[::-1],
    )  # fmt: skip


def _same(a: ReleaseGraph, b: ReleaseGraph) -> None:
    for name in ("nodes", "src", "dst", "synapses"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert np.array_equal(a.size, b.size, equal_nan=True)
    for name in ("cell_type", "is_neuron", "classification_system"):
        x, y = getattr(a, name), getattr(b, name)
        assert [None if pd.isna(v) else v for v in x] == [None if pd.isna(v) else v for v in y]


def _nx(g: ReleaseGraph) -> nx.DiGraph:
    G = nx.DiGraph()
    G.add_nodes_from(int(v) for v in g.nodes)
    G.add_edges_from(zip(g.nodes[g.src].tolist(), g.nodes[g.dst].tolist(), strict=True))
    return G


def test_graph_equals_from_ids_and_the_pandas_expectation(
    written: tuple[Snapshot, Path],
) -> None:
    snap, inputs = written
    g = release_graph_from_snapshot(snap)
    assert not g.columns_loaded  # synapses and size are read on first use
    ref = _from_ids(snap)
    _same(g, ref)
    assert g.columns_loaded
    _same(release_graph_from_snapshot(snap, lazy_columns=False), ref)
    # and the edges are the ones the attribution rules give (tests/expected.py, pandas)
    exp = expected_release(pd.read_parquet(inputs / f"nuclei_v{V}.parquet"),
                           pd.read_parquet(inputs / f"synapses_v{V}.parquet"))  # fmt: skip
    got = set(zip(g.nodes[g.src].tolist(), g.nodes[g.dst].tolist(), strict=True))
    assert got == set(zip(exp.edges.pre.tolist(), exp.edges.post.tolist(), strict=True))
    assert g.m == snap.counts["edges"] and g.n == snap.counts["cells"]


def test_counts_equal_networkx(written: tuple[Snapshot, Path]) -> None:
    g = release_graph_from_snapshot(written[0])
    G = _nx(g)
    recip = sum(1 for a, b in G.edges if G.has_edge(b, a)) // 2
    assert recip > 0
    assert reciprocal_pairs(g) == recip == reciprocal_count(g.n, g.src, g.dst)
    census = nx.triadic_census(G)
    assert triad_census(g) == census
    assert graph_census(g) == (census, recip)
    assert count_motif(g, parse_motif("A -> B; B -> A")) == 2 * recip
    ffl = sum(1 for a, b in G.edges for c in G.successors(b) if c != a and G.has_edge(a, c))
    assert count_motif(g, parse_motif("A -> B; B -> C; A -> C")) == ffl


def test_constrained_counts_equal_the_eager_graph(written: tuple[Snapshot, Path]) -> None:
    """Constrained motifs read the lazy edge columns; in-edge expansions use the graph's
    own CSR (full tables) or a sort of the table (constrained ones)."""
    snap = written[0]
    ref = _from_ids(snap)
    for text in (
        "A -> B [synapses >= 2]; B -> A [synapses >= 2]",
        'A -> B; C -> B; A -> C [size > 2000]\nA.cell_type = "23P"',
        "A -> B; C -> B; A !> C",
        "A -> B [mean_size > 900]; B -> C; C -> A",
    ):
        g = release_graph_from_snapshot(snap)
        motif = parse_motif(text)
        assert count_motif(g, motif) == count_motif(ref, motif), text
        assert count_motif(g, motif, induced=True) == count_motif(ref, motif, induced=True)


def test_lazy_structures_equal_their_eager_definitions(written: tuple[Snapshot, Path]) -> None:
    g = release_graph_from_snapshot(written[0])
    n = g.n
    assert np.array_equal(g.keys, g.src * n + g.dst)
    assert np.array_equal(g.in_order, np.lexsort((g.src, g.dst)))
    assert np.array_equal(g.in_order, np.argsort(g.dst, kind="stable"))
    assert np.array_equal(g.out_ptr, np.concatenate([[0], np.cumsum(np.bincount(g.src, minlength=n))]))  # fmt: skip
    assert np.array_equal(g.in_ptr, np.concatenate([[0], np.cumsum(np.bincount(g.dst, minlength=n))]))  # fmt: skip
    assert g.edge_keys is g.edge_keys  # built once
    q = np.random.default_rng(0).integers(-5, n * n + 5, 50_000)
    q = np.concatenate([q, g.keys[::7], g.dst * n + g.src])
    assert np.array_equal(g.edge_keys.contains(q), np.isin(q, g.keys))


def test_a_replaced_snapshot_does_not_change_what_the_graph_reads(
    written: tuple[Snapshot, Path], tmp_path: Path
) -> None:
    """The edge columns are read later from a memory map opened at build time: renaming the
    snapshot away (what a replacing load does) and deleting it changes nothing."""
    snap = written[0]
    copy = tmp_path / "v"
    shutil.copytree(snap.path, copy)
    from snapshot.layout import read_snapshot

    g = release_graph_from_snapshot(read_snapshot(copy))
    moved = tmp_path / "gone"
    copy.rename(moved)
    shutil.rmtree(moved)
    _same(g, _from_ids(snap))


def test_census_progress_and_cache(written: tuple[Snapshot, Path]) -> None:
    g = release_graph_from_snapshot(written[0])
    heard: list[float] = []
    first = graph_census(g, progress=heard.append)
    assert heard and heard == sorted(heard) and heard[-1] == pytest.approx(1.0)
    assert all(0.0 <= x <= 1.0 for x in heard)
    assert g.peek("census") is not None and graph_census(g) == first
    assert census_work(g) > 0 and estimate_seconds(g) > 0
    assert estimate_seconds(g, "degree_preserving", 10) > 10 * estimate_seconds(g)
    r = run_census(g, null="er")
    assert {t.code: t.count for t in r.triads} == first[0] and r.reciprocal_pairs == first[1]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("marks", [None, 64, 1])  # one block; many blocks; a cell per block
def test_sorted_reciprocal_count_equals_the_generic_one(
    seed: int, marks: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import analysis.census

    if marks is not None:
        monkeypatch.setattr(analysis.census, "_RECIPROCAL_MARKS", marks)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    k = np.unique(rng.integers(0, n * n, int(rng.integers(1, 4 * n * 4))))
    s, d = k // n, k % n
    keep = s != d
    s, d = s[keep], d[keep]
    extra = rng.random(s.size) < 0.4  # make many of them reciprocal
    k = np.unique(np.concatenate([s * n + d, d[extra] * n + s[extra]]))
    g = ReleaseGraph.build(np.arange(n), k // n, k % n)
    assert sorted_reciprocal_count(g.n, g.src, g.dst) == reciprocal_count(g.n, g.src, g.dst)


@pytest.mark.parametrize("bound", [1, 2, 200, 256, 257, 70_000, 1 << 20, (1 << 24) + 5])
def test_stable_order_is_the_stable_argsort(bound: int) -> None:
    rng = np.random.default_rng(bound)
    for size in (0, 10, 100_000):
        x = rng.integers(0, bound, size)
        assert np.array_equal(stable_order(x, bound), np.argsort(x, kind="stable"))


@pytest.mark.parametrize(("span", "size"), [(50, 3_000), (10_000, 3_000), (10**9, 3_000),
                                           (10**12, 3_000), (10**12, 60_000)])  # fmt: skip
def test_key_set_is_an_exact_set(span: int, size: int) -> None:
    """Exact bitmap (small spans), coarse pre-filter + search (large ones), searches in
    query order and sorted (many keys and queries)."""
    rng = np.random.default_rng(span % 97)
    keys = np.unique(rng.integers(0, span, size))
    ks = KeySet(keys[::-1].copy())  # unsorted input is sorted
    assert ks.exact == (ks.shift == 0) and ks.nbytes <= max(8 * 1024, keys.size * 4 + 8)
    q = np.concatenate([rng.integers(-3, span + 3, 20_000), keys, keys + 1, [-1, span, 2 * span]])
    assert np.array_equal(ks.contains(q), np.isin(q, keys))
    pos = ks.find(q)
    hit = pos >= 0
    assert np.array_equal(hit, np.isin(q, keys)) and np.array_equal(ks.keys[pos[hit]], q[hit])
    empty = KeySet(np.zeros(0, dtype=np.int64))
    assert not empty.contains(q).any()


def test_build_takes_sorted_edges_as_they_are() -> None:
    s, d = np.array([0, 0, 1, 2]), np.array([1, 2, 2, 0])
    assert strictly_sorted(s, d, 3)
    g = ReleaseGraph.build(np.arange(3), s, d)
    assert g.src is not None and np.shares_memory(g.src, s)
    assert not strictly_sorted(np.array([0, 0]), np.array([2, 1]), 3)  # unsorted
    assert not strictly_sorted(np.array([1, 1]), np.array([2, 2]), 3)  # duplicate
    assert not strictly_sorted(np.array([1]), np.array([1]), 3)  # autapse
    g = ReleaseGraph.build(np.arange(3), [2, 1, 1, 0], [0, 1, 2, 1], synapses=[4, 5, 6, 7])
    assert (g.src.tolist(), g.dst.tolist(), g.synapses.tolist()) == ([0, 1, 2], [1, 2, 0], [7, 6, 4])  # fmt: skip
    with pytest.raises(ValueError, match="duplicate"):
        ReleaseGraph.build(np.arange(3), [1, 1], [2, 2])


def test_cell_index_refuses_unknown_ids() -> None:
    nodes = np.array([5, 9, 12])
    assert index_of(nodes, np.array([12, 5, 9])).tolist() == [2, 0, 1]
    for bad in ([7], [13], [-1]):
        with pytest.raises(ValueError, match="not among the cells"):
            index_of(nodes, np.array(bad))
    huge = np.array([1 << 40, (1 << 40) + 3])  # above the dense table: binary search
    assert not CellIndex(huge).dense
    assert index_of(huge, huge[::-1].copy()).tolist() == [1, 0]
    with pytest.raises(ValueError, match="not among the cells"):
        index_of(huge, np.array([(1 << 40) + 1]))


def test_forget_drops_a_kept_result_only() -> None:
    g = ReleaseGraph.build(np.arange(3), [0, 1], [1, 2])
    calls: list[int] = []

    def make(value: int) -> int:
        calls.append(value)
        return value

    assert g.cached("x", lambda: make(7)) == 7
    assert g.cached("x", lambda: make(8)) == 7 and calls == [7]
    g.forget("x", "never-kept")
    assert g.cached("x", lambda: make(9)) == 9 and calls == [7, 9]
