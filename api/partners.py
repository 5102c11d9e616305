"""Partner pages for Cell.outputs / Cell.inputs, and their prefetch.

`Query.cell(nucleusId)` must look the cell up before its fields resolve; for the common
`cell { outputs(...) }` shape it starts the partner query at the same time (from the selection's
arguments), so the request costs one database round trip of latency instead of two.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from api.context import Context
from api.pagination import check_first, decode_cursor
from api.settings import DEFAULT_PAGE
from core.criteria import CellCriteria
from core.errors import BadRequest, CGraphError
from core.model import check_version
from graph import queries
from graph.queries import PartnerFilter, PartnerPage


@dataclass(frozen=True)
class PartnerRequest:
    nucleus_id: int
    direction: queries.Direction
    version: int
    where: PartnerFilter
    order: queries.PartnerOrder
    first: int
    after: tuple[float, int] | None

    @property
    def tag(self) -> str:
        """What a cursor of this page belongs to."""
        return f"{self.direction.name}:{self.order.name}:{self.version}"


def partner_request(
    nucleus_id: int,
    direction: str,
    *,
    version: int,
    min_synapses: int = 1,
    min_size: float | None = None,
    partner_cell_type: str | None = None,
    order_by: str = "SYNAPSES",
    first: int = DEFAULT_PAGE,
    after: str | None = None,
) -> PartnerRequest:
    """Validated request (BadRequest / LimitExceeded on bad arguments)."""
    check_version(version)
    check_first(first)
    if min_synapses < 1:
        raise BadRequest(f"minSynapses must be >= 1, got {min_synapses}")
    order = queries.PartnerOrder[order_by]
    dir_ = queries.Direction[direction]
    tag = f"{dir_.name}:{order.name}:{version}"
    key = decode_cursor(after, tag, 2) if after else None
    return PartnerRequest(
        nucleus_id=nucleus_id,
        direction=dir_,
        version=version,
        where=PartnerFilter(min_synapses, min_size, CellCriteria.of(cell_type=partner_cell_type)),
        order=order,
        first=first,
        after=(key[0], _nucleus_key(key[1], after)) if key else None,
    )


def _nucleus_key(value: float, cursor: str | None) -> int:
    if not isinstance(value, int):  # a forged cursor; ours hold the partner's nucleus ID
        raise BadRequest(f"malformed cursor {cursor!r}")
    return value


async def _run(ctx: Context, req: PartnerRequest) -> PartnerPage:
    return await queries.list_partners(
        ctx.adb,
        req.nucleus_id,
        req.version,
        req.direction,
        where=req.where,
        order=req.order,
        first=req.first,
        after=req.after,
    )


async def fetch(ctx: Context, req: PartnerRequest) -> PartnerPage:
    """The page: the prefetched one when there is one, else one query now."""
    task = ctx.prefetched.pop(req, None)
    page = await task if task is not None else await _run(ctx, req)
    ctx.seen_complete(req.version)
    return page


_ARGS = {"version": ("version", int), "minSynapses": ("min_synapses", int),
         "minSize": ("min_size", float), "partnerCellType": ("partner_cell_type", str),
         "orderBy": ("order_by", str), "first": ("first", int), "after": ("after", str)}  # fmt: skip


def _skipped(sel: Any) -> bool:
    d = getattr(sel, "directives", None) or {}
    return bool(d.get("skip", {}).get("if")) or d.get("include", {}).get("if") is False


def _requests(nucleus_id: int, selections: Iterable[Any]) -> Iterable[PartnerRequest]:
    for sel in selections:
        if getattr(sel, "name", None) not in ("outputs", "inputs") or _skipped(sel):
            continue
        kwargs: dict[str, Any] = {}
        for name, value in (sel.arguments or {}).items():
            if name in _ARGS and value is not None:
                key, cast = _ARGS[name]
                kwargs[key] = cast(getattr(value, "name", value))
        with contextlib.suppress(CGraphError, KeyError, TypeError, ValueError):
            yield partner_request(
                nucleus_id,
                sel.name.upper(),
                **kwargs,
            )


def prefetch(ctx: Context, nucleus_id: int, selected_fields: Iterable[Any]) -> None:
    """Start the partner queries selected directly below a `cell(nucleusId)` field."""
    for field in selected_fields:
        for req in _requests(nucleus_id, getattr(field, "selections", None) or ()):
            if req not in ctx.prefetched:
                ctx.prefetched[req] = asyncio.ensure_future(_run(ctx, req))


async def discard(ctx: Context, nucleus_id: int) -> None:
    """The cell does not exist: drop its prefetched pages (and their errors)."""
    for req in [r for r in ctx.prefetched if r.nucleus_id == nucleus_id]:
        task = ctx.prefetched.pop(req)
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


def drop_leftovers(ctx: Context) -> None:
    """End of request: cancel prefetched pages no resolver asked for (their errors unseen)."""
    for task in ctx.prefetched.values():
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
    ctx.prefetched.clear()
