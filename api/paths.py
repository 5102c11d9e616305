"""GraphQL paths: `shortestPaths` (fewest hops or strongest, in Neo4j: graph.queries,
graph.paths) and `reachableCells` (bounded k-hop reachability on the release held in memory:
analysis.reach), with a minimum synapse count per edge and a filter on the cells a path may pass
through. Slower than the query timeout: TIMEOUT, never a partial or empty answer."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import numpy as np
import strawberry

from analysis.reach import MAX_HOPS, reachable
from api import jobs
from api.pagination import check_first, decode_int_cursor, encode_cursor
from api.types import FIRST_DOC, Cell, CtxInfo, PageInfo
from core.budget import Deadline
from core.criteria import CellCriteria
from core.errors import BadRequest
from core.model import check_version
from graph import queries
from graph.paths import strongest_paths
from graph.queries import Direction
from graph.whole_release import get_release_graph


@strawberry.type(name="Path", description="A directed path of a release: its cells in order.")
class CellPath:
    cells: list[Cell]
    synapses: list[int] = strawberry.field(description="Synapses of each edge along the path.")

    @strawberry.field(description="Edges along the path.")
    def length(self) -> int:
        return len(self.synapses)


@strawberry.enum(description="Which paths shortestPaths answers.")
class PathWeight(Enum):
    HOPS = "hops"  # fewest edges
    STRONGEST = "strongest"  # the weakest edge has the most synapses; then fewest edges


@strawberry.type(description="A cell reached from the start cell, and in how many hops.")
class ReachedCell:
    nucleus_id: int
    hops: int
    dataset: strawberry.Private[str]

    @strawberry.field
    async def cell(self, info: CtxInfo) -> Cell:
        record = await info.context.cells.load((self.dataset, self.nucleus_id))
        if record is None:  # a complete release never loses cells; a bug if seen
            raise LookupError(f"cell {self.nucleus_id} vanished")
        return Cell(record=record)


@strawberry.type
class ReachedCellConnection:
    total_count: int = strawberry.field(description="Cells reached (matching `cellTypes`).")
    nodes: list[ReachedCell]
    page_info: PageInfo


def _via(cell_types: list[str] | None, is_neuron: bool | None) -> CellCriteria:
    return CellCriteria.of(cell_type=cell_types, is_neuron=is_neuron)


@strawberry.type
class PathQuery:
    @strawberry.field(
        description="Shortest directed paths from one cell to another in a release, over "
        "edges of at least minSynapses synapses, at most maxLength (1-6) edges, through cells "
        "matching intermediateCellTypes / intermediateIsNeuron only (the end cells may be any). "
        "weight HOPS: the fewest edges; STRONGEST: the paths whose weakest edge has the most "
        "synapses, then the fewest edges. In the order of their cells' nucleus IDs, the first "
        "`first` (at most 1000). None within maxLength: []. A cell not in the release: "
        "BAD_REQUEST; slower than the query timeout: TIMEOUT (never a partial answer)."
    )
    async def shortest_paths(
        self, info: CtxInfo, version: int, from_nucleus_id: int, to_nucleus_id: int,
        min_synapses: int = 1, max_length: int = 4, first: int = 10,
        weight: PathWeight = PathWeight.HOPS,
        intermediate_cell_types: list[str] | None = None,
        intermediate_is_neuron: bool | None = None,
    ) -> list[CellPath]:  # fmt: skip
        adb, via = info.context.adb, _via(intermediate_cell_types, intermediate_is_neuron)
        find = queries.shortest_paths if weight is PathWeight.HOPS else strongest_paths
        paths = await find(
            adb, check_version(version), from_nucleus_id, to_nucleus_id,
            min_synapses=min_synapses, max_length=max_length, first=first, via=via,
        )  # fmt: skip
        info.context.seen_complete(version)
        for p in paths:
            info.context.prime_cells(p.cells)
        return [CellPath(cells=[Cell(record=c) for c in p.cells], synapses=p.synapses)
                for p in paths]  # fmt: skip

    @strawberry.field(
        description="Every cell reachable from a cell of a release in at most maxHops (1-6) "
        "directed edges of at least minSynapses synapses (direction INPUTS: the cells that "
        "reach it), passing only through cells matching viaCellTypes / viaIsNeuron; by hops, "
        "then nucleus ID; only those of `cellTypes` when given (e.g. a cell-type target set). "
        "On the release held in memory (as motifCount)."
    )
    async def reachable_cells(
        self, info: CtxInfo, version: int, from_nucleus_id: int, max_hops: int = 2,
        min_synapses: int = 1, direction: Direction = Direction.OUTPUTS,
        cell_types: list[str] | None = None, via_cell_types: list[str] | None = None,
        via_is_neuron: bool | None = None,
        first: Annotated[int, strawberry.argument(description=FIRST_DOC)] = 100,
        after: str | None = None,
    ) -> ReachedCellConnection:  # fmt: skip
        check_version(version)
        check_first(first)
        if not 1 <= max_hops <= MAX_HOPS:
            raise BadRequest(f"maxHops must be 1..{MAX_HOPS}, got {max_hops}")
        if min_synapses < 1:
            raise BadRequest(f"minSynapses must be >= 1, got {min_synapses}")
        ctx = info.context
        deadline = Deadline.after(ctx.adb.settings.query_timeout)
        g = await get_release_graph(ctx.adb, version, deadline=deadline)
        ctx.mark_read(version)
        i = int(np.searchsorted(g.nodes, from_nucleus_id))
        if i >= g.n or int(g.nodes[i]) != from_nucleus_id:
            raise BadRequest(f"cell {from_nucleus_id} is not in release {version}")
        via = _via(via_cell_types, via_is_neuron)
        mask = None if via == CellCriteria() else via.mask(
            g.nodes, g.cell_type, g.is_neuron, g.classification_system)  # fmt: skip
        cells, hops = await jobs.run_inline(
            deadline, reachable, g, i, max_hops, min_synapses=min_synapses,
            direction=direction.value, via=mask, deadline=deadline,
        )  # fmt: skip
        if cell_types is not None:
            keep = CellCriteria.of(cell_type=cell_types).mask(
                g.nodes[cells], None if g.cell_type is None else g.cell_type[cells], None, None)  # fmt: skip
            cells, hops = cells[keep], hops[keep]
        tag = (f"REACH:{version}:{from_nucleus_id}:{max_hops}:{min_synapses}:{direction.value}:"
               f"{cell_types}:{via}")  # fmt: skip
        start = decode_int_cursor(after, tag, low=0)[0] if after else 0
        end = start + first
        ds = await ctx.dataset_of(version)
        nodes = [ReachedCell(nucleus_id=int(g.nodes[c]), hops=int(h), dataset=ds)
                 for c, h in zip(cells[start:end], hops[start:end], strict=True)]  # fmt: skip
        has_next = end < cells.size
        return ReachedCellConnection(
            total_count=int(cells.size), nodes=nodes,
            page_info=PageInfo(has_next_page=has_next,
                               end_cursor=encode_cursor(tag, end) if nodes else None),
        )  # fmt: skip
