"""The local server's password (issue 12, security): never on a command line, a random one per
new home found by every command, old stores keep theirs, the store owner-only."""

from __future__ import annotations

import hashlib
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from graph import server
from graph.settings import DEFAULT_PASSWORD, ConnectionSettings, ServerSettings, local_password

MAIN = ServerSettings.from_env()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_home_gets_a_random_owner_only_password_every_command_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("CGRAPH_NEO4J_HOME", str(home))
    monkeypatch.delenv("NEO4J_PASSWORD", raising=False)
    first = ConnectionSettings.from_env().password
    assert first != DEFAULT_PASSWORD and len(first) >= 20
    assert _mode(home / "password") == 0o600
    assert ConnectionSettings.from_env().password == first  # the next command finds it
    other = tmp_path / "other"
    assert local_password(other) != first  # random per home
    monkeypatch.setenv("NEO4J_PASSWORD", "chosen-before-start")
    assert ConnectionSettings.from_env().password == "chosen-before-start"


def test_a_store_made_with_the_old_default_keeps_it(tmp_path: Path) -> None:
    (tmp_path / "data" / "dbms").mkdir(parents=True)
    (tmp_path / "data" / "dbms" / "auth.ini").write_text("neo4j:SHA-256,x,y,1024:\n")
    assert local_password(tmp_path) == DEFAULT_PASSWORD
    assert not (tmp_path / "password").exists()


def _home(tmp_path: Path) -> ServerSettings:
    if not server.is_installed(MAIN):
        pytest.skip(f"the local Neo4j jars are not installed in {MAIN.lib}")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / MAIN.version).symlink_to(MAIN.lib)
    settings = ServerSettings(home=tmp_path, version=MAIN.version, java_home=MAIN.java_home)
    server.write_conf(settings, server.memory_plan(settings, ram=8 << 30, store=0))
    return settings


def _hash_matches(auth_ini: Path, password: str) -> bool:
    """Neo4j's auth.ini: SHA-256 of salt + password, iterated (Shiro's SimpleHash)."""
    _, hashed, salt, iterations = auth_ini.read_text().split(":")[1].split(",")
    h = hashlib.sha256(bytes.fromhex(salt) + password.encode()).digest()
    for _ in range(int(iterations) - 1):
        h = hashlib.sha256(h).digest()
    return h.hex() == hashed


@pytest.mark.parametrize("password", ["a b\"c\\d#e$f'g  h", "plain-password-123"])
def test_initial_password_is_not_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    settings = _home(tmp_path)
    seen: list[list[str]] = []
    real_run = subprocess.run

    def spy(cmd: list[str], *args: Any, **kwargs: Any) -> Any:
        seen.append(list(cmd))
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(server.subprocess, "run", spy)
    server._set_initial_password(settings, server._java(settings), password)
    (cmd,) = seen
    assert "set-initial-password" in cmd and not any(password in arg for arg in cmd)
    auth = settings.data_dir / "dbms" / "auth.ini"
    assert _hash_matches(auth, password)  # what was set is the password, quotes and all
    assert _mode(auth) == 0o600 and _mode(settings.data_dir) == 0o700
    assert not list(settings.run_dir.glob("*.args"))  # the argument file is gone


def test_secure_store_fixes_an_old_world_readable_store(tmp_path: Path) -> None:
    settings = ServerSettings(home=tmp_path)
    (settings.data_dir / "dbms").mkdir(parents=True)
    auth = settings.data_dir / "dbms" / "auth.ini"
    auth.write_text("x")
    auth.chmod(0o644)
    settings.data_dir.chmod(0o755)
    server.secure_store(settings)
    assert _mode(auth) == 0o600 and _mode(settings.data_dir) == 0o700
