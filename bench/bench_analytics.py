"""Whole-release analytics at full MICrONS size, straight from a release snapshot (no Neo4j):
the graph read (analysis.from_snapshot), the reciprocal-pair count, the full triad census (the
NONE census), constrained motif counts, the degree-preserving null (one sample measured, the
rest estimated), and DuckDB counting reciprocal pairs in SQL on edges.parquet as a baseline.
Writes bench/results/analytics.{json,md} (--quick only prints).

    CGRAPH_DATA=/tmp/v117data .venv/bin/python bench/bench_analytics.py --version 117
    .venv/bin/python bench/bench_analytics.py --quick      # a small synthetic snapshot (smoke)

Every task runs in a fresh child process, one after the other (never two at once), so "cold"
means a new process with nothing cached (the OS page cache may hold the files: they were read
before); "warm" is the same work again in that process, the graph and its indexes built. Each
child reports its own peak RSS (ru_maxrss). Before each heavy child the parent waits until the
machine is idle (load average under --max-load, no process named like another heavy job), so
the numbers are not another job's. Wall-clock seconds on this machine (`nproc` CPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"
HEAVY = "bench_load|snap117|neo4j-admin|AdminTool|bench_analytics.py --task"
MOTIFS = {
    "strong reciprocal (synapses >= 3 both ways)": "A -> B [synapses >= 3]; B -> A [synapses >= 3]",
    "reciprocal 23P -> 23P": 'A -> B; B -> A\nA.cell_type = "23P"; B.cell_type = "23P"',
    "feed-forward loop among BC": (
        'A -> B; B -> C; A -> C\nA.cell_type = "BC"; B.cell_type = "BC"; C.cell_type = "BC"'
    ),
}
RECIPROCAL_SQL = (
    "SELECT count(*) FROM e a JOIN e b ON a.pre = b.post AND a.post = b.pre WHERE a.pre < a.post"
)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


# --------------------------------------------------------------------------- child tasks


def _graph(version: int, **kw: Any) -> tuple[Any, float, dict[str, float]]:
    from analysis.from_snapshot import release_graph_from_snapshot
    from snapshot.layout import open_snapshot

    steps: dict[str, float] = {}
    t, g = timed(lambda: release_graph_from_snapshot(open_snapshot(version), seconds=steps, **kw))
    return g, t, steps


def task_build(version: int) -> dict[str, Any]:
    g, cold, steps = _graph(version)
    out: dict[str, Any] = {"cells": g.n, "edges": g.m, "cold_s": cold, "steps_s": steps,
                           "peak_mib_graph": peak_mib()}  # fmt: skip
    del g
    _, out["warm_s"], _ = _graph(version)  # a second read in the same process
    t, g = timed(lambda: _graph(version, lazy_columns=False)[0])
    out["eager_columns_s"] = t
    out["peak_mib"] = peak_mib()
    return out


def task_reciprocal(version: int) -> dict[str, Any]:
    from analysis.census import reciprocal_pairs, sorted_reciprocal_count
    from analysis.motif import count_motif, parse_motif

    t0 = time.perf_counter()
    g, build, _ = _graph(version)
    count_t, pairs = timed(lambda: reciprocal_pairs(g))
    cold = time.perf_counter() - t0
    recompute = min(timed(lambda: sorted_reciprocal_count(g.n, g.src, g.dst))[0] for _ in range(2))
    motif = parse_motif("A -> B; B -> A")
    cached, ordered = timed(lambda: count_motif(g, motif))
    assert ordered == 2 * pairs
    return {"pairs": pairs, "build_s": build, "count_s": count_t, "cold_s": cold,
            "warm_recompute_s": recompute, "warm_cached_s": cached, "peak_mib": peak_mib()}  # fmt: skip


def task_census(version: int) -> dict[str, Any]:
    from analysis.census import census_work, graph_census
    from analysis.census_run import estimate_seconds

    t0 = time.perf_counter()
    g, build, _ = _graph(version)
    work_t, work = timed(lambda: census_work(g))
    estimate = estimate_seconds(g)
    marks: list[tuple[float, float]] = []
    start = time.perf_counter()

    def progress(x: float) -> None:
        if not marks or x - marks[-1][1] >= 0.05:
            marks.append((time.perf_counter() - start, x))
            print(f"  census {x:6.1%} after {marks[-1][0]:7.1f} s", file=sys.stderr, flush=True)

    census_t, (counts, mutual) = timed(lambda: graph_census(g, progress=progress))
    cold = time.perf_counter() - t0
    cached, _ = timed(lambda: graph_census(g))
    return {"build_s": build, "census_s": census_t, "cold_s": cold, "warm_cached_s": cached,
            "census_work_candidates": work, "census_work_s": work_t, "estimate_s": estimate,
            "reciprocal_pairs": mutual, "triads": counts, "progress": marks,
            "peak_mib": peak_mib()}  # fmt: skip


def task_motifs(version: int) -> dict[str, Any]:
    from analysis.motif import count_motif, parse_motif

    g, build, _ = _graph(version)
    rows = []
    for label, text in MOTIFS.items():
        motif = parse_motif(text)
        cold, n = timed(lambda m=motif: count_motif(g, m))  # type: ignore[misc]
        warm, again = timed(lambda m=motif: count_motif(g, m))  # type: ignore[misc]
        assert again == n
        rows.append({"motif": label, "text": text, "count": n, "cold_s": cold, "warm_s": warm,
                     "peak_mib": peak_mib()})  # fmt: skip
        print(f"  {label}: {n:,} in {cold:.2f} s (warm {warm:.2f} s)", file=sys.stderr)
    return {"build_s": build, "motifs": rows, "peak_mib": peak_mib()}


def task_null(version: int) -> dict[str, Any]:
    """One chain's burn-in (BURN_IN sweeps) and one sample (SWEEPS more sweeps and a census of
    the swapped graph), estimated from 6 measured sweeps; S samples are estimated from them."""
    import numpy as np

    from analysis.census import census_with_pairs
    from analysis.nullmodel import BURN_IN, SWEEPS, _swap_round

    g, build, _ = _graph(version)
    rng = np.random.default_rng(1)
    src, dst = g.src.copy(), g.dst.copy()
    buffer = np.empty(1 << (int(np.ceil(np.log2(max(1, src.size)))) + 2), dtype=np.int64)
    rounds = []
    for _ in range(6):
        t, accepted = timed(lambda: _swap_round(src, dst, g.n, rng, buffer))
        rounds.append({"s": t, "accepted": accepted})
        print(f"  swap round {t:.1f} s, {accepted:,} accepted", file=sys.stderr, flush=True)
    census_t, _ = timed(lambda: census_with_pairs(g.n, src, dst))
    round_s = float(np.mean([r["s"] for r in rounds]))
    return {"build_s": build, "swap_rounds": rounds, "round_s": round_s,
            "sample_census_s": census_t, "sample_s": SWEEPS * round_s + census_t,
            "burn_in_s": BURN_IN * round_s, "peak_mib": peak_mib()}  # fmt: skip


def task_duckdb(version: int) -> dict[str, Any]:
    import duckdb

    from snapshot.layout import EDGES, open_snapshot

    path = open_snapshot(version).file(EDGES)
    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count() or 1}")
    con.execute(f"CREATE VIEW e AS SELECT pre, post FROM read_parquet('{path}')")
    cold, (pairs,) = timed(lambda: con.execute(RECIPROCAL_SQL).fetchone())
    warm, _ = timed(lambda: con.execute(RECIPROCAL_SQL).fetchone())
    return {"pairs": int(pairs), "cold_s": cold, "warm_s": warm, "peak_mib": peak_mib()}


def task_api(version: int) -> dict[str, Any]:
    """motifCount, motifCensus and startMotifCensus through the GraphQL resolvers
    (api.motif_schema on strawberry), in a fresh process: graph.whole_release reads the
    snapshot as the server does. A stub stands in for Neo4j: it answers only the Release
    lookup (complete, this snapshot's digest), which is all these fields ask of it."""
    import asyncio

    import strawberry

    from analysis import from_snapshot
    from api.context import Context
    from api.errors import ErrorCodes
    from api.motif_schema import MotifQuery
    from graph import whole_release
    from snapshot.layout import open_snapshot

    digest = open_snapshot(version).digest
    stamp = {"status": "complete", "started_at": "s", "finished_at": "f", "snapshot": digest}

    class Settings:
        query_timeout = 30.0
        uri = "stub://bench"

    class StubDatabase:
        settings, name = Settings(), "bench"

        async def read(self, cypher: str, params: Any = None, timeout: Any = None) -> Any:
            assert "MATCH (r:Release" in cypher, "the bench answers only the Release lookup"
            return [stamp]

    builds: list[float] = []
    real = from_snapshot.release_graph_from_snapshot

    def counting(snap: Any, **kw: Any) -> Any:
        t, g = timed(lambda: real(snap, **kw))
        builds.append(t)
        return g

    whole_release.release_graph_from_snapshot = counting  # type: ignore[assignment]
    schema = strawberry.Schema(query=MotifQuery, extensions=[ErrorCodes])
    recip = f'{{ motifCount(version: {version}, motif: "A -> B; B -> A") }}'

    async def ask(query: str) -> tuple[float, Any]:
        t = time.perf_counter()
        r = await schema.execute(query, context_value=Context(adb=StubDatabase()))  # type: ignore[arg-type]
        return time.perf_counter() - t, r

    async def main() -> dict[str, Any]:
        lags: list[float] = []
        running = True

        async def ticker() -> None:
            while running:
                t = time.perf_counter()
                await asyncio.sleep(0.01)
                lags.append(time.perf_counter() - t - 0.01)

        tick = asyncio.create_task(ticker())
        (t1, r1), (t2, r2) = await asyncio.gather(ask(recip), ask(recip))
        running = False
        await tick
        assert not r1.errors and r1.data == r2.data, (r1.errors, r2.errors)
        warm = min([(await ask(recip))[0] for _ in range(3)])
        census_t, census = await ask(f"{{ motifCensus(version: {version}) {{ cells }} }}")
        start_t, start = await ask(
            f"{{ startMotifCensus(version: {version}) {{ id state estimatedSeconds }} }}"
        )
        return {
            "reciprocal_ordered": r1.data["motifCount"], "first_two_concurrent_s": [t1, t2],
            "graph_reads": len(builds), "graph_read_s": builds, "warm_s": warm,
            "event_loop_max_lag_ms": 1000 * max(lags), "event_loop_ticks": len(lags),
            "census_inline_s": census_t,
            "census_inline_error": [e.message for e in census.errors or ()],
            "census_inline_code": [(e.extensions or {}).get("code") for e in census.errors or ()],
            "start_census_s": start_t, "start_census": start.data,
            "peak_mib": peak_mib(),
        }  # fmt: skip

    return asyncio.run(main())


TASKS: dict[str, Callable[[int], dict[str, Any]]] = {
    "build": task_build, "reciprocal": task_reciprocal, "duckdb": task_duckdb,
    "api": task_api, "motifs": task_motifs, "census": task_census, "null": task_null,
}  # fmt: skip


# --------------------------------------------------------------------------- parent


def wait_idle(max_load: float, patience: float) -> float:
    """Seconds waited until the 1-minute load average is under max_load and no other heavy
    job runs (gives up after ``patience`` seconds and says so)."""
    t0 = time.monotonic()
    while True:
        load = os.getloadavg()[0]
        others = subprocess.run(["pgrep", "-fa", HEAVY], capture_output=True, text=True)
        busy = [ln for ln in others.stdout.splitlines() if str(os.getpid()) not in ln.split()[0]]
        busy = [ln for ln in busy if "pgrep" not in ln]
        if load < max_load and not busy:
            return time.monotonic() - t0
        if time.monotonic() - t0 > patience:
            print(f"  machine still busy (load {load:.2f}, {busy[:2]}); going on", flush=True)
            return time.monotonic() - t0
        time.sleep(15)


def run_child(task: str, version: int, env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--task", task, "--version", str(version)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"task {task} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = wall  # interpreter start and imports included
    return out


def quick_snapshot(folder: Path, version: int) -> None:
    from cgraph.load import aggregate_to_snapshot
    from loaders.synth import generate

    summary = generate(folder / "in", cells=3_000, synapses=400_000, versions=[version], seed=5)
    vs = summary.version(version)
    aggregate_to_snapshot(version, nuclei=vs.nuclei, synapses=vs.synapses, neurons=vs.neurons,
                          cell_types=vs.cell_types)  # fmt: skip


def fmt_s(x: float) -> str:
    return f"{x:,.2f}" if x < 100 else f"{x:,.0f}"


def report(meta: dict[str, Any], res: dict[str, dict[str, Any]]) -> str:
    b, r, c, n, d, mo = (res.get(k, {}) for k in
                         ("build", "reciprocal", "census", "null", "duckdb", "motifs"))  # fmt: skip
    lines = [
        f"# bench_analytics ({meta['when']}, {meta['cpus']} CPUs, {meta['machine']})",
        "",
        "Commands: "
        + "; ".join(
            f"`{cmd}` ({', '.join(t for t, r in meta['runs'].items() if r.get('command') == cmd)})"
            for cmd in dict.fromkeys(
                r.get("command", meta["command"]) for r in meta["runs"].values()
            )
        )
        + "  ",
        f"Release v{meta['version']}: {meta['counts']['cells']:,} cells, "
        f"{meta['counts']['edges']:,} edges "
        f"(snapshot {meta['snapshot']}). Every task in a fresh process, one at a time; "
        "peak RSS is the child's ru_maxrss.",
        "",
        "| task | cold (s) | warm (s) | peak RSS (MiB) | notes |",
        "|---|---:|---:|---:|---|",
    ]
    if b:
        st = ", ".join(f"{k} {v:.2f}" for k, v in b["steps_s"].items())
        lines.append(f"| graph from snapshot (pre/post; synapses, size on first use) | "
                     f"{fmt_s(b['cold_s'])} | {fmt_s(b['warm_s'])} | {b['peak_mib_graph']:,.0f} | "
                     f"steps: {st}; with eager columns {fmt_s(b['eager_columns_s'])} s |")  # fmt: skip
    if r:
        lines.append(f"| reciprocal pairs (motifCount 'A -> B; B -> A'), read included | "
                     f"{fmt_s(r['cold_s'])} | {fmt_s(r['warm_recompute_s'])} recomputed, "
                     f"{r['warm_cached_s']:.6f} kept | {r['peak_mib']:,.0f} | "
                     f"{r['pairs']:,} pairs; count alone {fmt_s(r['count_s'])} s |")  # fmt: skip
    a = res.get("api", {})
    if a:
        t1, t2 = a["first_two_concurrent_s"]
        lines.append(f"| GraphQL motifCount 'A -> B; B -> A', two first requests at once | "
                     f"{fmt_s(t1)}, {fmt_s(t2)} | {a['warm_s']:.4f} | {a['peak_mib']:,.0f} | "
                     f"graph read {a['graph_reads']}x ({fmt_s(a['graph_read_s'][0])} s); event "
                     f"loop max lag {a['event_loop_max_lag_ms']:.0f} ms meanwhile; "
                     f"motifCensus NONE inline answers {a['census_inline_code']} in "
                     f"{fmt_s(a['census_inline_s'])} s; startMotifCensus returns in "
                     f"{fmt_s(a['start_census_s'])} s |")  # fmt: skip
    if d:
        lines.append(f"| baseline: DuckDB SQL self-join on edges.parquet | {fmt_s(d['cold_s'])} | "
                     f"{fmt_s(d['warm_s'])} | {d['peak_mib']:,.0f} | {d['pairs']:,} pairs; "
                     f"`{RECIPROCAL_SQL}` |")  # fmt: skip
    if c:
        lines.append(f"| full triad census (motifCensus NONE), read included | "
                     f"{fmt_s(c['cold_s'])} | {c['warm_cached_s']:.6f} kept | "
                     f"{c['peak_mib']:,.0f} | census alone {fmt_s(c['census_s'])} s; cost-model "
                     f"estimate {fmt_s(c['estimate_s'])} s ({c['census_work_candidates']:,} "
                     f"wedge candidates, estimated in {c['census_work_s']:.2f} s) |")  # fmt: skip
    for m in mo.get("motifs", []):
        lines.append(f"| motif {m['motif']} | {fmt_s(m['cold_s'])} | {fmt_s(m['warm_s'])} | "
                     f"{m['peak_mib']:,.0f} | {m['count']:,} ordered matches; graph read "
                     f"{fmt_s(mo['build_s'])} s not included |")  # fmt: skip
    if n:
        est = {s: n["burn_in_s"] + s * n["sample_s"] for s in (2, 10, 100)}
        lines.append(f"| degree-preserving null, 1 sample measured | "
                     f"{fmt_s(n['burn_in_s'] + n['sample_s'])} | - | {n['peak_mib']:,.0f} | "
                     f"swap round {fmt_s(n['round_s'])} s, census of a swapped graph "
                     f"{fmt_s(n['sample_census_s'])} s; one chain, estimated: "
                     + ", ".join(f"{s} samples {v / 3600:,.1f} h" for s, v in est.items())
                     + " |")  # fmt: skip
    if c and r:
        budget = 30.0

        def verdict(seconds: float) -> str:
            return "inline" if seconds <= budget else "a job"

        lines += ["", f"Inline or job (CGRAPH_QUERY_TIMEOUT = {budget:g} s, cold start included):",
                  ""]  # fmt: skip
        lines.append(f"- reciprocal count: {verdict(r['cold_s'])} ({fmt_s(r['cold_s'])} s cold, "
                     f"{fmt_s(r['warm_recompute_s'])} s recomputed warm, then kept with the "
                     "graph).")  # fmt: skip
        lines.append(f"- NONE census: {verdict(c['cold_s'])} ({fmt_s(c['cold_s'])} s cold, "
                     f"about {c['cold_s'] / 60:,.1f} min; cost model {fmt_s(c['estimate_s'])} "
                     "s). Inline motifCensus refuses at once (TIMEOUT) when the estimate is over "
                     "3x its time left, and answers from a done job's kept result.")  # fmt: skip
        if n:
            lines.append(f"- degree-preserving null: {verdict(n['burn_in_s'] + n['sample_s'])} "
                         f"(one sample {fmt_s(n['sample_s'])} s after a {fmt_s(n['burn_in_s'])} s "
                         "burn-in).")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--version", type=int, default=117)
    ap.add_argument("--task", choices=list(TASKS), help="(internal) run one task in this process")
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset to run")
    ap.add_argument("--quick", action="store_true", help="a small synthetic snapshot instead")
    ap.add_argument("--max-load", type=float, default=1.2)
    ap.add_argument("--patience", type=float, default=3600.0, help="seconds to wait for idle")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other tasks' results of bench/results/analytics.json")  # fmt: skip
    args = ap.parse_args()
    if args.task:
        print(json.dumps(TASKS[args.task](args.version), default=float))
        return
    env = dict(os.environ)
    tmp = None
    if args.quick:
        tmp = tempfile.TemporaryDirectory(prefix="bench-analytics-")
        env["CGRAPH_DATA"] = os.environ["CGRAPH_DATA"] = tmp.name
        quick_snapshot(Path(tmp.name), args.version)
    from snapshot.layout import open_snapshot

    snap = open_snapshot(args.version)
    meta = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "cpus": os.cpu_count(),
        "machine": platform.machine(), "python": platform.python_version(),
        "version": args.version, "snapshot": str(snap.path), "quick": args.quick,
        "command": "python bench/bench_analytics.py " + " ".join(sys.argv[1:]),
        "counts": snap.counts, "waited_s": {},
    }  # fmt: skip
    results: dict[str, dict[str, Any]] = {}
    runs: dict[str, dict[str, Any]] = {}
    if args.merge and (RESULTS / "analytics.json").exists():
        old = json.loads((RESULTS / "analytics.json").read_text())
        results, runs = old["results"], old["meta"].get("runs", {})
    meta["runs"] = runs

    def save() -> str:
        text = report(meta, results)
        if tmp is None:  # a smoke run (--quick) is printed, not written
            RESULTS.mkdir(exist_ok=True)
            (RESULTS / "analytics.json").write_text(
                json.dumps({"meta": meta, "results": results}, indent=1, default=float) + "\n"
            )
            (RESULTS / "analytics.md").write_text(text)
        return text

    failed = []
    for task in [t for t in args.tasks.split(",") if t]:
        meta["waited_s"][task] = wait_idle(args.max_load, args.patience) if not args.quick else 0
        print(f"[{task}] load {os.getloadavg()[0]:.2f}", flush=True)
        try:
            results[task] = run_child(task, args.version, env)
        except RuntimeError as exc:  # recorded; the other tasks still run
            print(f"[{task}] FAILED: {exc}", flush=True)
            failed.append(task)
            continue
        runs[task] = {"when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                      "waited_s": meta["waited_s"][task], "command": meta["command"]}  # fmt: skip
        print(f"[{task}] {json.dumps(results[task], default=float)}", flush=True)
        save()  # after every task: a later failure loses nothing
    print(save())
    if tmp is not None:
        print(json.dumps({"meta": meta, "results": results}, default=float)[:2000])
        tmp.cleanup()
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
