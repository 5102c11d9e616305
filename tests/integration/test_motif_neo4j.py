"""The in-memory release graph read from Neo4j, its cache, and in-memory motif counts and
matches against the compiled Cypher run by Neo4j itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.motif import count_motif, find_motif, parse_motif
from cgraph.load import load_release
from core.budget import Deadline
from core.errors import QueryTimeout, ReleaseNotReady, UnknownRelease
from graph import releases
from graph.driver import Database
from graph.motif.search import count_motif_cypher, search_motif
from graph.whole_release import clear_cache, get_release_graph
from loaders.synth import generate
from tests.expected import expected_release
from tests.helpers import drop_releases

V, V_LOADING, V_MISSING = 9561, 9562, 9569


_drop = drop_releases


@pytest.fixture(scope="module")
def files(db: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    folder = tmp_path_factory.mktemp("motif_neo4j")
    generate(folder, cells=300, synapses=12_000, versions=[V], seed=5, nucleus_id_base=3_000_000)
    f = {t: folder / f"{t}_v{V}.parquet" for t in ("nuclei", "synapses", "cell_types", "neurons")}
    _drop(db, V)
    load_release(db, V, nuclei=f["nuclei"], synapses=f["synapses"], cell_types=f["cell_types"],
                 neurons=f["neurons"])  # fmt: skip
    yield f
    _drop(db, V, V_LOADING)
    clear_cache()


def test_release_graph_equals_pandas(db: Database, files: dict[str, Path]) -> None:
    nuclei = pd.read_parquet(files["nuclei"])
    exp = expected_release(nuclei, pd.read_parquet(files["synapses"]))
    g = db.call(get_release_graph, V)
    assert np.array_equal(g.nodes, np.sort(nuclei.id.to_numpy()))  # isolated cells included
    got = pd.DataFrame({"pre": g.nodes[g.src], "post": g.nodes[g.dst], "synapses": g.synapses,
                        "size": g.size})  # fmt: skip
    want = exp.edges[["pre", "post", "synapses", "size"]].astype({"size": "float64"})
    pd.testing.assert_frame_equal(
        got.sort_values(["pre", "post"]).reset_index(drop=True),
        want.sort_values(["pre", "post"]).reset_index(drop=True),
        check_dtype=False,
    )
    types = pd.read_parquet(files["cell_types"]).set_index("target_id").cell_type
    assert g.cell_type is not None
    assert list(g.cell_type) == [types.get(int(v)) for v in g.nodes]


def test_release_graph_is_cached_until_reloaded(db: Database, files: dict[str, Path]) -> None:
    g = db.call(get_release_graph, V)
    assert db.call(get_release_graph, V) is g
    half = pd.read_parquet(files["synapses"]).iloc[:6_000]
    try:
        load_release(db, V, nuclei=files["nuclei"], synapses=half, replace=True)
        h = db.call(get_release_graph, V)
        assert h is not g and h.n == g.n and h.m < g.m
    finally:
        load_release(db, V, nuclei=files["nuclei"], synapses=files["synapses"],
                     cell_types=files["cell_types"], neurons=files["neurons"], replace=True)  # fmt: skip
    assert db.call(get_release_graph, V).m == g.m


def test_release_graph_errors(db: Database, files: dict[str, Path]) -> None:
    with pytest.raises(UnknownRelease):
        db.call(get_release_graph, V_MISSING)
    _drop(db, V_LOADING)
    db.call(releases.begin_load, V_LOADING, None, replace=False)
    with pytest.raises(ReleaseNotReady):
        db.call(get_release_graph, V_LOADING)
    clear_cache()
    with pytest.raises(QueryTimeout):
        db.call(get_release_graph, V, deadline=Deadline(0.001, 0.0))  # already over


MOTIFS = [
    ("A -> B; B -> A", False),
    ("A -> B; B -> C; A -> C", False),
    ("A -> B; B -> C; A -> C", True),
    ("A -> B; B -> C; C -> A", False),
    ("A -> B [synapses >= 2]; B -> C; C -> D; A -> D\nA.cell_type in ['23P', '4P']", False),
    ("A -> B [mean_size > 500]; B !> A\nB.is_neuron = true", False),
    ("A -> B; A -> C; A -> D\nA.classification_system = 'excitatory_neuron'", False),
    ("A -> B; C -> D\nA.cell_type = 'BC'; C.cell_type = 'MC'", False),
]


@pytest.mark.parametrize(("text", "induced"), MOTIFS)
def test_in_memory_count_equals_cypher(
    db: Database, files: dict[str, Path], text: str, induced: bool
) -> None:
    motif = parse_motif(text)
    g = db.call(get_release_graph, V)
    expected = db.call(count_motif_cypher, V, motif, induced=induced)
    assert expected > 0
    assert count_motif(g, motif, induced=induced) == expected


@pytest.mark.parametrize(("text", "induced"), MOTIFS[:6])
def test_in_memory_matches_equal_cypher_pages(
    db: Database, files: dict[str, Path], text: str, induced: bool
) -> None:
    motif = parse_motif(text)
    g = db.call(get_release_graph, V)
    for skip, limit in ((0, 7), (5, 40)):
        assert db.call(
            search_motif, V, motif, induced=induced, skip=skip, limit=limit
        ) == find_motif(g, motif, induced=induced, offset=skip, limit=limit)
    # keyset pages (what motifSearch's cursors hold): the page after match 4 is matches 5..
    before = find_motif(g, motif, induced=induced, offset=0, limit=5)
    assert db.call(
        search_motif, V, motif, induced=induced, after=before[-1], limit=40
    ) == find_motif(g, motif, induced=induced, offset=5, limit=40)
