"""`cgraph motif` and `cgraph census` (run through the CLI's error-mapping group, as they will be
once registered in api/cli.py) against a synthetic release; expected values from networkx."""

from __future__ import annotations

from collections.abc import Iterator

import networkx as nx
import pandas as pd
import pytest
from click.testing import CliRunner

from cgraph.load import load_release
from cgraph.main import _Group
from cgraph.motif import census_cmd, motif_cmd
from graph import releases
from graph.driver import Database
from loaders.synth import generate
from tests.expected import expected_release
from tests.helpers import drop_releases

V = 9571
CLI = _Group("cgraph", commands={"motif": motif_cmd, "census": census_cmd})


@pytest.fixture(scope="module")
def graph(db: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[nx.DiGraph]:
    folder = tmp_path_factory.mktemp("motif_cli")
    generate(folder, cells=200, synapses=6_000, versions=[V], seed=3, nucleus_id_base=5_000_000)
    nuclei = pd.read_parquet(folder / f"nuclei_v{V}.parquet")
    synapses = pd.read_parquet(folder / f"synapses_v{V}.parquet")
    drop_releases(db, V)
    load_release(db, V, nuclei=nuclei, synapses=synapses)
    G = nx.DiGraph()
    G.add_nodes_from(int(i) for i in nuclei.id)
    G.add_edges_from(
        expected_release(nuclei, synapses).edges[["pre", "post"]].itertuples(index=False)
    )
    yield G
    db.call(releases.drop_release, V)


def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(CLI, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_motif_prints_count_and_matches(cli_env: dict[str, str], graph: nx.DiGraph) -> None:
    recip = sum(1 for a, b in graph.edges if graph.has_edge(b, a))
    code, out, err = run(cli_env, "motif", "--version", str(V), "A -> B; B -> A", "--limit", "3")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"release {V}: {recip:,} ordered matches"
    assert lines[1] == "A\tB" and len(lines) == 5
    for line in lines[2:]:
        a, b = map(int, line.split("\t"))
        assert graph.has_edge(a, b) and graph.has_edge(b, a)
    code, out, _ = run(cli_env, "motif", "--version", str(V), "A -> B; B -> A",
                       "--distinct-subgraphs", "--limit", "0")  # fmt: skip
    assert out.strip() == f"release {V}: {recip // 2:,} distinct subgraphs"


def test_census_table_equals_networkx(cli_env: dict[str, str], graph: nx.DiGraph) -> None:
    code, out, err = run(cli_env, "census", "--version", str(V), "--null", "er")
    assert code == 0, err
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines()[2:]}
    assert {k: int(v[1].replace(",", "")) for k, v in rows.items()} == nx.triadic_census(graph)
    assert f"cells {graph.number_of_nodes():,}  edges {graph.number_of_edges():,}" in out


def test_errors_are_one_line(cli_env: dict[str, str], graph: nx.DiGraph) -> None:
    code, _, err = run(cli_env, "motif", "--version", str(V), "A -> B\nB =>")
    assert code == 1 and err.strip().count("\n") == 0 and "line 2, column 3" in err
    code, _, err = run(cli_env, "census", "--version", "9579")
    assert code == 1 and "release 9579 is not loaded" in err
    code, _, err = run(cli_env, "motif", "--version", str(V), "A -> B; A -> C; A -> D; A -> E; "
                       "A -> F; A -> G; B -> C", "--timeout", "0.5")  # fmt: skip
    assert code == 1 and "did not finish within 0.5 s" in err
