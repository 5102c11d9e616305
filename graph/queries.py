"""Every read the GraphQL API makes, as async functions over :class:`graph.driver.AsyncDatabase`.

Release-scoped reads carry their own release guard: one statement reads the status and the
slot (core.model.SLOTS) of the releases it needs and runs the body only when all of them are
``complete`` in the slot the statement was built for, so a query costs one round trip and never
reads a release that is loading, failed or being dropped. The slots come from a per-database
cache; a replace that switched a release's slot makes the guard refuse the body, the cache is
refreshed and the statement rebuilt once. The guard's statuses become :class:`UnknownRelease` /
:class:`ReleaseNotReady` here. Records come back with the served slot's property names mapped
to the plain ones (``root_id_v117``), so callers never see slots.

Dynamic Cypher is limited to per-release names from :mod:`core.model`; every value is a
``$parameter``. Partner queries seek the cell by ``nucleus_id`` (unique constraint index) and
expand only the release's relationship type; pages are keyset pages over a total order
(the sort key, then the partner's nucleus ID).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple

from core.criteria import CellCriteria
from core.errors import BadRequest, CGraphError
from core.model import (
    RELEASE_PROPERTIES,
    check_dataset,
    check_version,
    default_dataset,
    prop,
    rel_type,
)
from graph.driver import AsyncDatabase
from graph.releases import ReleaseInfo, gate

log = logging.getLogger(__name__)


class Direction(Enum):
    OUTPUTS = "outputs"  # (cell)-[:SYNAPSE_Vn]->(partner)
    INPUTS = "inputs"  # (cell)<-[:SYNAPSE_Vn]-(partner)


class PartnerOrder(Enum):
    SYNAPSES = "synapses"  # most synapses first
    SIZE = "size"  # largest summed cleft size first (edges without sizes last)
    NUCLEUS_ID = "nucleus_id"  # ascending partner nucleus ID


class Change(Enum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class CellRecord:
    """A (:Cell) node. `complete`: every property was read; otherwise (a partner row) only
    `nucleus_id` and the keys present in `props` are known."""

    nucleus_id: int
    props: Mapping[str, Any] = field(repr=False)
    complete: bool = True

    @classmethod
    def from_props(
        cls, node: Mapping[str, Any], slots: Mapping[int, int] | None = None
    ) -> CellRecord:
        """A record from a node's properties; ``slots``: {version: slot} of the releases read,
        those served from slot 1 get their property names mapped to the plain ones."""
        moved = [v for v, slot in (slots or {}).items() if slot]
        if not moved:
            return cls(nucleus_id=int(node["nucleus_id"]), props=node)
        props = dict(node)
        for v in moved:
            for p in RELEASE_PROPERTIES:
                props.pop(prop(p.stem, v), None)  # the retired slot's, during its grace
                value = props.pop(prop(p.stem, v, 1), None)
                if value is not None:
                    props[prop(p.stem, v)] = value
        return cls(nucleus_id=int(node["nucleus_id"]), props=props)

    @property
    def dataset(self) -> str:
        """The dataset the cell belongs to (a partial record without it: the default)."""
        return str(self.props.get("dataset") or default_dataset())

    @property
    def key(self) -> tuple[str, int]:
        """(dataset, nucleus_id): what identifies a cell."""
        return (self.dataset, self.nucleus_id)

    @property
    def position(self) -> tuple[float, float, float] | None:
        pos = self.props.get("position")
        return None if pos is None else (float(pos.x), float(pos.y), float(pos.z))

    @property
    def volume(self) -> float | None:
        value = self.props.get("volume")
        return None if value is None else float(value)

    @property
    def releases(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.props.get("releases") or ())

    def has(self, stem: str, version: int) -> bool:
        """Whether `get(stem, version)` is known (always, for a complete record)."""
        return self.complete or prop(stem, version) in self.props

    def get(self, stem: str, version: int) -> Any:
        """The release property `stem` in `version` (None when the cell is not in it)."""
        return self.props.get(prop(stem, version))


class Partner(NamedTuple):
    """One partner of a page: the partner cell's nucleus ID, root ID and cell type in the
    page's release, and the edge. A tuple (a warm page of 2 x 1,000 partners is built on
    every request; frozen dataclasses cost ~3x as much); ``cell`` makes the partial record."""

    nucleus_id: int
    root_id: int | None
    cell_type: str | None
    dataset_prop: str | None  # the node's dataset property (absent: the default dataset)
    synapses: int
    size: int | None  # summed cleft size; None when the source had no sizes
    key: float  # the sort key of the page order (for cursors)
    version: int

    @property
    def dataset(self) -> str:
        return str(self.dataset_prop or default_dataset())

    @property
    def cell(self) -> CellRecord:
        """The partner as a partial CellRecord (nucleus ID, root ID, cell type, dataset)."""
        props = {"nucleus_id": self.nucleus_id, prop("root_id", self.version): self.root_id,
                 prop("cell_type", self.version): self.cell_type, "dataset": self.dataset_prop}  # fmt: skip
        return CellRecord(nucleus_id=int(self.nucleus_id), props=props, complete=False)


@dataclass(frozen=True)
class PartnerFilter:
    """Which partners: by the edge (synapses, summed size) and by the partner cell."""

    min_synapses: int = 1
    min_size: float | None = None
    partner: CellCriteria = CellCriteria()


@dataclass(frozen=True)
class PartnerPage:
    total: int  # partners matching the filter, all pages
    partners: list[Partner]
    has_next: bool


@dataclass(frozen=True)
class CellPage:
    cells: list[CellRecord]
    has_next: bool


@dataclass(frozen=True)
class PartnerChange:
    cell: CellRecord
    before: int
    after: int
    change: Change


# --------------------------------------------------------------------------- reads


async def _read(
    adb: AsyncDatabase, cypher: str, params: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    log.debug("cypher: %s params: %s", cypher, params)
    return await adb.read_auto(cypher, params)


# --------------------------------------------------------------------------- guard

GUARD = """
CALL () {
  UNWIND $versions AS v
  OPTIONAL MATCH (r:Release {version: v})
  RETURN collect(coalesce(r.status, 'missing')) AS statuses, collect(coalesce(r.slot, 0)) AS slots
}
WITH statuses, slots, all(s IN statuses WHERE s = 'complete') AND slots = $slots AS ok
"""


def _check(versions: Sequence[int], statuses: Sequence[str]) -> None:
    for v, status in zip(versions, statuses, strict=True):
        gate(v, status)


class ReleaseSwitching(CGraphError):
    """A release's slot changed between two tries of one read (replaces back to back)."""

    code = "RELEASE_NOT_READY"


