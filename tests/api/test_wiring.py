"""typeConnectivity (issue 13): the cell-type x cell-type wiring of a release through GraphQL,
the notebook client and `cgraph export wiring`, against pandas on the loader's input files."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from api.client import BadRequestError, ConnectomeClient
from api.settings import ApiSettings
from cgraph.load import load_release
from graph import releases as graph_releases
from graph.driver import Database
from graph.settings import ConnectionSettings
from loaders.synth import generate
from tests.api.conftest import GraphQL, LiveServer
from tests.expected import expected_release
from tests.helpers import drop_releases

V = 18901
CGRAPH = str(Path(sys.executable).parent / "cgraph")
VOXEL = np.array([4.0, 4.0, 40.0])  # the loader's default voxel size (nm)
KEYS = ["pre_type", "post_type"]


@pytest.fixture(scope="module")
def inputs(db: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    out = tmp_path_factory.mktemp("wiring")
    vs = generate(out, cells=400, synapses=40_000, versions=[V], seed=913).version(V)
    drop_releases(db, V)
    load_release(db, V, nuclei=vs.nuclei, synapses=vs.synapses, neurons=vs.neurons,
                 cell_types=vs.cell_types)  # fmt: skip
    yield {"nuclei": vs.nuclei, "synapses": vs.synapses, "cell_types": vs.cell_types,
           "neurons": vs.neurons}  # fmt: skip
    db.call(graph_releases.drop_release, V)


def _key(x: object) -> object:
    """A type name, or None for a cell without one (pandas gives NaN or None)."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def pandas_wiring(files: dict[str, Path], classification: str = "cell_type",
                  min_synapses: int = 1, box: list[list[float]] | None = None) -> pd.DataFrame:  # fmt: skip
    """The matrix from the input files alone: edges from the shared pandas attribution, types
    from the cell-type (or neuron) table, probability over ordered pairs of distinct cells."""
    nuclei = pd.read_parquet(files["nuclei"])
    edges = expected_release(nuclei, pd.read_parquet(files["synapses"])).edges
    if classification == "is_neuron":
        nr = pd.read_parquet(files["neurons"])
        names = {"neuron": "neuron", "not-neuron": "non_neuron"}
        label = nr.set_index("target_id").cell_type.map(names)
    else:
        ct = pd.read_parquet(files["cell_types"])
        assert not ct.target_id.duplicated().any()  # one row per cell: no tie rule needed
        label = ct.set_index("target_id")[classification]
    cells = pd.DataFrame({"id": nuclei["id"], "t": nuclei["id"].map(label)})
    if box is not None:
        nm = nuclei[[f"pt_position_{a}" for a in "xyz"]].to_numpy() * VOXEL
        inside = ((nm >= np.array(box[0])) & (nm <= np.array(box[1]))).all(axis=1)
        cells = cells[inside]
    t = cells.set_index("id").t
    e = edges[(edges.synapses >= min_synapses) & edges.pre.isin(t.index) & edges.post.isin(t.index)]
    e = e.assign(pre_type=e.pre.map(t), post_type=e.post.map(t))
    got = (e.groupby(KEYS, dropna=False)
           .agg(edges=("pre", "size"), synapses=("synapses", "sum"), size=("size", "sum"))
           .reset_index())  # fmt: skip
    count = {_key(k): int(v) for k, v in t.value_counts(dropna=False).items()}
    got["pre_cells"] = [count[_key(x)] for x in got.pre_type]
    got["post_cells"] = [count[_key(x)] for x in got.post_type]
    same = [_key(a) == _key(b) for a, b in zip(got.pre_type, got.post_type, strict=True)]
    got["possible_pairs"] = np.where(same, got.pre_cells * (got.pre_cells - 1),
                                     got.pre_cells * got.post_cells)  # fmt: skip
    got["probability"] = got.edges / got.possible_pairs
    return got.replace({np.nan: None}).sort_values(KEYS, na_position="last").reset_index(drop=True)


QUERY = """query($v: Int!, $m: Int!, $c: TypeClassification!, $b: [[Float!]!]) {
  typeConnectivity(version: $v, minSynapses: $m, classification: $c, boundingBox: $b) {
    preType postType edges synapses size preCells postCells possiblePairs probability } }"""


def _frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    names = {"preType": "pre_type", "postType": "post_type", "preCells": "pre_cells",
             "postCells": "post_cells", "possiblePairs": "possible_pairs"}  # fmt: skip
    return pd.DataFrame(rows).rename(columns=names)


