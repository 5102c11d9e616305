"""Motif text -> Motif, off the event loop.

Parsing is pure Python (lark): about 0.1 s for the longest text CGRAPH_MAX_MOTIF lets in
(api/limits.py refuses longer ones before any resolver runs), which the event loop must not
spend. It runs on two threads of its own (not the shared worker pool, whose workers may all be
busy with whole-release work), under the request's budget (TIMEOUT past it), and the last
parsed motifs are kept: the pages of one motifSearch parse once.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from analysis.motif import Motif, parse_motif
from core.budget import Deadline
from core.errors import QueryTimeout

_PARSERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cgraph-motif-parse")


@lru_cache(maxsize=256)
def _parse(text: str) -> Motif:
    return parse_motif(text)


async def parse_motif_text(text: str, deadline: Deadline) -> Motif:
    """The parsed motif (MotifError / MotifSyntaxError as parse_motif raises them)."""
    future = asyncio.get_running_loop().run_in_executor(_PARSERS, _parse, text)
    try:
        return await asyncio.wait_for(future, timeout=max(0.0, deadline.remaining()))
    except TimeoutError:
        raise QueryTimeout(deadline.seconds) from None
