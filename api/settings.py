"""Settings of the GraphQL service, read from the environment.

| variable | default | meaning |
|---|---|---|
| CGRAPH_API_TOKEN | (unset) | when set, every GraphQL request needs `Authorization: Bearer <token>` |
| CGRAPH_QUERY_TIMEOUT | 30 | seconds per database query (graph.settings); slower ones answer TIMEOUT |
| CGRAPH_MAX_DEPTH | 10 | deepest allowed selection nesting of one operation |
| CGRAPH_MAX_ALIASES | 30 | most aliases in one document |
| CGRAPH_MAX_TOKENS | 2000 | most lexical tokens in one document |
| CGRAPH_GRAPHIQL | 1 | 0 turns off the GraphiQL IDE served on GET /graphql |
| CGRAPH_MAX_STRING | 10000 | most characters of one string argument (literal or variable) |
| CGRAPH_MAX_MOTIF | 20000 | most characters of a motif text (the `motif` argument) |
| CGRAPH_MAX_DOCUMENT | 100000 | most characters of one GraphQL document |
| CGRAPH_ALLOWED_HOSTS | (loopback) | comma-separated Host names served besides localhost, 127.0.0.1, ::1 |
| | | (`*`: any); other Host headers answer 400 (DNS rebinding) |
| CGRAPH_INTROSPECTION | 1 | 0 turns off introspection and "Did you mean" suggestions |

Pages hold at most :data:`MAX_PAGE` items (`first` above it answers LIMIT_EXCEEDED).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

MAX_PAGE = 1000
DEFAULT_PAGE = 100


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _flag(name: str) -> bool:
    return _env(name, "1").lower() not in ("0", "false", "no")


#: Host names always served (a browser page on another name cannot reach us by rebinding DNS)
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class ApiSettings:
    token: str | None = field(default=None, repr=False)
    max_depth: int = 10
    max_aliases: int = 30
    max_tokens: int = 2000
    graphiql: bool = True
    max_string: int = 10_000
    max_motif: int = 20_000
    max_document: int = 100_000
    allowed_hosts: tuple[str, ...] = ()  # besides LOOPBACK_HOSTS; "*" allows any
    introspection: bool = True

    @classmethod
    def from_env(cls) -> ApiSettings:
        return cls(
            token=os.environ.get("CGRAPH_API_TOKEN") or None,
            max_depth=int(_env("CGRAPH_MAX_DEPTH", str(cls.max_depth))),
            max_aliases=int(_env("CGRAPH_MAX_ALIASES", str(cls.max_aliases))),
            max_tokens=int(_env("CGRAPH_MAX_TOKENS", str(cls.max_tokens))),
            graphiql=_flag("CGRAPH_GRAPHIQL"),
            max_string=int(_env("CGRAPH_MAX_STRING", str(cls.max_string))),
            max_motif=int(_env("CGRAPH_MAX_MOTIF", str(cls.max_motif))),
            max_document=int(_env("CGRAPH_MAX_DOCUMENT", str(cls.max_document))),
            allowed_hosts=tuple(
                h.strip().lower() for h in _env("CGRAPH_ALLOWED_HOSTS", "").split(",") if h.strip()
            ),
            introspection=_flag("CGRAPH_INTROSPECTION"),
        )
