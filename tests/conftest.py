"""Test fixtures: a real Neo4j, always; the shared real data beside the checkout.

Neo4j is chosen once per session: NEO4J_URI if set; else testcontainers' Neo4j module
(neo4j:5.26-community) when a Docker daemon answers; else the project's own local server
(`cgraph neo4j start`). With CGRAPH_REQUIRE_NEO4J=1 (CI) a missing database fails the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from graph.driver import Database
from graph.settings import ConnectionSettings, ServerSettings

# release snapshots of the test session go to a folder of their own (subprocesses inherit it)
os.environ["CGRAPH_DATA"] = tempfile.mkdtemp(prefix="cgraph-test-data-")
# a replaced release slot is kept this long for reads begun before the switch (default: the
# query timeout + 5 s); the tests that race readers against a replace set their own
os.environ.setdefault("CGRAPH_REPLACE_GRACE", "1")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
DOCKER_IMAGE = "neo4j:5.26-community"

_state: dict[str, object] = {}


def _required() -> bool:
    return os.environ.get("CGRAPH_REQUIRE_NEO4J") == "1" or os.environ.get("CI") == "true"


def _docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        proc = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def _connect() -> ConnectionSettings:
    """Pick and (if needed) start the Neo4j the tests use; cached for the session."""
    if "settings" in _state:
        return _state["settings"]  # type: ignore[return-value]
    if "error" in _state:
        raise RuntimeError(_state["error"])
    try:
        if os.environ.get("NEO4J_URI"):
            settings = ConnectionSettings.from_env()
            _state["how"] = f"NEO4J_URI={settings.uri}"
        elif _docker_answers():
            from testcontainers.neo4j import Neo4jContainer

            container = Neo4jContainer(DOCKER_IMAGE)
            container.start()
            _state["container"] = container
            settings = ConnectionSettings(
                uri=container.get_connection_url(), password=container.password
            )
            _state["how"] = f"testcontainers {DOCKER_IMAGE}"
        else:
            from graph import server

            conn = ConnectionSettings.from_env()
            srv = ServerSettings.from_env()
            was_running = server.status(srv, conn).running
            server.start(srv, conn)
            if not was_running:
                _state["started_local"] = srv
            settings = ConnectionSettings(
                uri=f"bolt://127.0.0.1:{srv.bolt_port}",
                user=conn.user,
                password=conn.password,
                database=conn.database,
            )
            _state["how"] = f"project's local server ({srv.home})"
        with Database(settings) as db:
            _state["agent"] = db.verify()
        _state["settings"] = settings
        return settings
    except Exception as exc:  # noqa: BLE001 - reported once, then skip or fail
        _state["error"] = f"no Neo4j for the tests: {type(exc).__name__}: {exc}"
        raise RuntimeError(_state["error"]) from exc


NEEDS_NEO4J = {"db", "neo4j_settings", "cli_env"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Connect (and say which Neo4j) only when a collected test needs the database, so that
    `pytest tests/unit` never starts one."""
    if not any(NEEDS_NEO4J & set(getattr(i, "fixturenames", ())) for i in items):
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    try:
        _connect()
        line = f"neo4j: {_state['agent']} via {_state['how']}"
    except RuntimeError as exc:
        line = f"neo4j: NONE ({exc})"
    if reporter is not None:
        reporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(os.environ["CGRAPH_DATA"], ignore_errors=True)
    container = _state.get("container")
    if container is not None:
        container.stop()  # type: ignore[attr-defined]
    srv = _state.get("started_local")
    if isinstance(srv, ServerSettings) and os.environ.get("CGRAPH_KEEP_NEO4J") != "1":
        from graph import server

        server.stop(srv)


@pytest.fixture(scope="session")
def neo4j_settings() -> ConnectionSettings:
    try:
        return _connect()
    except RuntimeError as exc:
        if _required():
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def db(neo4j_settings: ConnectionSettings) -> Iterator[Database]:
    from graph.schema import ensure_schema

    database = Database(neo4j_settings)
    database.call(ensure_schema)
    yield database
    database.close()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout: real connectome data (see each SOURCE.txt)."""
    if not SHARED_DATA.is_dir():
        reason = f"real connectome data not found at {SHARED_DATA} (it sits beside every checkout and in CI)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return SHARED_DATA


@pytest.fixture(scope="session")
def cli_env(neo4j_settings: ConnectionSettings) -> dict[str, str]:
    """Environment for running `cgraph` as a subprocess against the test database."""
    env = dict(os.environ)
    env.update(
        NEO4J_URI=neo4j_settings.uri,
        NEO4J_USER=neo4j_settings.user,
        NEO4J_PASSWORD=neo4j_settings.password,
        NEO4J_DATABASE=neo4j_settings.database,
    )
    return env


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SECOND_PASSWORD = "second-server-pw"


@pytest.fixture(scope="module")
def second_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerSettings, ConnectionSettings]]:
    """A second local Neo4j in a temp home (own ports, the installed jars symlinked) for tests
    that stop, bulk-import or replace a whole store: the suite's server is never touched."""
    from graph import server

    main = ServerSettings.from_env()
    if not server.is_installed(main):
        reason = (f"the project's local Neo4j jars are not installed in {main.lib} "
                  "(`cgraph neo4j install`)")  # fmt: skip
        if _required():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("second-neo4j")
    (home / "lib").mkdir()
    (home / "lib" / main.version).symlink_to(main.lib)
    settings = ServerSettings(home=home, version=main.version, heap="512m", pagecache="64m",
                              bolt_port=_free_port(), http_port=_free_port(),
                              java_home=main.java_home)  # fmt: skip
    conn = ConnectionSettings(uri=f"bolt://127.0.0.1:{settings.bolt_port}",
                              password=SECOND_PASSWORD)  # fmt: skip
    server.start(settings, conn)
    yield settings, conn
    server.stop(settings)