async def _guarded(
    adb: AsyncDatabase,
    build: Callable[..., str],
    versions: Sequence[int],
    params: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[int, int]]:
    """Run a guarded statement (GUARD + an aggregating body) built by ``build(*slots)`` (one
    slot per version) for the cached slots; raise on a release not complete. Returns the row
    and {version: slot} it was read in."""
    vs = [check_version(v) for v in versions]
    cache = adb.release_slots
    for _ in range(3):
        slots = [cache.get(v, 0) for v in vs]
        rows = await _read(adb, build(*slots), {**params, "versions": vs, "slots": slots})
        row = rows[0]
        _check(vs, row["statuses"])
        got = [int(x) for x in row["slots"]]
        if got == slots:
            return row, dict(zip(vs, slots, strict=True))
        cache.update(zip(vs, got, strict=True))
    raise ReleaseSwitching(f"releases {vs} switched slots while read; ask again")


# --------------------------------------------------------------------------- cells

GET_CELLS = """
CALL () {
  MATCH (r:Release) WHERE r.status = 'complete'
  RETURN collect(properties(r)) AS complete
}
CALL () {
  UNWIND $keys AS k
  MATCH (c:Cell {dataset: k[0], nucleus_id: k[1]}) WHERE size(c.releases) > 0
  RETURN collect(properties(c)) AS cells
}
RETURN complete, cells
"""


async def get_cells(
    adb: AsyncDatabase, keys: Sequence[tuple[str, int]]
) -> tuple[list[CellRecord | None], list[ReleaseInfo]]:
    """Cells by (dataset, nucleus ID), in the order asked (None for a key with no cell), and
    the complete releases at the time (so that per-release fields and the answer's
    provenance need no second query). A cell that only a running load has written (in no
    release yet) is not there."""
    asked = [(check_dataset(d), int(n)) for d, n in keys]
    (row,) = await _read(adb, GET_CELLS, {"keys": [list(k) for k in asked]})
    complete = [ReleaseInfo.from_node(r) for r in row["complete"]]
    slots = {r.version: r.slot for r in complete}
    records = [CellRecord.from_props(c, slots) for c in row["cells"]]
    found = {r.key: r for r in records}
    return [found.get(k) for k in asked], complete


