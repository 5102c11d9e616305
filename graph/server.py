"""A real local Neo4j without Docker: jars from Maven Central, run with the machine's Java.

`install` copies Neo4j Community + Neo4j Browser jars with `mvn` (pom: graph/neo4j-server-pom.xml),
`start` writes neo4j.conf (127.0.0.1 only), sets the initial password on first start (through
an owner-only argument file, never on a command line), launches the JVM in its own session
(umask 077) and waits until Bolt answers `RETURN 1`; `stop` sends SIGTERM. Data lives in
`<home>/data` (0700, auth.ini 0600) and survives restarts. Without NEO4J_PASSWORD, the password
is the one in `<home>/password` (graph.settings.local_password: random, made on first use).

Memory: unless CGRAPH_NEO4J_HEAP / CGRAPH_NEO4J_PAGECACHE say otherwise, `start` sizes the heap
and the page cache from the machine's RAM and the store size (`memory_plan`), with the brackets
of `neo4j-admin server memory-recommendation`: heap and OS reserve interpolated from RAM (heap
1-31 GiB, and no more than half the store), page cache = store size + 20%, capped by what is left
after heap and OS reserve, at least 512 MiB.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
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
from graph.settings import PASSWORD_FILE, ConnectionSettings, ServerSettings

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
MEMORY_FILE = "cgraph-memory.json"  # the plan the running server was started with

# --------------------------------------------------------------------------- memory sizing
KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
MIN_HEAP, MAX_HEAP = 1 * GiB, 31 * GiB
MIN_PAGECACHE = 512 * MiB
PAGECACHE_HEADROOM = 1.2  # store size + 20% room to grow
#: (RAM, OS reserve, heap) in GiB, interpolated linearly: the brackets of
#: `neo4j-admin server memory-recommendation` (org.neo4j.dbms.MemoryRecommendation)
MEMORY_BRACKETS = (
    (0.01, 0.007, 0.002), (1.0, 0.65, 0.3), (2.0, 1.0, 0.5), (4.0, 1.5, 2.0), (6.0, 2.0, 3.0),
    (8.0, 2.5, 3.5), (10.0, 3.0, 4.0), (12.0, 3.5, 4.5), (16.0, 4.0, 5.0), (24.0, 6.0, 8.0),
    (32.0, 8.0, 12.0), (64.0, 12.0, 24.0), (128.0, 16.0, 31.0), (256.0, 20.0, 31.0),
    (512.0, 24.0, 31.0), (1024.0, 30.0, 31.0),
)  # fmt: skip
_UNITS = {"": 1, "k": KiB, "m": MiB, "g": GiB, "t": TiB}


@dataclass(frozen=True)
class MemoryPlan:
    """Heap and page cache of the local server, as passed to the JVM and neo4j.conf."""

    heap: str  # e.g. "1g", "3337m"
    pagecache: str
    store_bytes: int  # data/databases now
    ram_bytes: int
    source: str  # "sized", "from settings", or which of the two was set

    @property
    def heap_bytes(self) -> int:
        return parse_size(self.heap)

    @property
    def pagecache_bytes(self) -> int:
        return parse_size(self.pagecache)

    def describe(self) -> str:
        text = (f"heap {self.heap}, page cache {self.pagecache} ({self.source}), "
                f"store {human_size(self.store_bytes)}, RAM {human_size(self.ram_bytes)}")  # fmt: skip
        if self.store_bytes > self.pagecache_bytes:
            text += "; the store does not fit in the page cache"
        return text


def parse_size(text: str) -> int:
    """Bytes of a JVM/neo4j.conf size such as 512m, 1g, 1500M, 2GiB, 1073741824."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if not match:
        raise ServerError(f"not a memory size: {text!r} (use e.g. 512m or 2g)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def format_size(n: int) -> str:
    """Whole GiB as `3g`, else MiB (rounded down) as `3338m`."""
    return f"{n // GiB}g" if n % GiB == 0 else f"{n // MiB}m"


def human_size(n: int) -> str:
    for unit, size in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
    return None


def ram_bytes() -> int:
    """Physical memory (os.sysconf, else /proc/meminfo), capped by a cgroup limit."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 0
    if total <= 0:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * KiB
    if total <= 0:
        raise ServerError(
            "cannot tell the machine's RAM; set CGRAPH_NEO4J_HEAP and CGRAPH_NEO4J_PAGECACHE"
        )
    limit = _cgroup_limit()
    return min(total, limit) if limit else total


def store_bytes(settings: ServerSettings) -> int:
    """Bytes of the stores under data/databases (what the page cache maps), like `du`."""
    total = 0
    for root, _dirs, files in os.walk(settings.data_dir / "databases"):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).stat().st_size
    return total


def _bracket(ram: int, column: int) -> int:
    """memory-recommendation's linear interpolation between RAM brackets, in whole MiB."""
    gib = ram / GiB
    lower = upper = MEMORY_BRACKETS[-1]
    for i in range(1, len(MEMORY_BRACKETS)):
        if gib < MEMORY_BRACKETS[i][0]:
            lower, upper = MEMORY_BRACKETS[i - 1], MEMORY_BRACKETS[i]
            break
    factor = 0.0 if lower is upper else (gib - lower[0]) / (upper[0] - lower[0])
    value = lower[column] + (upper[column] - lower[column]) * factor
    return int(value * 1024.0) * MiB


def recommend_heap(ram: int, store: int) -> int:
    """The RAM bracket's heap, no more than half the store, within 1-31 GiB."""
    heap = min(_bracket(ram, 2), store // 2 // MiB * MiB)
    return max(MIN_HEAP, min(MAX_HEAP, heap))


def recommend_pagecache(ram: int, store: int, heap: int) -> int:
    """Store + 20%, capped by RAM - OS reserve - heap, at least 512 MiB."""
    want = math.ceil(store * PAGECACHE_HEADROOM / MiB) * MiB
    left = (ram - _bracket(ram, 1) - heap) // MiB * MiB
    return max(MIN_PAGECACHE, min(want, left))


_SOURCES = {
    (False, False): "sized",
    (True, True): "from settings",
    (True, False): "heap from settings, page cache sized",
    (False, True): "heap sized, page cache from settings",
}


def memory_plan(
    settings: ServerSettings, *, ram: int | None = None, store: int | None = None
) -> MemoryPlan:
    """Heap and page cache for the next start; explicit settings win (ram/store: for tests)."""
    ram = ram_bytes() if ram is None else ram
    store = store_bytes(settings) if store is None else store
    heap = settings.heap or format_size(recommend_heap(ram, store))
    pagecache = settings.pagecache or format_size(recommend_pagecache(ram, store, parse_size(heap)))
    source = _SOURCES[(settings.heap is not None, settings.pagecache is not None)]
    return MemoryPlan(heap, pagecache, store, ram, source)


def _save_plan(settings: ServerSettings, plan: MemoryPlan) -> None:
    data = {"heap": plan.heap, "pagecache": plan.pagecache, "source": plan.source,
            "ram_bytes": plan.ram_bytes}  # fmt: skip
    (settings.run_dir / MEMORY_FILE).write_text(json.dumps(data))


def running_plan(settings: ServerSettings) -> MemoryPlan | None:
    """The plan the running server was started with, with the store size of now."""
    try:
        data = json.loads((settings.run_dir / MEMORY_FILE).read_text())
        return MemoryPlan(str(data["heap"]), str(data["pagecache"]), store_bytes(settings),
                          int(data["ram_bytes"]), str(data["source"]))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Status:
    running: bool
    pid: int | None
    bolt: str
    browser: str
    version: str
    answering: bool
    agent: str | None = None
    memory: MemoryPlan | None = None  # running: as started; stopped: what a start would use

    def describe(self) -> str:
        if not self.running:
            nxt = f"; next start: {self.memory.describe()}" if self.memory else ""
            return f"Neo4j {self.version}: stopped{nxt}"
        memory = f"; memory: {self.memory.describe()}" if self.memory else ""
        state = f"up ({self.agent})" if self.answering else "starting (not answering yet)"
        return (f"Neo4j {self.version}: {state}, pid {self.pid}, Bolt {self.bolt}, "
                f"Browser {self.browser}{memory}")  # fmt: skip


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


def write_conf(settings: ServerSettings, plan: MemoryPlan | None = None) -> Path:
    for d in (settings.conf_dir, settings.data_dir, settings.logs_dir, settings.run_dir):
        d.mkdir(parents=True, exist_ok=True)
    settings.data_dir.chmod(0o700)
    for sub in ("import", "plugins"):
        (settings.home / sub).mkdir(exist_ok=True)
    h = settings.home
    pagecache = (plan or memory_plan(settings)).pagecache
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
server.memory.pagecache.size={pagecache}
dbms.usage_report.enabled=false
client.allow_telemetry=false
browser.post_connect_cmd=config autoComplete: false
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
    if not _alive(pid):
        path.unlink(missing_ok=True)
        return None
    return pid


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie, ended but not yet reaped by the process that
    started it, does not)."""
    if not _exists(pid):
        return False
    with contextlib.suppress(ChildProcessError):  # reap it if it is our child
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


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


def _store_exists(settings: ServerSettings) -> bool:
    data = settings.data_dir
    return (data / "dbms" / "auth.ini").exists() or (data / "databases").exists()


def _argfile_quote(value: str) -> str:
    """One argument of a picocli @-file (neo4j-admin's argument files): double-quoted, with
    backslashes and quotes escaped, so spaces, quotes and '#' stay part of it."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _set_initial_password(settings: ServerSettings, java: str, password: str) -> None:
    """Set the password of a store that was never started. The password goes to neo4j-admin
    in an owner-only argument file (`@file`), never on its command line (visible in `ps`)."""
    if _store_exists(settings):
        return
    if len(password) < 8:
        raise ServerError("NEO4J_PASSWORD must have at least 8 characters")
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    argfile = settings.run_dir / f"initial-password.{os.getpid()}.args"
    argfile.unlink(missing_ok=True)
    fd = os.open(argfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(_argfile_quote(password) + "\n")
        cmd = [java, "-Dfile.encoding=UTF-8", "-cp", f"{settings.lib}/*",
               "org.neo4j.cli.AdminTool", "dbms", "set-initial-password", f"@{argfile}"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_java_env(settings),
                              check=False, umask=0o077)  # fmt: skip
    finally:
        argfile.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise ServerError(f"could not set the initial password: {proc.stderr.strip()[:300]}")
    secure_store(settings)


def secure_store(settings: ServerSettings) -> None:
    """The store is the owner's only: data/ 0700, data/dbms/auth.ini 0600, the password file
    of the home 0600 (stores made before this was done are fixed at their next start)."""
    with contextlib.suppress(FileNotFoundError):
        settings.data_dir.chmod(0o700)
    for path in (settings.data_dir / "dbms" / "auth.ini", settings.home / PASSWORD_FILE):
        with contextlib.suppress(FileNotFoundError):
            path.chmod(0o600)


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
    memory = running_plan(settings) if pid is not None else None
    with contextlib.suppress(ServerError):
        memory = memory or memory_plan(settings)
    return Status(
        pid is not None, pid, _bolt_uri(settings), _browser_url(settings), settings.version,
        answering, agent, memory,
    )  # fmt: skip


BULK_BACKUP_PREFIX = "bulk-backup-"
BULK_BACKUP_DONE = ".moved"  # written once the whole old store is in the backup


def restore_interrupted_import(
    settings: ServerSettings, database: str = "neo4j", backup: Path | None = None
) -> Path | None:
    """A bulk import that died midway (graph.bulk) leaves the previous store in
    ``data/bulk-backup-*``: put it back, discarding the half-imported store. The server must
    not be running. Returns the backup folder that was restored, if any."""
    if backup is None:
        backups = sorted(settings.data_dir.glob(f"{BULK_BACKUP_PREFIX}*"))
        if not backups:
            return None
        backup = backups[-1]
    if not backup.exists():
        return None
    moved_all = (backup / BULK_BACKUP_DONE).exists()
    for sub in ("databases", "transactions"):
        current, saved = settings.data_dir / sub / database, backup / sub / database
        if saved.exists() or moved_all:  # else this part was never moved: it is the old one
            shutil.rmtree(current, ignore_errors=True)
        if saved.exists():
            current.parent.mkdir(parents=True, exist_ok=True)
            os.rename(saved, current)
    shutil.rmtree(backup)
    return backup


def start(
    settings: ServerSettings, conn: ConnectionSettings, *, restore_interrupted: bool = True
) -> Status:
    """Start (installing first if needed) and wait until `RETURN 1` answers. A store left
    aside by an interrupted bulk import is put back first (the bulk import itself starts the
    server on its new store with ``restore_interrupted=False``)."""
    if _pid(settings) is not None:
        return status(settings, conn)
    if restore_interrupted:
        restore_interrupted_import(settings)
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
    plan = memory_plan(settings)
    write_conf(settings, plan)
    _set_initial_password(settings, java, conn.password)
    secure_store(settings)
    log = settings.logs_dir / "console.log"
    cmd = [java, f"-Xms{plan.heap}", f"-Xmx{plan.heap}", *JVM_FLAGS,
           "-cp", f"{settings.lib}/*", main_class(settings.lib),
           f"--home-dir={settings.home}", f"--config-dir={settings.conf_dir}",
           "--console-mode"]  # fmt: skip
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=_java_env(settings), start_new_session=True, umask=0o077,
        )  # fmt: skip
    (settings.run_dir / PID_FILE).write_text(str(proc.pid))
    _save_plan(settings, plan)
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
                      settings.version, True, agent, plan)  # fmt: skip
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
        if not _alive(pid):
            break
        time.sleep(0.5)
    else:
        raise ServerError(f"Neo4j (pid {pid}) did not stop within {timeout:g} s")
    # it has ended; give whoever started it a moment to reap it (a zombie of another process,
    # e.g. of the test runner that started it, may stay until that process waits for it)
    gone = time.monotonic() + 10.0
    while time.monotonic() < gone and _exists(pid):
        time.sleep(0.1)
    (settings.run_dir / PID_FILE).unlink(missing_ok=True)
    return True


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
