"""`cgraph`: the command line. The one place that wires graph/, loaders/ and api/ together.

Every named error (core.errors) becomes one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from cgraph.data import drop_release_cmd, list_releases_cmd, load, load_cave, rebuild_cmd, synth
from cgraph.export import export_cmd
from cgraph.motif import census_cmd, motif_cmd
from cgraph.serve import serve
from core.errors import CGraphError, InputError
from graph import server
from graph.settings import PASSWORD_FILE, ConnectionSettings, ServerSettings

EXIT_ERROR = 1
EXIT_INPUT = 2


def _fail(exc: CGraphError) -> None:
    click.echo(f"Error: {exc}", err=True)
    sys.exit(EXIT_INPUT if isinstance(exc, InputError) else EXIT_ERROR)


class _Group(click.Group):
    """Maps project errors to one line, once, for every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CGraphError as exc:
            _fail(exc)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except Exception as exc:
            if os.environ.get("CGRAPH_DEBUG"):
                raise
            click.echo(
                f"Internal error: {type(exc).__name__}: {exc} (set CGRAPH_DEBUG=1 for a traceback)",
                err=True,
            )
            sys.exit(EXIT_ERROR)


@click.group(cls=_Group)
@click.version_option(package_name="connectome-graph")
def cli() -> None:
    """connectome-graph: MICrONS/CAVE connectome releases in Neo4j, served over GraphQL.

    Connection settings come from NEO4J_URI, NEO4J_USER, NEO4J_PASSWORD and NEO4J_DATABASE.
    """


# --------------------------------------------------------------------------- neo4j
@cli.group(cls=_Group)
def neo4j() -> None:
    """Manage the project's own local Neo4j (no Docker needed)."""


@neo4j.command("install")
def neo4j_install() -> None:
    """Fetch Neo4j Community and Neo4j Browser jars with mvn."""
    settings = ServerSettings.from_env()
    lib = server.install(settings)
    click.echo(f"Neo4j {settings.version} installed in {lib}")


def browser_login(srv: ServerSettings, conn: ConnectionSettings) -> str:
    """Where to log in to Neo4j Browser and with which password (NEO4J_PASSWORD when set, else
    the local server's own: `<home>/password`, or `connectome-local` for an older store)."""
    if os.environ.get("NEO4J_PASSWORD"):
        said = "the value of NEO4J_PASSWORD"
    elif (srv.home / PASSWORD_FILE).exists():
        said = f"{conn.password} (from {srv.home / PASSWORD_FILE})"
    else:
        said = f"{conn.password} (the documented default)"
    return (f"Neo4j Browser: http://127.0.0.1:{srv.http_port}/browser/  user {conn.user}, "
            f"password {said}")  # fmt: skip


@neo4j.command("start")
def neo4j_start() -> None:
    """Start the local server (installing it first if needed) and wait until it answers."""
    srv, conn = ServerSettings.from_env(), ConnectionSettings.from_env()
    st = server.start(srv, conn)
    click.echo(st.describe())
    click.echo(browser_login(srv, conn))


@neo4j.command("stop")
def neo4j_stop() -> None:
    """Stop the local server cleanly (SIGTERM)."""
    settings = ServerSettings.from_env()
    if server.stop(settings):
        click.echo(f"Neo4j {settings.version}: stopped")
    else:
        click.echo(f"Neo4j {settings.version}: was not running")


@neo4j.command("status")
def neo4j_status() -> None:
    """Say whether the local server runs and answers. Exit 3 when it is not up."""
    st = server.status(ServerSettings.from_env(), ConnectionSettings.from_env())
    click.echo(st.describe())
    if not st.answering:
        sys.exit(3)


for _cmd in (
    synth,
    load,
    load_cave,
    rebuild_cmd,
    list_releases_cmd,
    drop_release_cmd,
    serve,
    motif_cmd,
    census_cmd,
    export_cmd,
):
    cli.add_command(_cmd)


def main() -> None:
    cli(prog_name="cgraph")


if __name__ == "__main__":
    main()
