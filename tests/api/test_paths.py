"""shortestPaths (issue 13): every shortest directed path between two cells of a release, with a
minimum synapse count per edge and a maximum length, against networkx on the pandas edges."""

from __future__ import annotations

import itertools
import random

import networkx as nx
import pandas as pd
import pytest

from api.client import BadRequestError, ConnectomeClient
from loaders.synth import generate
from tests.api.conftest import V1, V2, Expected, GraphQL, LiveServer

QUERY = """query($v: Int!, $a: Int!, $b: Int!, $m: Int!, $l: Int!) {
  shortestPaths(version: $v, fromNucleusId: $a, toNucleusId: $b, minSynapses: $m,
                maxLength: $l, first: 1000) { length synapses cells { nucleusId } } }"""


def _graph(exp: Expected, min_synapses: int) -> nx.DiGraph:
    e = exp.edges[exp.edges.synapses >= min_synapses]
    g = nx.DiGraph()
    g.add_nodes_from(int(n) for n in exp.nuclei["id"])
    for a, b, s in zip(e.pre, e.post, e.synapses, strict=True):
        g.add_edge(int(a), int(b), synapses=int(s))
    return g


def _want(g: nx.DiGraph, a: int, b: int, max_length: int) -> list[list[int]]:
    try:
        paths = sorted(nx.all_shortest_paths(g, a, b))
    except nx.NetworkXNoPath:
        return []
    return [p for p in paths if len(p) - 1 <= max_length]


@pytest.mark.parametrize(("min_synapses", "max_length"), [(1, 4), (2, 4), (3, 2)])
def test_paths_equal_networkx(gql: GraphQL, releases: dict[int, Expected], min_synapses: int,
                              max_length: int) -> None:  # fmt: skip
    exp = releases[V1]
    g = _graph(exp, min_synapses)
    ids = sorted(int(n) for n in exp.nuclei["id"])
    rng = random.Random(min_synapses * 10 + max_length)
    seen_path = 0
    for a, b in [tuple(rng.sample(ids, 2)) for _ in range(12)]:
        got = gql.data(QUERY, v=V1, a=a, b=b, m=min_synapses, l=max_length)["shortestPaths"]
        want = _want(g, a, b, max_length)
        assert [[c["nucleusId"] for c in p["cells"]] for p in got] == want, (a, b)
        for p in got:
            cells = [c["nucleusId"] for c in p["cells"]]
            assert p["length"] == len(cells) - 1
            assert p["synapses"] == [
                g.edges[u, v]["synapses"] for u, v in itertools.pairwise(cells)
            ]
        seen_path += bool(want)
    assert seen_path  # the sample holds connected pairs


def test_bad_arguments_are_named(gql: GraphQL, releases: dict[int, Expected]) -> None:
    ids = sorted(int(n) for n in releases[V1].nuclei["id"])
    assert gql.codes(QUERY, v=V1, a=ids[0], b=1, m=1, l=4) == ["BAD_REQUEST"]
    assert gql.codes(QUERY, v=V1, a=ids[0], b=ids[1], m=1, l=9) == ["BAD_REQUEST"]
    assert gql.codes(QUERY, v=V1, a=ids[0], b=ids[1], m=0, l=4) == ["BAD_REQUEST"]
    assert gql.codes(QUERY, v=99999, a=ids[0], b=ids[1], m=1, l=4) == ["UNKNOWN_RELEASE"]
    assert gql.data(QUERY, v=V1, a=ids[0], b=ids[0], m=1, l=4)["shortestPaths"] == []


def test_client_returns_a_long_frame(live: GraphQL, releases: dict[int, Expected]) -> None:
    assert isinstance(live.transport, LiveServer)
    exp = releases[V1]
    g = _graph(exp, 1)
    a = int(exp.edges.pre.value_counts().index[0])
    b = next(n for n in sorted(g.nodes) if n != a and nx.has_path(g, a, n)
             and nx.shortest_path_length(g, a, n) >= 2)  # fmt: skip
    with ConnectomeClient(live.transport.url) as c:
        df = c.shortest_paths(V1, a, b, first=1000)
        with pytest.raises(BadRequestError, match="maxLength"):
            c.shortest_paths(V1, a, b, max_length=0)
    want = _want(g, a, b, 4)
    assert list(df.columns) == ["path", "step", "nucleus_id", "synapses"]
    assert [list(x.nucleus_id) for _, x in df.groupby("path")] == want
    assert (df[df.step == 0].synapses == 0).all()


# ---------------------------------------------------------------- filters, weights, reachability


@pytest.fixture(scope="module")
def types(releases: dict[int, Expected], tmp_path_factory: pytest.TempPathFactory) -> dict[int, str]:  # fmt: skip
    """Cell type per nucleus of V1, from the generator's own cell-type table (the same
    arguments as tests/api/conftest.py: the generator is deterministic)."""
    out = tmp_path_factory.mktemp("paths_types")
    vs = generate(out, cells=300, synapses=30_000, versions=[V1, V2], seed=4242,
                  nucleus_id_base=2_000_000).version(V1)  # fmt: skip
    ct = pd.read_parquet(vs.cell_types)
    assert set(ct.target_id) <= set(releases[V1].nuclei["id"])
    return {int(k): str(v) for k, v in zip(ct.target_id, ct.cell_type, strict=True)}


