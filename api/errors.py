"""Named errors (core.errors) -> GraphQL `extensions.code`, mapped once, here.

Every error in a response carries a code. Ours keep their message; the limits of strawberry's
validators become LIMIT_EXCEEDED, other parse/validation errors BAD_REQUEST; anything else is
masked to "Unexpected error." with code INTERNAL (and logged with its traceback).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import MaskErrors, SchemaExtension

from core.errors import CGraphError

log = logging.getLogger(__name__)

#: codes whose message reaches the client
PUBLIC_CODES = frozenset(
    {
        "UNKNOWN_RELEASE",
        "RELEASE_NOT_READY",
        "TIMEOUT",
        "LIMIT_EXCEEDED",
        "BAD_REQUEST",
        "SNAPSHOT_UNAVAILABLE",
        "SYNAPSE_STORE_NOT_READY",
    }
)
INTERNAL = "INTERNAL"
UNAVAILABLE = "UNAVAILABLE"

# messages of strawberry's QueryDepthLimiter, MaxAliasesLimiter and graphql-core's token limit
_LIMIT_MESSAGES = (
    "exceeds maximum operation depth",
    "aliases found. Allowed",
    "Document contains more than",
)


def code_of(error: GraphQLError) -> str:
    original = error.original_error
    if isinstance(original, CGraphError):
        return original.code
    if original is None:  # parse or validation error: the request's fault
        if any(m in error.message for m in _LIMIT_MESSAGES):
            return "LIMIT_EXCEEDED"
        return "BAD_REQUEST"
    if isinstance(original, GraphQLError):  # argument/variable coercion
        return "BAD_REQUEST"
    return INTERNAL


#: graphql-core's suggestions ("Did you mean ...?") name fields, types and values of the schema
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


class ErrorCodes(SchemaExtension):
    """Set `extensions.code` on every error of the result (runs before MaskErrors); with
    ``hide_suggestions`` (CGRAPH_INTROSPECTION=0), strip "Did you mean" from messages."""

    def __init__(self, *, hide_suggestions: bool = False) -> None:
        super().__init__()
        self.hide_suggestions = hide_suggestions

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        errors = getattr(result, "errors", None)
        if not errors:
            return
        for error in errors:
            code = code_of(error)
            error.extensions = {**(error.extensions or {}), "code": code}
            if self.hide_suggestions:
                error.message = _SUGGESTION.sub("", error.message)
            if code == INTERNAL:
                log.error("internal error at %s", error.path, exc_info=error.original_error)


def should_mask(error: GraphQLError) -> bool:
    return (error.extensions or {}).get("code") not in PUBLIC_CODES


class MaskInternalErrors(MaskErrors):
    """strawberry's MaskErrors, keeping our coded errors and coding the masked ones."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=should_mask)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        code = (error.extensions or {}).get("code", INTERNAL)
        masked = super().anonymise_error(error)
        if code == UNAVAILABLE:
            masked.message = "The database is unavailable; try again later."
        masked.extensions = {"code": code if code == UNAVAILABLE else INTERNAL}
        return masked
