"""A real local Neo4j without Docker: jars from Maven Central, run with the machine's Java.

`install` copies Neo4j Community + Neo4j Browser jars with `mvn` (pom: graph/neo4j-server-pom.xml),
`start` writes neo4j.conf (127.0.0.1 only), sets the initial password on first start, launches
the JVM in its own session and waits until Bolt answers `RETURN 1`; `stop` sends SIGTERM.
Data lives in `<home>/data` and survives restarts.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from core.errors import AuthFailed, CGraphError, ServerError
from graph.settings import ConnectionSettings, ServerSettings

JVM_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:+DisableExplicitGC",
    "-Djdk.nio.maxCachedBufferSize=1024",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--enable-native-access=ALL-UNNAMED",
)
MAIN_CLASSES = ("org.neo4j.server.CommunityEntryPoint", "org.neo4j.server.Neo4jCommunity")
PID_FILE = "cgraph-neo4j.pid"


@dataclass(frozen=True)
class Status:
    running: bool
    pid: int | None
    bolt: str
    browser: str
    version: str
    answering: bool
    agent: str | None = None

    def describe(self) -> str:
        if not self.running:
            return f"Neo4j {self.version}: stopped"
        state = f"up ({self.agent})" if self.answering else "starting (not answering yet)"
        return f"Neo4j {self.version}: {state}, pid {self.pid}, Bolt {self.bolt}, Browser {self.browser}"


def _which(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise ServerError(f"{tool} not found on PATH: {hint}")
    return path


def _java(settings: ServerSettings) -> str:
    if settings.java_home:
        java = Path(settings.java_home) / "bin" / "java"
        if not java.exists():
            raise ServerError(f"java not found at {java} (CGRAPH_NEO4J_JAVA_HOME)")
        return str(java)
    return _which("java", "install a JDK (17 for Neo4j 5.26; 21 or 25 for 2025.10+/2026.x)")


def java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise ServerError(f"cannot tell the version of {java}: {out.stderr.strip()[:200]}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def required_java(version: str) -> int:
    year = int(version.split(".")[0])
    return 17 if year < 2025 else 21


def is_installed(settings: ServerSettings) -> bool:
    return settings.lib.is_dir() and any(settings.lib.glob("neo4j-kernel-*.jar"))


def install(settings: ServerSettings, *, quiet: bool = False) -> Path:
    """Fetch the jars with mvn into <home>/lib/<version>. Idempotent."""
    if is_installed(settings):
        return settings.lib
    mvn = _which("mvn", "install Apache Maven (Debian: apt-get install maven)")
    _java(settings)
    settings.home.mkdir(parents=True, exist_ok=True)
    pom = settings.home / "pom.xml"
    pom.write_bytes(resources.files("graph").joinpath("neo4j-server-pom.xml").read_bytes())
    tmp_lib = settings.lib.with_name(settings.lib.name + ".partial")
    shutil.rmtree(tmp_lib, ignore_errors=True)
    cmd = [
        mvn, "-B", "-ntp", "-f", str(pom), "package",
        f"-Dneo4j.version={settings.version}",
        f"-Dneo4j.browser.version={settings.browser_version}",
        f"-Dlib.dir={tmp_lib}",
    ]  # fmt: skip
    if quiet:
        cmd.insert(1, "-q")
    log = settings.home / "install.log"
    with log.open("w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise ServerError(f"mvn could not fetch Neo4j {settings.version}; see {log}")
    tmp_lib.rename(settings.lib)
    return settings.lib


def main_class(lib: Path) -> str:
    for jar in sorted(lib.glob("neo4j-*.jar")):
        with zipfile.ZipFile(jar) as zf:
            names = set(zf.namelist())
        for cls in MAIN_CLASSES:
            if cls.replace(".", "/") + ".class" in names:
                return cls
    raise ServerError(f"no Neo4j entry point in {lib}; reinstall with `cgraph neo4j install`")


def write_conf(settings: ServerSettings) -> Path:
    for d in (settings.conf_dir, settings.data_dir, settings.logs_dir, settings.run_dir):
        d.mkdir(parents=True, exist_ok=True)
    for sub in ("import", "plugins"):
        (settings.home / sub).mkdir(exist_ok=True)
    h = settings.home
    conf = f"""# written by `cgraph neo4j start`; edits are overwritten
