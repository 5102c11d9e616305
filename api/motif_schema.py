"""GraphQL motif fields: motifSearch (Cypher in Neo4j, paged), motifCount and motifCensus
(in memory on the cached release graph). Merged into the root Query with
``strawberry.tools.merge_types("Query", (Query, MotifQuery))``.

Where the work runs was chosen by measurement (bench/bench_motif.py, README): a search is
anchored and paged, so Neo4j answers it with indexes; whole-release counts and the census
touch every edge, so they run on numpy arrays read once per complete release
(graph.whole_release). Every field runs under the query timeout (CGRAPH_QUERY_TIMEOUT) and
answers TIMEOUT rather than a partial result; in-memory work checks the same deadline
between steps.
"""

from __future__ import annotations

import asyncio
import hashlib
from enum import Enum
from typing import Annotated

import strawberry

from analysis.census_run import CensusResult, NullKind, run_census, select
from analysis.motif import count_motif, parse_motif
from api.pagination import check_first, decode_cursor, encode_cursor
from api.settings import DEFAULT_PAGE
from api.types import FIRST_DOC, Cell, CtxInfo, PageInfo
from core.budget import Deadline
from core.model import check_version
from graph.motif.search import search_motif
from graph.whole_release import get_release_graph

MOTIF_DOC = (
    "Motif in the DotMotif-compatible language, e.g. 'A -> B; B -> A' or "
    "'A -> B [synapses >= 3]; B -> C; A -> C; A.cell_type = \"23P\"'."
)
INDUCED_DOC = "Forbid every edge between motif nodes that the motif does not list."


@strawberry.enum(description="Null model of motifCensus.")
class NullModel(Enum):
    NONE = "none"
    ER = "er"  # same cell and edge count; analytic expectation, no z-scores
    DEGREE_PRESERVING = "degree_preserving"  # edge swaps keeping in/out degrees; sampled


@strawberry.type(description="One cell bound to one motif node.")
class MotifAssignment:
    name: str = strawberry.field(description="The motif node name.")
    nucleus_id: int = strawberry.field(description="The cell's nucleus ID.")

    @strawberry.field
    async def cell(self, info: CtxInfo) -> Cell:
        record = await info.context.cells.load(self.nucleus_id)
        if record is None:  # a complete release never loses cells; this is a bug if seen
            raise LookupError(f"cell {self.nucleus_id} vanished")
        return Cell(record=record)


@strawberry.type(description="One match: an assignment of distinct cells to the motif nodes.")
class MotifMatch:
    assignments: list[MotifAssignment]


@strawberry.type
class MotifMatchConnection:
    nodes: list[MotifMatch]
    page_info: PageInfo


@strawberry.type(description="One MAN triad class.")
class TriadCount:
    code: str = strawberry.field(description="003 012 102 021D 021U 021C 111D 111U 030T ...")
    count: float
    expected: float | None = strawberry.field(description="Null-model expectation (null: NONE).")
    z_score: float | None = strawberry.field(
        description="(count - mean) / sd over DEGREE_PRESERVING samples; null for other "
        "models and when every sample had the same count."
    )


@strawberry.type(description="Triad census of the cells kept by the filters.")
class Census:
    cells: int
    edges: float
    reciprocal_pairs: float
    expected_reciprocal_pairs: float | None
    triads: list[TriadCount]

    @classmethod
    def from_result(cls, r: CensusResult) -> Census:
        return cls(
            cells=r.cells,
            edges=float(r.edges),
            reciprocal_pairs=float(r.reciprocal_pairs),
            expected_reciprocal_pairs=r.expected_reciprocal_pairs,
            triads=[TriadCount(code=t.code, count=float(t.count), expected=t.expected,
                               z_score=t.z_score) for t in r.triads],
        )  # fmt: skip


def _cursor_tag(version: int, motif: str, induced: bool) -> str:
    digest = hashlib.sha256(motif.encode()).hexdigest()[:16]
    return f"MOTIF:{version}:{int(induced)}:{digest}"


@strawberry.type
class MotifQuery:
    @strawberry.field(
        description="Matches of a motif in a release, paged in nucleus-ID order (Cypher in "
        "Neo4j; anchor it with node constraints for speed)."
    )
    async def motif_search(
        self,
        info: CtxInfo,
        version: int,
        motif: Annotated[str, strawberry.argument(description=MOTIF_DOC)],
        induced: Annotated[bool, strawberry.argument(description=INDUCED_DOC)] = False,
        first: Annotated[int, strawberry.argument(description=FIRST_DOC)] = DEFAULT_PAGE,
        after: str | None = None,
    ) -> MotifMatchConnection:
        check_version(version)
        check_first(first)
        parsed = parse_motif(motif)
        tag = _cursor_tag(version, motif, induced)
        offset = int(decode_cursor(after, tag, 1)[0]) if after else 0
        await info.context.require_complete(version)
        rows = await search_motif(
            info.context.adb, version, parsed, induced=induced, skip=offset, limit=first + 1
        )
        page = rows[:first]
        nodes = [
            MotifMatch(assignments=[MotifAssignment(name=v, nucleus_id=r[v]) for v in parsed.nodes])
            for r in page
        ]
        end = encode_cursor(tag, offset + len(page)) if page else None
        return MotifMatchConnection(
            nodes=nodes, page_info=PageInfo(has_next_page=len(rows) > first, end_cursor=end)
        )

    @strawberry.field(
        description="Exact number of matches in a whole release: ordered (DotMotif's count) "
        "or, with distinctSubgraphs, divided by the motif's automorphisms."
    )
    async def motif_count(
        self,
        info: CtxInfo,
        version: int,
        motif: Annotated[str, strawberry.argument(description=MOTIF_DOC)],
        induced: Annotated[bool, strawberry.argument(description=INDUCED_DOC)] = False,
        distinct_subgraphs: bool = False,
    ) -> float:
        check_version(version)
        parsed = parse_motif(motif)
        adb = info.context.adb
        deadline = Deadline.after(adb.settings.query_timeout)
        g = await get_release_graph(adb, version, deadline=deadline)
        n = await asyncio.to_thread(
            count_motif, g, parsed, induced=induced, distinct_subgraphs=distinct_subgraphs,
            deadline=deadline,
        )  # fmt: skip
        return float(n)

    @strawberry.field(
        description="Triad census (16 MAN classes) and reciprocal pairs of every cell the "
        "filters keep (isolated cells included), with an optional null model."
    )
    async def motif_census(
        self,
        info: CtxInfo,
        version: int,
        min_synapses: int = 1,
        cell_types: list[str] | None = None,
        nucleus_ids: list[int] | None = None,
        null_model: NullModel = NullModel.NONE,
        samples: int = 100,
        seed: int | None = None,
    ) -> Census:
        check_version(version)
        adb = info.context.adb
        deadline = Deadline.after(adb.settings.query_timeout)
        g = await get_release_graph(adb, version, deadline=deadline)
        sub = select(g, min_synapses=min_synapses, cell_types=cell_types, nucleus_ids=nucleus_ids)
        kind: NullKind = null_model.value
        result = await asyncio.to_thread(
            run_census, sub, null=kind, samples=samples, seed=seed, deadline=deadline
        )
        return Census.from_result(result)


__all__ = [
    "Census",
    "MotifAssignment",
    "MotifMatch",
    "MotifMatchConnection",
    "MotifQuery",
    "NullModel",
    "TriadCount",
]
