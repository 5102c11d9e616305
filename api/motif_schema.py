"""GraphQL motif fields: motifSearch (Cypher in Neo4j, paged), motifCount and motifCensus
(in memory on the cached release graph), and their background twins startMotifCount,
startMotifCensus and analysisJob. Merged into the root Query with
``strawberry.tools.merge_types("Query", (Query, MotifQuery))``.

Where the work runs was chosen by measurement (bench/bench_motif.py, bench/bench_analytics.py,
README): a search is anchored and paged, so Neo4j answers it with indexes; whole-release counts
and the census touch every edge, so they run on numpy arrays read once per complete release
(graph.whole_release), on the process's shared worker pool (api.jobs), never on the event loop.

motifCount and motifCensus answer inline, under the query timeout (CGRAPH_QUERY_TIMEOUT): TIMEOUT
rather than a partial result, and at once (TIMEOUT, naming the estimate) when the census cost
model (analysis.census_run.estimate_seconds) puts the work at more than 3x the time left: at
full MICrONS size the triad census and the degree-preserving null are such work. Those run as
jobs: startMotifCensus / startMotifCount return an AnalysisJob at once (the same request joins
the same job), analysisJob(id) polls its state, progress and result; once a job is done, the
inline field with the same arguments answers from its result. Nothing here writes to Neo4j.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from concurrent.futures import Executor
from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry

from analysis.census import ReleaseGraph
from analysis.census_run import (
    CensusResult,
    NullKind,
    check_samples,
    estimate_seconds,
    null_chain_bytes,
    run_census,
    select,
)
from analysis.motif import Motif, count_motif
from analysis.motif.count import uses_census
from api import jobs, neuroglancer
from api.motif_text import parse_motif_text
from api.pagination import check_first, decode_int_cursor, encode_cursor
from api.settings import DEFAULT_PAGE
from api.types import FIRST_DOC, Cell, CtxInfo, PageInfo
from core.budget import Deadline
from core.errors import BadRequest, LimitExceeded
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
    dataset: strawberry.Private[str]

    @strawberry.field
    async def cell(self, info: CtxInfo) -> Cell:
        record = await info.context.cells.load((self.dataset, self.nucleus_id))
        if record is None:  # a complete release never loses cells; this is a bug if seen
            raise LookupError(f"cell {self.nucleus_id} vanished")
        return Cell(record=record)


@strawberry.type(description="One match: an assignment of distinct cells to the motif nodes.")
class MotifMatch:
    assignments: list[MotifAssignment]
    version: strawberry.Private[int]

    @strawberry.field(description="A Neuroglancer link to the match: its cells selected, one "
                                  "colour per motif node, in motif-node order.")  # fmt: skip
    async def neuroglancer_url(self, info: CtxInfo) -> str:
        keys = [(a.dataset, a.nucleus_id) for a in self.assignments]
        records = await info.context.cells.load_many(keys)
        return await neuroglancer.cells_url(info.context, self.version, records)


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


@strawberry.enum(description="Where an analysis job is.")
class JobState(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@strawberry.type(description="Why a job failed: the code and message a query would answer.")
class JobError:
    code: str
    message: str


@strawberry.type(
    description="A whole-release computation in the background (startMotifCensus, "
    "startMotifCount). Poll it with analysisJob(id); a finished job is kept for a while "
    "(CGRAPH_JOB_KEEP), in this server process only."
)
class AnalysisJob:
    id: strawberry.ID
    kind: str = strawberry.field(description="motifCensus or motifCount.")
    version: int
    state: JobState
    progress: float = strawberry.field(description="Share done, 0..1 (coarse).")
    estimated_seconds: float | None = strawberry.field(
        description="The cost model's estimate on one core (null when there is none)."
    )
    submitted_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    census: Census | None = strawberry.field(description="The result of a done motifCensus job.")
    count: float | None = strawberry.field(description="The result of a done motifCount job.")
    error: JobError | None = strawberry.field(description="Why a failed job failed.")

    @classmethod
    def from_job(cls, j: jobs.Job) -> AnalysisJob:
        done = j.state is jobs.JobState.DONE
        return cls(
            id=strawberry.ID(j.id), kind=j.kind, version=j.version,
            state=JobState(j.state.value), progress=j.progress,
            estimated_seconds=j.estimated_seconds, submitted_at=j.submitted_at,
            started_at=j.started_at, finished_at=j.finished_at,
            census=Census.from_result(j.result) if done and j.kind == CENSUS_JOB else None,
            count=float(j.result) if done and j.kind == COUNT_JOB else None,
            error=JobError(code=j.error_code, message=j.error_message or "")
            if j.error_code is not None else None,
        )  # fmt: skip


CENSUS_JOB, COUNT_JOB = "motifCensus", "motifCount"
CENSUS_HINT = "run it as a job: startMotifCensus, then poll analysisJob(id)"
COUNT_HINT = "run it as a job: startMotifCount, then poll analysisJob(id)"


def _census_key(
    g: ReleaseGraph,
    min_synapses: int,
    cell_types: Sequence[str] | None,
    nucleus_ids: Sequence[int] | None,
    kind: NullKind,
    samples: int,
    seed: int | None,
) -> Hashable:
    dp = kind == "degree_preserving"
    return (
        CENSUS_JOB, g.uid, min_synapses,
        None if cell_types is None else tuple(sorted(set(cell_types))),
        None if nucleus_ids is None else tuple(sorted(set(nucleus_ids))),
        kind, samples if dp else None, (seed or 0) if dp else None,
    )  # fmt: skip


def _count_key(g: ReleaseGraph, motif: Motif, induced: bool, distinct: bool) -> Hashable:
    return (COUNT_JOB, g.uid, motif, induced, distinct)


def _census_estimate(g: ReleaseGraph, kind: NullKind, samples: int) -> float:
    """Seconds the census would take (0 when its counts are already kept with the graph)."""
    if kind != "degree_preserving" and g.peek("census") is not None:
        return 0.0
    return estimate_seconds(g, kind, samples)


def _count_estimate(g: ReleaseGraph, motif: Motif) -> float | None:
    return _census_estimate(g, "none", 0) if uses_census(motif) else None


def _census_body(sub: ReleaseGraph, kind: NullKind, samples: int, seed: int | None) -> jobs.JobBody:
    def body(deadline: Deadline, progress: jobs.Progress, executor: Executor) -> CensusResult:
        if kind == "degree_preserving":  # chains and the observed census: tasks of the pool
            return run_census(sub, null=kind, samples=samples, seed=seed, deadline=deadline,
                              executor=executor, progress=progress)  # fmt: skip
        return executor.submit(
            run_census, sub, null=kind, samples=samples, seed=seed, deadline=deadline,
            progress=progress,
        ).result()  # fmt: skip

    return body


def _count_body(g: ReleaseGraph, motif: Motif, induced: bool, distinct: bool) -> jobs.JobBody:
    def body(deadline: Deadline, progress: jobs.Progress, executor: Executor) -> int:
        return executor.submit(
            count_motif, g, motif, induced=induced, distinct_subgraphs=distinct,
            deadline=deadline, progress=progress,
        ).result()  # fmt: skip

    return body


NARROW = "narrow it (cellTypes, nucleusIds, minSynapses, fewer samples)"


async def _census_setup(
    info: CtxInfo, version: int, min_synapses: int, cell_types: list[str] | None,
    nucleus_ids: list[int] | None, null_model: NullModel, samples: int, seed: int | None,
) -> tuple[Deadline, ReleaseGraph, Hashable, NullKind]:  # fmt: skip
    """Validated arguments, the release graph under the query deadline and the job key."""
    check_version(version)
    kind: NullKind = null_model.value
    check_samples(kind, samples)
    if seed is not None and seed < 0:
        raise BadRequest(f"seed must be >= 0, got {seed}")
    adb = info.context.adb
    deadline = Deadline.after(adb.settings.query_timeout)
    g = await get_release_graph(adb, version, deadline=deadline)
    info.context.mark_read(version)
    return (
        deadline,
        g,
        _census_key(g, min_synapses, cell_types, nucleus_ids, kind, samples, seed),
        kind,
    )


async def _census_subgraph(
    deadline: Deadline, g: ReleaseGraph, min_synapses: int, cell_types: list[str] | None,
    nucleus_ids: list[int] | None, kind: NullKind, samples: int,
) -> tuple[ReleaseGraph, float]:  # fmt: skip
    """The cells the filters keep and the census cost model's estimate for them."""
    sub = await jobs.run_inline(
        deadline, select, g, min_synapses=min_synapses, cell_types=cell_types,
        nucleus_ids=nucleus_ids,
    )  # fmt: skip
    return sub, await jobs.run_inline(deadline, _census_estimate, sub, kind, samples)


