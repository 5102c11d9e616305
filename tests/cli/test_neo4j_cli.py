"""`cgraph neo4j ...` as a user runs it: real processes, one clear line on failure."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from graph.settings import ConnectionSettings, ServerSettings

CGRAPH = str(Path(sys.executable).parent / "cgraph")


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CGRAPH, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def one_clear_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def own_home(tmp_path: Path, neo4j_settings: ConnectionSettings) -> Iterator[dict[str, str]]:
    """A second local server in its own folder and ports, sharing the installed jars."""
    main = ServerSettings.from_env()
    if not main.lib.is_dir():
        pytest.skip("the project's local Neo4j jars are not installed (tests use NEO4J_URI)")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / main.version).symlink_to(main.lib)
    env = dict(os.environ)
    env.update(
        CGRAPH_NEO4J_HOME=str(tmp_path),
        CGRAPH_NEO4J_BOLT_PORT=str(_free_port()),
        CGRAPH_NEO4J_HTTP_PORT=str(_free_port()),
        CGRAPH_NEO4J_HEAP="512m",
        CGRAPH_NEO4J_PAGECACHE="64m",
        NEO4J_PASSWORD="second-server-pw",
    )
    yield env
    run("neo4j", "stop", env=env)


def test_start_status_browser_stop_restart_keeps_data(own_home: dict[str, str]) -> None:
    import httpx
    from neo4j import GraphDatabase

    env = own_home
    started = run("neo4j", "start", env=env)
    assert started.returncode == 0, started.stderr
    browser = f"Neo4j Browser: http://127.0.0.1:{env['CGRAPH_NEO4J_HTTP_PORT']}/browser/"
    assert f"{browser}  user neo4j, password the value of NEO4J_PASSWORD" in started.stdout
    assert "second-server-pw" not in started.stdout
    status = run("neo4j", "status", env=env)
    assert status.returncode == 0 and "up (Neo4j/" in status.stdout
    bolt = f"bolt://127.0.0.1:{env['CGRAPH_NEO4J_BOLT_PORT']}"
    with GraphDatabase.driver(bolt, auth=("neo4j", "second-server-pw")) as d:
        d.execute_query("CREATE (:Marker {n: $n})", n=42, database_="neo4j")
    page = httpx.get(f"http://127.0.0.1:{env['CGRAPH_NEO4J_HTTP_PORT']}/browser/", timeout=30)
    assert page.status_code == 200 and "<title>Neo4j Browser</title>" in page.text
    pid = int((Path(env["CGRAPH_NEO4J_HOME"]) / "run" / "cgraph-neo4j.pid").read_text())
    stopped = run("neo4j", "stop", env=env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert run("neo4j", "status", env=env).returncode == 3
    assert run("neo4j", "start", env=env).returncode == 0
    with GraphDatabase.driver(bolt, auth=("neo4j", "second-server-pw")) as d:
        records = d.execute_query("MATCH (m:Marker) RETURN m.n AS n", database_="neo4j").records
    assert [r["n"] for r in records] == [42]
    wrong = dict(env, NEO4J_PASSWORD="not-the-password")
    assert "wrong password" in one_clear_line(run("neo4j", "status", env=wrong))


def test_no_java_is_one_clear_line(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(tmp_path), CGRAPH_NEO4J_HOME=str(tmp_path / "home"))
    env.pop("CGRAPH_NEO4J_JAVA_HOME", None)
    assert "java not found" in one_clear_line(run("neo4j", "start", env=env))


def test_no_mvn_is_one_clear_line(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(tmp_path), CGRAPH_NEO4J_HOME=str(tmp_path / "home"))
    assert "mvn not found" in one_clear_line(run("neo4j", "install", env=env))


def test_port_taken_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        env = dict(
            os.environ,
            CGRAPH_NEO4J_HOME=str(tmp_path / "home"),
            CGRAPH_NEO4J_BOLT_PORT=str(port),
            CGRAPH_NEO4J_HTTP_PORT=str(_free_port()),
        )
        line = one_clear_line(run("neo4j", "start", env=env))
    assert f"port {port}" in line and "taken" in line


def test_browser_login_names_the_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`cgraph neo4j start` (and so `make demo`) says which password Browser takes."""
    from cgraph.main import browser_login

    monkeypatch.delenv("NEO4J_PASSWORD", raising=False)
    monkeypatch.setenv("CGRAPH_NEO4J_HOME", str(tmp_path / "new"))
    monkeypatch.setenv("CGRAPH_NEO4J_HTTP_PORT", "7999")
    conn, srv = ConnectionSettings.from_env(), ServerSettings.from_env()  # a new home: generated
    generated = (tmp_path / "new" / "password").read_text().strip()
    assert browser_login(srv, conn) == (
        f"Neo4j Browser: http://127.0.0.1:7999/browser/  user neo4j, password {generated} "
        f"(from {tmp_path / 'new' / 'password'})"
    )
    old = tmp_path / "old"
    (old / "data" / "databases").mkdir(parents=True)  # a store from before the password file
    monkeypatch.setenv("CGRAPH_NEO4J_HOME", str(old))
    line = browser_login(ServerSettings.from_env(), ConnectionSettings.from_env())
    assert line.endswith("password connectome-local (the documented default)")
    monkeypatch.setenv("NEO4J_PASSWORD", "s3cret-pw")
    line = browser_login(ServerSettings.from_env(), ConnectionSettings.from_env())
    assert line.endswith("password the value of NEO4J_PASSWORD") and "s3cret" not in line


def test_make_demo_says_each_address_once() -> None:
    """The demo printed "GraphQL on ..." twice (Makefile and `cgraph serve`) and the Browser
    password as "from NEO4J_PASSWORD"; `cgraph neo4j start` and `cgraph serve` say them now."""
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    recipe = makefile.split("\ndemo: demo-data\n", 1)[1].split("\n\n", 1)[0]
    assert "from NEO4J_PASSWORD" not in recipe and "password" not in recipe
    assert "/graphql  (" not in recipe and "GraphQL" not in recipe
    assert "cgraph serve" in recipe
