"""In-memory motif counts against DotMotif's GrandIsoExecutor and brute force."""

from __future__ import annotations

import itertools
import operator

import networkx as nx
import numpy as np
import pytest
from dotmotif import GrandIsoExecutor
from dotmotif import Motif as DotMotif

from analysis.census import ReleaseGraph
from analysis.motif.count import automorphism_count, count_motif, find_motif
from analysis.motif.ir import Motif
from analysis.motif.parser import parse_motif
from core.errors import MotifError

TYPES = ["23P", "BC", "MC", "4P"]


def _graphs(n: int, m: int, seed: int) -> tuple[nx.DiGraph, ReleaseGraph]:
    rng = np.random.default_rng(seed)
    G = nx.gnm_random_graph(n, m, directed=True, seed=seed)
    for a, b in list(G.edges())[: m // 4]:
        G.add_edge(b, a)
    for v in G.nodes:
        G.nodes[v].update(cell_type=TYPES[rng.integers(4)], is_neuron=bool(rng.random() < 0.7))
    for a, b in G.edges:
        syn = int(rng.integers(1, 6))
        G.edges[a, b].update(synapses=syn, size=syn * int(rng.integers(100, 2000)))
    nodes = np.arange(n)
    e = np.array(list(G.edges)).reshape(-1, 2)
    g = ReleaseGraph.build(
        nodes,
        e[:, 0],
        e[:, 1],
        synapses=[G.edges[a, b]["synapses"] for a, b in e],
        size=[G.edges[a, b]["size"] for a, b in e],
        cell_type=[G.nodes[v]["cell_type"] for v in nodes],
        is_neuron=[G.nodes[v]["is_neuron"] for v in nodes],
    )
    return G, g


G, g = _graphs(60, 400, 0)
SMALL, small = _graphs(22, 110, 1)  # for brute force

# Motifs DotMotif can express (same text in both languages).
DOTMOTIF_CASES = [
    "A -> B; B -> A",
    "A -> B; B -> C; A -> C",
    "A -> B; B -> C; C -> A",
    "A -> B [synapses >= 2]; B -> C; C -> D; A -> D [size > 3000]\n"
    'A.cell_type = "23P"; D.cell_type != "BC"',
    "A -> B; B -> C; A !> C",
    "A -> B [synapses != 3]; B -> C [size <= 4000]; B ~> A",
]


@pytest.mark.parametrize("text", DOTMOTIF_CASES)
def test_count_equals_grandiso(text: str) -> None:
    expected = len(GrandIsoExecutor(graph=G).find(DotMotif(text)))
    assert count_motif(g, parse_motif(text)) == expected


def test_induced_equals_grandiso_with_every_other_pair_forbidden() -> None:
    text = "A -> B; B -> C; A -> C"
    # DotMotif has no induced flag: spell out the forbidden pairs instead.
    spelled = text + "; B !> A; C !> B; C !> A"
    expected = len(GrandIsoExecutor(graph=G).find(DotMotif(spelled)))
    assert count_motif(g, parse_motif(text), induced=True) == expected


def _brute(motif: Motif, induced: bool) -> list[tuple[int, ...]]:
    """All injective assignments in SMALL, checked one by one (no shared code)."""
    G = SMALL
    ops = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le}
    ops |= {">": operator.gt, ">=": operator.ge}

    def edge_value(a: int, b: int, prop: str) -> float:
        d = G.edges[a, b]
        return d["size"] / d["synapses"] if prop == "mean_size" else d[prop]

    out = []
    for assign in itertools.permutations(G.nodes, len(motif.nodes)):
        at = dict(zip(motif.nodes, assign, strict=True))
        ok = all(
            G.has_edge(at[e.src], at[e.dst])
            and all(
                ops[c.op](edge_value(at[e.src], at[e.dst], c.prop), c.value) for c in e.constraints
            )
            for e in motif.edges
        )
        forbidden = motif.induced_non_edges() if induced else motif.non_edges
        ok = ok and not any(G.has_edge(at[e.src], at[e.dst]) for e in forbidden)
        for v, c in motif.node_constraints:
            x = G.nodes[at[v]][c.prop] if c.prop != "nucleus_id" else at[v]
            ok = ok and (x in c.value if c.op == "in" else ops[c.op](x, c.value))  # type: ignore[operator]
        if ok:
            out.append(assign)
    return out


# DotMotif cannot express these: `in` with a list, mean_size (its keys must be
# plain words), booleans, nucleus_id. Expected values come from brute force.
BRUTE_CASES = [
    ("A -> B; B -> C\nA.cell_type in ['BC', 'MC']; C.is_neuron = true", False),
    ("A -> B [mean_size > 800]; B -> A\nB.nucleus_id in [1, 2, 3, 5, 8, 13, 21]", False),
    ("A -> B; B -> C; C -> A [synapses >= 2]\nB.cell_type != '23P'", True),
]


