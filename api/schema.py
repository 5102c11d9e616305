"""The GraphQL schema: read-only Query root, limits and error handling.

The SDL is committed as `schema.graphql` (regenerate: `python -m api.schema > schema.graphql`);
tests/api/test_schema.py fails when the two differ.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError, NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.printer import print_schema
from strawberry.tools import merge_types
from strawberry.types import ExecutionResult as StrawberryResult

from api.context import Context
from api.errors import ErrorCodes, MaskInternalErrors
from api.limits import ArgumentLimits, document_error, refused
from api.pagination import check_first, decode_int_cursor, parse_root_id
from api.partners import discard, drop_leftovers, prefetch
from api.settings import DEFAULT_PAGE, ApiSettings
from api.types import (
    FIRST_DOC,
    Cell,
    CellConnection,
    CtxInfo,
    Release,
    cell_connection,
    cell_or_none,
)
from core.criteria import CellCriteria
from core.errors import BadRequest
from core.model import check_dataset, check_version, default_dataset
from graph import queries, releases


@strawberry.type
class Query:
    @strawberry.field(description="Every release in the graph, by version (any status).")
    async def releases(self, info: CtxInfo) -> list[Release]:
        found = await releases.list_releases(info.context.adb)
        for r in found:
            info.context.releases.prime(r.version, r)
            info.context.mark_read(r.version)
        return [Release(info=r) for r in found]

    @strawberry.field(description="One release (null when not loaded).")
    async def release(self, info: CtxInfo, version: int) -> Release | None:
        found = await info.context.releases.load(check_version(version))
        if found is not None:
            info.context.mark_read(version)
        return None if found is None else Release(info=found)

    @strawberry.field(description="A cell by nucleus ID in a dataset (default: the server's "
                                  "default dataset; null when there is none).")  # fmt: skip
    async def cell(self, info: CtxInfo, nucleus_id: int, dataset: str | None = None) -> Cell | None:
        ds = check_dataset(dataset) if dataset is not None else default_dataset()
        prefetch(info.context, nucleus_id, info.selected_fields)
        record = await info.context.cells.load((ds, nucleus_id))
        if record is None:
            await discard(info.context, nucleus_id)
        return cell_or_none(record)

    @strawberry.field(
        description="The cell whose segment is rootId in a release; null for a segment without "
        "nucleus. A root carrying several nuclei (merge error) answers BAD_REQUEST: use "
        "cellsByRootId. Without a version, every complete release is searched and the cell's "
        "matchedReleases say which releases the root belongs to."
    )
    async def cell_by_root_id(
        self, info: CtxInfo, root_id: str, version: int | None = None
    ) -> Cell | None:
        if version is None:
            return await _cell_by_root_any_release(info, root_id)
        cells = await _cells_by_root(info, root_id, version)
        if len(cells) > 1:
            ids = ", ".join(str(c.record.nucleus_id) for c in cells)
            raise BadRequest(
                f"root {root_id} carries {len(cells)} nuclei in release {version} ({ids}); "
                "use cellsByRootId"
            )
        return cells[0] if cells else None

    @strawberry.field(description="Every cell whose segment is rootId in a release.")
    async def cells_by_root_id(self, info: CtxInfo, root_id: str, version: int) -> list[Cell]:
        return await _cells_by_root(info, root_id, version)

    @strawberry.field(description="Cells of a release in nucleus-ID order.")
    async def cells(
        self,
        info: CtxInfo,
        version: int,
        cell_type: str | None = None,
        is_neuron: bool | None = None,
        first: Annotated[int, strawberry.argument(description=FIRST_DOC)] = DEFAULT_PAGE,
        after: str | None = None,
    ) -> CellConnection:
        check_version(version)
        check_first(first)
        tag = f"CELLS:{version}"
        key = decode_int_cursor(after, tag) if after else None
        where = CellCriteria.of(cell_type=cell_type, is_neuron=is_neuron)
        page = await queries.list_cells(
            info.context.adb, version, where=where, first=first,
            after=int(key[0]) if key else None,
        )  # fmt: skip
        return cell_connection(info, page, tag, version, where)


async def _cell_by_root_any_release(info: CtxInfo, root_id: str) -> Cell | None:
    root = parse_root_id(root_id)
    complete = [r.version for r in await releases.list_releases(info.context.adb)
                if r.status == "complete"]  # fmt: skip
    found = await asyncio.gather(
        *(queries.find_cells_by_root(info.context.adb, root, v) for v in complete)
    )
    info.context.seen_complete(*complete)
    by_nucleus: dict[int, list[int]] = {}
    records = {}
    for v, recs in zip(complete, found, strict=True):
        if len(recs) > 1:
            ids = ", ".join(str(r.nucleus_id) for r in recs)
            raise BadRequest(f"root {root_id} carries {len(recs)} nuclei in release {v} "
                             f"({ids}); use cellsByRootId with that version")  # fmt: skip
        for r in recs:
            by_nucleus.setdefault(r.nucleus_id, []).append(v)
            records[r.nucleus_id] = r
    if len(by_nucleus) > 1:
        raise BadRequest(f"root {root_id} is a different cell in different releases "
                         f"({by_nucleus}); pass a version")  # fmt: skip
    if not by_nucleus:
        return None
    ((nucleus, versions),) = by_nucleus.items()
    return Cell(record=records[nucleus], root_versions=tuple(sorted(versions)))


async def _cells_by_root(info: CtxInfo, root_id: str, version: int) -> list[Cell]:
    root = parse_root_id(root_id)
    records = await queries.find_cells_by_root(info.context.adb, root, check_version(version))
    info.context.seen_complete(version)
    info.context.prime_cells(records)
    return [Cell(record=r) for r in records]


class PrefetchCleanup(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        context = self.execution_context.context
        if isinstance(context, Context):
            drop_leftovers(context)


class QuietSchema(strawberry.Schema):
    """Logs only internal errors (api.errors.ErrorCodes does); coded ones are the client's.
    Refuses a document over CGRAPH_MAX_DOCUMENT characters before it is lexed."""

    def __init__(self, *args: Any, limits: ApiSettings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        return None

    async def execute(  # type: ignore[override]  # the same arguments, passed on
        self, query: str | None, *args: Any, **kwargs: Any
    ) -> StrawberryResult:
        if (error := document_error(query, self.limits)) is not None:
            return refused(error)
        return await super().execute(query, *args, **kwargs)


from api.change import ChangeQuery  # noqa: E402
from api.execution import ExecutionContext  # noqa: E402
from api.motif_schema import MotifQuery  # noqa: E402  (imports api.types, not this module)
from api.paths import PathQuery  # noqa: E402
from api.provenance import Provenance  # noqa: E402
from api.space import SpaceQuery  # noqa: E402
from api.synapses import SynapseQueryRoot  # noqa: E402
from api.wiring import WiringQuery  # noqa: E402


def build_schema(settings: ApiSettings | None = None) -> strawberry.Schema:
    """The schema with its limits: the root Query merges this module's Query with
    api.motif_schema.MotifQuery, api.synapses.SynapseQueryRoot, api.wiring.WiringQuery, api.change.ChangeQuery, api.space.SpaceQuery and api.paths.PathQuery. Validation rules are built once and shared (they are
    stateless); every extension instance is per request."""
    s = settings or ApiSettings()
    query = merge_types(
        "Query",
        (Query, PathQuery, MotifQuery, SynapseQueryRoot, WiringQuery, ChangeQuery, SpaceQuery),
    )
    rules = [
        *QueryDepthLimiter(max_depth=s.max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=s.max_aliases).validation_rules,
    ]

    if not s.introspection:
        rules.append(NoSchemaIntrospectionCustomRule)

    def limits() -> SchemaExtension:
        return AddValidationRules(rules)

    return QuietSchema(
        query=query,
        execution_context_class=ExecutionContext,
        # No ParserCache: its parse errors escape the operation hook (no code, no masking).
        # on_operation hooks exit last-in first-out: ErrorCodes (last) codes the errors
        # before MaskInternalErrors (first) masks the uncoded ones
        extensions=[
            MaskInternalErrors,
            lambda: MaxTokensLimiter(max_token_count=s.max_tokens),
            limits,
            lambda: ValidationCache(maxsize=256),
            lambda: ArgumentLimits(s),
            PrefetchCleanup,
            Provenance,
            lambda: ErrorCodes(hide_suggestions=not s.introspection),
        ],
        limits=s,
    )


def sdl() -> str:
    return print_schema(build_schema()) + "\n"


if __name__ == "__main__":
    print(sdl(), end="")
