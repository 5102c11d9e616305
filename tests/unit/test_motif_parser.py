"""Motif language: every construct, comments, separators, syntax and semantic errors."""

from __future__ import annotations

import pytest

from analysis.motif.ir import Constraint, Edge, Motif
from analysis.motif.parser import parse_motif
from core.errors import MotifError, MotifSyntaxError


def test_edges_constraints_and_comments() -> None:
    m = parse_motif(
        """
        # a feed-forward loop
        A -> B [synapses >= 3, size > 5000]   # strong
        B -> C; A -> C [mean_size <= 2.5e2]
        C !> A
        B ~> A
        """
    )
    assert m == Motif(
        nodes=("A", "B", "C"),
        edges=(
            Edge("A", "B", (Constraint("synapses", ">=", 3), Constraint("size", ">", 5000))),
            Edge("B", "C"),
            Edge("A", "C", (Constraint("mean_size", "<=", 250.0),)),
        ),
        non_edges=(Edge("C", "A"), Edge("B", "A")),
    )


def test_node_constraints_values_and_operator_aliases() -> None:
    m = parse_motif(
        "A -> B\n"
        'A.cell_type = "23P"; B.cell_type in [\'BC\', "MC"]\n'
        "A.is_neuron == true; B.is_neuron != False\n"
        "A.nucleus_id <> -12; B.classification_system = 'aibs_coarse'"
    )
    assert m.node_constraints == (
        ("A", Constraint("cell_type", "=", "23P")),
        ("B", Constraint("cell_type", "in", ("BC", "MC"))),
        ("A", Constraint("is_neuron", "=", True)),
        ("B", Constraint("is_neuron", "!=", False)),
        ("A", Constraint("nucleus_id", "!=", -12)),
        ("B", Constraint("classification_system", "=", "aibs_coarse")),
    )
    assert m.constraints_of("A")[0] == Constraint("cell_type", "=", "23P")


def test_repeated_edges_merge_and_induced_pairs() -> None:
    m = parse_motif("A->B [synapses > 1];;\n\nA -> B [size < 9]; A->B [synapses > 1]")
    assert m.edges == (
        Edge("A", "B", (Constraint("synapses", ">", 1), Constraint("size", "<", 9))),
    )
    assert m.induced_non_edges() == (Edge("B", "A"),)


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("A -> B C -> D", 1, 8),
        ("A -> B\nB => C", 2, 3),
        ("A -> B\n\n  B -> ", 3, 8),
        ("A -> B [synapses >= ]", 1, 21),
        ('A -> B\nA.cell_type in "BC"', 2, 16),
        ("A -> B $", 1, 8),
        ("A -> B [synapses 3]", 1, 18),
    ],
)
def test_syntax_errors_report_line_and_column(text: str, line: int, column: int) -> None:
    with pytest.raises(MotifSyntaxError) as err:
        parse_motif(text)
    assert (err.value.line, err.value.column) == (line, column), str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "A -> B [weight > 3]",
            "unknown edge property 'weight'; allowed: synapses, size, mean_size",
        ),
        ("A -> B\nA.colour = 'red'", "unknown node property 'colour'; allowed: cell_type,"),
        ("A -> B\nA.cell_type > 'x'", "operator '>' is not allowed on node property 'cell_type'"),
        ("A -> B\nA.cell_type = 3", "'cell_type' takes a str, not int 3"),
        ("A -> B\nA.is_neuron = 'yes'", "'is_neuron' takes a bool"),
        ("A -> B\nA.nucleus_id in [1, 'x']", "takes int values, not str 'x'"),
        ("A -> B\nA.cell_type in []", "'in' takes a non-empty list"),
        ("A -> B [synapses >= 'many']", "'synapses' takes a number, not str 'many'"),
        ("A -> B [size >= true]", "'size' takes a number, not bool True"),
        ("A -> A", "self-edge A -> A"),
        ("A -> B\nA !> B", "edge A -> B is both required (line 1) and forbidden (line 2)"),
        ("A !> B [synapses > 1]", "forbidden edge A !> B cannot have constraints"),
        ("# nothing\n;", "empty motif"),
        ("A -> B\nC.cell_type = 'x'", "node 'C' has constraints but is in no edge"),
        ("; ".join(f"N{i} -> N{i + 1}" for i in range(8)), "motif has 9 nodes; the limit is 8"),
    ],
)
def test_semantic_errors(text: str, message: str) -> None:
    with pytest.raises(MotifError) as err:
        parse_motif(text)
    assert message in str(err.value)


def test_node_limit_is_a_setting() -> None:
    text = "A -> B; B -> C"
    assert len(parse_motif(text, max_nodes=3).nodes) == 3
    with pytest.raises(MotifError, match="limit is 2"):
        parse_motif(text, max_nodes=2)
