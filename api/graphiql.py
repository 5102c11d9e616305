"""GraphiQL served offline: its JavaScript and CSS come from this server, not a CDN.

strawberry's GraphiQL page loads React, GraphiQL and the explorer plugin from unpkg.com, so on a
machine without internet it stays a blank "Loading..." page. The page names each asset as
``https://unpkg.com/<package>@<version>/<path>`` with a sha384 ``integrity``; :func:`install`
fetches those exact packages from the npm registry (``npm pack``, what ``make install`` runs),
checks every file against its integrity and keeps it under ``api/static/graphiql/``.
:func:`page` is strawberry's page with the unpkg URLs pointing at ``/graphiql-assets/`` (the
integrity checks stay in the page, so the browser verifies them too), or, when the assets are
not installed, a short page saying how to install them (queries still work over POST).

    .venv/bin/python -m api.graphiql        # fetch the assets (npm registry), verify, keep
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from strawberry.http.ides import get_graphql_ide_html

ASSET_DIR = Path(__file__).resolve().parent / "static" / "graphiql"
PREFIX = "/graphiql-assets/"
_ASSET = re.compile(
    r'(?:src|href)="https://unpkg\.com/(?P<package>(?:@[^/"@]+/)?[^/"@]+)@(?P<version>[^/"]+)/'
    r'(?P<path>[^"]+)"\s+integrity="(?P<integrity>sha384-[^"]+)"'
)


@dataclass(frozen=True)
class Asset:
    package: str  # npm name, e.g. "@graphiql/plugin-explorer"
    version: str
    path: str  # inside the package, e.g. "dist/index.umd.js"
    integrity: str  # "sha384-<base64>"

    @property
    def local(self) -> Path:
        return ASSET_DIR / f"{self.package}@{self.version}" / self.path

    def matches(self, data: bytes) -> bool:
        digest = base64.b64encode(hashlib.sha384(data).digest()).decode()
        return self.integrity == f"sha384-{digest}"


def template() -> str:
    return get_graphql_ide_html("graphiql")


def assets(html: str | None = None) -> list[Asset]:
    """Every asset the GraphiQL page loads from unpkg, with its integrity."""
    found = [Asset(**m.groupdict()) for m in _ASSET.finditer(html or template())]
    if not found or "https://unpkg.com/" in _ASSET.sub("", html or template()):
        raise RuntimeError("strawberry's GraphiQL page names an asset without integrity")
    return found


def installed() -> bool:
    return all(a.local.is_file() for a in assets())


def page() -> str:
    """The GraphiQL page served at GET /graphql."""
    html = template()
    if installed():
        return html.replace("https://unpkg.com/", PREFIX)
    names = ", ".join(f"{a.package}@{a.version}" for a in assets())
    return (
        "<!doctype html><html><head><title>GraphiQL not installed</title></head><body>"
        "<h1>GraphiQL's files are not installed on this server</h1>"
        f"<p>It needs {names}. Fetch them from the npm registry with <code>make install</code> "
        "(or <code>.venv/bin/python -m api.graphiql</code>), then reload. The API itself works: "
        "POST GraphQL queries to this address.</p></body></html>"
    )


def asset_file(relative: str) -> Path | None:
    """The installed file for a request path under PREFIX (None if none: no path escapes)."""
    for a in assets():
        if relative == f"{a.package}@{a.version}/{a.path}" and a.local.is_file():
            return a.local
    return None


def install(*, quiet: bool = False) -> list[Path]:
    """Fetch each package with ``npm pack`` (the npm registry), verify every asset file against
    the page's sha384 integrity, and keep it under ASSET_DIR. Idempotent."""
    npm = shutil.which("npm")
    todo = [a for a in assets() if not (a.local.is_file() and a.matches(a.local.read_bytes()))]
    if todo and npm is None:
        raise RuntimeError("npm is needed to fetch GraphiQL's files (apt install npm)")
    packages = sorted({(a.package, a.version) for a in todo})
    with tempfile.TemporaryDirectory(prefix="graphiql-") as tmp:
        for name, version in packages:
            proc = subprocess.run(
                [str(npm), "pack", f"{name}@{version}", "--silent", "--pack-destination", tmp],
                capture_output=True, text=True, check=False, timeout=300,
            )  # fmt: skip
            if proc.returncode != 0:
                raise RuntimeError(f"npm pack {name}@{version} failed: {proc.stderr.strip()}")
            tarball = Path(tmp) / proc.stdout.strip().splitlines()[-1]
            with tarfile.open(tarball) as tar:
                for a in (a for a in todo if (a.package, a.version) == (name, version)):
                    member = tar.extractfile(f"package/{a.path}")
                    data = member.read() if member is not None else b""
                    if not a.matches(data):
                        raise RuntimeError(
                            f"{name}@{version}/{a.path} from npm does not match the page's "
                            f"integrity {a.integrity}: not installed"
                        )
                    a.local.parent.mkdir(parents=True, exist_ok=True)
                    a.local.write_bytes(data)
                    if not quiet:
                        print(f"graphiql: {a.package}@{a.version}/{a.path} ({len(data):,} bytes)")
    return [a.local for a in assets()]


if __name__ == "__main__":
    try:
        install()
    except RuntimeError as exc:
        print(f"GraphiQL files not installed: {exc}", file=sys.stderr)
        sys.exit(1)
