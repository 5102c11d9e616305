"""Motif language: every construct, comments, separators, syntax and semantic errors."""

from __future__ import annotations

import pytest

from analysis.motif.ir import Constraint, Edge, EdgeComparison, Motif, NodeComparison
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
        ("A -> B\nA.cell_type in ", 2, 16),
        ("tri(A, B) { A -> B", 1, 19),
        ("A -> B\nA === ", 2, 7),
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
            "A -> B [colour > 3]",
            "unknown edge property 'colour'; allowed: synapses, weight, size, mean_size",
        ),
        ("A -> B\nA.colour = 'red'", "unknown node property 'colour'; allowed: nucleus_id,"),
        ("A -> B\nA.is_neuron > true", "operator '>' is not allowed on node property 'is_neuron'"),
        ("A -> B\nA.cell_type = 3", "'cell_type' takes a str, not int 3"),
        ("A -> B\nA.is_neuron = 'yes'", "'is_neuron' takes a bool"),
        ("A -> B\nA.nucleus_id in [1, 'x']", "takes int values, not str 'x'"),
        ("A -> B\nA.volume contains 'x'", "operator 'contains' is not allowed on node property"),
        ("A -> B\nA.volume > B.cell_type", "A.volume > B.cell_type compares a number with a str"),
        ("A -> B as ab\nab.weight > A.volume", "cannot compare a node property with an edge"),
        ("A -> B as ab; A -> C as ab", "edge name 'ab' is already the edge A -> B (line 1)"),
        ("A !> B as ab\nab.weight > 1", "'ab' names a forbidden edge"),
        ("A !| B", "a forbidden edge cannot have a polarity; write A !> B"),
        ("A -> B\nA === C", "A === C: node 'C' is in no edge"),
        ("f(a) {\n  f(a)\n}", "line 2: macro 'f' calls itself; macros cannot be recursive"),
        ("f(a) { g(a) }\ng(a) { a -> b }", "macro 'f' calls 'g', which is not defined before it"),
        ("f(a, b) { a -> b }\nf(X)", "line 2: macro 'f' takes 2 arguments (a, b), not 1"),
        ("f(a) { a -> c }\nf(X)", "macro 'f' uses 'c', which is not one of its arguments (a)"),
        ("f(a, b) { a -> b }\nf(a, b) { b -> a }", "line 2: macro 'f' is already defined"),
        ("g(X, Y)", "unknown macro 'g' (defined: none)"),
        ("A -> B\nA.cell_type in []", "'in' takes a non-empty list"),
        ("A -> B\nA.volume in 'abc'", "'in' takes a non-empty list"),
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


def test_every_construct_parses_to_the_ir() -> None:
    m = parse_motif(
        """
        # DotMotif's macro, named-edge and automorphism constructs
        pair(x, y) {
            x -> y as e      # a named edge, local to each call
            e.weight >= 2
        }
        chain(a, b, c) { pair(a, b); pair(b, c) }
        chain(A, B, C)
        A -> C [size > 10] as ac
        ac.synapses > AB_unused.weight
        """.replace("ac.synapses > AB_unused.weight", "A -+ D; B -| C\nA.volume > B.volume")
        + 'A["cell_type"] contains "P"; B.cell_type !in ["BC"]; C.cell_type in "23P 4P"\n'
        + "D.is_neuron == True; D.position_x <> 1.5; B === C\n"
        + "A -> B as ab; ab.weight >= ac.weight"
    )
    assert m.nodes == ("A", "B", "C", "D")
    assert m.edges == (
        Edge("A", "B", (Constraint("weight", ">=", 2),)),
        Edge("B", "C", (Constraint("weight", ">=", 2),)),
        Edge("A", "C", (Constraint("size", ">", 10),)),
        Edge("A", "D"),
    )
    assert m.polarities == (("A", "excitatory"), ("B", "inhibitory"))
    assert m.node_comparisons == (NodeComparison("A", "volume", ">", "B", "volume"),)
    assert m.edge_comparisons == (EdgeComparison(("A", "B"), "weight", ">=", ("A", "C"), "weight"),)
    assert m.constraints_of("A") == (Constraint("cell_type", "contains", "P"),)
    # B === C: both get the union of their constraints (DotMotif's propagation)
    union = (Constraint("cell_type", "!in", ("BC",)), Constraint("cell_type", "in", "23P 4P"))
    assert m.constraints_of("B") == m.constraints_of("C") == union
    assert m.constraints_of("D") == (
        Constraint("is_neuron", "=", True),
        Constraint("position_x", "!=", 1.5),
    )
    assert m.automorphisms == (("B", "C"),)


def test_macro_expansion_budget() -> None:
    text = "e(a, b) { a -> b }\n"
    prev = "e"
    for i in range(12):  # each level calls the one below four times: 4^12 statements
        text += f"m{i}(a, b) {{ {prev}(a, b); {prev}(b, a); {prev}(a, b); {prev}(b, a) }}\n"
        prev = f"m{i}"
    with pytest.raises(MotifError, match="expands to more than 10,000 statements"):
        parse_motif(text + f"{prev}(A, B)")


@pytest.mark.parametrize("literal", ["9223372036854775808", "-9223372036854775809", "1" + "0" * 23])
def test_integer_literals_outside_int64_are_motif_errors(literal: str) -> None:
    with pytest.raises(MotifError, match="line 2: the integer .* outside the 64-bit range"):
        parse_motif(f"A -> B\nA -> C [size > {literal}]")
    assert (
        parse_motif("A -> B [size > 9223372036854775807]").edges[0].constraints[0].value
        == 2**63 - 1
    )
