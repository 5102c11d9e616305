"""Parse motif text (grammar.lark) into the IR (ir.py) and validate it.

    >>> m = parse_motif('A -> B [synapses >= 3]; B -> A; A.cell_type = "23P"')
    >>> m.nodes, [(e.src, e.dst) for e in m.edges]
    (('A', 'B'), [('A', 'B'), ('B', 'A')])

Syntax errors raise MotifSyntaxError with a 1-based line and column; a motif
that parses but means nothing valid raises MotifError naming the problem.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from analysis.motif.ir import (
    EDGE_OPERATORS,
    EDGE_PROPERTIES,
    MAX_MOTIF_NODES,
    NODE_OPERATORS,
    NODE_PROPERTIES,
    Constraint,
    Edge,
    Motif,
    Scalar,
    Value,
)
from core.errors import MotifError, MotifSyntaxError

_OP_ALIASES = {"==": "=", "<>": "!="}
_TOKEN_NAMES = {
    "NAME": "a name",
    "ARROW": "'->' or '!>'",
    "OP": "an operator",
    "IN": "'in'",
    "_SEP": "a newline or ';'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "DOT": "'.'",
    "SIGNED_INT": "a number",
    "SIGNED_FLOAT": "a number",
    "STRING": "a string",
    "TRUE": "true",
    "FALSE": "false",
    "$END": "end of motif",
}


@cache
def _lark() -> Lark:
    grammar = resources.files("analysis.motif").joinpath("grammar.lark").read_text()
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False)


class _ToStatements(Transformer[Token, list[tuple[Any, ...]]]):
    """Lark tree -> list of ("edge", src, arrow, dst, clauses, line) and
    ("node", node, prop, op, value, line) tuples."""

    def start(self, items: list[Any]) -> list[tuple[Any, ...]]:
        return list(items)

    def edge(self, items: list[Any]) -> tuple[Any, ...]:
        src, arrow, dst, *rest = items
        return ("edge", str(src), str(arrow), str(dst), rest[0] if rest else [], src.line)

    def edge_clauses(self, items: list[Any]) -> list[Constraint]:
        return list(items)

    def edge_clause(self, items: list[Any]) -> Constraint:
        prop, op, value = items
        return Constraint(str(prop), _OP_ALIASES.get(str(op), str(op)), value)

    def node_constraint(self, items: list[Any]) -> tuple[Any, ...]:
        node, prop, op, value = items
        op = _OP_ALIASES.get(str(op), str(op))
        return ("node", str(node), str(prop), op, value, node.line)

    def value_list(self, items: list[Any]) -> tuple[Scalar, ...]:
        return tuple(items)

    def integer(self, items: list[Token]) -> int:
        return int(items[0])

    def real(self, items: list[Token]) -> float:
        return float(items[0])

    def string(self, items: list[Token]) -> str:
        return str(items[0])[1:-1]

    def true(self, _: list[Token]) -> bool:
        return True

    def false(self, _: list[Token]) -> bool:
        return False


def _syntax_error(text: str, err: UnexpectedInput) -> MotifSyntaxError:
    line, column = err.line, err.column
    if isinstance(err, UnexpectedToken):
        if err.token.type == "$END" or line in (None, -1):
            lines = text.split("\n")
            line, column = len(lines), len(lines[-1]) + 1
            got = "end of motif"
        else:
            got = repr(str(err.token)) if err.token.type != "_SEP" else "end of statement"
        expected = sorted({_TOKEN_NAMES.get(t, repr(t)) for t in err.expected})
        return MotifSyntaxError(f"unexpected {got}; expected {' or '.join(expected)}", line, column)
    if isinstance(err, UnexpectedCharacters):
        return MotifSyntaxError(f"unexpected character {err.char!r}", line, column)
    return MotifSyntaxError(str(err), line, column)  # pragma: no cover


def _describe(value: Value) -> str:
    return f"{type(value).__name__} {value!r}"


def _check_edge_constraint(c: Constraint, line: int) -> None:
    if c.prop not in EDGE_PROPERTIES:
        raise MotifError(
            f"line {line}: unknown edge property {c.prop!r}; allowed: {', '.join(EDGE_PROPERTIES)}"
        )
    if c.op not in EDGE_OPERATORS:
        raise MotifError(
            f"line {line}: operator {c.op!r} is not allowed on edge property {c.prop!r}; "
            f"allowed: {' '.join(EDGE_OPERATORS)}"
        )
    if isinstance(c.value, bool) or not isinstance(c.value, int | float):
        raise MotifError(
            f"line {line}: edge property {c.prop!r} takes a number, not {_describe(c.value)}"
        )


def _scalar_ok(prop_type: type, value: Any) -> bool:
    if prop_type is bool:
        return isinstance(value, bool)
    if prop_type is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, prop_type)


def _check_node_constraint(prop: str, op: str, value: Value, line: int) -> None:
    if prop not in NODE_PROPERTIES:
        raise MotifError(
            f"line {line}: unknown node property {prop!r}; allowed: {', '.join(NODE_PROPERTIES)}"
        )
    if op not in NODE_OPERATORS:
        raise MotifError(
            f"line {line}: operator {op!r} is not allowed on node property {prop!r}; "
            f"allowed: {' '.join(NODE_OPERATORS)}"
        )
    want = NODE_PROPERTIES[prop]
    if op == "in":
        if not isinstance(value, tuple) or not value:
            raise MotifError(f'line {line}: \'in\' takes a non-empty list, e.g. ["BC", "MC"]')
        bad = [v for v in value if not _scalar_ok(want, v)]
        if bad:
            raise MotifError(
                f"line {line}: node property {prop!r} takes {want.__name__} values, "
                f"not {_describe(bad[0])}"
            )
    elif isinstance(value, tuple) or not _scalar_ok(want, value):
        raise MotifError(
            f"line {line}: node property {prop!r} takes a {want.__name__}, "
            f"not {'a list' if isinstance(value, tuple) else _describe(value)}"
        )


def parse_motif(text: str, *, max_nodes: int = MAX_MOTIF_NODES) -> Motif:
    """Parse and validate motif text; see grammar.lark for the language."""
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as err:
        raise _syntax_error(text, err) from None
    statements = _ToStatements().transform(tree)

    nodes: dict[str, None] = {}
    edges: dict[tuple[str, str], list[Constraint]] = {}
    edge_lines: dict[tuple[str, str], int] = {}
    non_edges: dict[tuple[str, str], int] = {}
    node_constraints: list[tuple[str, Constraint]] = []
    constrained_lines: dict[str, int] = {}
    for stmt in statements:
        if stmt[0] == "edge":
            _, src, arrow, dst, clauses, line = stmt
            if src == dst:
                raise MotifError(f"line {line}: self-edge {src} {arrow} {dst}; nodes are distinct")
            nodes.setdefault(src)
            nodes.setdefault(dst)
            if arrow == "->":
                for c in clauses:
                    _check_edge_constraint(c, line)
                merged = edges.setdefault((src, dst), [])
                merged.extend(c for c in clauses if c not in merged)
                edge_lines.setdefault((src, dst), line)
            else:
                if clauses:
                    raise MotifError(
                        f"line {line}: a forbidden edge {src} {arrow} {dst} cannot have constraints"
                    )
                non_edges.setdefault((src, dst), line)
        else:
            _, node, prop, op, value, line = stmt
            _check_node_constraint(prop, op, value, line)
            c = Constraint(prop, op, value)
            if (node, c) not in node_constraints:
                node_constraints.append((node, c))
            constrained_lines.setdefault(node, line)

    if not edges and not non_edges:
        raise MotifError("empty motif: it has no edges (write e.g. 'A -> B')")
    both = sorted(set(edges) & set(non_edges))
    if both:
        u, v = both[0]
        raise MotifError(
            f"edge {u} -> {v} is both required (line {edge_lines[(u, v)]}) "
            f"and forbidden (line {non_edges[(u, v)]})"
        )
    for node, line in constrained_lines.items():
        if node not in nodes:
            raise MotifError(f"line {line}: node {node!r} has constraints but is in no edge")
    if len(nodes) > max_nodes:
        raise MotifError(f"motif has {len(nodes)} nodes; the limit is {max_nodes}")
    return Motif(
        nodes=tuple(nodes),
        edges=tuple(Edge(u, v, tuple(cs)) for (u, v), cs in edges.items()),
        non_edges=tuple(Edge(u, v) for u, v in non_edges),
        node_constraints=tuple(node_constraints),
    )