def _check_job_estimate(estimate: float | None) -> None:
    limit = jobs.manager().timeout
    if estimate is not None and estimate > limit:
        raise LimitExceeded(
            f"this would take about {estimate:,.0f} s, more than the {limit:g} s a job may run "
            f"(CGRAPH_JOB_TIMEOUT); {NARROW}"
        )


def _check_job_memory(sub: ReleaseGraph, kind: NullKind) -> None:
    """Degree-preserving chains copy the edges and hash them: refuse what would not fit."""
    if kind != "degree_preserving":
        return
    need = null_chain_bytes(sub) * min(2, jobs.pool().job_workers)
    free = jobs.available_memory()
    if free is not None and need > 0.8 * free:
        raise LimitExceeded(
            f"the degree-preserving null needs about {need / 2**30:,.1f} GiB here, more than "
            f"this server has free ({free / 2**30:,.1f} GiB); {NARROW}"
        )


async def count_one(
    info: CtxInfo, version: int, parsed: Motif, induced: bool, distinct_subgraphs: bool,
    deadline: Deadline,
) -> float:  # fmt: skip
    """motifCount of one release under ``deadline`` (a done job's result when there is one)."""
    check_version(version)
    g = await get_release_graph(info.context.adb, version, deadline=deadline)
    info.context.mark_read(version)
    done = jobs.manager().done(_count_key(g, parsed, induced, distinct_subgraphs))
    if done is not None:
        return float(done.result)
    if uses_census(parsed) and g.peek("census") is None:
        estimate = await jobs.run_inline(deadline, _count_estimate, g, parsed)
        jobs.refuse_if_too_long(deadline, estimate or 0.0, COUNT_HINT)
    n = await jobs.run_inline(
        deadline, count_motif, g, parsed, induced=induced,
        distinct_subgraphs=distinct_subgraphs, deadline=deadline,
    )  # fmt: skip
    return float(n)


