"""GraphQL object types. 64-bit IDs (root IDs, synapse IDs) travel as strings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.types import Info

from api import neuroglancer
from api.context import Context
from api.pagination import encode_cursor
from api.partners import fetch, partner_request
from api.settings import DEFAULT_PAGE, MAX_PAGE
from core.criteria import CellCriteria
from core.errors import DatasetMismatch
from core.model import check_version
from graph import queries, space
from graph.queries import CellRecord, Change, Direction, PartnerOrder
from graph.releases import ReleaseInfo

if TYPE_CHECKING:
    from api.synapses import SynapseConnection

CtxInfo = Info[Context, None]
FIRST_DOC = f"Page size, at most {MAX_PAGE} (more answers LIMIT_EXCEEDED)."


# the domain's enums (graph.queries), exposed as they are: GraphQL values are the member names
strawberry.enum(
    PartnerOrder, description="Order of a partner page; ties are broken by partner nucleus ID."
)
strawberry.enum(Direction, description="OUTPUTS: the cell is presynaptic; INPUTS: postsynaptic.")
strawberry.enum(Change)


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


def _count(info: ReleaseInfo, key: str) -> float | None:
    value = info.counts.get(key)
    return None if value is None else float(value)


@strawberry.type(description="A data release (CAVE materialization version).")
class Release:
    info: strawberry.Private[ReleaseInfo]

    @strawberry.field
    def version(self) -> int:
        return self.info.version

    @strawberry.field(description="The dataset (datastack) the release belongs to.")
    def dataset(self) -> str:
        return self.info.dataset

    @strawberry.field(description="Materialization time stamp (UTC).")
    def timestamp(self) -> datetime | None:
        return self.info.timestamp

    @strawberry.field(description="When its load finished (null while loading).")
    def loaded_at(self) -> datetime | None:
        return self.info.loaded_at

    @strawberry.field(description="sha256 of the manifest of the snapshot it was written from.")
    def snapshot(self) -> str | None:
        return self.info.snapshot

    @strawberry.field(description="loading, complete or failed; only complete ones are queryable.")
    def status(self) -> str:
        return self.info.status

    @strawberry.field(
        description="Whether its synapse store (synapses, Partner.synapseIds and sizes, synapse "
        "exports) is written: a load writes it after the release is served, and until then "
        "those answer SYNAPSE_STORE_NOT_READY; null when this server has no snapshot of it."
    )
    def synapse_store_ready(self) -> bool | None:
        from snapshot.layout import SnapshotError, open_snapshot, store_ready

        try:
            snap = open_snapshot(self.info.version, digest=self.info.snapshot)
        except SnapshotError:
            return None
        return store_ready(snap)

    @strawberry.field(description="Cells (nuclei) in the release.")
    def cells(self) -> int:
        return int(self.info.counts.get("cells", 0))

    @strawberry.field(description="Cell-to-cell connections (directed pairs).")
    def edges(self) -> int:
        return int(self.info.counts.get("edges", 0))

    @strawberry.field(description="Synapses attributed to cell-to-cell connections.")
    def synapses(self) -> float:
        return float(self.info.counts.get("synapses", 0))

    @strawberry.field(description="All rows of the synapse table, fragments included.")
    def synapses_total(self) -> float | None:
        return _count(self.info, "synapses_total")

    @strawberry.field
    def dropped_autapse(self) -> float | None:
        return _count(self.info, "dropped_autapse")

    @strawberry.field
    def dropped_root0(self) -> float | None:
        return _count(self.info, "dropped_root0")

    @strawberry.field
    def dropped_multi_nucleus_root(self) -> float | None:
        return _count(self.info, "dropped_multi_nucleus_root")

    @strawberry.field
    def dropped_partner_without_nucleus(self) -> float | None:
        return _count(self.info, "dropped_partner_without_nucleus")

    @strawberry.field(description="Root IDs carrying two or more nuclei (merge errors).")
    def multi_nucleus_roots(self) -> int | None:
        value = self.info.counts.get("multi_nucleus_roots")
        return None if value is None else int(value)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _same(value: Any) -> Any:
    return value


def _release_value(
    info: CtxInfo, rec: CellRecord, stem: str, version: int, convert: Callable[[Any], Any] = _same
) -> Any:
    """`stem` of the cell in release `version`: synchronously when the release is known complete
    and the record holds the value (a partner page), else after batched loads (release
    status, full cell). graphql-core awaits whichever comes back."""
    check_version(version)
    ctx = info.context
    ctx.mark_read(version)
    if version in ctx.complete and rec.has(stem, version):
        return convert(rec.get(stem, version))

    async def later() -> Any:
        await ctx.require_complete(version)
        full = rec if rec.has(stem, version) else await ctx.cells.load(rec.key)
        return None if full is None else convert(full.get(stem, version))

    return later()


def _cell_value(info: CtxInfo, rec: CellRecord, read: Callable[[CellRecord], Any]) -> Any:
    """A release-independent value; a partial record (partner page) loads the full cell."""
    if rec.complete:
        return read(rec)

    async def later() -> Any:
        full = await info.context.cells.load(rec.key)
        return None if full is None else read(full)

    return later()


def _position(rec: CellRecord) -> list[float] | None:
    pos = rec.position
    return None if pos is None else list(pos)


def _partner_field(direction: str, description: str) -> Any:
    """Cell.outputs / Cell.inputs: one resolver, the direction fixed."""

    async def resolve(
        root: Any,
        info: CtxInfo,
        version: int,
        min_synapses: int = 1,
        min_size: float | None = None,
        partner_cell_type: str | None = None,
        order_by: PartnerOrder = PartnerOrder.SYNAPSES,
        first: Annotated[int, strawberry.argument(description=FIRST_DOC)] = DEFAULT_PAGE,
        after: str | None = None,
    ) -> PartnerConnection:
        return await _partners(
            info, root.record, Direction[direction], order_by, version=version,
            min_synapses=min_synapses, min_size=min_size, partner_cell_type=partner_cell_type,
            first=first, after=after,
        )  # fmt: skip

    return strawberry.field(resolver=resolve, description=description)


@strawberry.type(description="A cell: one nucleus. The nucleus ID is stable across releases.")
class Cell:
    record: strawberry.Private[CellRecord]
    root_versions: strawberry.Private[tuple[int, ...]] = ()

    @strawberry.field(
        description="From cellByRootId without a version: the releases in which the root ID "
        "is this cell's (empty otherwise)."
    )
    def matched_releases(self) -> list[int]:
        return list(self.root_versions)

    @strawberry.field
    def nucleus_id(self) -> int:
        return self.record.nucleus_id

    @strawberry.field(description="The dataset (datastack) the cell belongs to; a nucleus ID "
                                  "is unique within its dataset.")  # fmt: skip
    def dataset(self) -> str:
        return self.record.dataset

    @strawberry.field(description="Nucleus centroid [x, y, z] in nm.")
    def position(self, info: CtxInfo) -> list[float] | None:
        return _cell_value(info, self.record, _position)  # type: ignore[no-any-return]

    @strawberry.field(description="Nucleus volume in um^3.")
    def volume(self, info: CtxInfo) -> float | None:
        return _cell_value(info, self.record, lambda r: r.volume)  # type: ignore[no-any-return]

    @strawberry.field(description="Releases this cell is part of.")
    def releases(self, info: CtxInfo) -> list[int]:
        return _cell_value(info, self.record, lambda r: list(r.releases))  # type: ignore[no-any-return]

    @strawberry.field(description="Root ID of the cell's segment in a release (null: not in it).")
    def root_id(self, info: CtxInfo, version: int) -> str | None:
        return _release_value(info, self.record, "root_id", version, _str)  # type: ignore[no-any-return]

    @strawberry.field
    def cell_type(self, info: CtxInfo, version: int) -> str | None:
        return _release_value(info, self.record, "cell_type", version)  # type: ignore[no-any-return]

    @strawberry.field
    def classification_system(self, info: CtxInfo, version: int) -> str | None:
        return _release_value(info, self.record, "classification_system", version)  # type: ignore[no-any-return]

    @strawberry.field
    def is_neuron(self, info: CtxInfo, version: int) -> bool | None:
        return _release_value(info, self.record, "is_neuron", version)  # type: ignore[no-any-return]

    @strawberry.field(description="All output synapses of the cell, fragments included.")
    def out_synapses(self, info: CtxInfo, version: int) -> int | None:
        return _release_value(info, self.record, "out_synapses", version)  # type: ignore[no-any-return]

    @strawberry.field(description="All input synapses of the cell, fragments included.")
    def in_synapses(self, info: CtxInfo, version: int) -> int | None:
        return _release_value(info, self.record, "in_synapses", version)  # type: ignore[no-any-return]

    @strawberry.field(
        description="A Neuroglancer link to the cell in a release: its root ID selected, "
        "centred on its nucleus (layer sources per dataset: api/neuroglancer.py)."
    )
    async def neuroglancer_url(self, info: CtxInfo, version: int) -> str:
        return await neuroglancer.cells_url(info.context, check_version(version), [self.record])

    outputs: PartnerConnection = _partner_field(
        "OUTPUTS", "Cells this cell synapses onto in a release."
    )
    inputs: PartnerConnection = _partner_field(
        "INPUTS", "Cells that synapse onto this cell in a release."
    )

    @strawberry.field(
        description="Partners in either release with their synapse counts, by nucleus ID."
    )
    async def connectivity_diff(
        self, info: CtxInfo, from_version: int, to_version: int, direction: Direction
    ) -> list[PartnerChange]:
        ctx = info.context
        for v in (from_version, to_version):
            if (ds := await ctx.dataset_of(v)) != self.record.dataset:
                raise DatasetMismatch(v, ds, self.record.dataset)
        changes = await queries.diff_partners(
            ctx.adb,
            self.record.nucleus_id,
            from_version,
            to_version,
            direction,
            self.record.dataset,
        )
        info.context.seen_complete(from_version, to_version)
        return [
            PartnerChange(
                cell=Cell(record=c.cell),
                before=c.before,
                after=c.after,
                change=c.change,
            )
            for c in changes
        ]


@strawberry.type(description="A cell-to-cell connection seen from one of its cells.")
class Partner:
    row: strawberry.Private[queries.Partner]
    nucleus_id: int = strawberry.field(description="The partner's nucleus ID (= cell.nucleusId).")
    root_id: str | None = strawberry.field(
        description="The partner's root ID in the release of the page (= cell.rootId(version))."
    )
    cell_type: str | None = strawberry.field(
        description="The partner's cell type in the release of the page."
    )
    synapses: int
    size: float | None = strawberry.field(
        description="Summed synaptic cleft size (voxels); null when the source had no sizes."
    )
    version: strawberry.Private[int]
    pre: strawberry.Private[int]
    post: strawberry.Private[int]

    @strawberry.field(description="The partner cell.")
    def cell(self) -> Cell:  # made when asked: a page of 1,000 partners rarely selects it
        return Cell(record=self.row.cell)

    @strawberry.field(
        description="Per-synapse sizes, by synapse ID (from the release snapshot; empty when "
        "the source had no sizes)."
    )
    async def sizes(self, info: CtxInfo) -> list[int]:
        _, sizes = await info.context.edge_synapses.load((self.version, self.pre, self.post))
        return sizes or []

    @strawberry.field(description="Synapse IDs, ascending (from the release snapshot).")
    async def synapse_ids(self, info: CtxInfo) -> list[str]:
        ids, _ = await info.context.edge_synapses.load((self.version, self.pre, self.post))
        return [str(i) for i in ids]

    @strawberry.field(description="A Neuroglancer link to the edge: both cells selected, its "
                                  "synapses as annotation points.")  # fmt: skip
    async def neuroglancer_url(self, info: CtxInfo) -> str:
        return await neuroglancer.edge_url(info.context, self.version, self.row.dataset,
                                           self.pre, self.post)  # fmt: skip

    @strawberry.field
    def mean_size(self) -> float | None:
        return None if self.size is None else self.size / self.synapses

    @strawberry.field(
        description="The edge's synapse rows with positions and every stored column, by "
        "synapse ID (from the release snapshot's synapse store)."
    )
    async def synapse_rows(
        self,
        info: CtxInfo,
        first: Annotated[int, strawberry.argument(description=FIRST_DOC)] = DEFAULT_PAGE,
        after: str | None = None,
    ) -> Annotated[SynapseConnection, strawberry.lazy("api.synapses")]:
        from api.synapses import edge_synapses

        return await edge_synapses(info.context, self.version, self.pre, self.post, first, after)


@strawberry.type
class PartnerConnection:
    nodes: list[Partner]
    total_count: int = strawberry.field(description="Partners matching the filters, all pages.")
    page_info: PageInfo


@strawberry.type
class PartnerChange:
    cell: Cell
    before: int = strawberry.field(description="Synapses in fromVersion (0: no connection).")
    after: int = strawberry.field(description="Synapses in toVersion (0: no connection).")
    change: Change


async def _partners(
    info: CtxInfo,
    cell: CellRecord,
    direction: Direction,
    order: PartnerOrder,
    **args: Any,
) -> PartnerConnection:
    req = partner_request(
        cell.nucleus_id,
        direction.name,
        order_by=order.name,
        **args,
    )
    page = await fetch(info.context, req)
    mine = cell.dataset
    other = next((p.dataset for p in page.partners if p.dataset != mine), None)
    if other is not None:  # the release is another dataset's (its cell of this nucleus ID)
        raise DatasetMismatch(req.version, other, mine)
    me, outputs = cell.nucleus_id, (direction is Direction.OUTPUTS)
    nodes = [
        Partner(
            row=p,
            nucleus_id=p.nucleus_id,
            root_id=_str(p.root_id),
            cell_type=p.cell_type,
            synapses=p.synapses,
            size=None if p.size is None else float(p.size),
            version=req.version,
            pre=me if outputs else p.nucleus_id,
            post=p.nucleus_id if outputs else me,
        )
        for p in page.partners
    ]
    last = page.partners[-1] if page.partners else None
    end = encode_cursor(req.tag, last.key, last.nucleus_id) if last else None
    return PartnerConnection(
        nodes=nodes,
        total_count=page.total,
        page_info=PageInfo(has_next_page=page.has_next, end_cursor=end),
    )


@strawberry.type
class CellConnection:
    nodes: list[Cell]
    page_info: PageInfo
    version: strawberry.Private[int]
    where: strawberry.Private[CellCriteria]
    box: strawberry.Private[tuple[tuple[float, ...], tuple[float, ...]] | None] = None  # nm

    @strawberry.field(description="Cells matching the filters, all pages (one extra query).")
    async def total_count(self, info: CtxInfo) -> int:
        if self.box is not None:
            return await space.count_cells_in_box(info.context.adb, self.version, *self.box,
                                                  where=self.where)  # fmt: skip
        return await queries.count_cells(info.context.adb, self.version, where=self.where)


def cell_connection(
    info: CtxInfo, page: queries.CellPage, tag: str, version: int, where: CellCriteria,
    box: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
) -> CellConnection:  # fmt: skip
    """A page of cells read under the release guard, with its cursor (``tag``, nucleus ID)."""
    info.context.seen_complete(version)
    info.context.prime_cells(page.cells)
    last = page.cells[-1] if page.cells else None
    return CellConnection(
        nodes=[Cell(record=c) for c in page.cells],
        page_info=PageInfo(
            has_next_page=page.has_next,
            end_cursor=encode_cursor(tag, last.nucleus_id) if last else None,
        ),
        version=version,
        where=where,
        box=box,
    )


def cell_or_none(record: CellRecord | None) -> Cell | None:
    return None if record is None else Cell(record=record)
