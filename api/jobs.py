"""The worker pool every whole-release computation of the service runs on, and background jobs
for the ones that outlast a query's timeout.

One pool per process (:func:`pool`): ``CGRAPH_WORKERS`` daemon threads (default: CPUs). numpy
releases the GIL in its heavy loops, so the event loop keeps serving while they compute. Work
comes in two lanes: *inline* work (a query waiting for its answer) may use every worker; *job*
work at most ``CGRAPH_JOB_WORKERS`` of them at once (default: all but one), so a long job never
takes the last worker from the queries. The degree-preserving null runs its Markov chains as
tasks of this pool (analysis.nullmodel, ``executor``), never in a pool of its own. At most
``CGRAPH_WORK_QUEUE`` inline requests are queued or running (:meth:`WorkerPool.admitted`); one
more answers LIMIT_EXCEEDED at once instead of waiting out its timeout. The workers run at
niceness 10, so heavy work takes only the CPU that the event loop and Neo4j leave.

A job (:class:`JobManager`) is keyed by what it computes (the release graph's ``uid``, which
names one complete load of a release, and the normalised arguments): asking again for the same
computation joins the job that is queued, running or done instead of starting another. At most
``CGRAPH_JOB_QUEUE`` jobs are queued or running; one more is refused with LIMIT_EXCEEDED. A
finished job (its result or its error) is kept ``CGRAPH_JOB_KEEP`` seconds, then forgotten; a
failed one is replaced by the next request for it. A job may run ``CGRAPH_JOB_TIMEOUT``
seconds; longer, it fails with TIMEOUT. Each job has a coordinator thread that only waits for
its tasks (so no pool worker ever waits for another). Jobs live in this process's memory only.

| variable | default | meaning |
|---|---|---|
| CGRAPH_WORKERS | CPUs | threads of the shared pool |
| CGRAPH_JOB_WORKERS | CGRAPH_WORKERS - 1 (at least 1) | most pool threads job tasks use at once |
| CGRAPH_JOB_QUEUE | 8 | most jobs queued or running; more answer LIMIT_EXCEEDED |
| CGRAPH_WORK_QUEUE | 16 | most inline requests (motifCount, motifCensus) queued or running; |
| | | more answer LIMIT_EXCEEDED at once |
| CGRAPH_JOB_KEEP | 3600 | seconds a finished job's result is kept |
| CGRAPH_JOB_TIMEOUT | 21600 | seconds a job may run before it fails with TIMEOUT |
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Literal, TypeVar

from core.budget import Deadline
from core.errors import CGraphError, LimitExceeded, QueryTimeout

log = logging.getLogger(__name__)
T = TypeVar("T")
Lane = Literal["inline", "job"]
WORKER_NICE = 10  # niceness of the pool's threads
Progress = Callable[[float], None]


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


# --------------------------------------------------------------------------- the pool


class WorkerPool:
    """Daemon worker threads fed by two FIFO lanes; inline tasks go first, job tasks only
    while fewer than ``job_workers`` of them run. Threads start on first use."""

    def __init__(self, workers: int, job_workers: int, max_inline: int = 16) -> None:
        self.workers = max(1, workers)
        self.job_workers = max(1, min(job_workers, self.workers))
        self.max_inline = max(1, max_inline)
        self._inline_requests = 0  # admitted (api.jobs.admitted): queued or running
        self._lanes: dict[Lane, deque[tuple[Future[Any], Callable[[], Any]]]] = {
            "inline": deque(),
            "job": deque(),
        }
        self._cv = threading.Condition()
        self._running_jobs = 0
        self._threads: list[threading.Thread] = []

    def submit(self, lane: Lane, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        fut: Future[T] = Future()
        with self._cv:
            if not self._threads:
                for i in range(self.workers):
                    t = threading.Thread(target=self._work, name=f"cgraph-worker-{i}", daemon=True)
                    t.start()
                    self._threads.append(t)
            self._lanes[lane].append((fut, lambda: fn(*args, **kwargs)))
            self._cv.notify()
        return fut

    @contextlib.contextmanager
    def admitted(self) -> Iterator[None]:
        """One inline request (a query waiting for whole-release work) for as long as it runs;
        LIMIT_EXCEEDED when ``max_inline`` are already queued or running."""
        with self._cv:
            if self._inline_requests >= self.max_inline:
                raise LimitExceeded(
                    f"{self._inline_requests} whole-release computations are queued or running, "
                    f"the most this server takes at once (CGRAPH_WORK_QUEUE); try again later, "
                    "or run it as a job (startMotifCensus, startMotifCount)"
                )
            self._inline_requests += 1
        try:
            yield
        finally:
            with self._cv:
                self._inline_requests -= 1

    def executor(self, lane: Lane, on_start: Callable[[], None] | None = None) -> Executor:
        """A concurrent.futures.Executor whose tasks go to ``lane``."""
        return _LaneExecutor(self, lane, on_start)

    def queued(self) -> dict[str, int]:
        with self._cv:
            return {lane: len(q) for lane, q in self._lanes.items()}

    def _pick(self) -> tuple[Lane, Future[Any], Callable[[], Any]] | None:
        if self._lanes["inline"]:
            return ("inline", *self._lanes["inline"].popleft())
        if self._lanes["job"] and self._running_jobs < self.job_workers:
            self._running_jobs += 1
            return ("job", *self._lanes["job"].popleft())
        return None

    def _work(self) -> None:
        # heavy work takes the CPU the event loop and Neo4j leave: partner queries keep
        # answering at their pace while censuses run (Linux: niceness is per thread)
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICE)
        while True:
            with self._cv:
                while (item := self._pick()) is None:
                    self._cv.wait()
            lane, fut, call = item
            try:
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(call())
                    except BaseException as exc:  # noqa: BLE001 - handed to the waiter
                        fut.set_exception(exc)
            finally:
                if lane == "job":
                    with self._cv:
                        self._running_jobs -= 1
                        self._cv.notify_all()
            del item, fut, call  # drop references to the task's arguments while idle


class _LaneExecutor(Executor):
    def __init__(self, pool: WorkerPool, lane: Lane, on_start: Callable[[], None] | None):
        self._pool, self._lane, self._on_start = pool, lane, on_start

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        on_start = self._on_start

        def run() -> T:
            if on_start is not None:
                on_start()
            return fn(*args, **kwargs)

        return self._pool.submit(self._lane, run)


_pool: WorkerPool | None = None
_pool_lock = threading.RLock()


def pool() -> WorkerPool:
    """The process's shared pool (made on first use from the environment)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            workers = _env_int("CGRAPH_WORKERS", os.cpu_count() or 1)
            _pool = WorkerPool(workers, _env_int("CGRAPH_JOB_WORKERS", max(1, workers - 1)),
                               _env_int("CGRAPH_WORK_QUEUE", 16))  # fmt: skip
        return _pool


