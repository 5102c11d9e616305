"""shortestPaths (issue 13): every shortest directed path between two cells of a release, with a
minimum synapse count per edge and a maximum length, against networkx on the pandas edges."""

from __future__ import annotations

import itertools
import random

import networkx as nx
import pytest

from api.client import BadRequestError, ConnectomeClient
from tests.api.conftest import V1, Expected, GraphQL, LiveServer

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
