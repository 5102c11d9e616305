"""GraphQL synapses: `Query.synapses` and `Partner.synapseRows`, served from the release
snapshot's synapse store (snapshot/query.py, DuckDB) without Neo4j. 64-bit IDs as strings."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import strawberry

from api.context import Context
from api.pagination import check_first, decode_cursor, encode_cursor, parse_root_id
from api.settings import DEFAULT_PAGE, MAX_PAGE
from api.types import CtxInfo, PageInfo
from core.errors import BadRequest, LimitExceeded
from snapshot.query import SynapseQuery, open_store, plan_synapses, query_synapses, run

FIRST_DOC = f"Page size, at most {MAX_PAGE} (more answers LIMIT_EXCEEDED)."


@strawberry.type(description="An extra numeric column of the source table, by its name.")
class ExtraValue:
    name: str
    value: float | None


def _s(v: Any) -> str | None:
    return None if v is None else str(v)


@strawberry.type(description="One row of the release's synapse table (fragments and dropped "
                             "synapses too), with how it was attributed.")  # fmt: skip
class Synapse:
    row: strawberry.Private[dict[str, Any]]
    voxel: strawberry.Private[tuple[float, float, float]]
    extras: strawberry.Private[tuple[str, ...]]

    @strawberry.field(description="Synapse ID (the source table's `id`).")
    def id(self) -> str:
        return str(self.row["id"])

    @strawberry.field
    def pre_root_id(self) -> str:
        return str(self.row["pre_pt_root_id"])

    @strawberry.field
    def post_root_id(self) -> str:
        return str(self.row["post_pt_root_id"])

    @strawberry.field
    def pre_supervoxel_id(self) -> str | None:
        return _s(self.row.get("pre_pt_supervoxel_id"))

    @strawberry.field
    def post_supervoxel_id(self) -> str | None:
        return _s(self.row.get("post_pt_supervoxel_id"))

    @strawberry.field(description="Synaptic cleft size in voxels.")
    def size(self) -> float | None:
        v = self.row.get("size")
        return None if v is None else float(v)

    @strawberry.field(description="Nucleus ID of the presynaptic root, when it has exactly one.")
    def pre_nucleus_id(self) -> int | None:
        return self.row.get("pre_nucleus_id")

    @strawberry.field(description="Nucleus ID of the postsynaptic root, when it has exactly one.")
    def post_nucleus_id(self) -> int | None:
        return self.row.get("post_nucleus_id")

    @strawberry.field(description="used, autapse, root0, multi_nucleus_root or "
                                  "partner_without_nucleus (README: attribution rules).")  # fmt: skip
    def outcome(self) -> str:
        return str(self.row["outcome"])

    def _pos(self, stem: str, nm: bool) -> list[float] | None:
        got = [self.row.get(f"{stem}_{a}") for a in "xyz"]
        if any(v is None for v in got):
            return None
        vals: list[Any] = got
        if not nm:
            return [float(v) for v in vals]
        return [float(v) * s for v, s in zip(vals, self.voxel, strict=True)]

    @strawberry.field(description="Presynaptic point [x, y, z] in nm.")
    def pre_position(self) -> list[float] | None:
        return self._pos("pre_pt_position", True)

    @strawberry.field(description="Postsynaptic point [x, y, z] in nm.")
    def post_position(self) -> list[float] | None:
        return self._pos("post_pt_position", True)

    @strawberry.field(description="Cleft centre [x, y, z] in nm.")
    def ctr_position(self) -> list[float] | None:
        return self._pos("ctr_pt_position", True)

    @strawberry.field(description="Presynaptic point in voxels of the source (voxelSize).")
    def pre_position_voxels(self) -> list[float] | None:
        return self._pos("pre_pt_position", False)

    @strawberry.field(description="Postsynaptic point in voxels of the source.")
    def post_position_voxels(self) -> list[float] | None:
        return self._pos("post_pt_position", False)

    @strawberry.field(description="Cleft centre in voxels of the source.")
    def ctr_position_voxels(self) -> list[float] | None:
        return self._pos("ctr_pt_position", False)

    @strawberry.field(description="nm per voxel of the positions [x, y, z].")
    def voxel_size(self) -> list[float]:
        return list(self.voxel)

    @strawberry.field(description="Source book-keeping `created` (ISO 8601), when present.")
    def created(self) -> str | None:
        v = self.row.get("created")
        return None if v is None else (v.isoformat() if hasattr(v, "isoformat") else str(v))

    @strawberry.field(description="Source book-keeping `superceded_id`, when present.")
    def superceded_id(self) -> str | None:
        return _s(self.row.get("superceded_id"))

    @strawberry.field(description="Source book-keeping `valid`, when present.")
    def valid(self) -> bool | None:
        v = self.row.get("valid")
        return None if v is None else v in (True, 1, "t", "true", "True")

    @strawberry.field(description="Extra numeric source columns (e.g. spine_vol_um3).")
    def extra(self) -> list[ExtraValue]:
        out = []
        for n in self.extras:
            v = self.row.get(n)
            out.append(ExtraValue(name=n, value=None if v is None else float(v)))
        return out


@strawberry.type(description="Synapses in synapse-ID order.")
class SynapseConnection:
    nodes: list[Synapse]
    page_info: PageInfo
    version: strawberry.Private[int]
    query: strawberry.Private[SynapseQuery]

    @strawberry.field(description="Synapses matching the filters, all pages (one extra read).")
    async def total_count(self, info: CtxInfo) -> int:
        snap = info.context.snapshot(self.version)
        sql, params, tables = plan_synapses(snap, self.query, {"columns": ["id"]})
        count = f"SELECT count(*) FROM ({sql}) t"
        table = await asyncio.to_thread(run, count, params, tables=tables)
        return int(table.column(0)[0].as_py())


def _ids(name: str, values: list[str] | None) -> list[int] | None:
    if values is None:
        return None
    try:
        return [parse_root_id(v) for v in values]
    except BadRequest as exc:
        raise BadRequest(f"{name}: {exc}") from None


async def synapse_page(
    ctx: Context, version: int, q: SynapseQuery, first: int, after: str | None
) -> SynapseConnection:
    check_first(first)
    tag = f"SYNAPSES:{version}"
    key = decode_cursor(after, tag, 1) if after else None
    snap = ctx.snapshot(version)
    store = open_store(snap)

    def read() -> list[dict[str, Any]]:
        t = query_synapses(snap, q, after_id=int(key[0]) if key else None, order_by_id=True,
                           limit=first + 1)  # fmt: skip
        return t.to_pylist()

    rows = await asyncio.to_thread(read)
    has_next = len(rows) > first
    rows = rows[:first]
    nodes = [Synapse(row=r, voxel=store.voxel_size_nm, extras=store.extras) for r in rows]
    end = encode_cursor(tag, int(rows[-1]["id"])) if rows else None
    return SynapseConnection(nodes=nodes, page_info=PageInfo(has_next_page=has_next,
                             end_cursor=end), version=version, query=q)  # fmt: skip


@strawberry.type
class SynapseQueryRoot:
    @strawberry.field(
        description="Synapses of a release like caveclient's synapse_query: every given filter "
        "holds (root and nucleus lists of one side are united; a nucleus stands for its root "
        "in the release). boundingBox [[minX, minY, minZ], [maxX, maxY, maxZ]] in voxels, "
        "inclusive, on boundingBoxColumn (pre_pt_position, post_pt_position, ctr_pt_position). "
        "includeDropped false: only synapses on cell-to-cell edges; removeAutapses as "
        "caveclient. Served from the release snapshot (no Neo4j)."
    )
    async def synapses(
        self,
        info: CtxInfo,
        version: int,
        pre_root_ids: list[str] | None = None,
        post_root_ids: list[str] | None = None,
        pre_nucleus_ids: list[int] | None = None,
        post_nucleus_ids: list[int] | None = None,
        bounding_box: list[list[float]] | None = None,
        bounding_box_column: str = "post_pt_position",
        include_dropped: bool = True,
        remove_autapses: bool = True,
        first: Annotated[int, strawberry.argument(description=FIRST_DOC)] = DEFAULT_PAGE,
        after: str | None = None,
    ) -> SynapseConnection:
        try:
            q = SynapseQuery.of(
                pre_root_ids=_ids("preRootIds", pre_root_ids),
                post_root_ids=_ids("postRootIds", post_root_ids),
                pre_nucleus_ids=pre_nucleus_ids, post_nucleus_ids=post_nucleus_ids,
                bounding_box=bounding_box, bounding_box_column=bounding_box_column,
                include_dropped=include_dropped, remove_autapses=remove_autapses,
            )  # fmt: skip
        except (BadRequest, LimitExceeded) as exc:  # name the GraphQL arguments
            raise type(exc)(_camel(str(exc))) from None
        return await synapse_page(info.context, version, q, first, after)


_CAMEL = {"pre_root_ids": "preRootIds", "post_root_ids": "postRootIds",
          "pre_nucleus_ids": "preNucleusIds", "post_nucleus_ids": "postNucleusIds",
          "bounding_box_column": "boundingBoxColumn", "bounding_box": "boundingBox"}  # fmt: skip


def _camel(text: str) -> str:
    for k, v in _CAMEL.items():
        text = text.replace(k, v)
    return text


async def edge_synapses(
    ctx: Context, version: int, pre: int, post: int, first: int, after: str | None
) -> SynapseConnection:
    """The synapses of one cell-to-cell edge (outcome used), by synapse ID."""
    q = SynapseQuery.of(pre_nucleus_ids=[pre], post_nucleus_ids=[post], include_dropped=False)
    return await synapse_page(ctx, version, q, first, after)