def available_memory() -> int | None:
    """MemAvailable of this machine in bytes (Linux), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


async def run_inline(budget: Deadline, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on the shared pool's inline lane, awaited without blocking the
    event loop. ``fn`` checks its deadline itself; a task still queued when ``budget`` has
    passed (plus a second) is cancelled and answers TIMEOUT. LIMIT_EXCEEDED at once when
    CGRAPH_WORK_QUEUE inline requests are already queued or running."""
    workers = pool()
    with workers.admitted():
        fut = workers.submit("inline", fn, *args, **kwargs)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), timeout=budget.remaining() + 1)
        except TimeoutError:
            fut.cancel()
            raise QueryTimeout(budget.seconds) from None


async def run_coordinated(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn`` in a thread of its own (not a pool worker), for callers that hand their work to
    the pool and wait for it (a null model's chains), so that no pool worker ever waits.
    Admitted like :func:`run_inline` (at most CGRAPH_WORK_QUEUE at once, with it)."""
    with pool().admitted():
        return await asyncio.to_thread(fn, *args, **kwargs)


class WouldTimeOut(QueryTimeout):
    """Refused before starting: the estimate is well over the query's time budget."""

    def __init__(self, seconds: float, estimate: float, hint: str) -> None:
        super().__init__(seconds)
        self.estimate = estimate
        self.args = (
            f"this would take about {estimate:,.0f} s, more than the {seconds:g} s query "
            f"timeout; {hint}",
        )

    def __str__(self) -> str:
        return str(self.args[0])


#: An inline request whose estimate exceeds this many times its remaining budget is refused
#: at once (TIMEOUT) instead of running until its deadline.
INLINE_REFUSAL_FACTOR = 3.0


def refuse_if_too_long(deadline: Deadline, estimate: float, hint: str) -> None:
    if estimate > INLINE_REFUSAL_FACTOR * max(0.0, deadline.remaining()):
        raise WouldTimeOut(deadline.seconds, estimate, hint)


# --------------------------------------------------------------------------- jobs


class JobState(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass
class Job:
    """One background computation. Read a consistent copy with :meth:`JobManager.get`."""

    id: str
    kind: str
    version: int
    key: Hashable
    estimated_seconds: float | None
    submitted_at: datetime
    state: JobState = JobState.QUEUED
    progress: float = 0.0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: Any = None
    error_code: str | None = None
    error_message: str | None = None
    _finished_mono: float | None = field(default=None, repr=False)


#: The body of a job: (deadline, progress, executor for its tasks) -> result. It runs in the
#: job's coordinator thread and should hand its heavy work to the executor (the job lane).
JobBody = Callable[[Deadline, Progress, Executor], Any]


class JobManager:
    def __init__(
        self,
        workers: WorkerPool,
        *,
        max_jobs: int = 8,
        keep_seconds: float = 3600.0,
        timeout: float = 21600.0,
    ) -> None:
        self.pool = workers
        self.max_jobs = max_jobs
        self.keep_seconds = keep_seconds
        self.timeout = timeout
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._by_key: dict[Hashable, str] = {}

    def submit(
        self,
        kind: str,
        version: int,
        key: Hashable,
        body: JobBody,
        *,
        estimated_seconds: float | None = None,
    ) -> Job:
        """The job computing ``key``: the existing one unless it failed, else a new one
        (LIMIT_EXCEEDED when max_jobs are queued or running)."""
        with self._lock:
            self._expire()
            known = self._jobs.get(self._by_key.get(key, ""))
            if known is not None and known.state is not JobState.FAILED:
                return replace(known)
            active = sum(
                j.state in (JobState.QUEUED, JobState.RUNNING) for j in self._jobs.values()
            )
            if active >= self.max_jobs:
                raise LimitExceeded(
                    f"{active} analysis jobs are queued or running, the most this server takes; "
                    "poll the ones you started and try again later"
                )
            job = Job(
                id=secrets.token_hex(8), kind=kind, version=version, key=key,
                estimated_seconds=estimated_seconds, submitted_at=datetime.now(UTC),
            )  # fmt: skip
            self._jobs[job.id] = job
            self._by_key[key] = job.id
            threading.Thread(
                target=self._coordinate, args=(job, body), name=f"cgraph-job-{job.id}", daemon=True
            ).start()
            return replace(job)

    def get(self, job_id: str) -> Job | None:
        """A copy of the job, or None when unknown or expired."""
        with self._lock:
            self._expire()
            job = self._jobs.get(job_id)
            return None if job is None else replace(job)

    def find(self, key: Hashable) -> Job | None:
        """The job computing ``key`` unless there is none or it failed (a copy)."""
        with self._lock:
            self._expire()
            job = self._jobs.get(self._by_key.get(key, ""))
            return replace(job) if job is not None and job.state is not JobState.FAILED else None

    def done(self, key: Hashable) -> Job | None:
        """The finished (DONE) job that computed ``key``, if one is kept."""
        with self._lock:
            job = self._jobs.get(self._by_key.get(key, ""))
            return replace(job) if job is not None and job.state is JobState.DONE else None

    def active(self) -> int:
        with self._lock:
            return sum(j.state in (JobState.QUEUED, JobState.RUNNING) for j in self._jobs.values())

    def _expire(self) -> None:
        now = time.monotonic()
        for job_id, job in list(self._jobs.items()):
            if job._finished_mono is not None and now - job._finished_mono > self.keep_seconds:
                del self._jobs[job_id]
                if self._by_key.get(job.key) == job_id:
                    del self._by_key[job.key]

    def _started(self, job: Job) -> None:
        with self._lock:
            if job.state is JobState.QUEUED:
                job.state, job.started_at = JobState.RUNNING, datetime.now(UTC)

    def _coordinate(self, job: Job, body: JobBody) -> None:
        deadline = Deadline.after(self.timeout)

        def progress(x: float) -> None:
            with self._lock:
                job.progress = max(job.progress, min(1.0, float(x)))

        executor = self.pool.executor("job", on_start=lambda: self._started(job))
        try:
            result = body(deadline, progress, executor)
        except CGraphError as exc:
            self._finish(job, None, exc.code, str(exc))
        except Exception as exc:  # noqa: BLE001 - the job fails, the server goes on
            log.error("analysis job %s failed", job.id, exc_info=exc)
            self._finish(job, None, "INTERNAL", "Unexpected error.")
        else:
            self._finish(job, result, None, None)

    def _finish(self, job: Job, result: Any, code: str | None, message: str | None) -> None:
        with self._lock:
            job.state = JobState.DONE if code is None else JobState.FAILED
            job.started_at = job.started_at or datetime.now(UTC)
            job.finished_at = datetime.now(UTC)
            job._finished_mono = time.monotonic()
            job.result, job.error_code, job.error_message = result, code, message
            if code is None:
                job.progress = 1.0


_manager: JobManager | None = None


def manager() -> JobManager:
    """The process's job manager (made on first use from the environment)."""
    global _manager
    with _pool_lock:
        if _manager is None:
            _manager = JobManager(
                pool(),
                max_jobs=_env_int("CGRAPH_JOB_QUEUE", 8),
                keep_seconds=float(_env_int("CGRAPH_JOB_KEEP", 3600)),
                timeout=float(_env_int("CGRAPH_JOB_TIMEOUT", 21600)),
            )
        return _manager


def set_manager(new: JobManager | None) -> JobManager | None:
    """Replace the process's job manager (tests); returns the previous one."""
    global _manager
    with _pool_lock:
        old, _manager = _manager, new
        return old
