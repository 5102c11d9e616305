"""Two synthetic releases loaded through the Python API: every edge, root ID and count equals
an independent pandas computation from the same files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from cgraph.load import load_release
from core.errors import ReleaseExists
from graph import releases
from graph.driver import Database
from loaders.synth import generate
from snapshot.layout import open_snapshot
from tests.expected import expected_release
from tests.helpers import drop_releases

V1, V2 = 9101, 9102


@pytest.fixture(scope="module")
def synthetic(db: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("synth")
    generate(out, cells=400, synapses=40_000, versions=[V1, V2], seed=7, nucleus_id_base=4_000_000)
    for v in (V1, V2):
        drop_releases(db, v)
        load_release(
            db,
            v,
            nuclei=out / f"nuclei_v{v}.parquet",
            synapses=out / f"synapses_v{v}.parquet",
            neurons=out / f"neurons_v{v}.parquet",
            cell_types=out / f"cell_types_v{v}.parquet",
        )
    yield out
    for v in (V1, V2):
        db.call(releases.drop_release, v)


def graph_edges(db: Database, version: int) -> pd.DataFrame:
    """Edges as Neo4j holds them, with each edge's synapses from the release snapshot."""
    rows = db.read(
        f"MATCH (a:Cell)-[r:SYNAPSE_V{version}]->(b:Cell) "
        "RETURN a.nucleus_id AS pre, b.nucleus_id AS post, r.synapses AS synapses, r.size AS size"
    )
    df = pd.DataFrame(rows).sort_values(["pre", "post"]).reset_index(drop=True)
    syn = pd.read_parquet(open_snapshot(version).file("synapses.parquet"))
    syn = syn[syn.outcome == "used"].sort_values("id")
    syn = syn.astype({"pre_nucleus_id": "int64", "post_nucleus_id": "int64"})
    per_edge = (
        syn.rename(columns={"pre_nucleus_id": "pre", "post_nucleus_id": "post"})
        .groupby(["pre", "post"], sort=True)
        .agg(sizes=("size", tuple), synapse_ids=("id", tuple))
    )
    return df.join(per_edge, on=["pre", "post"])


@pytest.mark.parametrize("version", [V1, V2])
def test_edges_roots_and_counts_equal_pandas(db: Database, synthetic: Path, version: int) -> None:
    nuclei = pd.read_parquet(synthetic / f"nuclei_v{version}.parquet")
    syn = pd.read_parquet(synthetic / f"synapses_v{version}.parquet")
    exp = expected_release(nuclei, syn)
    assert exp.counts["dropped_partner_without_nucleus"] > 0  # the data exercises the rules
    assert exp.counts["dropped_autapse"] > 0 and exp.counts["multi_nucleus_roots"] > 0

    got = graph_edges(db, version)
    want = exp.edges[["pre", "post", "synapses", "size", "sizes", "synapse_ids"]]
    pd.testing.assert_frame_equal(got, want.reset_index(drop=True), check_dtype=False)

    cells = pd.DataFrame(
        db.read(
            f"MATCH (c:Cell) WHERE c.root_id_v{version} IS NOT NULL "
            f"RETURN c.nucleus_id AS nucleus_id, c.root_id_v{version} AS root_id, "
            f"c.out_synapses_v{version} AS out_synapses, c.in_synapses_v{version} AS in_synapses"
        )
    ).sort_values("nucleus_id")
    want_cells = exp.cells.sort_values("nucleus_id")[list(cells.columns)]
    pd.testing.assert_frame_equal(
        cells.reset_index(drop=True), want_cells.reset_index(drop=True), check_dtype=False
    )

    info = db.call(releases.get_release, version)
    assert info is not None and info.status == "complete"
    for key, value in exp.counts.items():
        assert info.counts[key] == value, key


def test_root_ids_are_exact_int64_and_release_scoped(db: Database, synthetic: Path) -> None:
    n1 = pd.read_parquet(synthetic / f"nuclei_v{V1}.parquet").set_index("id").pt_root_id
    n2 = pd.read_parquet(synthetic / f"nuclei_v{V2}.parquet").set_index("id").pt_root_id
    changed = n1[(n1 != n2) & (n1 > 2**53) & (n2 > 2**53)].index[:5]
    assert len(changed) > 0, "the synthetic releases should churn some roots"
    for nid in changed:
        for version, roots in ((V1, n1), (V2, n2)):
            rows = db.read(
                f"MATCH (c:Cell {{root_id_v{version}: $root}}) RETURN c.nucleus_id AS n",
                {"root": int(roots[nid])},
            )
            holders = sorted(roots[roots == roots[nid]].index)  # several on a merged root
            assert sorted(r["n"] for r in rows) == holders


def test_annotations_are_release_scoped(db: Database, synthetic: Path) -> None:
    ct = pd.read_parquet(synthetic / f"cell_types_v{V1}.parquet").set_index("target_id")
    neu = pd.read_parquet(synthetic / f"neurons_v{V1}.parquet").set_index("target_id")
    rows = db.read(
        f"MATCH (c:Cell) WHERE c.root_id_v{V1} IS NOT NULL RETURN c.nucleus_id AS n, "
        f"c.cell_type_v{V1} AS t, c.is_neuron_v{V1} AS neuron"
    )
    for r in rows:
        assert r["t"] == ct.cell_type.get(r["n"])
        assert r["neuron"] == (neu.cell_type.get(r["n"]) == "neuron")


def test_reload_without_replace_is_refused(db: Database, synthetic: Path) -> None:
    before = db.read(f"MATCH ()-[r:SYNAPSE_V{V1}]->() RETURN count(r) AS n")
    with pytest.raises(ReleaseExists, match="--replace"):
        load_release(
            db, V1, nuclei=synthetic / f"nuclei_v{V1}.parquet",
            synapses=synthetic / f"synapses_v{V1}.parquet",
        )  # fmt: skip
    assert db.read(f"MATCH ()-[r:SYNAPSE_V{V1}]->() RETURN count(r) AS n") == before


def test_drop_release_leaves_the_other_release_whole(db: Database, synthetic: Path) -> None:
    v3 = 9103
    before = graph_edges(db, V2)
    load_release(db, v3, nuclei=synthetic / f"nuclei_v{V1}.parquet",
                 synapses=synthetic / f"synapses_v{V1}.parquet")  # fmt: skip
    db.call(releases.drop_release, v3)
    assert db.call(releases.get_release, v3) is None
    assert db.read("MATCH (c:Cell) WHERE c.root_id_v9103 IS NOT NULL RETURN count(c) AS n") == [
        {"n": 0}
    ]
    pd.testing.assert_frame_equal(graph_edges(db, V2), before)
