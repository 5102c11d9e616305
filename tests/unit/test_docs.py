"""The README stays true to the code: every CLI command and every setting is documented."""

from __future__ import annotations

import re
from pathlib import Path

import click

from cgraph.main import cli

REPO = Path(__file__).resolve().parents[2]
ROOMS = ("core", "snapshot", "analysis", "graph", "loaders", "api", "cgraph")
README = (REPO / "README.md").read_text()


def _commands(group: click.Group, prefix: str = "cgraph") -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        full = f"{prefix} {name}"
        if isinstance(cmd, click.Group):
            out += _commands(cmd, full)
        else:
            out.append(full)
    return out


def test_readme_starts_with_the_two_commands() -> None:
    head = README.split("\n## ")[0]
    assert "make demo" in head and "make test" in head


def test_every_cli_command_is_in_the_readme() -> None:
    missing = [c for c in _commands(cli) if c not in README]
    assert not missing, f"undocumented commands: {missing}"


def test_every_setting_is_in_the_readme() -> None:
    names = set()
    for path in [p for room in ROOMS for p in (REPO / room).rglob("*.py")]:
        names |= set(re.findall(r"\b((?:NEO4J|CGRAPH)_[A-Z_]+)\b", path.read_text()))
    names -= {"NEO4J_HOME", "NEO4J_CONF"}  # set for the Neo4j JVM itself, not user settings
    missing = sorted(n for n in names if n not in README)
    assert not missing, f"undocumented settings: {missing}"


def test_readme_load_benchmark_is_the_results_file() -> None:
    """The README's v117 load numbers are bench/results/load_full.md as the bench wrote it."""
    block = README.split("<!-- load_full.md -->\n", 1)[1].split("<!-- /load_full.md -->", 1)[0]
    assert block == (REPO / "bench" / "results" / "load_full.md").read_text()
