"""Notebook client for the connectome-graph GraphQL API and its bulk export (pandas DataFrames
and pyarrow Tables out; imports pandas, httpx and pyarrow only).

    >>> from api.client import ConnectomeClient
    >>> client = ConnectomeClient("http://127.0.0.1:8000")          # token=... if the server has one
    >>> client.releases()                                            # one row per release
    >>> client.outputs(nucleus_id, version=343)                      # partners, most synapses first
    >>> client.synapse_query(post_ids=root_id, version=343)          # like caveclient's
    >>> client.query_table("nucleus_detection_v0", filter_in_dict={"id": ids}, version=343)
    >>> client.export_release(343, "synapses")                       # pyarrow Table, no row cap

Root IDs come back as int64 columns (they travel as strings, since JSON numbers lose 64-bit
integers); every page is fetched for you. A server error raises a subclass of
:class:`ApiError` named after its code (``UnknownReleaseError`` for UNKNOWN_RELEASE, ...).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa

from api import client_frames as frames

PAGE = 1000


class ApiError(Exception):
    """An error answered by the server; `code` is its extensions.code."""

    code = "INTERNAL"

    def __init__(self, message: str, code: str | None = None, path: list[Any] | None = None):
        super().__init__(message)
        self.code = code or type(self).code
        self.path = path


class UnknownReleaseError(ApiError):
    code = "UNKNOWN_RELEASE"


class ReleaseNotReadyError(ApiError):
    code = "RELEASE_NOT_READY"


class QueryTimeoutError(ApiError):
    code = "TIMEOUT"


class LimitExceededError(ApiError):
    code = "LIMIT_EXCEEDED"


class BadRequestError(ApiError):
    code = "BAD_REQUEST"


class UnauthenticatedError(ApiError):
    code = "UNAUTHENTICATED"


class StoreNotReadyError(ApiError):
    """The release is served but its synapse store is still being written: ask again later."""

    code = "SYNAPSE_STORE_NOT_READY"


_BY_CODE: dict[str, type[ApiError]] = {
    cls.code: cls
    for cls in (
        UnknownReleaseError,
        ReleaseNotReadyError,
        QueryTimeoutError,
        LimitExceededError,
        BadRequestError,
        UnauthenticatedError,
        StoreNotReadyError,
    )
}

CELL_FIELDS = """nucleusId position volume rootId(version: $v) cellType(version: $v)
  classificationSystem(version: $v) isNeuron(version: $v) outSynapses(version: $v)
  inSynapses(version: $v)"""

PARTNERS = """
query Partners($n: Int!, $v: Int!, $minSynapses: Int!, $minSize: Float, $cellType: String,
               $first: Int!, $after: String, $inputs: Boolean!, $synapses: Boolean!) {
  cell(nucleusId: $n) {
    rootId(version: $v)
    outputs(version: $v, minSynapses: $minSynapses, minSize: $minSize,
            partnerCellType: $cellType, first: $first, after: $after) @skip(if: $inputs) {
      ...page
    }
    inputs(version: $v, minSynapses: $minSynapses, minSize: $minSize,
           partnerCellType: $cellType, first: $first, after: $after) @include(if: $inputs) {
      ...page
    }
  }
}
fragment page on PartnerConnection {
  pageInfo { hasNextPage endCursor }
  nodes {
    nucleusId rootId cellType synapses size
    sizes @include(if: $synapses)
    synapseIds @include(if: $synapses)
  }
}
"""

#: GraphQL field -> DataFrame column of ConnectomeClient.type_connectivity
WIRING_FIELDS = {"preType": "pre_type", "postType": "post_type", "edges": "edges",
                 "synapses": "synapses", "size": "size", "preCells": "pre_cells",
                 "postCells": "post_cells", "possiblePairs": "possible_pairs",
                 "probability": "probability"}  # fmt: skip
PARTNER_COLUMNS = ["nucleus_id", "partner_nucleus_id", "partner_root_id", "partner_cell_type",
                   "synapses", "size"]  # fmt: skip


def _int64(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    for c in columns:
        frame[c] = pd.array([None if v is None else int(v) for v in frame[c]], dtype="Int64")
        if not frame[c].isna().any():
            frame[c] = frame[c].astype("int64")
    return frame


def merge_provenance(seen: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """One provenance for answers of several requests: the software of the first, every
    distinct release (by version and snapshot) in version order."""
    got = [p for p in seen if p]
    if not got:
        return None
    releases: dict[tuple[Any, Any], dict[str, Any]] = {}
    for p in got:
        for r in p.get("releases") or []:
            releases.setdefault((r.get("version"), r.get("snapshot")), r)
    ordered = sorted(
        releases.values(), key=lambda r: (r.get("version") or 0, str(r.get("snapshot")))
    )
    return {"software": got[0].get("software"), "releases": ordered}


def _attach(method: Any) -> Any:
    """A DataFrame-returning client method: its frame's ``.attrs["provenance"]`` names the
    releases and software of every GraphQL answer it was built from."""

    @functools.wraps(method)
    def wrapper(self: ConnectomeClient, *args: Any, **kwargs: Any) -> Any:
        with self._provenance() as seen:
            out = method(self, *args, **kwargs)
        if isinstance(out, pd.DataFrame) and (merged := merge_provenance(seen)) is not None:
            out.attrs["provenance"] = merged
        return out

    return wrapper


class ConnectomeClient:
    """A connection to one connectome-graph server. Every DataFrame it returns carries the
    answer's provenance (software, releases read with their snapshot digests) in
    ``.attrs["provenance"]``; Arrow tables carry it as schema metadata ``cgraph.provenance``."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 120.0) -> None:
        base = url.rstrip("/")
        self.url = base if base.endswith("/graphql") else base + "/graphql"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(headers=headers, timeout=timeout)
        #: ``extensions.provenance`` of the last GraphQL answer (software, releases read)
        self.last_provenance: dict[str, Any] | None = None
        self._tracking: list[list[dict[str, Any]]] = []

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ConnectomeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ raw GraphQL
    def query(self, graphql: str, **variables: Any) -> dict[str, Any]:
        """Run any GraphQL query; returns its `data`. Raises ApiError subclasses."""
        response = self._http.post(self.url, json={"query": graphql, "variables": variables})
        if response.status_code == 401:
            raise UnauthenticatedError("the server wants `token=` (Authorization: Bearer)")
        try:
            body = response.json()
        except ValueError:
            response.raise_for_status()
            raise
        errors = body.get("errors")
        if errors:
            first = errors[0]
            code = (first.get("extensions") or {}).get("code", "INTERNAL")
            cls = _BY_CODE.get(code, ApiError)
            raise cls(first.get("message", "error"), code, first.get("path"))
        response.raise_for_status()
        self.last_provenance = (body.get("extensions") or {}).get("provenance")
        if self.last_provenance is not None:
            for seen in self._tracking:
                seen.append(self.last_provenance)
        data: dict[str, Any] = body["data"]
        return data

    @contextlib.contextmanager
    def _provenance(self) -> Iterator[list[dict[str, Any]]]:
        """Collects the provenance of every query run inside the block."""
        seen: list[dict[str, Any]] = []
        self._tracking.append(seen)
        try:
            yield seen
        finally:
            self._tracking.remove(seen)

    # ------------------------------------------------------------------ releases and cells
    @_attach
    def releases(self) -> pd.DataFrame:
        data = self.query(
            "{ releases { version dataset status timestamp cells edges synapses synapsesTotal } }"
        )
        frame = pd.DataFrame(data["releases"])
        if len(frame):
            # any ISO 8601 form: with or without fractional seconds, Z or an offset, or null
            frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
            frame = frame.rename(columns={"synapsesTotal": "synapses_total"})
        return frame

    @_attach
    def cell(self, nucleus_id: int, dataset: str | None = None) -> pd.DataFrame:
        """One row per release the cell is part of (root IDs change, nucleus IDs do not); a
        nucleus ID is unique within its ``dataset`` (default: the server's default)."""
        data = self.query("query($n: Int!, $d: String) { cell(nucleusId: $n, dataset: $d) "
                          "{ releases } }", n=int(nucleus_id), d=dataset)  # fmt: skip
        if data["cell"] is None:
            return self._cells_frame([])
        rows = []
        for v in data["cell"]["releases"]:
            got = self.query(
                f"query($n: Int!, $v: Int!, $d: String) {{ cell(nucleusId: $n, dataset: $d) "
                f"{{ {CELL_FIELDS} }} }}",
                n=int(nucleus_id),
                v=v,
                d=dataset,
            )
            rows.append({**got["cell"], "version": v})
        return self._cells_frame(rows)

    @_attach
    def cell_by_root_id(self, root_id: int | str, version: int) -> pd.DataFrame:
        """The cell(s) on a root ID in a release (several when the root is a merge)."""
        data = self.query(
            f"query($r: String!, $v: Int!) {{ cellsByRootId(rootId: $r, version: $v) "
            f"{{ {CELL_FIELDS} }} }}",
            r=str(int(root_id)),
            v=int(version),
        )
        return self._cells_frame([{**c, "version": int(version)} for c in data["cellsByRootId"]])

    @staticmethod
    def _cells_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
        columns = ["nucleus_id", "version", "root_id", "cell_type", "classification_system",
                   "is_neuron", "x", "y", "z", "volume", "out_synapses", "in_synapses"]  # fmt: skip
        out = []
        for r in rows:
            x, y, z = r.get("position") or (None, None, None)
            out.append({
                "nucleus_id": r["nucleusId"], "version": r["version"], "root_id": r["rootId"],
                "cell_type": r["cellType"], "classification_system": r["classificationSystem"],
                "is_neuron": r["isNeuron"], "x": x, "y": y, "z": z, "volume": r["volume"],
                "out_synapses": r["outSynapses"], "in_synapses": r["inSynapses"],
            })  # fmt: skip
        return _int64(pd.DataFrame(out, columns=columns), "root_id")

    # ------------------------------------------------------------------ space
    @_attach
    def cells_in_box(
        self, version: int, min: Sequence[float], max: Sequence[float], unit: str = "nm", *,
        cell_type: str | None = None, is_neuron: bool | None = None,
    ) -> pd.DataFrame:  # fmt: skip
        """Cells whose nucleus lies in the box (inclusive; ``unit`` "nm" or "voxels"), every
        page, in nucleus-ID order: the columns of :meth:`cell`."""
        rows: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            data = self.query(
                f"""query($v: Int!, $lo: [Float!]!, $hi: [Float!]!, $u: Unit!, $t: String,
                          $n: Boolean, $f: Int!, $after: String) {{
                  cellsInBox(version: $v, min: $lo, max: $hi, unit: $u, cellType: $t,
                             isNeuron: $n, first: $f, after: $after) {{
                    nodes {{ {CELL_FIELDS} }} pageInfo {{ hasNextPage endCursor }} }} }}""",
                v=int(version), lo=[float(x) for x in min], hi=[float(x) for x in max],
                u=unit.upper(), t=cell_type, n=is_neuron, f=PAGE, after=after,
            )["cellsInBox"]  # fmt: skip
            rows += [{**c, "version": int(version)} for c in data["nodes"]]
            if not data["pageInfo"]["hasNextPage"]:
                break
            after = data["pageInfo"]["endCursor"]
        return self._cells_frame(rows)

    @_attach
    def nearest_cells(
        self, version: int, point: Sequence[float], k: int = 10, unit: str = "nm", *,
        max_distance: float | None = None, cell_type: str | None = None,
        is_neuron: bool | None = None,
    ) -> pd.DataFrame:  # fmt: skip
        """The ``k`` cells nearest ``point``, nearest first: the columns of :meth:`cell` plus
        ``distance`` (nm)."""
        data = self.query(
            f"""query($v: Int!, $p: [Float!]!, $k: Int!, $u: Unit!, $d: Float, $t: String,
                      $n: Boolean) {{
              nearestCells(version: $v, point: $p, k: $k, unit: $u, maxDistance: $d,
                           cellType: $t, isNeuron: $n) {{ distance cell {{ {CELL_FIELDS} }} }} }}""",
            v=int(version), p=[float(x) for x in point], k=int(k), u=unit.upper(),
            d=max_distance, t=cell_type, n=is_neuron,
        )["nearestCells"]  # fmt: skip
        frame = self._cells_frame([{**c["cell"], "version": int(version)} for c in data])
        frame["distance"] = [float(c["distance"]) for c in data]
        return frame

    def neuroglancer_url(self, version: int, nucleus_ids: int | Iterable[int],
                         dataset: str | None = None) -> str:  # fmt: skip
        """A Neuroglancer link to these cells in a release (their root IDs selected)."""
        ids = [int(nucleus_ids)] if isinstance(nucleus_ids, int) else [int(n) for n in nucleus_ids]
        data = self.query(
            "query($v: Int!, $n: [Int!]!, $d: String) { neuroglancerUrl(version: $v, "
            "nucleusIds: $n, dataset: $d) }", v=int(version), n=ids, d=dataset,
        )  # fmt: skip
        return str(data["neuroglancerUrl"])

    # ------------------------------------------------------------------ partners
    def _pages(
        self,
        nucleus_id: int,
        version: int,
        *,
        inputs: bool,
        min_synapses: int = 1,
        min_size: float | None = None,
        partner_cell_type: str | None = None,
        synapses: bool = False,
    ) -> Iterator[tuple[str | None, dict[str, Any]]]:
        """(the cell's root ID, partner node) for every partner, page after page."""
        after: str | None = None
        field = "inputs" if inputs else "outputs"
        while True:
            data = self.query(
                PARTNERS, n=int(nucleus_id), v=int(version), minSynapses=min_synapses,
                minSize=min_size, cellType=partner_cell_type, first=PAGE, after=after,
                inputs=inputs, synapses=synapses,
            )  # fmt: skip
            cell = data["cell"]
            if cell is None:
                return
            page = cell[field]
            for node in page["nodes"]:
                yield cell["rootId"], node
            if not page["pageInfo"]["hasNextPage"]:
                return
            after = page["pageInfo"]["endCursor"]

    @_attach
    def _partners(self, nucleus_id: int, version: int, inputs: bool, **kw: Any) -> pd.DataFrame:
        rows = [
            (int(nucleus_id), n["nucleusId"], n["rootId"], n["cellType"], n["synapses"], n["size"])
            for _, n in self._pages(nucleus_id, version, inputs=inputs, **kw)
        ]  # fmt: skip
        return _int64(pd.DataFrame(rows, columns=PARTNER_COLUMNS), "partner_root_id")

    def partners(
        self,
        nucleus_id: int,
        version: int,
        direction: str = "outputs",
        min_synapses: int = 1,
        *,
        min_size: float | None = None,
        partner_cell_type: str | None = None,
    ) -> pd.DataFrame:
        """The cell's output (``direction="outputs"``) or input partners: one row per partner,
        most synapses first."""
        if direction not in ("outputs", "inputs"):
            raise ValueError(f"direction must be 'outputs' or 'inputs', got {direction!r}")
        return self._partners(
            nucleus_id, version, direction == "inputs", min_synapses=min_synapses,
            min_size=min_size, partner_cell_type=partner_cell_type,
        )  # fmt: skip

    def outputs(self, nucleus_id: int, version: int, min_synapses: int = 1, **filters: Any) -> pd.DataFrame:  # fmt: skip
        """Cells this cell synapses onto (``partners(..., "outputs")``; filters: min_size,
        partner_cell_type)."""
        return self.partners(nucleus_id, version, "outputs", min_synapses, **filters)

    def inputs(self, nucleus_id: int, version: int, min_synapses: int = 1, **filters: Any) -> pd.DataFrame:  # fmt: skip
        """Cells that synapse onto this cell (``partners(..., "inputs")``)."""
        return self.partners(nucleus_id, version, "inputs", min_synapses, **filters)

    @_attach
    def connectivity_diff(
        self, nucleus_id: int, from_version: int, to_version: int, direction: str = "outputs"
    ) -> pd.DataFrame:
        """Partners in either release: synapses before/after and ADDED/REMOVED/CHANGED/UNCHANGED."""
        data = self.query(
            """query($n: Int!, $a: Int!, $b: Int!, $d: Direction!) {
              cell(nucleusId: $n) { connectivityDiff(fromVersion: $a, toVersion: $b, direction: $d)
                { cell { nucleusId } before after change } } }""",
            n=int(nucleus_id),
            a=int(from_version),
            b=int(to_version),
            d=direction.upper(),
        )
        columns = ["partner_nucleus_id", "before", "after", "change"]
        if data["cell"] is None:
            return pd.DataFrame(columns=columns)
        rows = [
            (c["cell"]["nucleusId"], c["before"], c["after"], c["change"])
            for c in data["cell"]["connectivityDiff"]
        ]
        return pd.DataFrame(rows, columns=columns)

    @_attach
    def shortest_paths(
        self, version: int, from_nucleus_id: int, to_nucleus_id: int, *, min_synapses: int = 1,
        max_length: int = 4, first: int = 10, weight: str = "hops",
        intermediate_cell_types: Sequence[str] | None = None,
        intermediate_is_neuron: bool | None = None,
    ) -> pd.DataFrame:  # fmt: skip
        """Every shortest directed path between two cells of a release (``shortestPaths``), as
        a long DataFrame: one row per cell of each path (``path``, ``step``, ``nucleus_id``,
        ``synapses``: of the edge into that cell, 0 for the first). ``weight``: ``hops`` (fewest
        edges) or ``strongest`` (the weakest edge has the most synapses, then fewest edges);
        intermediate cells only of these types / neurons when given."""
        data = self.query(
            """query($v: Int!, $a: Int!, $b: Int!, $m: Int!, $l: Int!, $f: Int!, $w: PathWeight!,
                     $t: [String!], $n: Boolean) {
              shortestPaths(version: $v, fromNucleusId: $a, toNucleusId: $b, minSynapses: $m,
                            maxLength: $l, first: $f, weight: $w, intermediateCellTypes: $t,
                            intermediateIsNeuron: $n) { synapses cells { nucleusId } } }""",
            v=int(version), a=int(from_nucleus_id), b=int(to_nucleus_id), m=int(min_synapses),
            l=int(max_length), f=int(first), w=weight.upper(),
            t=None if intermediate_cell_types is None else list(intermediate_cell_types),
            n=intermediate_is_neuron,
        )  # fmt: skip
        rows = [(i, k, c["nucleusId"], 0 if k == 0 else p["synapses"][k - 1])
                for i, p in enumerate(data["shortestPaths"])
                for k, c in enumerate(p["cells"])]  # fmt: skip
        return pd.DataFrame(rows, columns=["path", "step", "nucleus_id", "synapses"])

    @_attach
    def reachable_cells(
        self, version: int, nucleus_id: int, max_hops: int = 2, *, min_synapses: int = 1,
        direction: str = "outputs", cell_types: Sequence[str] | None = None,
        via_cell_types: Sequence[str] | None = None, via_is_neuron: bool | None = None,
    ) -> pd.DataFrame:  # fmt: skip
        """Every cell reachable from a cell within ``max_hops`` (``reachableCells``), every
        page: ``nucleus_id``, ``hops``, by hops then nucleus ID."""
        rows: list[tuple[int, int]] = []
        after: str | None = None
        while True:
            data = self.query(
                """query($v: Int!, $n: Int!, $h: Int!, $m: Int!, $d: Direction!, $t: [String!],
                         $vt: [String!], $vn: Boolean, $f: Int!, $after: String) {
                  reachableCells(version: $v, fromNucleusId: $n, maxHops: $h, minSynapses: $m,
                                 direction: $d, cellTypes: $t, viaCellTypes: $vt,
                                 viaIsNeuron: $vn, first: $f, after: $after) {
                    nodes { nucleusId hops } pageInfo { hasNextPage endCursor } } }""",
                v=int(version), n=int(nucleus_id), h=int(max_hops), m=int(min_synapses),
                d=direction.upper(), t=None if cell_types is None else list(cell_types),
                vt=None if via_cell_types is None else list(via_cell_types), vn=via_is_neuron,
                f=PAGE, after=after,
            )["reachableCells"]  # fmt: skip
            rows += [(r["nucleusId"], r["hops"]) for r in data["nodes"]]
            if not data["pageInfo"]["hasNextPage"]:
                break
            after = data["pageInfo"]["endCursor"]
        return pd.DataFrame(rows, columns=["nucleus_id", "hops"])

    @_attach
    def type_connectivity(
        self,
        version: int,
        min_synapses: int = 1,
        classification: str = "cell_type",
        bounding_box: Sequence[Sequence[float]] | None = None,
    ) -> pd.DataFrame:
        """The release's cell-type x cell-type wiring, one row per (pre type, post type) with
        an edge: edges, synapses, summed size, cells of each type, possible ordered pairs and
        connection probability. ``classification``: ``cell_type``, ``classification_system``
        or ``is_neuron``; ``bounding_box`` [[x0, y0, z0], [x1, y1, z1]] in nm keeps the cells
        whose nucleus is inside."""
        data = self.query(
            """query($v: Int!, $m: Int!, $c: TypeClassification!, $b: [[Float!]!]) {
              typeConnectivity(version: $v, minSynapses: $m, classification: $c,
                               boundingBox: $b) {
                preType postType edges synapses size preCells postCells possiblePairs
                probability } }""",
            v=int(version),
            m=int(min_synapses),
            c=str(classification).upper(),
            b=None if bounding_box is None else [[float(x) for x in c] for c in bounding_box],
        )
        frame = pd.DataFrame(data["typeConnectivity"], columns=list(WIRING_FIELDS))
        frame = frame.rename(columns=WIRING_FIELDS)
        frame["possible_pairs"] = frame["possible_pairs"].astype("int64")
        frame.attrs.update({"version": int(version), "classification": classification,
                            "min_synapses": int(min_synapses)})  # fmt: skip
        return frame

    # ------------------------------------------------------------------ change and stability
    def release_diff(self, from_version: int, to_version: int, min_synapses: int = 1) -> dict[str, int]:  # fmt: skip
        """Whole-release change (``releaseDiff``): edges added, removed, changed, unchanged and
        the synapses on each side's edges, as a dict (the provenance: ``last_provenance``)."""
        data = self.query(
            """query($a: Int!, $b: Int!, $m: Int!) { releaseDiff(fromVersion: $a, toVersion: $b,
              minSynapses: $m) { added removed changed unchanged synapsesBefore synapsesAfter } }""",
            a=int(from_version), b=int(to_version), m=int(min_synapses),
        )["releaseDiff"]  # fmt: skip
        return {"added": data["added"], "removed": data["removed"], "changed": data["changed"],
                "unchanged": data["unchanged"], "synapses_before": int(data["synapsesBefore"]),
                "synapses_after": int(data["synapsesAfter"])}  # fmt: skip

    @_attach
    def release_diff_by_type(
        self, from_version: int, to_version: int, classification: str = "cell_type",
        min_synapses: int = 1,
    ) -> pd.DataFrame:  # fmt: skip
        """``releaseDiff.byType``: one row per (pre type, post type) with the four counts."""
        data = self.query(
            """query($a: Int!, $b: Int!, $m: Int!, $c: TypeClassification!) {
              releaseDiff(fromVersion: $a, toVersion: $b, minSynapses: $m) {
                byType(classification: $c) { preType postType added removed changed unchanged } } }""",
            a=int(from_version), b=int(to_version), m=int(min_synapses),
            c=str(classification).upper(),
        )  # fmt: skip
        cols = {"preType": "pre_type", "postType": "post_type", "added": "added",
                "removed": "removed", "changed": "changed", "unchanged": "unchanged"}  # fmt: skip
        rows = data["releaseDiff"]["byType"]
        return pd.DataFrame(rows, columns=list(cols)).rename(columns=cols)

    @_attach
    def release_diff_edges(
        self, from_version: int, to_version: int, change: str | None = None,
        min_synapses: int = 1,
    ) -> pd.DataFrame:  # fmt: skip
        """``releaseDiff.edges``, every page: pre_nucleus_id, post_nucleus_id, before, after
        (synapses; 0 = not an edge there), change; only one kind of ``change`` when given."""
        rows: list[tuple[int, int, int, int, str]] = []
        after: str | None = None
        while True:
            data = self.query(
                """query($a: Int!, $b: Int!, $m: Int!, $c: Change, $f: Int!, $after: String) {
                  releaseDiff(fromVersion: $a, toVersion: $b, minSynapses: $m) {
                    edges(change: $c, first: $f, after: $after) {
                      nodes { preNucleusId postNucleusId before after change }
                      pageInfo { hasNextPage endCursor } } } }""",
                a=int(from_version), b=int(to_version), m=int(min_synapses),
                c=None if change is None else change.upper(), f=PAGE, after=after,
            )["releaseDiff"]["edges"]  # fmt: skip
            rows += [(n["preNucleusId"], n["postNucleusId"], n["before"], n["after"],
                      n["change"].lower()) for n in data["nodes"]]  # fmt: skip
            if not data["pageInfo"]["hasNextPage"]:
                break
            after = data["pageInfo"]["endCursor"]
        return pd.DataFrame(rows, columns=["pre_nucleus_id", "post_nucleus_id", "before",
                                           "after", "change"])  # fmt: skip

    @_attach
    def edge_stability_summary(self, versions: Sequence[int], min_synapses: int = 1) -> pd.DataFrame:  # fmt: skip
        """Edges by the number of the releases they are in (``releases``, ``edges``)."""
        data = self.query(
            """query($v: [Int!]!, $m: Int!) { edgeStability(versions: $v, minSynapses: $m) {
              summary { releases edges } } }""",
            v=[int(x) for x in versions], m=int(min_synapses),
        )  # fmt: skip
        return pd.DataFrame(data["edgeStability"]["summary"], columns=["releases", "edges"])

    @_attach
    def edge_stability(
        self, versions: Sequence[int], min_synapses: int = 1, *, min_releases: int = 1,
        nucleus_id: int | None = None,
    ) -> pd.DataFrame:  # fmt: skip
        """Every edge of any of ``versions`` (in at least ``min_releases``, touching
        ``nucleus_id`` when given), every page: pre_nucleus_id, post_nucleus_id,
        ``synapses_<version>`` for each release (nullable Int64: <NA> = not an edge there) and
        ``releases``, the number it is an edge in."""
        vs = [int(x) for x in versions]
        rows: list[list[Any]] = []
        after: str | None = None
        while True:
            data = self.query(
                """query($v: [Int!]!, $m: Int!, $r: Int!, $n: Int, $f: Int!, $after: String) {
                  edgeStability(versions: $v, minSynapses: $m) {
                    edges(minReleases: $r, nucleusId: $n, first: $f, after: $after) {
                      nodes { preNucleusId postNucleusId synapses releases }
                      pageInfo { hasNextPage endCursor } } } }""",
                v=vs, m=int(min_synapses), r=int(min_releases),
                n=None if nucleus_id is None else int(nucleus_id), f=PAGE, after=after,
            )["edgeStability"]["edges"]  # fmt: skip
            rows += [[e["preNucleusId"], e["postNucleusId"], *e["synapses"], e["releases"]]
                     for e in data["nodes"]]  # fmt: skip
            if not data["pageInfo"]["hasNextPage"]:
                break
            after = data["pageInfo"]["endCursor"]
        cols = ["pre_nucleus_id", "post_nucleus_id", *(f"synapses_{v}" for v in vs), "releases"]
        frame = pd.DataFrame(rows, columns=cols)
        for v in vs:
            frame[f"synapses_{v}"] = pd.array(frame[f"synapses_{v}"].tolist(), dtype="Int64")
        return frame

    @_attach
    def motif_counts(
        self, versions: Sequence[int], motif: str, *, induced: bool = False,
        distinct_subgraphs: bool = False,
    ) -> pd.DataFrame:  # fmt: skip
        """One motif's count in each release (``motifCounts``): ``version``, ``count``."""
        data = self.query(
            """query($v: [Int!]!, $m: String!, $i: Boolean!, $d: Boolean!) {
              motifCounts(versions: $v, motif: $m, induced: $i, distinctSubgraphs: $d) {
                version count } }""",
            v=[int(x) for x in versions], m=motif, i=bool(induced), d=bool(distinct_subgraphs),
        )  # fmt: skip
        return pd.DataFrame(data["motifCounts"], columns=["version", "count"])

    # ------------------------------------------------------------------ caveclient-shaped
    def synapse_query(
        self,
        pre_ids: int | str | Iterable[int | str] | None = None,
        post_ids: int | str | Iterable[int | str] | None = None,
        bounding_box: Any = None,
        bounding_box_column: str = "post_pt_position",
        remove_autapses: bool = True,
        include_zeros: bool = True,
        limit: int | None = None,
        offset: int = 0,
        split_positions: bool = False,
        desired_resolution: Iterable[float] | None = None,
        *,
        version: int,
        attribution: bool = False,
    ) -> pd.DataFrame:
        """caveclient's ``materialize.synapse_query`` on a release: one row per synapse of the
        source table (fragments included), the same columns, dtypes, position encoding and
        default filters.

        ``pre_ids`` and ``post_ids`` (a root ID or a list) AND together; ``bounding_box``
        ``[[min_x, min_y, min_z], [max_x, max_y, max_z]]`` is in voxels of the release and
        inclusive, on ``bounding_box_column``; autapses are removed and root 0 kept unless told
        otherwise. Positions are ``[x, y, z]`` arrays in voxels, ``<name>_x/_y/_z`` columns with
        ``split_positions=True``, scaled to ``desired_resolution`` (nm per unit, e.g.
        ``[1, 1, 1]`` for nm) when given. Unlike caveclient there is no row cap:
        ``limit``/``offset`` apply after the filters, in synapse-ID order, and rows always come
        sorted by ID. ``attribution=True`` adds ``pre_nucleus_id, post_nucleus_id, outcome``.
        """
        body: dict[str, Any] = {
            "version": int(version),
            "pre_root_ids": frames.id_list(pre_ids),
            "post_root_ids": frames.id_list(post_ids),
            "bounding_box": frames.box(bounding_box),
            "bounding_box_column": bounding_box_column,
            "remove_autapses": bool(remove_autapses),
            "include_zeros": bool(include_zeros),
            "order_by_id": True,
            "limit": limit,
            "offset": int(offset or 0),
        }
        if body["pre_root_ids"] is None and body["post_root_ids"] is None and bounding_box is None:
            raise BadRequestError("give pre_ids, post_ids or a bounding_box (a whole release: "
                                  "export_release)")  # fmt: skip
        table = self._arrow("POST", "/export/synapses", json=body)
        frame = frames.synapse_frame(table, split_positions=split_positions,
                                     desired_resolution=desired_resolution,
                                     attribution=attribution)  # fmt: skip
        frame.attrs.update(frames.attrs(table, version, desired_resolution, remove_autapses))
        return frame

    def query_table(
        self,
        table: str,
        filter_equal_dict: dict[str, Any] | None = None,
        filter_in_dict: dict[str, Iterable[Any]] | None = None,
        limit: int | None = None,
        offset: int = 0,
        split_positions: bool = False,
        desired_resolution: Iterable[float] | None = None,
        *,
        version: int,
    ) -> pd.DataFrame:
        """caveclient's ``query_table`` on a cell table of a release: ``nucleus_detection_v0``
        (id, volume, pt_root_id, pt_position), the neuron table (``nucleus_neuron_svm`` /
        ``nucleus_ref_neuron_svm``) and the cell-type table (``aibs_metamodel_celltypes_v661``,
        ``allen_soma_coarse_cell_class_model_v1``) as the release was loaded. Equal and IN
        filters AND together; rows by id."""
        body = {
            "version": int(version), "table": table,
            "filter_equal_dict": frames.plain(filter_equal_dict),
            "filter_in_dict": {k: frames.plain(list(v)) for k, v in (filter_in_dict or {}).items()},
            "limit": limit, "offset": int(offset or 0),
        }  # fmt: skip
        arrow = self._arrow("POST", "/export/table", json=body)
        frame = frames.table_frame(arrow, split_positions=split_positions,
                                   desired_resolution=desired_resolution)  # fmt: skip
        frame.attrs.update(frames.attrs(arrow, version, desired_resolution, None))
        return frame

    # ------------------------------------------------------------------ bulk export (Arrow)
    @property
    def base_url(self) -> str:
        return self.url[: -len("/graphql")]

    def _error(self, response: httpx.Response) -> ApiError:
        if response.status_code == 401:
            return UnauthenticatedError("the server wants `token=` (Authorization: Bearer)")
        try:
            first = response.json()["errors"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            return ApiError(f"HTTP {response.status_code}: {response.text[:200]}")
        code = (first.get("extensions") or {}).get("code", "INTERNAL")
        return _BY_CODE.get(code, ApiError)(first.get("message", "error"), code)

    def iter_batches(self, method: str, path: str, **kw: Any) -> Iterator[pa.RecordBatch]:
        """Record batches of an export endpoint as they arrive (memory: one batch)."""
        with self._http.stream(method, self.base_url + path, **kw) as response:
            if response.status_code != 200:
                response.read()
                raise self._error(response)
            reader = pa.ipc.open_stream(frames.IterFile(response.iter_raw(1 << 20)))
            self._last_schema = reader.schema
            yield from reader

    def _arrow(self, method: str, path: str, **kw: Any) -> pa.Table:
        batches = list(self.iter_batches(method, path, **kw))
        return pa.Table.from_batches(batches, schema=self._last_schema)

    def export_synapses(self, version: int, **query: Any) -> pa.Table:
        """Any synapse query as a pyarrow Table, every stored column (see the export endpoint
        for the keys: pre_root_ids, post_root_ids, pre/post_nucleus_ids, bounding_box,
        bounding_box_column, include_dropped, remove_autapses, include_zeros, columns, limit,
        offset). Positions in voxels; schema metadata ``cgraph.voxel_size_nm``."""
        body = {k: frames.plain(v) for k, v in query.items()}
        return self._arrow("POST", "/export/synapses", json={"version": int(version), **body})

    def export_partners(self, nucleus_id: int, version: int, direction: str = "outputs",
                        **filters: Any) -> pd.DataFrame:  # fmt: skip
        """A cell's whole partner table (no paging): the columns of :meth:`partners`, in its
        order; filters min_synapses, min_size, partner_cell_type, order_by."""
        body = {"version": int(version), "nucleus_id": int(nucleus_id), "direction": direction,
                **filters}  # fmt: skip
        table = self._arrow("POST", "/export/partners", json=body)
        return frames.to_pandas(table)

    def export_release(self, version: int, what: str = "synapses") -> pa.Table:
        """A whole release file (``cells``, ``edges`` or ``synapses``) as a pyarrow Table."""
        return self._arrow("GET", f"/export/release/{int(version)}/{what}")

    def iter_release(self, version: int, what: str = "synapses",
                     batch_rows: int | None = None) -> Iterator[pa.RecordBatch]:  # fmt: skip
        """A whole release file batch by batch (bounded memory)."""
        params = {"batch_rows": batch_rows} if batch_rows else None
        return self.iter_batches("GET", f"/export/release/{int(version)}/{what}", params=params)

    def download_release(self, version: int, what: str, path: str, *, format: str = "parquet") -> str:  # fmt: skip
        """Write a whole release file to ``path`` (``parquet`` or ``arrow``), streamed."""
        url = f"{self.base_url}/export/release/{int(version)}/{what}"
        with self._http.stream("GET", url, params={"format": format}) as response:
            if response.status_code != 200:
                response.read()
                raise self._error(response)
            with open(path, "wb") as out:
                for chunk in response.iter_raw(1 << 20):
                    out.write(chunk)
        return path
