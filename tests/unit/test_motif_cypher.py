"""Motif -> Cypher compiler: expected text, parameters, nothing inlined."""

from __future__ import annotations

import pytest

from analysis.motif.parser import parse_motif
from core.errors import MotifError
from graph.motif.cypher import compile_motif


def test_reciprocal_pair_match() -> None:
    cypher, params = compile_motif(
        parse_motif("A -> B [synapses >= 3]; B -> A"), 117, induced=False, mode="match"
    )
    # unanchored: the streaming form (A's cells in index order, a subquery per cell), so
    # ORDER BY ... LIMIT stops after a page instead of sorting every match (issue 11)
    assert cypher == (
        "MATCH (A:Cell)\n"
        "WHERE A.root_id_v117 IS NOT NULL\n"
        "WITH A ORDER BY A.nucleus_id\n"
        "CALL (A) {\n"
        "  MATCH (A)-[r1:SYNAPSE_V117]->(B:Cell),\n"
        "        (B)-[r2:SYNAPSE_V117]->(A)\n"
        "  WHERE B.root_id_v117 IS NOT NULL\n"
        "    AND A <> B\n"
        "    AND r1.synapses >= $A_B_synapses\n"
        "  RETURN B\n"
        "}\n"
        "RETURN A.nucleus_id AS A, B.nucleus_id AS B\n"
        "ORDER BY A, B\n"
        "SKIP $skip\n"
        "LIMIT $limit"
    )
    assert params == {"A_B_synapses": 3, "skip": 0, "limit": 1000}


def test_keyset_page_after_a_match() -> None:
    motif = parse_motif('A -> B; B -> C; A -> C\nA.cell_type = "23P"')
    cypher, params = compile_motif(motif, 343, limit=5, after=(11, 22, 33))
    assert cypher.startswith(
        "MATCH (A:Cell)\n"
        "WHERE A.root_id_v343 IS NOT NULL\n"
        "  AND A.cell_type_v343 = $A_cell_type\n"
        "  AND A.nucleus_id >= $after_A\n"
        "WITH A ORDER BY A.nucleus_id\n"
    )
    assert (
        "    AND (A.nucleus_id > $after_A OR B.nucleus_id > $after_B"
        " OR (B.nucleus_id = $after_B AND (C.nucleus_id > $after_C)))\n"
    ) in cypher
    assert {k: params[k] for k in ("after_A", "after_B", "after_C", "skip", "limit")} == {
        "after_A": 11, "after_B": 22, "after_C": 33, "skip": 0, "limit": 5}  # fmt: skip
    for literal in ("11", "22", "33"):
        assert literal not in cypher


def test_keyset_in_the_sorted_form_is_fully_lexicographic() -> None:
    cypher, _ = compile_motif(parse_motif("A -> B\nB.nucleus_id = 7"), 2, after=(1, 2))
    assert cypher.startswith("MATCH (A:Cell)-[r1:SYNAPSE_V2]->(B:Cell)\n")
    assert (
        "  AND (A.nucleus_id > $after_A OR (A.nucleus_id = $after_A"
        " AND (B.nucleus_id > $after_B)))\n"
    ) in cypher
    with pytest.raises(MotifError, match="one nucleus ID per motif node"):
        compile_motif(parse_motif("A -> B"), 2, after=(1,))


def test_feed_forward_loop_count_with_node_and_edge_constraints() -> None:
    motif = parse_motif(
        "A -> B; B -> C; A -> C [mean_size > 250.5, size < 98765]\n"
        'A.cell_type in ["BC", "MC"]; C.is_neuron = true; C.classification_system != "xyz"\n'
        "C !> A"
    )
    cypher, params = compile_motif(motif, 943, induced=False, mode="count")
    assert cypher == (
        "MATCH (A:Cell)-[r1:SYNAPSE_V943]->(B:Cell),\n"
        "      (B)-[r2:SYNAPSE_V943]->(C:Cell),\n"
        "      (A)-[r3:SYNAPSE_V943]->(C)\n"
        "WHERE A.root_id_v943 IS NOT NULL\n"
        "  AND B.root_id_v943 IS NOT NULL\n"
        "  AND C.root_id_v943 IS NOT NULL\n"
        "  AND A <> B AND A <> C\n"
        "  AND B <> C\n"
        "  AND A.cell_type_v943 IN $A_cell_type\n"
        "  AND C.is_neuron_v943 = $C_is_neuron\n"
        "  AND (C.classification_system_v943 IS NULL"
        " OR C.classification_system_v943 <> $C_classification_system)\n"
        "  AND toFloat(r3.size) / r3.synapses > $A_C_mean_size\n"
        "  AND r3.size < $A_C_size\n"
        "  AND NOT (C)-[:SYNAPSE_V943]->(A)\n"
        "RETURN count(*) AS n"
    )
    assert params == {
        "A_cell_type": ["BC", "MC"],
        "C_is_neuron": True,
        "C_classification_system": "xyz",
        "A_C_mean_size": 250.5,
        "A_C_size": 98765,
    }
    for literal in ("BC", "MC", "xyz", "250.5", "98765", "true", "True"):
        assert literal not in cypher


