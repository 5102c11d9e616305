"""Notebook client for the connectome-graph GraphQL API (pandas DataFrames in, out).

    >>> from api.client import ConnectomeClient
    >>> client = ConnectomeClient("http://127.0.0.1:8000")          # token=... if the server has one
    >>> client.releases()                                            # one row per release
    >>> client.outputs(nucleus_id, version=343)                      # partners, most synapses first
    >>> client.synapse_query(pre_ids=root_id, version=343)           # like caveclient's

Root IDs come back as int64 columns (they travel as strings, since JSON numbers lose 64-bit
integers); every page is fetched for you. A server error raises a subclass of
:class:`ApiError` named after its code (``UnknownReleaseError`` for UNKNOWN_RELEASE, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import pandas as pd

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


_BY_CODE: dict[str, type[ApiError]] = {
    cls.code: cls
    for cls in (
        UnknownReleaseError,
        ReleaseNotReadyError,
        QueryTimeoutError,
        LimitExceededError,
        BadRequestError,
        UnauthenticatedError,
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

PARTNER_COLUMNS = ["nucleus_id", "partner_nucleus_id", "partner_root_id", "partner_cell_type",
                   "synapses", "size"]  # fmt: skip
SYNAPSE_COLUMNS = ["id", "pre_pt_root_id", "post_pt_root_id", "size",
                   "pre_nucleus_id", "post_nucleus_id"]  # fmt: skip


def _int64(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    for c in columns:
        frame[c] = pd.array([None if v is None else int(v) for v in frame[c]], dtype="Int64")
        if not frame[c].isna().any():
            frame[c] = frame[c].astype("int64")
    return frame


def _ids(values: int | str | Iterable[int | str] | None) -> list[int] | None:
    if values is None:
        return None
    if isinstance(values, int | str):
        return [int(values)]
    return [int(v) for v in values]


class ConnectomeClient:
    """A connection to one connectome-graph server."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 120.0) -> None:
        base = url.rstrip("/")
        self.url = base if base.endswith("/graphql") else base + "/graphql"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(headers=headers, timeout=timeout)

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
        data: dict[str, Any] = body["data"]
        return data

    # ------------------------------------------------------------------ releases and cells
    def releases(self) -> pd.DataFrame:
        data = self.query(
            "{ releases { version status timestamp cells edges synapses synapsesTotal } }"
        )
        frame = pd.DataFrame(data["releases"])
        if len(frame):
            frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
            frame = frame.rename(columns={"synapsesTotal": "synapses_total"})
        return frame

    def cell(self, nucleus_id: int) -> pd.DataFrame:
        """One row per release the cell is part of (root IDs change, nucleus IDs do not)."""
        data = self.query("query($n: Int!) { cell(nucleusId: $n) { releases } }", n=int(nucleus_id))
        if data["cell"] is None:
            return self._cells_frame([])
        rows = []
        for v in data["cell"]["releases"]:
            got = self.query(
                f"query($n: Int!, $v: Int!) {{ cell(nucleusId: $n) {{ {CELL_FIELDS} }} }}",
                n=int(nucleus_id),
                v=v,
            )
            rows.append({**got["cell"], "version": v})
        return self._cells_frame(rows)

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

    # ------------------------------------------------------------------ caveclient-shaped
    def synapse_query(
        self,
        pre_ids: int | str | Iterable[int | str] | None = None,
        post_ids: int | str | Iterable[int | str] | None = None,
        *,
        version: int,
    ) -> pd.DataFrame:
        """One row per synapse between cells, like caveclient's `synapse_query`: columns id,
        pre_pt_root_id, post_pt_root_id, size, pre_nucleus_id, post_nucleus_id.

        Only synapses attributed to cell-to-cell connections are in the graph: autapses and
        synapses on fragments, root 0 or multi-nucleus roots are not returned.
        """
        pre, post = _ids(pre_ids), _ids(post_ids)
        if pre is None and post is None:
            raise BadRequestError("give pre_ids, post_ids or both")
        inputs = pre is None
        roots = post if inputs else pre
        keep = None if inputs or post is None else set(post)
        rows: list[tuple[Any, ...]] = []
        for root in roots or ():
            for cell in self.cell_by_root_id(root, version)["nucleus_id"]:
                for own_root, n in self._pages(int(cell), version, inputs=inputs, synapses=True):
                    other_root = n["rootId"]
                    if keep is not None and int(other_root) not in keep:
                        continue
                    sizes = n["sizes"] or [None] * len(n["synapseIds"])
                    for sid, size in zip(n["synapseIds"], sizes, strict=True):
                        if inputs:
                            rows.append(
                                (sid, other_root, own_root, size, n["nucleusId"], int(cell))
                            )
                        else:
                            rows.append(
                                (sid, own_root, other_root, size, int(cell), n["nucleusId"])
                            )
        frame = pd.DataFrame(rows, columns=SYNAPSE_COLUMNS)
        frame = _int64(frame, "id", "pre_pt_root_id", "post_pt_root_id")
        return frame.sort_values("id", ignore_index=True)
