"""Bulk export next to /graphql (the same bearer token): Arrow IPC streams or Parquet, no row cap.

    POST /export/synapses   {"version": 343, "post_root_ids": [...], "bounding_box": ..., ...}
    POST /export/partners   {"version": 343, "nucleus_id": 264824, "direction": "outputs", ...}
    POST /export/table      {"version": 343, "table": "nucleus_detection_v0", "filter_in_dict": ...}
    GET  /export/release/{version}/{cells|edges|synapses}

``format`` (body key or query parameter): ``arrow`` (default, ``application/vnd.apache.arrow.stream``)
or ``parquet``. Rows leave one record batch at a time (``batch_rows``, default 65,536, at most
1,048,576), so the server holds one batch, not the answer. Bad arguments answer 400 with the
GraphQL error shape (``{"errors": [{"message", "extensions": {"code"}}]}``) before any row is
sent; a failure after the first batch cuts the stream (the client sees an incomplete body,
never a short answer that looks whole). Everything is read from the release snapshot
(``CGRAPH_DATA``) with DuckDB: no Neo4j query.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from core.errors import BadRequest, CGraphError, UnknownRelease
from core.model import SLOTS, check_version
from snapshot.layout import Snapshot, SnapshotError, open_snapshot, snapshot_path
from snapshot.provenance import with_provenance
from snapshot.query import (
    DEFAULT_BATCH_ROWS,
    SynapseQuery,
    open_store,
    store_metadata,
    stream,
    stream_synapses,
)
from snapshot.tables import cell_table_sql, partner_sql, stream_file

log = logging.getLogger(__name__)

ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
MAX_BATCH_ROWS = 1 << 20
_STATUS = {"BAD_REQUEST": 400, "LIMIT_EXCEEDED": 400, "UNKNOWN_RELEASE": 404,
           "RELEASE_NOT_READY": 409, "TIMEOUT": 504, "SNAPSHOT_UNAVAILABLE": 503,
           "SYNAPSE_STORE_NOT_READY": 503}  # fmt: skip

Batches = tuple[pa.Schema, Iterator[pa.RecordBatch]]


def release_snapshot(version: Any) -> Snapshot:
    """The snapshot of a release; UNKNOWN_RELEASE when there is none."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise BadRequest(f"version must be an integer, got {version!r}")
    v = check_version(version)
    if not any(snapshot_path(v, slot=s).exists() for s in SLOTS):
        raise UnknownRelease(v)
    return open_snapshot(v)  # the served one, also while a replace writes the next