def test_induced_cycle_forbids_every_other_pair() -> None:
    cypher, params = compile_motif(
        parse_motif("A -> B; B -> C; C -> A\nB.nucleus_id = 424242"), 2, induced=True, mode="match"
    )
    assert cypher == (
        "MATCH (A:Cell)-[r1:SYNAPSE_V2]->(B:Cell),\n"
        "      (B)-[r2:SYNAPSE_V2]->(C:Cell),\n"
        "      (C)-[r3:SYNAPSE_V2]->(A)\n"
        "WHERE A.root_id_v2 IS NOT NULL\n"
        "  AND B.root_id_v2 IS NOT NULL\n"
        "  AND C.root_id_v2 IS NOT NULL\n"
        "  AND A <> B AND A <> C\n"
        "  AND B <> C\n"
        "  AND B.nucleus_id = $B_nucleus_id\n"
        "  AND NOT (A)-[:SYNAPSE_V2]->(C)\n"
        "  AND NOT (B)-[:SYNAPSE_V2]->(A)\n"
        "  AND NOT (C)-[:SYNAPSE_V2]->(B)\n"
        "RETURN A.nucleus_id AS A, B.nucleus_id AS B, C.nucleus_id AS C\n"
        "ORDER BY A, B, C\n"
        "SKIP $skip\n"
        "LIMIT $limit"
    )
    assert params["B_nucleus_id"] == 424242 and "424242" not in cypher


def test_names_that_are_cypher_keywords_or_clash_are_quoted_or_renamed() -> None:
    cypher, _ = compile_motif(parse_motif("match -> r1"), 5, mode="count", skip=0)
    assert "MATCH (`match`:Cell)-[_r1:SYNAPSE_V5]->(r1:Cell)" in cypher


def test_paging_parameters() -> None:
    _, params = compile_motif(parse_motif("A -> B"), 1, mode="match", skip=40, limit=20)
    assert (params["skip"], params["limit"]) == (40, 20)


@pytest.mark.parametrize("version", [0, -3, "117", 1.5, True])
def test_release_version_must_be_a_positive_int(version: object) -> None:
    with pytest.raises(MotifError, match="positive int"):
        compile_motif(parse_motif("A -> B"), version, mode="count")  # type: ignore[arg-type]


def test_dotmotif_constructs_compile_to_parameters() -> None:
    motif = parse_motif(
        "A -+ B as ab; A -> C as ac\nab.weight >= ac.size\n"
        'A.volume > B.volume; B.cell_type contains "P"; C.cell_type !in "BC MC"\n'
        "C.position_x != 3.5\nac.size = ab.mean_size"
    )
    cypher, params = compile_motif(motif, 7, mode="count")
    assert cypher == (
        "MATCH (A:Cell)-[r1:SYNAPSE_V7]->(B:Cell),\n"
        "      (A)-[r2:SYNAPSE_V7]->(C:Cell)\n"
        "WHERE A.root_id_v7 IS NOT NULL\n"
        "  AND B.root_id_v7 IS NOT NULL\n"
        "  AND C.root_id_v7 IS NOT NULL\n"
        "  AND A <> B AND A <> C\n"
        "  AND B <> C\n"
        "  AND B.cell_type_v7 CONTAINS $B_cell_type\n"
        "  AND NOT $C_cell_type CONTAINS C.cell_type_v7\n"
        "  AND (C.position.x IS NULL OR C.position.x <> $C_position_x)\n"
        "  AND A.classification_system_v7 = $A_classification_system\n"
        "  AND A.volume > B.volume\n"
        "  AND r1.synapses >= r2.size\n"
        "  AND (r2.size = toFloat(r1.size) / r1.synapses"
        " OR (r2.size IS NULL AND toFloat(r1.size) / r1.synapses IS NULL))\n"
        "RETURN count(*) AS n"
    )
    assert params == {
        "B_cell_type": "P",
        "C_cell_type": "BC MC",
        "C_position_x": 3.5,
        "A_classification_system": "excitatory_neuron",
    }


def test_attributes_the_release_lacks_are_refused() -> None:
    with pytest.raises(MotifError, match="release 7's cells carry no 'classification_system'"):
        compile_motif(parse_motif("A -+ B"), 7, mode="count", carried=frozenset({"cell_type"}))
