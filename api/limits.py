"""Size limits on what a request sends, checked before any resolver runs.

CGRAPH_MAX_TOKENS bounds the tokens of a document, not the size of one token, and variables
are no tokens at all: a 1 MB string sent as a variable reached the resolvers, and a motif text of
a million characters was parsed on the event loop. So:

- the document: at most ``max_document`` characters, refused before graphql-core lexes it
  (lexing runs on the event loop at about 3 MB/s);
- every string argument, written in the document or sent as a variable (inside lists and
  input objects too): at most ``max_string`` characters, a ``motif`` argument
  ``max_motif``.

Too long answers LIMIT_EXCEEDED naming the argument and the limit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    ArgumentNode,
    ExecutionResult,
    GraphQLError,
    ListValueNode,
    Node,
    ObjectValueNode,
    StringValueNode,
    ValueNode,
    VariableNode,
    Visitor,
    visit,
)
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult as StrawberryResult

from api.settings import ApiSettings
from core.errors import LimitExceeded

MOTIF_ARGUMENTS = frozenset({"motif"})


def _too_long(what: str, length: int, limit: int, setting: str) -> GraphQLError:
    message = f"{what} has {length:,} characters, more than the {limit:,} allowed ({setting})"
    return GraphQLError(message, original_error=LimitExceeded(message))


def document_error(query: str | None, settings: ApiSettings) -> GraphQLError | None:
    if query is not None and len(query) > settings.max_document:
        return _too_long("the document", len(query), settings.max_document, "CGRAPH_MAX_DOCUMENT")
    return None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _literal_strings(node: ValueNode, variables: Mapping[str, Any]) -> Iterator[str]:
    if isinstance(node, StringValueNode):
        yield node.value
    elif isinstance(node, VariableNode):
        yield from _strings(variables.get(node.name.value))
    elif isinstance(node, ListValueNode):
        for v in node.values:
            yield from _literal_strings(v, variables)
    elif isinstance(node, ObjectValueNode):
        for f in node.fields:
            yield from _literal_strings(f.value, variables)


class _Arguments(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[ArgumentNode] = []

    def enter_argument(self, node: ArgumentNode, *_: Any) -> None:
        self.found.append(node)


def argument_errors(
    document: Node, variables: Mapping[str, Any] | None, settings: ApiSettings
) -> list[GraphQLError]:
    """One error per argument (of fields and directives) with a string over its limit."""
    visitor = _Arguments()
    visit(document, visitor)
    errors = []
    for arg in visitor.found:
        name = arg.name.value
        motif = name in MOTIF_ARGUMENTS
        limit = settings.max_motif if motif else settings.max_string
        longest = max((len(s) for s in _literal_strings(arg.value, variables or {})), default=0)
        if longest > limit:
            setting = "CGRAPH_MAX_MOTIF" if motif else "CGRAPH_MAX_STRING"
            error = _too_long(f"argument {name}", longest, limit, setting)
            errors.append(GraphQLError(error.message, nodes=[arg],
                                       original_error=error.original_error))  # fmt: skip
    return errors


class ArgumentLimits(SchemaExtension):
    """Refuses the operation (before execution) when a string argument is over its limit."""

    def __init__(self, settings: ApiSettings) -> None:
        super().__init__()
        self.settings = settings

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        if ctx.graphql_document is not None and ctx.result is None:
            errors = argument_errors(ctx.graphql_document, ctx.variables, self.settings)
            if errors:  # a result set before execution: strawberry does not execute
                ctx.result = ExecutionResult(data=None, errors=errors)
        yield


def refused(error: GraphQLError) -> StrawberryResult:
    """A result for a request refused before parsing (coded here: no extension runs)."""
    error.extensions = {"code": "LIMIT_EXCEEDED"}
    return StrawberryResult(data=None, errors=[error])
