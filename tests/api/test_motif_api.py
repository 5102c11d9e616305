"""motifSearch, motifCount and motifCensus through GraphQL (MotifQuery on its own schema)
against a real Neo4j: the published pinky100 numbers, networkx and DotMotif on a synthetic
release, pagination, and every error path."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from math import comb
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from dotmotif import GrandIsoExecutor
from dotmotif import Motif as DotMotif

from analysis.motif import parse_motif
from cgraph.load import load_release
from graph import releases
from graph.driver import Database
from graph.settings import ConnectionSettings
from graph.whole_release import clear_cache
from loaders.synth import generate
from tests.api.motif_helpers import (
    SynthRelease,
    data,
    error_code,
    gql,
    pinky_nuclei,
    synthetic_graph,
)
from tests.helpers import drop_releases

PINKY_V, SYNTH_V, MISSING_V = 9551, 9552, 9559
CGRAPH = str(Path(sys.executable).parent / "cgraph")

CENSUS = """
query ($v: Int!, $null: NullModel, $samples: Int, $seed: Int, $types: [String!],
       $ids: [Int!], $min: Int) {
  motifCensus(version: $v, nullModel: $null, samples: $samples, seed: $seed,
              cellTypes: $types, nucleusIds: $ids, minSynapses: $min) {
    cells edges reciprocalPairs expectedReciprocalPairs
    triads { code count expected zScore }
  }
}"""
COUNT = """
query ($v: Int!, $m: String!, $induced: Boolean, $distinct: Boolean) {
  motifCount(version: $v, motif: $m, induced: $induced, distinctSubgraphs: $distinct)
}"""
SEARCH = """
query ($v: Int!, $m: String!, $induced: Boolean, $first: Int, $after: String) {
  motifSearch(version: $v, motif: $m, induced: $induced, first: $first, after: $after) {
    nodes { assignments { name nucleusId cell { nucleusId rootId(version: $v) } } }
    pageInfo { hasNextPage endCursor }
  }
}"""


_drop = drop_releases


@pytest.fixture(scope="module")
def pinky(
    db: Database,
    cli_env: dict[str, str],
    shared_data: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Path]:
    """pinky100 motif graph loaded with `cgraph load`, as a user would."""
    d = shared_data / "microns_pinky100_v185"
    _drop(db, PINKY_V)
    nuclei, surrogates = pinky_nuclei(d, tmp_path_factory.mktemp("pinky"))
    assert surrogates == 0  # every motif cell's root is in soma_valence_v185.csv today
    proc = subprocess.run(
        [CGRAPH, "load", "--version", str(PINKY_V), "--nuclei", str(nuclei),
         "--synapses", str(d / "motifs_pyc_synapses.csv"), "--no-progress",
         "--map", "pre_pt_root_id=pre", "--map", "post_pt_root_id=post"],
        capture_output=True, text=True, env=cli_env, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    yield d
    _drop(db, PINKY_V)


@pytest.fixture(scope="module")
def synth(db: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynthRelease]:
    folder = tmp_path_factory.mktemp("synth")
    generate(
        folder, cells=400, synapses=30_000, versions=[SYNTH_V], seed=11, nucleus_id_base=1_000_000
    )
    release = synthetic_graph(folder, SYNTH_V)
    _drop(db, SYNTH_V)
    f = release.files
    load_release(db, SYNTH_V, nuclei=f["nuclei"], synapses=f["synapses"],
                 cell_types=f["cell_types"], neurons=f["neurons"])  # fmt: skip
    yield release
    _drop(db, SYNTH_V)


def _published(pinky: Path) -> tuple[tuple[int, int, int], dict[str, int]]:
    """(cells, edges, reciprocal pairs) and the triad census of the full graph, parsed
    from PUBLISHED_STATS.md."""
    text = (pinky / "PUBLISHED_STATS.md").read_text()
    row = re.search(r"^\|\s*full\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|", text, re.M)
    census = re.search(r"^- full:\s*(.+)$", text, re.M)
    assert row and census
    triads = {k: int(v) for k, v in (kv.split("=") for kv in census.group(1).split())}
    assert len(triads) == 16
    return (int(row.group(1)), int(row.group(2)), int(row.group(3))), triads


# --------------------------------------------------------------------------- pinky100


def test_pinky100_census_equals_published(neo4j_settings: ConnectionSettings, pinky: Path) -> None:
    (cells, edges, recip), triads = _published(pinky)
    got = data(gql(neo4j_settings, CENSUS, {"v": PINKY_V}))["motifCensus"]
    assert (got["cells"], got["edges"], got["reciprocalPairs"]) == (cells, edges, recip)
    assert {t["code"]: t["count"] for t in got["triads"]} == triads
    assert all(t["expected"] is None and t["zScore"] is None for t in got["triads"])


def test_pinky100_reciprocal_motif_count(neo4j_settings: ConnectionSettings, pinky: Path) -> None:
    (_, _, recip), _ = _published(pinky)
    motif = "A -> B; B -> A"
    ordered = data(gql(neo4j_settings, COUNT, {"v": PINKY_V, "m": motif}))["motifCount"]
    distinct = data(gql(neo4j_settings, COUNT, {"v": PINKY_V, "m": motif, "distinct": True}))
    assert (ordered, distinct["motifCount"]) == (2 * recip, recip) == (62, 31)


def test_pinky100_er_null_uses_the_published_connection_probability(
    neo4j_settings: ConnectionSettings, pinky: Path
) -> None:
    text = (pinky / "PUBLISHED_STATS.md").read_text()
    p = float(re.search(r"ER connection probability \(full\) = ([0-9.]+)", text).group(1))  # type: ignore[union-attr]
    got = data(gql(neo4j_settings, CENSUS, {"v": PINKY_V, "null": "ER"}))["motifCensus"]
    n = got["cells"]
    assert got["expectedReciprocalPairs"] == pytest.approx(comb(n, 2) * p * p)
    expected = {t["code"]: t["expected"] for t in got["triads"]}
    assert expected["012"] == pytest.approx(comb(n, 3) * 6 * p * (1 - p) ** 5)
    assert expected["300"] == pytest.approx(comb(n, 3) * p**6)
    assert sum(expected.values()) == pytest.approx(comb(n, 3))


def test_pinky100_degree_preserving_null_is_seeded(
    neo4j_settings: ConnectionSettings, pinky: Path
) -> None:
    args = {"v": PINKY_V, "null": "DEGREE_PRESERVING", "samples": 20, "seed": 7}
    a = data(gql(neo4j_settings, CENSUS, args))["motifCensus"]
    b = data(gql(neo4j_settings, CENSUS, args))["motifCensus"]
    assert a == b
    by = {t["code"]: t for t in a["triads"]}
    assert sum(t["expected"] for t in a["triads"]) == pytest.approx(comb(a["cells"], 3))
    assert by["021D"]["zScore"] is not None  # degrees fixed, 2-paths vary with triangles
    assert a["expectedReciprocalPairs"] is not None and a["expectedReciprocalPairs"] >= 0


# --------------------------------------------------------------------------- synthetic


def _sub(G: nx.DiGraph, keep: Any) -> nx.DiGraph:
    return G.subgraph([v for v in G.nodes if keep(v)]).copy()


@pytest.mark.parametrize("case", ["all", "cell_types", "nucleus_ids", "min_synapses"])
def test_synthetic_census_equals_networkx(
    neo4j_settings: ConnectionSettings, synth: SynthRelease, case: str
) -> None:
    G = synth.graph
    args: dict[str, Any] = {"v": SYNTH_V}
    ref = G
    if case == "cell_types":
        args["types"] = ["23P", "4P", "BC"]
        ref = _sub(G, lambda v: G.nodes[v]["cell_type"] in args["types"])
    elif case == "nucleus_ids":
        args["ids"] = sorted(G.nodes)[::3] + [999_999_999]  # an unknown ID is just absent
        ref = _sub(G, lambda v: v in set(args["ids"]))
    elif case == "min_synapses":
        args["min"] = 2
        ref = G.copy()
        ref.remove_edges_from([(a, b) for a, b, d in G.edges(data=True) if d["synapses"] < 2])
    got = data(gql(neo4j_settings, CENSUS, args))["motifCensus"]
    recip = sum(1 for a, b in ref.edges if ref.has_edge(b, a)) // 2
    assert (got["cells"], got["edges"], got["reciprocalPairs"]) == (
        ref.number_of_nodes(), ref.number_of_edges(), recip,
    )  # fmt: skip
    assert {t["code"]: t["count"] for t in got["triads"]} == nx.triadic_census(ref)


# Every construct DotMotif shares with us: edges, forbidden edges (!> and ~>), edge
# constraints on synapses and size with each operator, node constraints = and !=.
GRANDISO_MOTIFS = [
    "A -> B; B -> A",
    "A -> B; B -> C; A -> C",
    "A -> B; B -> C; C -> A",
    'A -> B [synapses >= 2]; B -> C; C -> D; A -> D [size > 3000]\nA.cell_type = "23P"\nD.cell_type != "BC"',
    "A -> B; B -> C; A !> C",
    "A -> B [synapses != 1]; B -> C [size <= 4000]; B ~> A",
    "A -> B [synapses = 2, size < 5000]; A -> C [synapses > 1]",
    'A -> B; A -> C; A -> D\nA.cell_type = "4P"',
]


def _grandiso(G: nx.DiGraph, text: str, *, induced: bool, distinct: bool) -> int:
    """Ordered matches from GrandIso; distinct subgraphs = distinct (covered graph edges
    with their motif-edge constraints, cells with their motif-node constraints) among them.
    (DotMotif's own exclude_automorphisms is not used: its symmetry breaking undercounts
    cyclic motifs, e.g. 9,439 instead of 18,778 directed 3-cycles on this release.)"""
    motif = DotMotif(text)
    if induced:  # DotMotif has no induced flag: forbid every unlisted ordered pair
        nodes = list(motif.to_nx().nodes)
        listed = {(u, v) for u, v, *_ in motif.to_nx().edges}
        extra = [f"{u} !> {v}" for u in nodes for v in nodes if u != v and (u, v) not in listed]
        motif = DotMotif(text + "\n" + "\n".join(extra))
    matches = GrandIsoExecutor(graph=G).find(motif)
    if not distinct:
        return len(matches)
    M = motif.to_nx()
    edge_label = {
        (u, v): repr(sorted(d.get("constraints", {}).items())) for u, v, d in M.edges(data=True)
    }
    node_label = {
        v: repr(sorted(motif.list_node_constraints().get(v, {}).items())) for v in M.nodes
    }
    keys = {
        (
            frozenset((m[u], m[v], lab) for (u, v), lab in edge_label.items()),
            frozenset((m[v], lab) for v, lab in node_label.items()),
        )
        for m in matches
    }
    return len(keys)


@pytest.mark.parametrize("text", GRANDISO_MOTIFS)
@pytest.mark.parametrize(("induced", "distinct"), [(False, False), (False, True), (True, False)])
def test_motif_count_equals_grandiso(
    neo4j_settings: ConnectionSettings,
    synth: SynthRelease,
    text: str,
    induced: bool,
    distinct: bool,
) -> None:
    expected = _grandiso(synth.graph, text, induced=induced, distinct=distinct)
    assert expected > 0 or induced
    args = {"v": SYNTH_V, "m": text, "induced": induced, "distinct": distinct}
    assert data(gql(neo4j_settings, COUNT, args))["motifCount"] == expected


def test_motif_count_with_constructs_dotmotif_lacks(
    neo4j_settings: ConnectionSettings, synth: SynthRelease
) -> None:
    """`in` lists, booleans, nucleus_id, classification_system, mean_size: GrandIso on
    the bare edges, then the constraints checked in plain Python on its matches."""
    G = synth.graph
    some = sorted(G.nodes)[::2]
    text = (
        "A -> B [mean_size > 900]; B -> C\n"
        'A.cell_type in ["23P", "4P", "5P-IT"]; B.is_neuron = true\n'
        f"C.nucleus_id in [{', '.join(map(str, some))}]\n"
        'C.classification_system != "nonneuron"'
    )
    matches = GrandIsoExecutor(graph=G).find(DotMotif("A -> B; B -> C"))

    def ok(m: dict[str, int]) -> bool:
        a, b, c = m["A"], m["B"], m["C"]
        e = G.edges[a, b]
        cs = G.nodes[c]["classification_system"]
        return (
            e["size"] / e["synapses"] > 900
            and G.nodes[a]["cell_type"] in ("23P", "4P", "5P-IT")
            and G.nodes[b]["is_neuron"] is True
            and c in set(some)
            and cs is not None and cs != "nonneuron"
        )  # fmt: skip

    expected = sum(map(ok, matches))
    assert expected > 0
    assert data(gql(neo4j_settings, COUNT, {"v": SYNTH_V, "m": text}))["motifCount"] == expected


def test_motif_search_pages_every_match_once(
    neo4j_settings: ConnectionSettings, synth: SynthRelease
) -> None:
    text = 'A -> B; B -> C; C -> A\nA.cell_type = "23P"; B.cell_type = "23P"; C.cell_type = "4P"'
    expected = {
        (m["A"], m["B"], m["C"]) for m in GrandIsoExecutor(graph=synth.graph).find(DotMotif(text))
    }
    assert 50 < len(expected) < 1000
    seen: list[tuple[int, ...]] = []
    after = None
    pages = 0
    while True:
        page = data(
            gql(neo4j_settings, SEARCH, {"v": SYNTH_V, "m": text, "first": 25, "after": after})
        )
        conn = page["motifSearch"]
        for node in conn["nodes"]:
            a = node["assignments"]
            assert [x["name"] for x in a] == ["A", "B", "C"]
            assert all(x["cell"]["nucleusId"] == x["nucleusId"] and x["cell"]["rootId"] for x in a)
            seen.append(tuple(x["nucleusId"] for x in a))
        pages += 1
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) == len(expected)
    assert set(seen) == expected and seen == sorted(seen)
    assert pages == -(-len(expected) // 25)
    count = data(gql(neo4j_settings, COUNT, {"v": SYNTH_V, "m": text}))["motifCount"]
    assert count == len(seen)


# The DotMotif constructs beyond plain edges, through both executors: motifCount (in memory)
# and motifSearch (Cypher in Neo4j) against GrandIso on a copy of the graph where a missing
# value is an absent key (as DotMotif reads it) and weight = synapses.
DOTMOTIF_MOTIFS = [
    (
        'tri(a, b, c) {\n  a -> b\n  b -> c\n  c -> a\n}\ntri(A, B, C)\nA.cell_type = "BC"\n'
        'B.cell_type = "MC"',
        None,
    ),
    (
        'A -> B as ab\nA -> C as ac\nab.weight > ac.weight\nab.size < ac.size\nA.cell_type = "BC"\n'
        'B.cell_type = "23P"',
        None,
    ),
    (
        'A -> B; B -> C\nA.cell_type = B.cell_type\nC.cell_type != A.cell_type\nA.cell_type = "MC"',
        None,
    ),
    ('A -> B [weight >= 3]\nA["cell_type"] contains "4"; B.cell_type !in "23P 4P"', None),
    (
        'A -+ B; B -| C; A -> C\nC.cell_type = "MC"',
        'A -> B; B -> C; A -> C\nA.classification_system = "excitatory_neuron"\n'
        'B.classification_system = "inhibitory_neuron"\nC.cell_type = "MC"',
    ),
    ('A -> C; B -> C\nA === B\nA.cell_type = "BC"\nC.cell_type = "MC"', None),
]


def _absent_for_missing(G: nx.DiGraph) -> nx.DiGraph:
    H = nx.DiGraph()
    H.add_nodes_from(
        (v, {k: x for k, x in d.items() if x is not None}) for v, d in G.nodes(data=True)
    )
    H.add_edges_from((a, b, {**d, "weight": d["synapses"]}) for a, b, d in G.edges(data=True))
    return H


@pytest.mark.parametrize(("ours", "theirs"), DOTMOTIF_MOTIFS)
def test_dotmotif_constructs_in_count_and_search_equal_grandiso(
    neo4j_settings: ConnectionSettings, synth: SynthRelease, ours: str, theirs: str | None
) -> None:
    H = _absent_for_missing(synth.graph)
    nodes = parse_motif(ours).nodes
    expected = {
        tuple(m[v] for v in nodes) for m in GrandIsoExecutor(graph=H).find(DotMotif(theirs or ours))
    }
    assert 0 < len(expected) < 1000
    assert data(gql(neo4j_settings, COUNT, {"v": SYNTH_V, "m": ours}))["motifCount"] == len(
        expected
    )
    conn = data(gql(neo4j_settings, SEARCH, {"v": SYNTH_V, "m": ours, "first": 1000}))[
        "motifSearch"
    ]
    assert not conn["pageInfo"]["hasNextPage"]
    got = {tuple(a["nucleusId"] for a in n["assignments"]) for n in conn["nodes"]}
    assert got == expected


# --------------------------------------------------------------------------- errors


def test_syntax_error_names_line_and_column(
    neo4j_settings: ConnectionSettings, synth: SynthRelease
) -> None:
    for query in (COUNT, SEARCH):
        code, message = error_code(
            gql(neo4j_settings, query, {"v": SYNTH_V, "m": "A -> B\nB => C"})
        )
        assert code == "BAD_REQUEST"
        assert "line 2, column 3" in message, message


def test_unknown_property_is_bad_request(
    neo4j_settings: ConnectionSettings, synth: SynthRelease
) -> None:
    code, message = error_code(
        gql(neo4j_settings, COUNT, {"v": SYNTH_V, "m": "A -> B [colour > 2]"})
    )
    assert code == "BAD_REQUEST" and "unknown edge property 'colour'" in message
    code, message = error_code(gql(neo4j_settings, SEARCH, {"v": SYNTH_V, "m": "A -> B\nA.colour = 'red'"}))  # fmt: skip
    assert code == "BAD_REQUEST" and "unknown node property 'colour'" in message


def test_unknown_release(neo4j_settings: ConnectionSettings) -> None:
    for query, args in ((COUNT, {"m": "A -> B"}), (SEARCH, {"m": "A -> B"}), (CENSUS, {})):
        code, message = error_code(gql(neo4j_settings, query, {"v": MISSING_V, **args}))
        assert code == "UNKNOWN_RELEASE", message


def test_release_not_ready(neo4j_settings: ConnectionSettings, db: Database) -> None:
    v = MISSING_V - 1
    _drop(db, v)
    db.call(releases.begin_load, v, None, replace=False)
    try:
        for query, args in ((COUNT, {"m": "A -> B"}), (SEARCH, {"m": "A -> B"}), (CENSUS, {})):
            code, _ = error_code(gql(neo4j_settings, query, {"v": v, **args}))
            assert code == "RELEASE_NOT_READY"
    finally:
        _drop(db, v)


def test_bad_cursor_and_page_size(neo4j_settings: ConnectionSettings, synth: SynthRelease) -> None:
    args = {"v": SYNTH_V, "m": "A -> B", "after": "bm90LWEtY3Vyc29y"}
    assert error_code(gql(neo4j_settings, SEARCH, args))[0] == "BAD_REQUEST"
    args = {"v": SYNTH_V, "m": "A -> B", "first": 5000}
    assert error_code(gql(neo4j_settings, SEARCH, args))[0] == "LIMIT_EXCEEDED"


def test_long_count_and_census_time_out(
    neo4j_settings: ConnectionSettings, synth: SynthRelease
) -> None:
    """A 7-node star has ~10^12 ordered matches here: it must end in TIMEOUT, not a number."""
    data(gql(neo4j_settings, COUNT, {"v": SYNTH_V, "m": "A -> B"}))  # the graph is cached now
    short = replace(neo4j_settings, query_timeout=1.0)
    star = "A -> B; A -> C; A -> D; A -> E; A -> F; A -> G; A -> H; H -> B"
    code, message = error_code(gql(short, COUNT, {"v": SYNTH_V, "m": star}))
    assert code == "TIMEOUT" and "1 s" in message
    args = {"v": SYNTH_V, "null": "DEGREE_PRESERVING", "samples": 1000}
    assert error_code(gql(short, CENSUS, args))[0] == "TIMEOUT"


def test_long_search_times_out(neo4j_settings: ConnectionSettings, synth: SynthRelease) -> None:
    """The search orders every match: a 6-node path has far too many for 1 s in Neo4j."""
    short = replace(neo4j_settings, query_timeout=1.0)
    path = "A -> B; B -> C; C -> D; D -> E; E -> F"
    assert error_code(gql(short, SEARCH, {"v": SYNTH_V, "m": path}))[0] == "TIMEOUT"


def test_reload_invalidates_the_cached_graph(
    neo4j_settings: ConnectionSettings, db: Database, synth: SynthRelease
) -> None:
    before = data(gql(neo4j_settings, CENSUS, {"v": SYNTH_V}))["motifCensus"]
    f = synth.files
    # same cells, only the first half of the synapses: fewer edges after the reload
    import pandas as pd

    half = pd.read_parquet(f["synapses"]).iloc[:15_000]
    try:
        load_release(db, SYNTH_V, nuclei=f["nuclei"], synapses=half, replace=True)
        after = data(gql(neo4j_settings, CENSUS, {"v": SYNTH_V}))["motifCensus"]
        assert after["cells"] == before["cells"] and after["edges"] < before["edges"]
    finally:
        clear_cache()
        load_release(db, SYNTH_V, nuclei=f["nuclei"], synapses=f["synapses"],
                     cell_types=f["cell_types"], neurons=f["neurons"], replace=True)  # fmt: skip
