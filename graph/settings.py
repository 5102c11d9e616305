"""Connection and local-server settings, read from the environment.

| variable | default | meaning |
|---|---|---|
| NEO4J_URI | bolt://127.0.0.1:7687 | bolt://, neo4j:// (routing: clusters, Aura), +s/+ssc variants |
| NEO4J_USER | neo4j | |
| NEO4J_PASSWORD | (generated) | unset: the password file of the local server's home (`<home>/password`, |
| | | written owner-only with a random password on first use of a new home); a store made |
| | | before that file existed keeps the old default `connectome-local` |
| NEO4J_DATABASE | neo4j | every query passes it |
| CGRAPH_QUERY_TIMEOUT | 30 | seconds; reads that take longer raise QueryTimeout |
| CGRAPH_NEO4J_HOME | <repo>/.neo4j | where the local server keeps jars, conf, data, logs |
| CGRAPH_NEO4J_VERSION | 5.26.30 | Neo4j version fetched by `cgraph neo4j install` |
| CGRAPH_NEO4J_HEAP | (sized) | JVM heap of the local server; unset: sized from RAM and store |
| CGRAPH_NEO4J_PAGECACHE | (sized) | page cache of the local server; unset: store size + 20% |
| CGRAPH_NEO4J_JAVA_HOME | (java on PATH) | JDK to run the local server (Neo4j 2025.10+/2026.x need 21 or 25) |
| CGRAPH_NEO4J_START_TIMEOUT | 120 | seconds to wait for `RETURN 1` after start |
| CGRAPH_NEO4J_BOLT_PORT | 7687 | Bolt port of the local server (127.0.0.1 only) |
| CGRAPH_NEO4J_HTTP_PORT | 7474 | HTTP/Browser port of the local server (127.0.0.1 only) |
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

#: The password of stores created before generated passwords (and of ConnectionSettings()).
DEFAULT_PASSWORD = "connectome-local"
PASSWORD_FILE = "password"  # in the local server's home, mode 0600
NEO4J_VERSION = "5.26.30"
BROWSER_VERSION = "5.24.0"
REPO_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class ConnectionSettings:
    uri: str = "bolt://127.0.0.1:7687"
    user: str = "neo4j"
    password: str = field(default=DEFAULT_PASSWORD, repr=False)
    database: str = "neo4j"
    query_timeout: float = 30.0

    @classmethod
    def from_env(cls) -> ConnectionSettings:
        return cls(
            uri=_env("NEO4J_URI", cls.uri),
            user=_env("NEO4J_USER", cls.user),
            password=_env("NEO4J_PASSWORD", "") or local_password(_home_from_env()),
            database=_env("NEO4J_DATABASE", cls.database),
            query_timeout=float(_env("CGRAPH_QUERY_TIMEOUT", str(cls.query_timeout))),
        )


def _home_from_env() -> Path:
    return Path(_env("CGRAPH_NEO4J_HOME", str(REPO_ROOT / ".neo4j"))).resolve()


def _store_exists(home: Path) -> bool:
    data = home / "data"
    return (data / "dbms" / "auth.ini").exists() or (data / "databases").exists()


def local_password(home: Path) -> str:
    """The password of the local server in ``home`` when NEO4J_PASSWORD is unset: the one in
    ``<home>/password``; for a store created before that file existed, the old default; for a
    new home, a random one, written there now (owner-only) so that every command finds it."""
    path = home / PASSWORD_FILE
    with contextlib.suppress(FileNotFoundError):
        return path.read_text().strip()
    if _store_exists(home):
        return DEFAULT_PASSWORD
    home.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    tmp = home / f".{PASSWORD_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    try:  # link, not rename: of two first commands at once, one wins and both read its file
        os.link(tmp, path)
    except FileExistsError:
        password = path.read_text().strip()
    finally:
        tmp.unlink()
    return password


@dataclass(frozen=True)
class ServerSettings:
    home: Path
    version: str = NEO4J_VERSION
    browser_version: str = BROWSER_VERSION
    heap: str | None = None  # None: sized at start (graph.server.memory_plan)
    pagecache: str | None = None  # None: sized at start from the store size
    bolt_port: int = 7687
    http_port: int = 7474
    java_home: str | None = None
    start_timeout: float = 120.0

    @classmethod
    def from_env(cls) -> ServerSettings:
        return cls(
            home=_home_from_env(),
            version=_env("CGRAPH_NEO4J_VERSION", NEO4J_VERSION),
            heap=os.environ.get("CGRAPH_NEO4J_HEAP") or None,
            pagecache=os.environ.get("CGRAPH_NEO4J_PAGECACHE") or None,
            bolt_port=int(_env("CGRAPH_NEO4J_BOLT_PORT", "7687")),
            http_port=int(_env("CGRAPH_NEO4J_HTTP_PORT", "7474")),
            java_home=os.environ.get("CGRAPH_NEO4J_JAVA_HOME") or None,
            start_timeout=float(_env("CGRAPH_NEO4J_START_TIMEOUT", "120")),
        )

    @property
    def lib(self) -> Path:
        return self.home / "lib" / self.version

    @property
    def conf_dir(self) -> Path:
        return self.home / "conf"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"
