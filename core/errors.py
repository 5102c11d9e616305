"""Named exceptions, raised low and mapped once to CLI messages (api/cli.py)
and GraphQL error codes (api/errors.py)."""

from __future__ import annotations


class CGraphError(Exception):
    """Base class of every error this project raises on purpose."""

    code = "INTERNAL"


class Neo4jUnavailable(CGraphError):
    """The database cannot be reached (down, wrong URI, refused)."""

    code = "UNAVAILABLE"


class AuthFailed(CGraphError):
    """Neo4j refused the credentials."""

    code = "UNAUTHENTICATED"


class ServerError(CGraphError):
    """The local Neo4j server could not be installed, started or stopped."""


class UnknownRelease(CGraphError):
    code = "UNKNOWN_RELEASE"

    def __init__(self, version: int) -> None:
        super().__init__(f"release {version} is not loaded")
        self.version = version


class ReleaseNotReady(CGraphError):
    code = "RELEASE_NOT_READY"

    def __init__(self, version: int, status: str) -> None:
        super().__init__(f"release {version} is {status!r}, not 'complete'")
        self.version = version
        self.status = status


class ReleaseExists(CGraphError):
    code = "RELEASE_EXISTS"

    def __init__(self, version: int) -> None:
        super().__init__(
            f"release {version} is already loaded and complete; pass --replace to replace it whole"
        )
        self.version = version


class LoadInProgress(CGraphError):
    """Another loader holds the release's load claim (and is alive)."""

    code = "LOAD_IN_PROGRESS"

    def __init__(self, version: int, holder: str, seconds: float) -> None:
        super().__init__(
            f"release {version} is being loaded by {holder} (claimed, last heard from "
            f"{seconds:.0f} s ago); wait for it to finish, or stop it (a claim whose loader is "
            "gone is taken over on the next load)"
        )
        self.version = version
        self.holder = holder


class ClaimLost(CGraphError):
    """This loader's claim on a release was taken over (it was silent too long) or removed."""

    code = "LOAD_IN_PROGRESS"

    def __init__(self, version: int, detail: str) -> None:
        super().__init__(
            f"release {version}: this load lost its claim ({detail}); nothing was marked complete"
        )
        self.version = version


class QueryTimeout(CGraphError):
    code = "TIMEOUT"

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the query did not finish within {seconds:g} s")
        self.seconds = seconds


class LimitExceeded(CGraphError):
    code = "LIMIT_EXCEEDED"


class BadRequest(CGraphError):
    code = "BAD_REQUEST"


class DatasetMismatch(BadRequest):
    """A release of one dataset asked to act as (or with) one of another."""

    def __init__(self, version: int, has: str, asked: str) -> None:
        super().__init__(
            f"release {version} belongs to dataset {has!r}, not {asked!r}; name --dataset "
            f"{has} (or load {asked!r} under a version of its own)"
        )


class InputError(CGraphError):
    """Bad input data. Names the file, column and row (1-based data row) when known."""

    code = "BAD_INPUT"

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        column: str | None = None,
        row: int | None = None,
    ) -> None:
        self.file = file
        self.column = column
        self.row = row
        self.reason = message
        where = []
        if file is not None:
            where.append(str(file))
        if column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            where.append(f"row {row}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class MotifSyntaxError(CGraphError):
    """A motif that does not parse. line/column are 1-based."""

    code = "BAD_REQUEST"

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        self.line = line
        self.column = column
        self.reason = message
        loc = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(f"motif syntax error: {loc}{message}")


class MotifError(CGraphError):
    """A motif that parses but is invalid (unknown property, bad operator, ...)."""

    code = "BAD_REQUEST"