server.default_listen_address=127.0.0.1
server.bolt.listen_address=127.0.0.1:{settings.bolt_port}
server.http.listen_address=127.0.0.1:{settings.http_port}
server.https.enabled=false
dbms.security.auth_enabled=true
server.directories.data={settings.data_dir}
server.directories.logs={settings.logs_dir}
server.directories.run={settings.run_dir}
server.directories.import={h / "import"}
server.directories.plugins={h / "plugins"}
server.memory.pagecache.size={settings.pagecache}
dbms.usage_report.enabled=false
db.transaction.timeout=0
"""
    path = settings.conf_dir / "neo4j.conf"
    path.write_text(conf)
    return path


def _pid(settings: ServerSettings) -> int | None:
    path = settings.run_dir / PID_FILE
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        return None
    except PermissionError:
        pass
    return pid


def port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _java_env(settings: ServerSettings) -> dict[str, str]:
    env = dict(os.environ)
    env["NEO4J_HOME"] = str(settings.home)
    env["NEO4J_CONF"] = str(settings.conf_dir)
    return env


def _set_initial_password(settings: ServerSettings, java: str, password: str) -> None:
    if (settings.data_dir / "dbms" / "auth.ini").exists() or (
        settings.data_dir / "databases"
    ).exists():
        return
    if len(password) < 8:
        raise ServerError("NEO4J_PASSWORD must have at least 8 characters")
    cmd = [java, "-cp", f"{settings.lib}/*", "org.neo4j.cli.AdminTool", "dbms",
           "set-initial-password", password]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_java_env(settings), check=False)
    if proc.returncode != 0:
        raise ServerError(f"could not set the initial password: {proc.stderr.strip()[:300]}")


def _bolt_uri(settings: ServerSettings) -> str:
    return f"bolt://127.0.0.1:{settings.bolt_port}"


def _browser_url(settings: ServerSettings) -> str:
    return f"http://127.0.0.1:{settings.http_port}/browser/"


def _probe(settings: ServerSettings, conn: ConnectionSettings) -> str:
    from graph.driver import Database

    local = ConnectionSettings(
        uri=_bolt_uri(settings), user=conn.user, password=conn.password, database=conn.database
    )
    with Database(local) as db:
        return db.verify()


def status(settings: ServerSettings, conn: ConnectionSettings) -> Status:
    pid = _pid(settings)
    agent = None
    answering = False
    if pid is not None:
        try:
            agent = _probe(settings, conn)
            answering = True
        except AuthFailed:
            raise
        except CGraphError:
            answering = False
    return Status(
        pid is not None, pid, _bolt_uri(settings), _browser_url(settings), settings.version,
        answering, agent,
    )  # fmt: skip


def start(settings: ServerSettings, conn: ConnectionSettings) -> Status:
    """Start (installing first if needed) and wait until `RETURN 1` answers."""
    if _pid(settings) is not None:
        return status(settings, conn)
    java = _java(settings)
    need = required_java(settings.version)
    have = java_major(java)
    if have < need:
        raise ServerError(
            f"Neo4j {settings.version} needs Java {need}+, {java} is {have}; "
            "set CGRAPH_NEO4J_JAVA_HOME"
        )
    for port in (settings.bolt_port, settings.http_port):
        if port_taken(port):
            raise ServerError(
                f"port {port} on 127.0.0.1 is taken by another process; stop it or free the port"
            )
    install(settings, quiet=True)
    write_conf(settings)
    _set_initial_password(settings, java, conn.password)
    log = settings.logs_dir / "console.log"
    cmd = [java, f"-Xms{settings.heap}", f"-Xmx{settings.heap}", *JVM_FLAGS,
           "-cp", f"{settings.lib}/*", main_class(settings.lib),
           f"--home-dir={settings.home}", f"--config-dir={settings.conf_dir}",
           "--console-mode"]  # fmt: skip
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=_java_env(settings), start_new_session=True,
        )  # fmt: skip
    (settings.run_dir / PID_FILE).write_text(str(proc.pid))
    deadline = time.monotonic() + settings.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            (settings.run_dir / PID_FILE).unlink(missing_ok=True)
            raise ServerError(f"Neo4j exited with code {proc.returncode} while starting; see {log}")
        try:
            agent = _probe(settings, conn)
        except AuthFailed:
            raise
        except CGraphError:
            time.sleep(1.0)
            continue
        return Status(True, proc.pid, _bolt_uri(settings), _browser_url(settings),
                      settings.version, True, agent)  # fmt: skip
    stop(settings)
    raise ServerError(f"Neo4j did not answer within {settings.start_timeout:g} s; see {log}")


def stop(settings: ServerSettings, timeout: float = 90.0) -> bool:
    """SIGTERM the server and wait for a clean shutdown. False if it was not running."""
    pid = _pid(settings)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            # reap if it is our child
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        raise ServerError(f"Neo4j (pid {pid}) did not stop within {timeout:g} s")
    (settings.run_dir / PID_FILE).unlink(missing_ok=True)
    return True