class _Sink(io.RawIOBase):
    """A write-only file that hands out what was written since the last drain."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.parts.append(data)
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos

    def drain(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def encode(schema: pa.Schema, batches: Iterator[pa.RecordBatch], fmt: str) -> Iterator[bytes]:
    """Arrow IPC stream or Parquet bytes, one batch at a time."""
    sink = _Sink()
    out = pa.PythonFile(sink, mode="w")
    writer: Any
    if fmt == "parquet":
        writer = pq.ParquetWriter(out, schema, compression="zstd")
    else:
        writer = pa.ipc.new_stream(out, schema)
    for batch in batches:
        if fmt == "parquet":
            writer.write_batch(batch, row_group_size=max(len(batch), 1))
        else:
            writer.write_batch(batch)
        chunk = sink.drain()
        if chunk:
            yield chunk
    writer.close()
    yield sink.drain()


def _format(value: Any) -> str:
    fmt = "arrow" if value is None else str(value)
    if fmt not in ("arrow", "parquet"):
        raise BadRequest(f"format must be 'arrow' or 'parquet', got {fmt!r}")
    return fmt


def _batch_rows(value: Any) -> int:
    if value is None:
        return DEFAULT_BATCH_ROWS
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BATCH_ROWS:
        raise BadRequest(f"batch_rows must be an integer in 1..{MAX_BATCH_ROWS}, got {value!r}")
    return value


def error_response(exc: CGraphError) -> JSONResponse:
    code = exc.code if exc.code in _STATUS else "INTERNAL"
    message = str(exc) if code != "INTERNAL" else "Unexpected error."
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]},
                        status_code=_STATUS.get(code, 500))  # fmt: skip


def _known(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"unknown argument(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")  # fmt: skip


# --------------------------------------------------------------------------- the exports

SYNAPSE_ARGS = {"version", "pre_root_ids", "post_root_ids", "pre_nucleus_ids",
                "post_nucleus_ids", "bounding_box", "bounding_box_column", "include_dropped",
                "remove_autapses", "include_zeros", "columns", "limit", "offset",
                "order_by_id", "format", "batch_rows"}  # fmt: skip


def synapse_export(body: dict[str, Any]) -> Batches:
    _known(body, SYNAPSE_ARGS)
    snap = release_snapshot(body.get("version"))
    q = SynapseQuery.of(
        pre_root_ids=body.get("pre_root_ids"), post_root_ids=body.get("post_root_ids"),
        pre_nucleus_ids=body.get("pre_nucleus_ids"), post_nucleus_ids=body.get("post_nucleus_ids"),
        bounding_box=body.get("bounding_box"),
        bounding_box_column=body.get("bounding_box_column") or "post_pt_position",
        include_dropped=body.get("include_dropped", True),
        remove_autapses=body.get("remove_autapses", True),
        include_zeros=body.get("include_zeros", True), max_ids=None, require_filter=False,
    )  # fmt: skip
    columns = body.get("columns")
    if columns is not None and not (isinstance(columns, list) and all(isinstance(c, str) for c in columns)):  # fmt: skip
        raise BadRequest("columns must be a list of column names")
    schema, batches = stream_synapses(
        snap, q, batch_rows=_batch_rows(body.get("batch_rows")), columns=columns,
        limit=body.get("limit"), offset=body.get("offset") or 0,
        order_by_id=bool(body.get("order_by_id", False)),
    )  # fmt: skip
    return with_provenance(schema.with_metadata(store_metadata(open_store(snap))), snap), batches


PARTNER_ARGS = {"version", "nucleus_id", "direction", "min_synapses", "min_size",
                "partner_cell_type", "order_by", "format", "batch_rows"}  # fmt: skip


def partner_export(body: dict[str, Any]) -> Batches:
    _known(body, PARTNER_ARGS)
    snap = release_snapshot(body.get("version"))
    nucleus = body.get("nucleus_id")
    if isinstance(nucleus, bool) or not isinstance(nucleus, int):
        raise BadRequest(f"nucleus_id must be an integer, got {nucleus!r}")
    sql, params = partner_sql(
        snap, nucleus, body.get("direction") or "outputs",
        min_synapses=int(body.get("min_synapses") or 1), min_size=body.get("min_size"),
        partner_cell_type=body.get("partner_cell_type"), order_by=body.get("order_by") or "SYNAPSES",
    )  # fmt: skip
    schema, batches = stream(sql, params, batch_rows=_batch_rows(body.get("batch_rows")))
    return with_provenance(schema, snap), batches


TABLE_ARGS = {"version", "table", "filter_equal_dict", "filter_in_dict", "limit", "offset",
              "format", "batch_rows"}  # fmt: skip


def table_export(body: dict[str, Any]) -> Batches:
    _known(body, TABLE_ARGS)
    snap = release_snapshot(body.get("version"))
    table = body.get("table")
    if not isinstance(table, str):
        raise BadRequest(f"table must be a table name, got {table!r}")
    for arg in ("filter_equal_dict", "filter_in_dict"):
        if body.get(arg) is not None and not isinstance(body[arg], dict):
            raise BadRequest(f"{arg} must be an object of column: value(s)")
    sql, params = cell_table_sql(
        snap, table, filter_equal_dict=body.get("filter_equal_dict"),
        filter_in_dict=body.get("filter_in_dict"), limit=body.get("limit"),
        offset=body.get("offset") or 0,
    )  # fmt: skip
    schema, batches = stream(sql, params, batch_rows=_batch_rows(body.get("batch_rows")))
    vx = json.dumps(list(snap.manifest.get("voxel_size_nm") or (4, 4, 40))).encode()
    return with_provenance(schema.with_metadata({b"cgraph.voxel_size_nm": vx}), snap), batches


def release_export(version: int, what: str, batch_rows: int = DEFAULT_BATCH_ROWS) -> Batches:
    snap = release_snapshot(version)
    schema, batches = stream_file(snap, what, batch_rows=batch_rows)
    if what == "synapses":
        schema = schema.with_metadata({**(schema.metadata or {}), **store_metadata(open_store(snap))})  # fmt: skip
    return with_provenance(schema, snap), batches


# --------------------------------------------------------------------------- HTTP


async def _respond(make: Callable[[], Batches], fmt: str) -> Response:
    try:
        schema, batches = await run_in_threadpool(make)
    except CGraphError as exc:
        return error_response(exc)
    except Exception:  # noqa: BLE001 - masked like GraphQL's INTERNAL, logged with its traceback
        log.exception("export failed")
        return error_response(CGraphError("internal"))
    media = PARQUET if fmt == "parquet" else ARROW
    return StreamingResponse(encode(schema, batches, fmt), media_type=media)


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _post(make: Callable[[dict[str, Any]], Batches]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        try:
            body = await _body(request)
            fmt = _format(body.get("format") or request.query_params.get("format"))
        except CGraphError as exc:
            return error_response(exc)
        return await _respond(lambda: make(body), fmt)

    return endpoint


async def release_endpoint(request: Request) -> Response:
    try:
        fmt = _format(request.query_params.get("format"))
        raw = request.query_params.get("batch_rows")
        rows = _batch_rows(int(raw) if raw and raw.isdigit() else (None if raw is None else -1))
        text = request.path_params["version"]
        if not text.isdigit():
            raise BadRequest(f"version must be an integer, got {text!r}")
        version = int(text)
        what = request.path_params["what"]
    except CGraphError as exc:
        return error_response(exc)
    return await _respond(lambda: release_export(version, what, rows), fmt)


def routes() -> list[Route]:
    return [
        Route("/export/synapses", _post(synapse_export), methods=["POST"]),
        Route("/export/partners", _post(partner_export), methods=["POST"]),
        Route("/export/table", _post(table_export), methods=["POST"]),
        Route("/export/release/{version}/{what}", release_endpoint, methods=["GET"]),
    ]


__all__ = ["SnapshotError", "routes", "encode", "release_snapshot"]