def cells_by_root_cypher(version: int, slot: int = 0) -> str:
    return (
        GUARD
        + f"""
CALL (ok) {{
  MATCH (c:Cell) WHERE ok AND c.{prop("root_id", version, slot)} = $root_id
  WITH c ORDER BY c.nucleus_id
  RETURN collect(properties(c)) AS cells
}}
RETURN statuses, slots, cells
"""
    )


async def find_cells_by_root(adb: AsyncDatabase, root_id: int, version: int) -> list[CellRecord]:
    """Cells whose segment is `root_id` in `version` (several for a multi-nucleus root)."""
    row, slots = await _guarded(
        adb, lambda s: cells_by_root_cypher(version, s), [version], {"root_id": root_id}
    )
    return [CellRecord.from_props(c, slots) for c in row["cells"]]


def criteria_cypher(var: str, version: int, prefix: str = "", slot: int = 0) -> str:
    """The WHERE condition of :class:`core.criteria.CellCriteria` on cell ``var`` in a release;
    its values come from ``CellCriteria.params(prefix)``."""
    ct, neuron = prop("cell_type", version, slot), prop("is_neuron", version, slot)
    system = prop("classification_system", version, slot)
    return f"""(${prefix}cell_types IS NULL OR {var}.{ct} IN ${prefix}cell_types)
    AND (${prefix}is_neuron IS NULL OR {var}.{neuron} = ${prefix}is_neuron)
    AND (${prefix}systems IS NULL OR {var}.{system} IN ${prefix}systems)
    AND (${prefix}nucleus_ids IS NULL OR {var}.nucleus_id IN ${prefix}nucleus_ids)"""


def _cell_filter(version: int, slot: int) -> str:
    root = prop("root_id", version, slot)
    return f"""c.{root} IS NOT NULL AND {criteria_cypher("c", version, slot=slot)}"""


def list_cells_cypher(version: int, slot: int = 0) -> str:
    return (
        GUARD
        + f"""
CALL (ok) {{
  MATCH (c:Cell)
  WHERE ok AND ($after IS NULL OR c.nucleus_id > $after) AND {_cell_filter(version, slot)}
  WITH c ORDER BY c.nucleus_id LIMIT $first + 1
  RETURN collect(properties(c)) AS cells
}}
RETURN statuses, slots, cells
"""
    )


def count_cells_cypher(version: int, slot: int = 0) -> str:
    return (
        GUARD
        + f"""
CALL (ok) {{
  MATCH (c:Cell) WHERE ok AND {_cell_filter(version, slot)}
  RETURN count(c) AS total
}}
RETURN statuses, slots, total
"""
    )


async def list_cells(
    adb: AsyncDatabase,
    version: int,
    *,
    where: CellCriteria = CellCriteria(),  # noqa: B008 - frozen, shared safely
    first: int = 100,
    after: int | None = None,
) -> CellPage:
    """Cells of a release that match `where`, in nucleus-ID order, `first` after nucleus ID
    `after`."""
    params = {**where.params(), "first": first, "after": after}
    row, slots = await _guarded(adb, lambda s: list_cells_cypher(version, s), [version], params)
    cells = [CellRecord.from_props(c, slots) for c in row["cells"]]
    return CellPage(cells=cells[:first], has_next=len(cells) > first)


async def count_cells(
    adb: AsyncDatabase,
    version: int,
    *,
    where: CellCriteria = CellCriteria(),  # noqa: B008 - frozen, shared safely
) -> int:
    row, _ = await _guarded(
        adb, lambda s: count_cells_cypher(version, s), [version], where.params()
    )
    return int(row["total"])


# --------------------------------------------------------------------------- partners


def _pattern(version: int, direction: Direction, slot: int = 0) -> str:
    rel = rel_type(version, slot)
    if direction is Direction.OUTPUTS:
        return f"(c)-[e:{rel}]->(p:Cell)"
    return f"(c)<-[e:{rel}]-(p:Cell)"


_SORT_KEY = {
    PartnerOrder.SYNAPSES: ("e.synapses", "DESC", "<"),
    PartnerOrder.SIZE: ("coalesce(e.size, -1)", "DESC", "<"),
    PartnerOrder.NUCLEUS_ID: ("p.nucleus_id", "ASC", ">"),
}