def _cursor_tag(version: int, motif: str, induced: bool) -> str:
    digest = hashlib.sha256(motif.encode()).hexdigest()[:16]
    return f"MOTIF-KEY:{version}:{int(induced)}:{digest}"


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
        parsed = await parse_motif_text(
            motif, Deadline.after(info.context.adb.settings.query_timeout)
        )
        tag = _cursor_tag(version, motif, induced)
        # keyset paging: a cursor is the page's last match (one nucleus ID per motif node)
        key = decode_int_cursor(after, tag, len(parsed.nodes)) if after else None
        last = None if key is None else dict(zip(parsed.nodes, map(int, key), strict=True))
        await info.context.require_complete(version)
        ds = await info.context.dataset_of(version)
        rows = await search_motif(
            info.context.adb, version, parsed, induced=induced, after=last, limit=first + 1
        )
        page = rows[:first]
        nodes = [
            MotifMatch(
                assignments=[
                    MotifAssignment(name=v, nucleus_id=r[v], dataset=ds) for v in parsed.nodes
                ],
                version=version,
            )
            for r in page
        ]
        end = encode_cursor(tag, *(page[-1][v] for v in parsed.nodes)) if page else None
        return MotifMatchConnection(
            nodes=nodes, page_info=PageInfo(has_next_page=len(rows) > first, end_cursor=end)
        )

    @strawberry.field(
        description="Exact number of matches in a whole release: ordered (DotMotif's count) "
        "or, with distinctSubgraphs, divided by the motif's automorphisms. Inline, under the "
        "query timeout; for longer counts use startMotifCount."
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
        deadline = Deadline.after(info.context.adb.settings.query_timeout)
        parsed = await parse_motif_text(motif, deadline)
        return await count_one(info, version, parsed, induced, distinct_subgraphs, deadline)

    @strawberry.field(
        description="Triad census (16 MAN classes) and reciprocal pairs of every cell the "
        "filters keep (isolated cells included), with an optional null model. Inline, under "
        "the query timeout; for longer ones use startMotifCensus."
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
        deadline, g, key, kind = await _census_setup(
            info, version, min_synapses, cell_types, nucleus_ids, null_model, samples, seed
        )
        done = jobs.manager().done(key)
        if done is not None:
            return Census.from_result(done.result)
        sub, estimate = await _census_subgraph(
            deadline, g, min_synapses, cell_types, nucleus_ids, kind, samples
        )
        jobs.refuse_if_too_long(deadline, estimate, CENSUS_HINT)
        if kind == "degree_preserving":  # the chains are pool tasks; this thread only waits
            result = await jobs.run_coordinated(
                run_census, sub, null=kind, samples=samples, seed=seed, deadline=deadline,
                executor=jobs.pool().executor("inline"),
            )  # fmt: skip
        else:
            result = await jobs.run_inline(
                deadline, run_census, sub, null=kind, samples=samples, seed=seed,
                deadline=deadline,
            )  # fmt: skip
        return Census.from_result(result)

    @strawberry.field(
        description="Start motifCensus as a background job (or join the same request's "
        "job); poll analysisJob(id). LIMIT_EXCEEDED when the job queue is full or the "
        "estimate exceeds what a job may run."
    )
    async def start_motif_census(
        self,
        info: CtxInfo,
        version: int,
        min_synapses: int = 1,
        cell_types: list[str] | None = None,
        nucleus_ids: list[int] | None = None,
        null_model: NullModel = NullModel.NONE,
        samples: int = 100,
        seed: int | None = None,
    ) -> AnalysisJob:
        deadline, g, key, kind = await _census_setup(
            info, version, min_synapses, cell_types, nucleus_ids, null_model, samples, seed
        )
        manager = jobs.manager()
        if (known := manager.find(key)) is not None:
            return AnalysisJob.from_job(known)
        sub, estimate = await _census_subgraph(
            deadline, g, min_synapses, cell_types, nucleus_ids, kind, samples
        )
        _check_job_estimate(estimate)
        _check_job_memory(sub, kind)
        body = _census_body(sub, kind, samples, seed)
        job = manager.submit(CENSUS_JOB, version, key, body, estimated_seconds=estimate)
        return AnalysisJob.from_job(job)

    @strawberry.field(
        description="Start motifCount as a background job (or join the same request's job); "
        "poll analysisJob(id). LIMIT_EXCEEDED when the job queue is full."
    )
    async def start_motif_count(
        self,
        info: CtxInfo,
        version: int,
        motif: Annotated[str, strawberry.argument(description=MOTIF_DOC)],
        induced: Annotated[bool, strawberry.argument(description=INDUCED_DOC)] = False,
        distinct_subgraphs: bool = False,
    ) -> AnalysisJob:
        check_version(version)
        adb = info.context.adb
        deadline = Deadline.after(adb.settings.query_timeout)
        parsed = await parse_motif_text(motif, deadline)
        g = await get_release_graph(adb, version, deadline=deadline)
        info.context.mark_read(version)
        key = _count_key(g, parsed, induced, distinct_subgraphs)
        manager = jobs.manager()
        if (known := manager.find(key)) is not None:
            return AnalysisJob.from_job(known)
        estimate = None
        if uses_census(parsed):
            estimate = await jobs.run_inline(deadline, _count_estimate, g, parsed)
            _check_job_estimate(estimate)
        body = _count_body(g, parsed, induced, distinct_subgraphs)
        job = manager.submit(COUNT_JOB, version, key, body, estimated_seconds=estimate)
        return AnalysisJob.from_job(job)

    @strawberry.field(description="An analysis job by id (null when unknown or expired).")
    async def analysis_job(self, id: strawberry.ID) -> AnalysisJob | None:
        job = jobs.manager().get(str(id))
        return None if job is None else AnalysisJob.from_job(job)


__all__ = [
    "AnalysisJob",
    "Census",
    "JobError",
    "JobState",
    "MotifAssignment",
    "MotifMatch",
    "MotifMatchConnection",
    "MotifQuery",
    "NullModel",
    "TriadCount",
]