FILTERED = """query($v: Int!, $a: Int!, $b: Int!, $l: Int!, $w: PathWeight!, $t: [String!]) {
  shortestPaths(version: $v, fromNucleusId: $a, toNucleusId: $b, maxLength: $l, first: 1000,
                weight: $w, intermediateCellTypes: $t) { synapses cells { nucleusId } } }"""


def _pairs(exp: Expected, seed: int, n: int) -> list[tuple[int, int]]:
    ids = sorted(int(x) for x in exp.nuclei["id"])
    rng = random.Random(seed)
    return [tuple(rng.sample(ids, 2)) for _ in range(n)]  # type: ignore[misc]


def test_intermediate_cell_types_equal_networkx_on_the_kept_cells(
    gql: GraphQL, releases: dict[int, Expected], types: dict[int, str]
) -> None:
    exp = releases[V1]
    g = _graph(exp, 1)
    common = pd.Series(types).value_counts().index[:2].tolist()
    seen = 0
    for a, b in _pairs(exp, 5, 15):
        keep = [n for n in g.nodes if types.get(n) in common] + [a, b]
        want = _want(g.subgraph(keep), a, b, 4)
        got = gql.data(FILTERED, v=V1, a=a, b=b, l=4, w="HOPS", t=common)["shortestPaths"]
        assert [[c["nucleusId"] for c in p["cells"]] for p in got] == want, (a, b)
        seen += bool(want)
    assert seen


def test_strongest_paths_equal_a_networkx_threshold_search(
    gql: GraphQL, releases: dict[int, Expected]
) -> None:
    exp = releases[V1]
    levels = sorted(set(int(s) for s in exp.edges.synapses))
    seen = 0
    for a, b in _pairs(exp, 9, 12):
        best: list[list[int]] = []
        for t in levels:  # the largest threshold that still connects a to b within 3 edges
            found = _want(_graph(exp, t), a, b, 3)
            if not found:
                break
            best = found
        got = gql.data(FILTERED, v=V1, a=a, b=b, l=3, w="STRONGEST", t=None)["shortestPaths"]
        assert [[c["nucleusId"] for c in p["cells"]] for p in got] == best, (a, b)
        if best:
            seen += 1
            g = _graph(exp, 1)
            weakest = {min(g.edges[u, v]["synapses"] for u, v in itertools.pairwise(p))
                       for p in best}  # fmt: skip
            assert [min(p["synapses"]) for p in got] == [weakest.pop()] * len(got)
    assert seen


REACH = """query($v: Int!, $n: Int!, $h: Int!, $m: Int!, $d: Direction!, $t: [String!],
                 $vt: [String!], $f: Int!, $after: String) {
  reachableCells(version: $v, fromNucleusId: $n, maxHops: $h, minSynapses: $m, direction: $d,
                 cellTypes: $t, viaCellTypes: $vt, first: $f, after: $after) {
    totalCount nodes { nucleusId hops } pageInfo { hasNextPage endCursor } } }"""


@pytest.mark.parametrize(("hops", "m", "direction"), [(1, 1, "OUTPUTS"), (2, 2, "INPUTS"),
                                                      (3, 1, "OUTPUTS")])  # fmt: skip
def test_reachable_cells_equal_networkx(gql: GraphQL, releases: dict[int, Expected],
                                        hops: int, m: int, direction: str) -> None:  # fmt: skip
    exp = releases[V1]
    g = _graph(exp, m)
    if direction == "INPUTS":
        g = g.reverse()
    for a, _ in _pairs(exp, hops, 4):
        dist = nx.single_source_shortest_path_length(g, a, cutoff=hops)
        want = sorted(((d, n) for n, d in dist.items() if n != a))
        got, after = [], None
        for _ in range(100):  # bounded
            page = gql.data(REACH, v=V1, n=a, h=hops, m=m, d=direction, t=None, vt=None,
                            f=53, after=after)["reachableCells"]  # fmt: skip
            assert page["totalCount"] == len(want)
            got += [(r["hops"], r["nucleusId"]) for r in page["nodes"]]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        assert got == want, a


def test_reachable_through_and_to_cell_types(live: GraphQL, releases: dict[int, Expected],
                                             types: dict[int, str]) -> None:  # fmt: skip
    assert isinstance(live.transport, LiveServer)
    exp = releases[V1]
    g = _graph(exp, 1)
    common = pd.Series(types).value_counts().index[:2].tolist()
    target = pd.Series(types).value_counts().index[-1]
    a = int(exp.edges.pre.value_counts().index[0])
    # a path may pass through cells of `common` only: the others end paths
    h = g.copy()
    h.remove_edges_from([(u, v) for u, v in g.edges if u != a and types.get(u) not in common])
    dist = nx.single_source_shortest_path_length(h, a, cutoff=3)
    want = sorted((d, n) for n, d in dist.items() if n != a and types.get(n) == target)
    with ConnectomeClient(live.transport.url) as c:
        got = c.reachable_cells(V1, a, 3, via_cell_types=common, cell_types=[target])
        with pytest.raises(BadRequestError, match="maxHops must be 1..6"):
            c.reachable_cells(V1, a, 7)
        with pytest.raises(BadRequestError, match="is not in release"):
            c.reachable_cells(V1, 1, 2)
        strong = c.shortest_paths(V1, a, int(got.nucleus_id.iloc[-1]), weight="strongest")
    assert list(zip(got.hops, got.nucleus_id, strict=True)) == want and want
    assert strong.attrs["provenance"]["releases"][0]["version"] == V1
    assert len(strong)