def partners_cypher(version: int, direction: Direction, order: PartnerOrder, slot: int = 0) -> str:
    """Guarded keyset page of a cell's partners plus the filtered total.

    Parameters: versions, nucleus_id, min_synapses, min_size, the partner criteria (p_*),
    first, after_key,
    after_id (both null for the first page).
    A page row is [key, nucleus_id, root_id, cell_type, synapses, size, dataset].
    """
    key, sort, before = _SORT_KEY[order]
    root, ctype = prop("root_id", version, slot), prop("cell_type", version, slot)
    return (
        GUARD
        + f"""
CALL (ok) {{
  MATCH (c:Cell {{nucleus_id: $nucleus_id}}) WHERE ok AND c.{root} IS NOT NULL
  MATCH {_pattern(version, direction, slot)}
  WHERE e.synapses >= $min_synapses
    AND ($min_size IS NULL OR e.size >= $min_size)
    AND {criteria_cypher("p", version, "p_", slot)}
  WITH e, p, {key} AS k
  ORDER BY k {sort}, p.nucleus_id
  WITH collect({{k: k, e: e, p: p}}) AS rows
  WITH rows, [x IN rows WHERE $after_key IS NULL OR x.k {before} $after_key
              OR (x.k = $after_key AND x.p.nucleus_id > $after_id)] AS rest
  RETURN size(rows) AS total, size(rest) > $first AS has_next,
         [x IN rest[0..$first] | [x.k, x.p.nucleus_id, x.p.{root}, x.p.{ctype},
           x.e.synapses, x.e.size, x.p.dataset]] AS page
}}
RETURN statuses, slots, total, has_next, page
"""
    )


def _partners(rows: Sequence[Sequence[Any]], version: int) -> list[Partner]:
    return [Partner(n, root, ctype, ds, syn, size, key, version)
            for key, n, root, ctype, syn, size, ds in rows]  # fmt: skip


async def list_partners(
    adb: AsyncDatabase,
    nucleus_id: int,
    version: int,
    direction: Direction,
    *,
    where: PartnerFilter = PartnerFilter(),  # noqa: B008 - frozen, shared safely
    order: PartnerOrder = PartnerOrder.SYNAPSES,
    first: int = 100,
    after: tuple[float, int] | None = None,
) -> PartnerPage:
    """One page of the output (or input) partners of a cell in a release.

    `after` is (sort key, partner nucleus ID) of the last partner of the previous page.
    Partner cells come back partial (nucleus ID, root ID and cell type in `version`).
    """
    params = {
        "nucleus_id": nucleus_id,
        "min_synapses": where.min_synapses,
        "min_size": where.min_size,
        **where.partner.params("p_"),
        "first": first,
        "after_key": after[0] if after else None,
        "after_id": after[1] if after else None,
    }
    row, _ = await _guarded(
        adb, lambda s: partners_cypher(version, direction, order, s), [version], params
    )
    return PartnerPage(
        total=int(row["total"] or 0),
        partners=_partners(row["page"], version),
        has_next=bool(row["has_next"]),
    )


def diff_cypher(
    from_version: int,
    to_version: int,
    direction: Direction,
    from_slot: int = 0,
    to_slot: int = 0,
) -> str:
    return (
        GUARD
        + f"""
CALL (ok) {{
  OPTIONAL MATCH (c:Cell {{dataset: $dataset, nucleus_id: $nucleus_id}}) WHERE ok
  CALL (c) {{
    MATCH {_pattern(from_version, direction, from_slot)}
    RETURN collect({{id: p.nucleus_id, n: e.synapses, p: properties(p)}}) AS before
  }}
  CALL (c) {{
    MATCH {_pattern(to_version, direction, to_slot)}
    RETURN collect({{id: p.nucleus_id, n: e.synapses, p: properties(p)}}) AS after
  }}
  RETURN before, after
}}
RETURN statuses, slots, before, after
"""
    )


def _change(before: int, after: int) -> Change:
    if before == 0:
        return Change.ADDED
    if after == 0:
        return Change.REMOVED
    return Change.UNCHANGED if before == after else Change.CHANGED


