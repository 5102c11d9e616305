"""GraphQL whole-release change and stability: `releaseDiff` (edges added, removed, changed,
unchanged between two releases; totals, per type pair, paged edges), `edgeStability` (in how
many of several releases each edge appears and how its synapse count moved) and `motifCounts`
(one motif counted in each of several releases). Diff and stability are computed by DuckDB
from the releases' snapshots (snapshot/diff.py); motif counts on each release graph, as
motifCount does. Cells are matched by nucleus ID. Nothing here touches Neo4j's edges."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import strawberry

from api.motif_schema import INDUCED_DOC, MOTIF_DOC, count_one
from api.motif_text import parse_motif_text
from api.pagination import check_first, decode_int_cursor, encode_cursor
from api.settings import DEFAULT_PAGE
from api.types import FIRST_DOC, CtxInfo, PageInfo
from api.wiring import TypeClassification
from core.budget import Deadline
from core.errors import BadRequest
from core.model import check_version
from graph.queries import Change
from snapshot import diff
from snapshot.layout import Snapshot


@strawberry.type(description="One edge (pre, post cell pair) seen in two releases.")
class EdgeChange:
    pre_nucleus_id: int
    post_nucleus_id: int
    before: int = strawberry.field(description="Synapses in fromVersion (0: not an edge there).")
    after: int = strawberry.field(description="Synapses in toVersion (0: not an edge there).")
    change: Change


@strawberry.type
class EdgeChangeConnection:
    nodes: list[EdgeChange]
    page_info: PageInfo


@strawberry.type(description="Edge changes between two releases for one (pre type, post type).")
class TypeChange:
    pre_type: str | None
    post_type: str | None
    added: int
    removed: int
    changed: int
    unchanged: int


@strawberry.type(description="What changed between two releases of a dataset, edge by edge.")
class ReleaseDiff:
    from_version: int
    to_version: int
    min_synapses: int
    snaps: strawberry.Private[tuple[Snapshot, Snapshot]]
    memo: strawberry.Private[dict[str, Any]]

    async def _totals(self) -> dict[str, int]:
        if "totals" not in self.memo:  # one read for every total field of the answer
            a, b = self.snaps
            self.memo["totals"] = asyncio.ensure_future(
                asyncio.to_thread(diff.diff_totals, a, b, self.min_synapses)
            )
        totals: dict[str, int] = await self.memo["totals"]
        return totals

    @strawberry.field(description="Edges of toVersion only.")
    async def added(self) -> int:
        return (await self._totals())["added"]

    @strawberry.field(description="Edges of fromVersion only.")
    async def removed(self) -> int:
        return (await self._totals())["removed"]

    @strawberry.field(description="Edges of both with a different synapse count.")
    async def changed(self) -> int:
        return (await self._totals())["changed"]

    @strawberry.field(description="Edges of both with the same synapse count.")
    async def unchanged(self) -> int:
        return (await self._totals())["unchanged"]

    @strawberry.field(description="Synapses on the edges of fromVersion (a Float: 64-bit).")
    async def synapses_before(self) -> float:
        return float((await self._totals())["synapses_before"])

    @strawberry.field(description="Synapses on the edges of toVersion.")
    async def synapses_after(self) -> float:
        return float((await self._totals())["synapses_after"])

    @strawberry.field(
        description="The four counts per (pre type, post type), by pre then post type (null "
        "last). A cell's type is its type in toVersion, or in fromVersion when it is not in "
        "toVersion."
    )
    async def by_type(
        self, classification: TypeClassification = TypeClassification.CELL_TYPE
    ) -> list[TypeChange]:
        a, b = self.snaps
        table = await asyncio.to_thread(
            diff.diff_by_type, a, b, classification.value, self.min_synapses
        )
        return [TypeChange(**r) for r in table.to_pylist()]

    @strawberry.field(description="The edges themselves in (pre, post) nucleus-ID order, only "
                                  "those of one kind of change when `change` is given.")  # fmt: skip
    async def edges(
        self,
        change: Change | None = None,
        first: Annotated[int, strawberry.argument(description=FIRST_DOC)] = DEFAULT_PAGE,
        after: str | None = None,
    ) -> EdgeChangeConnection:
        check_first(first)
        tag = f"DIFF:{self.from_version}:{self.to_version}:{self.min_synapses}:{change}"
        key = decode_int_cursor(after, tag, 2) if after else None
        a, b = self.snaps
        table = await asyncio.to_thread(
            diff.diff_edges, a, b, min_synapses=self.min_synapses,
            change=None if change is None else change.value,
            after=None if key is None else (key[0], key[1]), limit=first + 1,
        )  # fmt: skip
        rows = table.to_pylist()
        page = rows[:first]
        nodes = [EdgeChange(pre_nucleus_id=r["pre"], post_nucleus_id=r["post"],
                            before=r["before"] or 0, after=r["after"] or 0,
                            change=Change(r["change"])) for r in page]  # fmt: skip
        end = encode_cursor(tag, page[-1]["pre"], page[-1]["post"]) if page else None
        return EdgeChangeConnection(
            nodes=nodes, page_info=PageInfo(has_next_page=len(rows) > first, end_cursor=end)
        )


@strawberry.type(description="One edge across several releases.")
class StableEdge:
    pre_nucleus_id: int
    post_nucleus_id: int
    synapses: list[int | None] = strawberry.field(
        description="Synapses in each release, in the order of `versions` (null: not an edge)."
    )
    releases: int = strawberry.field(description="How many of the releases it is an edge in.")


@strawberry.type(description="Edges that are in exactly `releases` of the releases.")
class StabilityBin:
    releases: int
    edges: int


@strawberry.type
class StableEdgeConnection:
    nodes: list[StableEdge]
    page_info: PageInfo


@strawberry.type(description="How stable the edges are across several releases of a dataset.")
class EdgeStability:
    versions: list[int]
    min_synapses: int
    snaps: strawberry.Private[tuple[Snapshot, ...]]

    @strawberry.field(description="Edges by the number of releases they are in (1..n).")
    async def summary(self) -> list[StabilityBin]:
        got = await asyncio.to_thread(diff.stability_summary, self.snaps, self.min_synapses)
        return [StabilityBin(releases=k, edges=n) for k, n in got]

    @strawberry.field(description="Edges in (pre, post) order, in at least minReleases of the "
                                  "releases, touching nucleusId when given.")  # fmt: skip
    async def edges(
        self,
        min_releases: int = 1,
        nucleus_id: int | None = None,
        first: Annotated[int, strawberry.argument(description=FIRST_DOC)] = DEFAULT_PAGE,
        after: str | None = None,
    ) -> StableEdgeConnection:
        check_first(first)
        tag = f"STABLE:{','.join(map(str, self.versions))}:{self.min_synapses}:{min_releases}:{nucleus_id}"
        key = decode_int_cursor(after, tag, 2) if after else None
        rows = await asyncio.to_thread(
            diff.stability_edges, self.snaps, min_synapses=self.min_synapses,
            min_releases=min_releases, nucleus_id=nucleus_id,
            after=None if key is None else (key[0], key[1]), limit=first + 1,
        )  # fmt: skip
        page = rows[:first]
        nodes = [StableEdge(pre_nucleus_id=p, post_nucleus_id=q, synapses=s, releases=n)
                 for p, q, s, n in page]  # fmt: skip
        end = encode_cursor(tag, page[-1][0], page[-1][1]) if page else None
        return StableEdgeConnection(
            nodes=nodes, page_info=PageInfo(has_next_page=len(rows) > first, end_cursor=end)
        )


@strawberry.type(description="A motif's count in one release.")
class ReleaseMotifCount:
    version: int
    count: float


def _versions(versions: list[int]) -> list[int]:
    out = [check_version(v) for v in versions]
    if not 2 <= len(out) <= diff.MAX_RELEASES:
        raise BadRequest(f"versions: give 2 to {diff.MAX_RELEASES} releases, got {len(out)}")
    if len(set(out)) != len(out):
        raise BadRequest(f"versions must be distinct, got {out}")
    return out


def _min_synapses(value: int) -> int:
    if value < 1:
        raise BadRequest(f"minSynapses must be >= 1, got {value}")
    return value


@strawberry.type
class ChangeQuery:
    @strawberry.field(
        description="Whole-release change between two releases of one dataset: edges (cell "
        "pairs with at least minSynapses synapses) added, removed, changed and unchanged, with "
        "totals, per type pair and paged. From the release snapshots (DuckDB); TIMEOUT past "
        "the query timeout."
    )
    async def release_diff(
        self, info: CtxInfo, from_version: int, to_version: int, min_synapses: int = 1
    ) -> ReleaseDiff:
        if from_version == to_version:
            raise BadRequest(f"fromVersion and toVersion are both {from_version}")
        snaps = (info.context.snapshot(from_version), info.context.snapshot(to_version))
        diff.same_dataset(snaps)
        return ReleaseDiff(from_version=from_version, to_version=to_version,
                           min_synapses=_min_synapses(min_synapses), snaps=snaps, memo={})  # fmt: skip

    @strawberry.field(
        description="Edge stability across 2-16 releases of one dataset: for each edge of any "
        "of them, its synapses in each and the number of releases it is in, plus a summary. "
        "Tells a robust connection from a proofreading artefact. From the snapshots."
    )
    async def edge_stability(
        self, info: CtxInfo, versions: list[int], min_synapses: int = 1
    ) -> EdgeStability:
        vs = _versions(versions)
        snaps = tuple(info.context.snapshot(v) for v in vs)
        diff.same_dataset(snaps)
        return EdgeStability(versions=vs, min_synapses=_min_synapses(min_synapses), snaps=snaps)

    @strawberry.field(
        description="One motif counted in each of 2-16 releases (as motifCount, ordered "
        "matches unless distinctSubgraphs), in the order given, under one query timeout."
    )
    async def motif_counts(
        self,
        info: CtxInfo,
        versions: list[int],
        motif: Annotated[str, strawberry.argument(description=MOTIF_DOC)],
        induced: Annotated[bool, strawberry.argument(description=INDUCED_DOC)] = False,
        distinct_subgraphs: bool = False,
    ) -> list[ReleaseMotifCount]:
        vs = _versions(versions)
        deadline = Deadline.after(info.context.adb.settings.query_timeout)
        parsed = await parse_motif_text(motif, deadline)
        out = []
        for v in vs:
            n = await count_one(info, v, parsed, induced, distinct_subgraphs, deadline)
            out.append(ReleaseMotifCount(version=v, count=n))
        return out
