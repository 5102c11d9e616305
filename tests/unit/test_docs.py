"""The README stays true to the code: every CLI command and every setting is documented."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from bench.update_readme import BLOCKS
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


@pytest.mark.parametrize("name", BLOCKS)
def test_readme_benchmarks_are_the_results_files(name: str) -> None:
    """Each benchmark block of the README is its bench/results file as the bench wrote it."""
    assert f"<!-- {name} -->" in README, f"README quotes no {name}"
    block = README.split(f"<!-- {name} -->\n", 1)[1].split(f"<!-- /{name} -->", 1)[0]
    assert block == (REPO / "bench" / "results" / name).read_text()


def _latency_summaries(x: object, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every latency summary in a results file: a dict with a p99 and its sample count."""
    if isinstance(x, dict):
        if "p99" in x and "n" in x:
            yield path, x
        for k, v in x.items():
            yield from _latency_summaries(v, f"{path}.{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _latency_summaries(v, f"{path}[{i}]")


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (REPO / "bench" / "results").glob("*.json"))
)
def test_every_reported_p99_rests_on_200_samples(name: str) -> None:
    """A p99 from fewer than 200 timings is noise: the benches leave it out (None)."""
    data = json.loads((REPO / "bench" / "results" / name).read_text())
    thin = [(path, s["n"]) for path, s in _latency_summaries(data)
            if s["p99"] is not None and s["n"] < 200]  # fmt: skip
    assert not thin, f"p99 from fewer than 200 samples: {thin}"