async def diff_partners(
    adb: AsyncDatabase, nucleus_id: int, from_version: int, to_version: int, direction: Direction,
    dataset: str | None = None,
) -> list[PartnerChange]:  # fmt: skip
    """Partners of a cell of ``dataset`` (default: the default one) in either release, by
    nucleus ID, with synapse counts before/after."""
    row, slots = await _guarded(
        adb,
        lambda a, b: diff_cypher(from_version, to_version, direction, a, b),
        [from_version, to_version],
        {"nucleus_id": nucleus_id, "dataset": check_dataset(dataset or default_dataset())},
    )
    before = {int(x["id"]): int(x["n"]) for x in row["before"] or ()}
    after = {int(x["id"]): int(x["n"]) for x in row["after"] or ()}
    props = {int(x["id"]): x["p"] for x in [*(row["before"] or ()), *(row["after"] or ())]}
    return [
        PartnerChange(
            cell=CellRecord.from_props(props[i], slots),
            before=before.get(i, 0),
            after=after.get(i, 0),
            change=_change(before.get(i, 0), after.get(i, 0)),
        )
        for i in sorted(props)
    ]


# --------------------------------------------------------------------------- paths

MAX_PATH_LENGTH = 6


def shortest_paths_cypher(version: int, max_length: int, slot: int = 0) -> str:
    """Guarded: every shortest directed path (fewest edges, at most ``max_length``) from cell
    $from_id to cell $to_id in the release over edges of at least $min_synapses synapses whose
    intermediate cells match the criteria ``$via_*`` (core.criteria; all None: any cell), in
    the order of their cells' nucleus IDs, the first $first. ``max_length`` is a checked int."""
    root, rel = prop("root_id", version, slot), rel_type(version, slot)
    if not 1 <= int(max_length) <= MAX_PATH_LENGTH:
        raise BadRequest(f"maxLength must be between 1 and {MAX_PATH_LENGTH}, got {max_length}")
    return (
        GUARD
        + f"""
CALL (ok) {{
  OPTIONAL MATCH (a:Cell {{nucleus_id: $from_id}}) WHERE ok AND a.{root} IS NOT NULL
  OPTIONAL MATCH (b:Cell {{nucleus_id: $to_id}}) WHERE ok AND b.{root} IS NOT NULL
  CALL (a, b) {{
    WITH a, b WHERE a IS NOT NULL AND b IS NOT NULL AND a <> b
    MATCH p = allShortestPaths((a)-[:{rel}*1..{int(max_length)}]->(b))
    WHERE all(r IN relationships(p) WHERE r.synapses >= $min_synapses)
      AND all(n IN nodes(p)[1..-1] WHERE {criteria_cypher("n", version, "via_", slot)})
    WITH p ORDER BY [n IN nodes(p) | n.nucleus_id] LIMIT $first
    RETURN collect([[n IN nodes(p) | properties(n)],
                    [r IN relationships(p) | r.synapses]]) AS paths
  }}
  RETURN a IS NOT NULL AS has_from, b IS NOT NULL AS has_to, paths
}}
RETURN statuses, slots, has_from, has_to, paths
"""
    )


@dataclass(frozen=True)
class Path:
    cells: list[CellRecord]
    synapses: list[int]  # per edge along the path


async def shortest_paths(
    adb: AsyncDatabase, version: int, from_id: int, to_id: int, *, min_synapses: int = 1,
    max_length: int = 4, first: int = 10,
    via: CellCriteria = CellCriteria(),  # noqa: B008 - frozen, shared safely
) -> list[Path]:  # fmt: skip
    """Shortest paths between two cells of a release (see :func:`shortest_paths_cypher`),
    through cells matching ``via`` only; a cell not in the release answers BAD_REQUEST naming
    it; none within ``max_length``: []."""
    if min_synapses < 1:
        raise BadRequest(f"minSynapses must be >= 1, got {min_synapses}")
    if not 1 <= first <= 1000:
        raise BadRequest(f"first must be between 1 and 1000, got {first}")
    row, slots = await _guarded(
        adb, lambda s: shortest_paths_cypher(version, max_length, s), [version],
        {"from_id": from_id, "to_id": to_id, "min_synapses": min_synapses, "first": first,
         **via.params("via_")},
    )  # fmt: skip
    for ok, n in ((row["has_from"], from_id), (row["has_to"], to_id)):
        if not ok:
            raise BadRequest(f"cell {n} is not in release {version}")
    return [Path([CellRecord.from_props(c, slots) for c in cells], [int(x) for x in syn])
            for cells, syn in row["paths"] or ()]  # fmt: skip
