"""What an old py2neo notebook does, against the project's server over Bolt: py2neo 2021.2.4
(end of life, in the test extra only) runs Cypher into DataFrames and matches nodes, over
bolt:// and neo4j://, int64 root IDs and points included (README "py2neo").

This module owns release 9811 and nucleus IDs 8,000,000-8,999,999.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from cgraph.load import load_release
from graph.driver import Database
from graph.settings import ConnectionSettings
from loaders.synth import generate
from tests.helpers import drop_releases

py2neo = pytest.importorskip(
    "py2neo", reason="py2neo is in the test extra (pip install -e '.[test]')"
)

V = 9811
BASE = 8_000_000


@pytest.fixture(scope="module")
def nuclei(db: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[pd.DataFrame]:
    out: Path = tmp_path_factory.mktemp("py2neo")
    generate(out, cells=60, synapses=3_000, versions=[V], seed=81, nucleus_id_base=BASE)
    drop_releases(db, V)
    load_release(db, V, nuclei=out / f"nuclei_v{V}.parquet", synapses=out / f"synapses_v{V}.parquet",
                 cell_types=out / f"cell_types_v{V}.parquet")  # fmt: skip
    yield pd.read_parquet(out / f"nuclei_v{V}.parquet")
    drop_releases(db, V)


@pytest.mark.parametrize("scheme", ["bolt", "neo4j"])
def test_old_notebook_calls(
    neo4j_settings: ConnectionSettings, nuclei: pd.DataFrame, scheme: str
) -> None:
    address = neo4j_settings.uri.split("://", 1)[1]
    graph = py2neo.Graph(f"{scheme}://{address}", auth=(neo4j_settings.user,
                         neo4j_settings.password), name=neo4j_settings.database)  # fmt: skip
    frame = graph.run(
        f"MATCH (c:Cell) WHERE c.root_id_v{V} IS NOT NULL "
        f"RETURN c.nucleus_id AS nucleus_id, c.root_id_v{V} AS root_id, c.position AS position "
        "ORDER BY nucleus_id"
    ).to_data_frame()
    cells = nuclei.set_index("id").loc[frame["nucleus_id"]].reset_index()
    assert len(frame) >= len(nuclei) // 2
    assert frame["root_id"].dtype == "int64"  # 18-digit root IDs survive
    assert frame["root_id"].tolist() == cells["pt_root_id"].tolist()
    x, y, z = frame["position"].iloc[0]  # a cartesian-3d point, in nm (4 x 4 x 40 nm voxels)
    first = cells.iloc[0]
    assert (x, y, z) == pytest.approx((first.pt_position_x * 4, first.pt_position_y * 4,
                                       first.pt_position_z * 40))  # fmt: skip

    nid = int(cells["id"].iloc[0])
    node = py2neo.NodeMatcher(graph).match("Cell", nucleus_id=nid).first()
    assert node is not None and node.has_label("Cell")
    assert node[f"root_id_v{V}"] == int(cells["pt_root_id"].iloc[0])
    assert V in node["releases"]
    typed = py2neo.NodeMatcher(graph).match("Cell").where(f"_.cell_type_v{V} IS NOT NULL")
    assert typed.count() > 0
