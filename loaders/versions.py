"""Published minnie65_public materialization timestamps (UTC), used when `--timestamp` is omitted."""

from __future__ import annotations

from datetime import UTC, datetime

MINNIE65_PUBLIC = {
    117: "2021-06-11T08:10:00.215114",
    343: "2022-02-24T08:10:00.184668",
    661: "2023-04-06T20:17:09.199182",
    795: "2023-08-23T08:10:01.404268",
    943: "2024-01-22T08:10:01.497934",
    1078: "2024-06-05T10:10:01.203215",
    1181: "2024-09-16T10:10:01.121167",
    1300: "2025-01-13T10:10:01.286229",
    1412: "2025-04-29T10:10:01.200893",
    1507: "2025-07-31T08:10:01.117494",
    1621: "2025-11-25T08:10:01.094430",
    1718: "2026-03-07T08:10:01.190228",
}


def parse_timestamp(text: str) -> datetime:
    """ISO 8601; a timestamp without zone is UTC (as CAVE's are)."""
    ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def default_timestamp(version: int) -> datetime | None:
    known = MINNIE65_PUBLIC.get(version)
    return parse_timestamp(known) if known else None