@pytest.mark.parametrize(("text", "induced"), BRUTE_CASES)
def test_count_and_find_equal_brute_force(text: str, induced: bool) -> None:
    motif = parse_motif(text)
    expected = sorted(_brute(motif, induced))
    assert len(expected) > 3
    assert count_motif(small, motif, induced=induced) == len(expected)
    found = find_motif(small, motif, induced=induced, limit=10**6)
    assert [tuple(r[v] for v in motif.nodes) for r in found] == expected
    page = find_motif(small, motif, induced=induced, limit=3, offset=2)
    assert page == found[2:5]


@pytest.mark.parametrize(
    ("text", "automorphisms", "plain"),
    [
        ("A -> B; B -> A", 2, True),
        ("A -> B; B -> C; C -> A", 3, True),
        ("A -> B; B -> C; A -> C", 1, True),
        ("A -> B; A -> C; A -> D", 6, True),
        ("A -> B; A -> C; A -> D\nB.cell_type = 'BC'", 2, False),
        ("A -> B [synapses > 2]; B -> A", 1, False),
        ("A -> B; A -> C; B !> C", 1, False),
    ],
)
def test_distinct_subgraphs_divide_by_automorphisms(
    text: str, automorphisms: int, plain: bool
) -> None:
    motif = parse_motif(text)
    assert automorphism_count(motif) == automorphisms  # counted by hand
    matches = _brute(motif, False)
    assert count_motif(small, motif, distinct_subgraphs=True) == len(matches) // automorphisms
    if plain:  # no constraints: a distinct subgraph = the set of graph edges a match covers
        nodes = motif.nodes
        distinct = {
            frozenset((m[nodes.index(e.src)], m[nodes.index(e.dst)]) for e in motif.edges)
            for m in matches
        }
        assert count_motif(small, motif, distinct_subgraphs=True) == len(distinct)


def test_missing_values_follow_dotmotif() -> None:
    """A missing value satisfies only != (and !in a list), as Python's None does in DotMotif;
    the expected counts are DotMotif's on the same graph (absent keys)."""
    h = ReleaseGraph.build(
        np.arange(3), [0, 1], [1, 2], size=[np.nan, 5.0], cell_type=[None, "BC", "MC"]
    )
    H = nx.DiGraph([(0, 1), (1, 2, {"size": 5.0})])
    H.nodes[1]["cell_type"], H.nodes[2]["cell_type"] = "BC", "MC"
    for text in ("A -> B [size != 1]", "A -> B [size > 1]", "A -> B\nA.cell_type != 'MC'",
                 "A -> B\nA.cell_type = 'BC'"):  # fmt: skip
        expected = len(GrandIsoExecutor(graph=H).find(DotMotif(text.replace("'", '"'))))
        assert count_motif(h, parse_motif(text)) == expected, text
    assert count_motif(h, parse_motif("A -> B\nA.cell_type !in ['MC']")) == 2
    with pytest.raises(MotifError, match="carry no 'is_neuron'"):
        count_motif(h, parse_motif("A -> B\nA.is_neuron = true"))


# Every 2- and 3-node motif without constraints is counted from the dyad/triad census;
# these check that path against brute force, as plain, induced and with forbidden edges.
CENSUS_CASES = [
    "A -> B",
    "A -> B; B -> A",
    "A -> B; B !> A",
    "A -> B; A -> C",
    "A -> B; B -> C; C -> A",
    "A -> B; B -> C; A -> C; C !> A",
    "A -> B; B -> A; B -> C; C !> B",
    "A -> B; C !> A",
]


@pytest.mark.parametrize("text", CENSUS_CASES)
@pytest.mark.parametrize("induced", [False, True])
def test_census_path_equals_brute_force(text: str, induced: bool) -> None:
    motif = parse_motif(text)
    assert count_motif(small, motif, induced=induced) == len(_brute(motif, induced))


# Open motifs end in an expansion that is counted without building rows; disconnected ones
# cross with candidate cells. Constraints keep them on the join path.
OPEN_CASES = [
    "A -> B; A -> C; A -> D\nA.is_neuron = true",
    "A -> B [synapses >= 2]; B -> C; C -> D",
    "A -> B; C -> D\nA.cell_type = 'BC'",
    "A -> B [synapses > 1]; B -> C; D -> C; D !> A",
]


@pytest.mark.parametrize("text", OPEN_CASES)
def test_open_and_disconnected_motifs_equal_brute_force(text: str) -> None:
    motif = parse_motif(text)
    expected = _brute(motif, False)
    assert len(expected) > 0
    assert count_motif(small, motif) == len(expected)
    found = find_motif(small, motif, limit=10**6)
    assert [tuple(r[v] for v in motif.nodes) for r in found] == sorted(expected)


def test_a_long_count_ends_in_timeout() -> None:
    from core.budget import Deadline
    from core.errors import QueryTimeout

    star = parse_motif("A -> B; A -> C; A -> D; A -> E; A -> F; B -> C")
    with pytest.raises(QueryTimeout):
        count_motif(g, star, deadline=Deadline(0.001, 0.0))
