"""`cgraph serve`: the GraphQL API on uvicorn (register with `cli.add_command(serve)`)."""

from __future__ import annotations

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Worker processes (each with its own Neo4j driver).")  # fmt: skip
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))  # fmt: skip
def serve(host: str, port: int, workers: int, log_level: str) -> None:
    """Serve GraphQL at http://HOST:PORT/graphql (GraphiQL in a browser) and /healthz.

    Neo4j comes from NEO4J_URI/NEO4J_USER/NEO4J_PASSWORD/NEO4J_DATABASE; CGRAPH_API_TOKEN turns
    on bearer auth; CGRAPH_QUERY_TIMEOUT bounds each database query (api/settings.py lists all).
    """
    import uvicorn

    click.echo(f"GraphQL on http://{host}:{port}/graphql  (GraphiQL in a browser; health: "
               "/healthz)", err=True)  # fmt: skip
    uvicorn.run(
        "api.app:served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
    )