def _same(got: pd.DataFrame, want: pd.DataFrame, at_least: int = 4) -> None:
    assert len(got) == len(want) and len(want) >= at_least
    assert got[KEYS].astype(object).where(got[KEYS].notna(), None).values.tolist() == \
        want[KEYS].values.tolist()  # fmt: skip
    for col in ("edges", "synapses", "pre_cells", "post_cells", "possible_pairs"):
        assert got[col].astype("int64").tolist() == want[col].astype("int64").tolist(), col
    assert np.allclose(got["size"].astype(float), want["size"].astype(float), rtol=0, atol=0.5)
    assert np.allclose(got["probability"].astype(float), want["probability"].astype(float))


@pytest.fixture(scope="module")
def server(neo4j_settings: ConnectionSettings, inputs: dict[str, Path]) -> Iterator[LiveServer]:
    s = LiveServer(ApiSettings(), neo4j_settings)
    yield s
    s.close()


@pytest.mark.parametrize("classification", ["cell_type", "classification_system", "is_neuron"])
def test_graphql_matrix_equals_pandas(server: LiveServer, inputs: dict[str, Path],
                                      classification: str) -> None:  # fmt: skip
    gql = GraphQL(server, "uvicorn")
    data = gql.data(QUERY, v=V, m=1, c=classification.upper(), b=None)
    # synthetic synapses join neurons only: one is_neuron pair, many type pairs
    _same(_frame(data["typeConnectivity"]), pandas_wiring(inputs, classification),
          at_least=1 if classification == "is_neuron" else 4)  # fmt: skip


def test_min_synapses_and_box_through_the_client(server: LiveServer, inputs: dict[str, Path]) -> None:  # fmt: skip
    nm = pd.read_parquet(inputs["nuclei"])[[f"pt_position_{a}" for a in "xyz"]].to_numpy() * VOXEL
    lo, hi = np.percentile(nm, 10, axis=0), np.percentile(nm, 80, axis=0)
    box = [lo.tolist(), hi.tolist()]
    with ConnectomeClient(server.url) as c:
        got = c.type_connectivity(V, min_synapses=2, bounding_box=box)
        assert list(got.columns) == ["pre_type", "post_type", "edges", "synapses", "size",
                                     "pre_cells", "post_cells", "possible_pairs", "probability"]  # fmt: skip
        _same(got, pandas_wiring(inputs, "cell_type", 2, box))
        whole = c.type_connectivity(V)
        assert whole["edges"].sum() == len(expected_release(
            pd.read_parquet(inputs["nuclei"]), pd.read_parquet(inputs["synapses"])).edges)  # fmt: skip
        with pytest.raises(BadRequestError, match="inverted on x"):
            c.type_connectivity(V, bounding_box=[hi.tolist(), lo.tolist()])
        with pytest.raises(BadRequestError, match="min_synapses"):
            c.type_connectivity(V, min_synapses=0)


def test_unknown_release_and_classification_are_named(server: LiveServer, inputs: dict[str, Path]) -> None:  # fmt: skip
    gql = GraphQL(server, "uvicorn")
    assert gql.codes(QUERY, v=18999, m=1, c="CELL_TYPE", b=None) == ["UNKNOWN_RELEASE"]
    body = gql.post(QUERY, v=V, m=1, c="SPECIES", b=None)
    assert body.get("errors") and "SPECIES" in body["errors"][0]["message"]


def test_cli_exports_csv_and_parquet(inputs: dict[str, Path], tmp_path: Path,
                                     cli_env: dict[str, str]) -> None:  # fmt: skip
    want = pandas_wiring(inputs, "is_neuron", 3)
    for name in ("w.csv", "w.parquet"):
        out = tmp_path / name
        r = subprocess.run([CGRAPH, "export", "wiring", str(V),
                            "--classification", "is_neuron", "--min-synapses", "3", "--out",
                            str(out)], env=cli_env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert f"{len(want)} type pairs -> {out}" in r.stdout
        got = pd.read_csv(out) if name.endswith(".csv") else pd.read_parquet(out)
        _same(got.replace({np.nan: None}), want, at_least=1)
    r = subprocess.run([CGRAPH, "export", "wiring", str(V),
                        "--bbox-nm", "1,2,3", "--out", str(tmp_path / "x.csv")], env=cli_env,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode != 0 and "--bbox-nm takes six numbers" in r.stderr
    assert not (tmp_path / "x.csv").exists()
