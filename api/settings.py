"""Settings of the GraphQL service, read from the environment.

| variable | default | meaning |
|---|---|---|
| CGRAPH_API_TOKEN | (unset) | when set, every GraphQL request needs `Authorization: Bearer <token>` |
| CGRAPH_QUERY_TIMEOUT | 30 | seconds per database query (graph.settings); slower ones answer TIMEOUT |
| CGRAPH_MAX_DEPTH | 10 | deepest allowed selection nesting of one operation |
| CGRAPH_MAX_ALIASES | 30 | most aliases in one document |
| CGRAPH_MAX_TOKENS | 2000 | most lexical tokens in one document |
| CGRAPH_GRAPHIQL | 1 | 0 turns off the GraphiQL IDE served on GET /graphql |

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


@dataclass(frozen=True)
class ApiSettings:
    token: str | None = field(default=None, repr=False)
    max_depth: int = 10
    max_aliases: int = 30
    max_tokens: int = 2000
    graphiql: bool = True

    @classmethod
    def from_env(cls) -> ApiSettings:
        return cls(
            token=os.environ.get("CGRAPH_API_TOKEN") or None,
            max_depth=int(_env("CGRAPH_MAX_DEPTH", str(cls.max_depth))),
            max_aliases=int(_env("CGRAPH_MAX_ALIASES", str(cls.max_aliases))),
            max_tokens=int(_env("CGRAPH_MAX_TOKENS", str(cls.max_tokens))),
            graphiql=_env("CGRAPH_GRAPHIQL", "1") not in ("0", "false", "no"),
        )
