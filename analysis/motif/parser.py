"""Parse motif text (grammar.lark) into the IR (ir.py) and validate it.

    >>> m = parse_motif('A -> B [weight >= 3] as ab; B -> A; A.cell_type = "23P"')
    >>> m.nodes, [(e.src, e.dst) for e in m.edges]
    (('A', 'B'), [('A', 'B'), ('B', 'A')])

Macros are expanded here (a body may call macros defined before it; a macro that calls
itself, directly or through others, is an error, and so is an expansion beyond
MAX_EXPANDED statements); named edges become edge constraints and edge comparisons;
``A === B`` merges the node constraints of A and B, as DotMotif does. Syntax errors raise
MotifSyntaxError with a 1-based line and column; a motif that parses but means nothing
valid raises MotifError naming the line and the problem.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer, UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.exceptions import VisitError

from analysis.motif.attributes import (
    check_comparison,
    check_constraint,
    edge_type,
    node_type,
)
from analysis.motif.ir import (
    MAX_MOTIF_NODES,
    Constraint,
    Edge,
    EdgeComparison,
    Motif,
    NodeComparison,
    Scalar,
    Value,
)
from core.errors import MotifError, MotifSyntaxError

#: Most statements one motif may expand to (macros calling macros grow fast).
MAX_EXPANDED = 10_000
#: Integer literals must fit where every stored integer fits
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_OP_ALIASES = {"==": "=", "<>": "!="}
_POLARITY = {"+": "excitatory", "|": "inhibitory", "-": "inhibitory"}
_TOKEN_NAMES = {
    "NAME": "a name",
    "ARROW": "an arrow ('->', '!>', '-+', '-|')",
    "OP": "an operator",
    "IN": "'in'",
    "NOT_IN": "'!in'",
    "CONTAINS": "'contains'",
    "NOT_CONTAINS": "'!contains'",
    "_SEP": "a newline or ';'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "COMMA": "','",
    "DOT": "'.'",
    "AS": "'as'",
    "AUTOMORPHIC": "'==='",
    "SIGNED_INT": "a number",
    "SIGNED_FLOAT": "a number",
    "STRING": "a string",
    "$END": "end of motif",
}


@cache
def _lark() -> Lark:
    grammar = resources.files("analysis.motif").joinpath("grammar.lark").read_text()
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False)


@dataclass(frozen=True)
class _Ref:
    """``entity.key``: a node or a named edge, resolved after expansion."""

    entity: str
    key: str


@dataclass(frozen=True)
class _EdgeStmt:
    src: str
    arrow: str
    dst: str
    clauses: tuple[Constraint, ...]
    alias: str | None
    line: int


@dataclass(frozen=True)
class _ConstraintStmt:
    left: _Ref
    op: str
    right: Value | _Ref
    line: int


@dataclass(frozen=True)
class _CallStmt:
    name: str
    args: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class _MacroStmt:
    name: str
    params: tuple[str, ...]
    body: tuple[Any, ...]
    line: int


@dataclass(frozen=True)
class _AutoStmt:
    a: str
    b: str
    line: int


class _ToStatements(Transformer[Token, list[Any]]):
    """Lark tree -> the statement records above."""

    def start(self, items: list[Any]) -> list[Any]:
        return list(items)

    def macro_def(self, items: list[Any]) -> _MacroStmt:
        name, params, *body = items
        return _MacroStmt(str(name), params, tuple(body), name.line)

    def macro_call(self, items: list[Any]) -> _CallStmt:
        name, params = items
        return _CallStmt(str(name), params, name.line)

    def params(self, items: list[Token]) -> tuple[str, ...]:
        return tuple(str(t) for t in items)

    def edge(self, items: list[Any]) -> _EdgeStmt:
        src, arrow, dst, *rest = items
        clauses: tuple[Constraint, ...] = ()
        alias = None
        for r in rest:
            if isinstance(r, tuple):
                clauses = r
            else:
                alias = r
        return _EdgeStmt(str(src), str(arrow), str(dst), clauses, alias, src.line)

    def alias(self, items: list[Token]) -> str:
        return str(items[0])

    def edge_clauses(self, items: list[Constraint]) -> tuple[Constraint, ...]:
        return tuple(items)

    def edge_clause(self, items: list[Any]) -> Constraint:
        key, op, value = items
        return Constraint(key, op, value)

    def constraint(self, items: list[Any]) -> _ConstraintStmt:
        left, op, right = items
        if isinstance(right, tuple) and right and isinstance(right[0], _Ref):
            right = right[0]  # a (ref, line) pair, not a list value
        return _ConstraintStmt(left[0], op, right, left[1])

    def dot_ref(self, items: list[Any]) -> tuple[_Ref, int]:
        return _Ref(str(items[0]), items[1]), items[0].line

    bracket_ref = dot_ref

    def key(self, items: list[Token]) -> str:
        t = items[0]
        return str(t)[1:-1] if t.type == "STRING" else str(t)

    def automorphism(self, items: list[Token]) -> _AutoStmt:
        return _AutoStmt(str(items[0]), str(items[2]), items[0].line or 0)

    def op(self, items: list[Token]) -> str:
        return _OP_ALIASES.get(str(items[0]), str(items[0]))

    def value_list(self, items: list[Any]) -> tuple[Scalar, ...]:
        if any(isinstance(v, tuple) for v in items):
            raise MotifError("a list cannot hold lists")
        return tuple(items)

    def integer(self, items: list[Token]) -> int:
        value = int(items[0])
        if not INT64_MIN <= value <= INT64_MAX:  # no stored value is outside int64
            raise MotifError(
                f"line {items[0].line}: the integer {items[0]} is outside the 64-bit range "
                f"({INT64_MIN} to {INT64_MAX})"
            )
        return value

    def real(self, items: list[Token]) -> float:
        return float(items[0])

    def string(self, items: list[Token]) -> str:
        return str(items[0])[1:-1]

    def word(self, items: list[Token]) -> Scalar:
        w = str(items[0])
        return {"true": True, "True": True, "false": False, "False": False}.get(w, w)


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


# ----------------------------------------------------------------------------- expansion


@dataclass(frozen=True)
class _Side:
    """One side of a constraint after expansion: kind "node" (name), "edge" (alias key) or
    "entity" (top level: a node or a named edge, decided once every edge is known)."""

    kind: str
    name: str
    key: str

    @property
    def shown(self) -> str:
        return self.name.split("#")[0]


@dataclass
class _Flat:
    edges: list[tuple[str, str, str, tuple[Constraint, ...], int]]  # src, arrow, dst, clauses, line
    aliases: dict[str, tuple[str, str, str, int]]  # alias key -> (src, dst, arrow, line)
    constraints: list[tuple[_Side, str, Value | _Side, int]]
    autos: list[tuple[str, str, int]]
    macros: dict[str, _MacroStmt]
    count: int = 0


def _expand(statements: list[Any]) -> _Flat:
    flat = _Flat([], {}, [], [], {})
    uid = itertools.count(1)

    def grow(line: int) -> None:
        flat.count += 1
        if flat.count > MAX_EXPANDED:
            raise MotifError(
                f"line {line}: the motif expands to more than {MAX_EXPANDED:,} statements"
            )

    def run(body: tuple[Any, ...] | list[Any], subst: dict[str, str] | None,
            stack: tuple[str, ...]) -> None:  # fmt: skip
        local: dict[str, str] = {}  # edge alias in this body -> its key

        def node(name: str, line: int) -> str:
            if subst is None:
                return name
            if name not in subst:
                raise MotifError(
                    f"line {line}: macro {stack[-1]!r} uses {name!r}, which is not one of its "
                    f"arguments ({', '.join(subst)})"
                )
            return subst[name]

        def side(ref: _Ref, line: int) -> _Side:
            if subst is None:
                return _Side("entity", ref.entity, ref.key)
            if ref.entity in local:
                return _Side("edge", local[ref.entity], ref.key)
            return _Side("node", node(ref.entity, line), ref.key)

        later: list[_ConstraintStmt] = []
        for st in body:
            grow(getattr(st, "line", 0))
            if isinstance(st, _MacroStmt):
                define(st)
            elif isinstance(st, _CallStmt):
                call(st, [node(a, st.line) for a in st.args], stack)
            elif isinstance(st, _EdgeStmt):
                src, dst = node(st.src, st.line), node(st.dst, st.line)
                key = None
                if st.alias is not None:
                    key = st.alias if subst is None else f"{st.alias}#{next(uid)}"
                    known = flat.aliases.get(key)
                    if known is not None and known[:2] != (src, dst):
                        raise MotifError(
                            f"line {st.line}: edge name {st.alias!r} is already the edge "
                            f"{known[0]} -> {known[1]} (line {known[3]})"
                        )
                    flat.aliases[key] = (src, dst, st.arrow, st.line)
                    local[st.alias] = key
                flat.edges.append((src, st.arrow, dst, st.clauses, st.line))
            elif isinstance(st, _ConstraintStmt):
                later.append(st)
            elif isinstance(st, _AutoStmt):
                if subst is not None:  # pragma: no cover - the grammar has none in bodies
                    raise MotifError(f"line {st.line}: '===' is not allowed in a macro")
                flat.autos.append((st.a, st.b, st.line))
        for c in later:  # after the body's edges: named edges may come later in the body
            right = side(c.right, c.line) if isinstance(c.right, _Ref) else c.right
            flat.constraints.append((side(c.left, c.line), c.op, right, c.line))

    def define(m: _MacroStmt) -> None:
        if m.name in flat.macros:
            raise MotifError(
                f"line {m.line}: macro {m.name!r} is already defined (line "
                f"{flat.macros[m.name].line})"
            )
        if len(set(m.params)) != len(m.params):
            raise MotifError(f"line {m.line}: macro {m.name!r} repeats an argument name")
        for st in m.body:
            if isinstance(st, _CallStmt):
                if st.name == m.name:
                    raise MotifError(
                        f"line {st.line}: macro {m.name!r} calls itself; macros cannot be recursive"
                    )
                if st.name not in flat.macros:
                    raise MotifError(
                        f"line {st.line}: macro {m.name!r} calls {st.name!r}, which is not "
                        f"defined before it"
                    )
        flat.macros[m.name] = m

    def call(c: _CallStmt, args: list[str], stack: tuple[str, ...]) -> None:
        m = flat.macros.get(c.name)
        if m is None:
            known = ", ".join(flat.macros) or "none"
            raise MotifError(f"line {c.line}: unknown macro {c.name!r} (defined: {known})")
        if c.name in stack:  # unreachable with define-before-use; a guard all the same
            chain = " -> ".join((*stack, c.name))
            raise MotifError(f"line {c.line}: recursive macro call {chain}")
        if len(args) != len(m.params):
            raise MotifError(
                f"line {c.line}: macro {c.name!r} takes {len(m.params)} arguments "
                f"({', '.join(m.params)}), not {len(args)}"
            )
        run(m.body, dict(zip(m.params, args, strict=True)), (*stack, c.name))

    run(statements, None, ())
    return flat


# ----------------------------------------------------------------------------- assembly


def parse_motif(text: str, *, max_nodes: int = MAX_MOTIF_NODES) -> Motif:
    """Parse and validate motif text; see grammar.lark for the language."""
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as err:
        raise _syntax_error(text, err) from None
    try:
        statements = _ToStatements().transform(tree)
    except VisitError as err:  # a MotifError raised while building the statements
        if isinstance(err.orig_exc, MotifError):
            raise err.orig_exc from None
        raise
    flat = _expand(statements)

    nodes: dict[str, None] = {}
    edges: dict[tuple[str, str], list[Constraint]] = {}
    edge_lines: dict[tuple[str, str], int] = {}
    non_edges: dict[tuple[str, str], int] = {}
    polarities: list[tuple[str, str]] = []
    for src, arrow, dst, clauses, line in flat.edges:
        if src == dst:
            raise MotifError(f"line {line}: self-edge {src} {arrow} {dst}; nodes are distinct")
        nodes.setdefault(src)
        nodes.setdefault(dst)
        if arrow[0] == "-":
            for c in clauses:
                check_constraint(c, edge_type(c.prop, f"line {line}: "), "edge", f"line {line}: ")
            merged = edges.setdefault((src, dst), [])
            merged.extend(c for c in clauses if c not in merged)
            edge_lines.setdefault((src, dst), line)
            if arrow[1] in _POLARITY and (src, _POLARITY[arrow[1]]) not in polarities:
                polarities.append((src, _POLARITY[arrow[1]]))
        else:
            if arrow[1] != ">":
                raise MotifError(
                    f"line {line}: {src} {arrow} {dst}: a forbidden edge cannot have a "
                    f"polarity; write {src} !> {dst} (no edge at all)"
                )
            if clauses:
                raise MotifError(
                    f"line {line}: a forbidden edge {src} {arrow} {dst} cannot have constraints"
                )
            non_edges.setdefault((src, dst), line)

    node_constraints: list[tuple[str, Constraint]] = []
    node_comparisons: list[NodeComparison] = []
    edge_comparisons: list[EdgeComparison] = []
    constrained_lines: dict[str, int] = {}

    def entity(s: _Side, line: int) -> tuple[str, Any]:
        """("node", name) or ("edge", (src, dst)); DotMotif's order: a node first."""
        if s.kind == "node" or (s.kind == "entity" and s.name in nodes):
            if s.name not in nodes:
                constrained_lines.setdefault(s.name, line)
            return "node", s.name
        if s.name in flat.aliases:
            u, v, arrow, _ = flat.aliases[s.name]
            if arrow[0] != "-":
                raise MotifError(
                    f"line {line}: {s.shown!r} names a forbidden edge; it has no "
                    f"properties to constrain"
                )
            return "edge", (u, v)
        constrained_lines.setdefault(s.name, line)  # an unknown name: reported below
        return "node", s.name

    for left, op, right, line in flat.constraints:
        where = f"line {line}: "
        lk, lv = entity(left, line)
        lt = node_type(left.key, where) if lk == "node" else edge_type(left.key, where)
        if isinstance(right, _Side):
            rk, rv = entity(right, line)
            if rk != lk:
                raise MotifError(f"{where}cannot compare a node property with an edge property")
            rt = node_type(right.key, where) if rk == "node" else edge_type(right.key, where)
            text = f"{left.shown}.{left.key} {op} {right.shown}.{right.key}"
            check_comparison(lt, op, rt, text, where)
            if lk == "node":
                node_comparisons.append(NodeComparison(lv, left.key, op, rv, right.key))
            else:
                edge_comparisons.append(EdgeComparison(lv, left.key, op, rv, right.key))
            continue
        c = Constraint(left.key, op, right)
        check_constraint(c, lt, "node" if lk == "node" else "edge", where)
        if lk == "node":
            if (lv, c) not in node_constraints:
                node_constraints.append((lv, c))
        else:
            merged = edges[lv]
            if c not in merged:
                merged.append(c)

    for a, b, line in flat.autos:
        for n in (a, b):
            if n not in nodes:
                raise MotifError(f"line {line}: {a} === {b}: node {n!r} is in no edge")
        both = [c for v, c in node_constraints if v == a]
        both += [c for v, c in node_constraints if v == b and c not in both]
        node_constraints = [(v, c) for v, c in node_constraints if v not in (a, b)]
        node_constraints += [(a, c) for c in both] + [(b, c) for c in both]

    if not edges and not non_edges:
        raise MotifError("empty motif: it has no edges (write e.g. 'A -> B')")
    both_ways = sorted(set(edges) & set(non_edges))
    if both_ways:
        u, v = both_ways[0]
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
        node_comparisons=tuple(dict.fromkeys(node_comparisons)),
        edge_comparisons=tuple(dict.fromkeys(edge_comparisons)),
        polarities=tuple(polarities),
        automorphisms=tuple((a, b) for a, b, _ in flat.autos),
    )
