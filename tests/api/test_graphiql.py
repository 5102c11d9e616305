"""GraphiQL works offline (issue 11): the page loads its files from this server, and in headless
Chromium (Debian's, driven by playwright) with every request off the machine refused, it renders
and runs a query whose answer matches the database."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from api import graphiql
from graph import releases as graph_releases
from graph.driver import Database
from tests.api.conftest import GraphQL, LiveServer

CHROMIUM = Path(os.environ.get("CGRAPH_CHROMIUM", "/usr/bin/chromium"))
#: what a root process in a closed network needs (the machine notes): no sandbox, no GPU, no
#: background traffic to Google's hosts
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def _require(ok: bool, reason: str) -> None:
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


def test_the_page_loads_nothing_from_outside(asgi: GraphQL) -> None:
    _require(graphiql.installed(), "GraphiQL's files are not installed (make install: npm)")
    r = asgi.transport.request("GET", "/graphql", headers={"Accept": "text/html"})
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    html = r.text
    assert not re.search(r'(?:src|href)="https?://', html), "an asset from another host"
    wanted = re.findall(r'(?:src|href)="(/graphiql-assets/[^"]+)"\s+integrity="sha384-([^"]+)"',
                        html)  # fmt: skip
    assert len(wanted) == 7  # react, react-dom, js-cookie, graphiql js+css, explorer js+css
    for path, integrity in wanted:
        got = asgi.transport.request("GET", path)
        assert got.status_code == 200, path
        assert base64.b64encode(hashlib.sha384(got.content).digest()).decode() == integrity, path
    assert asgi.transport.request("GET", "/graphiql-assets/../app.py").status_code == 404
    assert (
        asgi.transport.request("GET", "/graphiql-assets/react@18.2.0/package.json").status_code
        == 404
    )


def test_graphiql_renders_and_runs_a_query_in_chromium_offline(live: GraphQL, db: Database) -> None:
    _require(graphiql.installed(), "GraphiQL's files are not installed (make install: npm)")
    _require(CHROMIUM.exists(), f"no Chromium at {CHROMIUM} (apt install chromium)")
    from playwright.sync_api import sync_playwright

    assert isinstance(live.transport, LiveServer)
    base = live.transport.url
    query = "{ releases { version status } }"
    refused: list[str] = []

    def offline(route: object) -> None:  # the machine has no internet: make that certain
        url = route.request.url  # type: ignore[attr-defined]
        if urlsplit(url).hostname == "127.0.0.1":
            route.continue_()  # type: ignore[attr-defined]
        else:
            refused.append(url)
            route.abort()  # type: ignore[attr-defined]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            page = browser.new_page()
            page.route("**/*", offline)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/graphql?q={quote(query)}", wait_until="load")
            page.wait_for_selector(".graphiql-execute-button", timeout=30_000)
            assert "Loading..." not in page.inner_text("#graphiql")
            page.click(".graphiql-execute-button")
            page.wait_for_function(
                "() => (document.querySelector('.graphiql-response') || {}).innerText"
                "?.includes('\"releases\"')",
                timeout=30_000,
            )
            shown = page.inner_text(".graphiql-response")
        finally:
            browser.close()
    assert not refused, refused
    assert not errors, errors
    want = db.call(graph_releases.list_releases)
    assert want, "no release in the database to show"
    for info in want:
        assert re.search(rf'"version":\s*{info.version}\b', shown), (info.version, shown[:500])
    data, _, extensions = shown.partition('"extensions"')
    assert data.count('"status"') == len(want)
    assert '"provenance"' in extensions  # every answer names what it read
