"""docker-compose.yml: valid against the Compose Specification, and consistent with the code."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from graph.settings import DEFAULT_PASSWORD, ConnectionSettings, ServerSettings
from tests.conftest import DOCKER_IMAGE

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
REQUIRED_PASSWORD = "${NEO4J_PASSWORD:?set NEO4J_PASSWORD (8+ characters)}"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_matches_the_compose_specification() -> None:
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    proc = subprocess.run(
        [exe, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_neo4j_service_uses_the_pinned_image_ports_and_auth() -> None:
    neo = _compose()["services"]["neo4j"]
    assert neo["image"] == DOCKER_IMAGE
    local = ServerSettings.from_env()
    assert neo["image"].split(":")[1].startswith(".".join(local.version.split(".")[:2]))
    ports = {p.rsplit(":", 1)[1]: p for p in neo["ports"]}
    assert set(ports) == {"7474", "7687"}
    assert all(p.startswith("127.0.0.1:") for p in neo["ports"]), "bind to loopback only"
    assert neo["environment"]["NEO4J_AUTH"] == f"neo4j/{REQUIRED_PASSWORD}"
    assert "healthcheck" in neo and any(v.endswith(":/data") for v in neo["volumes"])


def test_api_service_env_matches_connection_settings() -> None:
    services = _compose()["services"]
    api = services["api"]
    assert api["depends_on"]["neo4j"]["condition"] == "service_healthy"
    env = api["environment"]
    defaults = ConnectionSettings()
    assert env["NEO4J_URI"] == "bolt://neo4j:7687"
    assert env["NEO4J_USER"] == defaults.user
    assert env["NEO4J_DATABASE"] == defaults.database
    assert env["NEO4J_PASSWORD"] == REQUIRED_PASSWORD  # no public default (issue 12)
    assert DEFAULT_PASSWORD not in COMPOSE.read_text()
    assert (REPO / api["build"] / "Dockerfile").exists()
    assert api["command"][:2] == ["cgraph", "serve"]
