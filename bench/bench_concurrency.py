"""Many clients at once on loopback: the issue-12 targets (64 clients, 60 s, 0 errors, p99 <= 500
ms; partner queries keep at least half their throughput while four degree-preserving censuses run).

    python bench/bench_concurrency.py [--clients 64] [--seconds 60] [--version 343] [--load]
                                      [--heavy-seconds 20] [--heavy-clients 8]

The API runs as `uvicorn --factory api.app:create_app` in its own process on a free loopback
port, against the Neo4j of the environment (NEO4J_URI / the project's local server). Each client
loops over partner queries (outputs and inputs, first 100) of cells of the release, one request at
a time, until the time is up or `--max-requests` have been sent in all. `--load` first loads a
demo-sized synthetic release (`make demo`'s 3,000 cells and 300,000 synapses) as `--version` when
it is not complete yet.

Heavy work (after the 64-client run, same server): `--heavy-clients` clients send partner
queries for `--heavy-seconds` alone (the baseline, measured in the same run), then again while
four `motifCensus(nullModel: DEGREE_PRESERVING)` requests run at once; the census answers (or
their coded refusals: the work queue is bounded) are recorded. Writes
bench/results/concurrency.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
BIN = Path(sys.executable).parent
PARTNERS = """query ($n: Int!, $v: Int!, $d: Boolean!) { cell(nucleusId: $n) {
  outputs(version: $v, first: 100) @include(if: $d) { totalCount nodes { synapses cell { nucleusId } } }
  inputs(version: $v, first: 100) @skip(if: $d) { totalCount nodes { synapses cell { nucleusId } } }
} }"""
TARGET = {"errors": 0, "p99_ms": 500.0, "heavy_ratio": 0.5}
START = """query ($v: Int!, $seed: Int, $samples: Int!) {
  startMotifCensus(version: $v, nullModel: DEGREE_PRESERVING, samples: $samples, seed: $seed) {
    id state } }"""
JOB = "query ($id: ID!) { analysisJob(id: $id) { state progress error { code message } } }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(version: int) -> str | None:
    proc = subprocess.run([str(BIN / "cgraph"), "releases"], capture_output=True, text=True,
                          check=False)  # fmt: skip
    for line in proc.stdout.splitlines():
        cols = line.split()
        if cols and cols[0] == str(version):
            return cols[1]
    return None


def load_demo(version: int) -> None:
    if _status(version) == "complete":
        return
    with tempfile.TemporaryDirectory(prefix="bench-concurrency-") as tmp:
        subprocess.run([str(BIN / "cgraph"), "synth", "--out", tmp, "--cells", "3000",
                        "--synapses", "300000", "--versions", str(version), "--seed", "1"],
                       check=True)  # fmt: skip
        subprocess.run([str(BIN / "cgraph"), "load", "--version", str(version),
                        "--nuclei", f"{tmp}/nuclei_v{version}.parquet",
                        "--synapses", f"{tmp}/synapses_v{version}.parquet",
                        "--neurons", f"{tmp}/neurons_v{version}.parquet",
                        "--cell-types", f"{tmp}/cell_types_v{version}.parquet", "--replace"],
                       check=True)  # fmt: skip


def start_api(port: int) -> subprocess.Popen[bytes]:
    cmd = [str(BIN / "uvicorn"), "--factory", "api.app:create_app", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", "--no-access-log"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"uvicorn exited with {proc.returncode}")
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit("the API did not answer /healthz within 60 s")


async def cells_of(url: str, version: int, n: int) -> list[int]:
    q = "query($v: Int!) { cells(version: $v, first: 1000) { nodes { nucleusId } } }"
    async with httpx.AsyncClient(timeout=60) as c:
        r = await c.post(url, json={"query": q, "variables": {"v": version}})
        body = r.json()
    if body.get("errors"):
        raise SystemExit(f"release {version}: {body['errors'][0]['message']} (try --load)")
    ids = [int(x["nucleusId"]) for x in body["data"]["cells"]["nodes"]]
    random.Random(1).shuffle(ids)
    return ids[:n]


async def run_clients(
    url: str, version: int, cells: list[int], clients: int, seconds: float, max_requests: int
) -> tuple[list[float], int, list[str], float]:
    """``clients`` loops of one partner request at a time over keep-alive connections. The load
    generator is aiohttp: httpx's client alone took ~90% of a core at 64 connections, more than
    the API it measured, on this 2-core machine."""
    latencies: list[float] = []
    errors: list[str] = []
    sent = 0
    end = time.monotonic() + seconds
    conn = aiohttp.TCPConnector(limit=clients, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)

    async def client(i: int, http: aiohttp.ClientSession) -> None:
        nonlocal sent
        rng = random.Random(i)
        while time.monotonic() < end and sent < max_requests:
            sent += 1
            variables = {"n": rng.choice(cells), "v": version, "d": rng.random() < 0.5}
            t0 = time.perf_counter()
            try:
                async with http.post(url, json={"query": PARTNERS, "variables": variables}) as r:
                    body = await r.json()
                    if r.status != 200 or body.get("errors"):
                        errors.append(f"{r.status}: {str(body.get('errors'))[:200]}")
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as http:
        await asyncio.gather(*(client(i, http) for i in range(clients)))
    return latencies, sent, errors, time.perf_counter() - t0


async def heavy_phase(
    url: str,
    version: int,
    cells: list[int],
    clients: int,
    seconds: float,
    samples: int,
    job_wait: float,
) -> dict[str, object]:
    """Partner req/s alone, then beside four degree-preserving censuses (background jobs on the
    server's one bounded worker pool: the work the issue saw take partner throughput from 192 to
    22 req/s), with the same clients; the jobs' states are polled (at most ``job_wait`` s)."""
    _, sent, errors, wall = await run_clients(url, version, cells, clients, seconds, 100_000)
    alone = sent / wall

    async def gql(http: httpx.AsyncClient, query: str, **variables: object) -> dict[str, Any]:
        body: dict[str, Any] = (
            await http.post(url, json={"query": query, "variables": variables})
        ).json()
        return body

    async with httpx.AsyncClient(timeout=120) as http:
        started = [await gql(http, START, v=version, seed=10 + s, samples=samples)
                   for s in range(4)]  # fmt: skip
        ids = [b["data"]["startMotifCensus"]["id"] for b in started if b.get("data")]
        refused = [b["errors"][0]["extensions"].get("code") for b in started if b.get("errors")]
        await asyncio.sleep(0.5)
        lat2, sent2, errors2, wall2 = await run_clients(url, version, cells, clients, seconds,
                                                        100_000)  # fmt: skip
        states = [(await gql(http, JOB, id=i))["data"]["analysisJob"]["state"] for i in ids]
        running = sum(s in ("RUNNING", "QUEUED") for s in states)
        deadline = time.monotonic() + job_wait
        while time.monotonic() < deadline and any(s in ("RUNNING", "QUEUED") for s in states):
            await asyncio.sleep(2)
            states = [(await gql(http, JOB, id=i))["data"]["analysisJob"]["state"] for i in ids]
    busy = sent2 / wall2
    ms = np.array(lat2) * 1000.0
    return {
        "clients": clients, "seconds": seconds, "census_samples": samples,
        "alone_req_per_s": round(alone, 1), "busy_req_per_s": round(busy, 1),
        "ratio": round(busy / alone, 2) if alone else None,
        "busy_p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
        "partner_errors": len(errors) + len(errors2),
        "jobs_started": len(ids), "jobs_refused": refused,
        "jobs_running_at_window_end": running, "job_states_at_end": states,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--max-requests", type=int, default=200_000, help="bound on all requests")
    ap.add_argument("--version", type=int, default=343, help="a complete release to query")
    ap.add_argument("--cells", type=int, default=500, help="cells the clients pick from")
    ap.add_argument("--load", action="store_true", help="load a demo-sized release first")
    ap.add_argument("--out", default="concurrency", help="bench/results/<out>.{json,md}")
    ap.add_argument("--heavy-seconds", type=float, default=20.0, help="0: no heavy-work phase")
    ap.add_argument("--heavy-clients", type=int, default=8)
    ap.add_argument("--census-samples", type=int, default=300)
    ap.add_argument("--job-wait", type=float, default=300.0, help="seconds to wait for the jobs")
    args = ap.parse_args()
    if not 1 <= args.clients <= 1024 or not 0 < args.seconds <= 3600:
        raise SystemExit("--clients 1..1024 and --seconds up to 3600")
    if args.load:
        load_demo(args.version)
    port = _free_port()
    api = start_api(port)
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        cells = asyncio.run(cells_of(url, args.version, args.cells))
        lat, sent, errors, wall = asyncio.run(
            run_clients(url, args.version, cells, args.clients, args.seconds, args.max_requests)
        )
        heavy = (
            asyncio.run(heavy_phase(url, args.version, cells, args.heavy_clients,
                                    args.heavy_seconds, args.census_samples, args.job_wait))
            if args.heavy_seconds > 0 else None
        )  # fmt: skip
    finally:
        api.terminate()
        api.wait(timeout=30)
    ms = np.array(lat) * 1000.0
    result = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "command": "python bench/bench_concurrency.py " + " ".join(sys.argv[1:]),
        "cores": os.cpu_count(), "version": args.version, "clients": args.clients,
        "seconds": round(wall, 1), "requests": sent, "errors": len(errors),
        "error_samples": errors[:5], "req_per_s": round(sent / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
        "max_ms": round(float(ms.max()), 1) if len(ms) else None,
    }  # fmt: skip
    met = result["errors"] == TARGET["errors"] and (result["p99_ms"] or 1e9) <= TARGET["p99_ms"]
    result["target"] = {**TARGET, "met": met}
    result["heavy"] = heavy
    ratio = heavy.get("ratio") if heavy is not None else None
    heavy_met = isinstance(ratio, float) and ratio >= TARGET["heavy_ratio"]
    if heavy is not None:
        result["heavy_target_met"] = heavy_met
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = (
        f"Loopback load test ({result['when']}, {result['cores']} cores, release {args.version}): "
        f"{args.clients} clients for {result['seconds']} s, {sent:,} partner queries, "
        f"{result['req_per_s']} req/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"{result['errors']} errors. Target 0 errors and p99 <= {TARGET['p99_ms']:g} ms: "
        f"{'met' if met else 'missed'}.\n"
    )
    if heavy is not None:
        md += (
            f"\nHeavy work: {heavy['clients']} clients' partner queries, {heavy['alone_req_per_s']} "
            f"req/s alone, {heavy['busy_req_per_s']} req/s while four degree-preserving census "
            f"jobs ({heavy['census_samples']} samples each; {heavy['jobs_running_at_window_end']} "
            f"still running at the end of the window, then {heavy['job_states_at_end']}; refused: "
            f"{heavy['jobs_refused'] or 'none'}) ran: {heavy['ratio']}x, p99 {heavy['busy_p99_ms']} "
            f"ms, {heavy['partner_errors']} errors. Target >= {TARGET['heavy_ratio']}x: "
            f"{'met' if heavy_met else 'missed'}.\n"
        )
    md += f"\nCommand: `{result['command']}`\n"
    (RESULTS / f"{args.out}.md").write_text(md)
    print(md, end="")


if __name__ == "__main__":
    main()
