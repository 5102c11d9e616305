"""Time budgets for in-memory work: the in-process twin of a Neo4j transaction timeout.

Long computations call :meth:`Deadline.check` between steps (a join step, a chunk of rows, a
null-model sample) and end in :class:`~core.errors.QueryTimeout`, never in a partial answer.
``time.monotonic`` is system-wide on Linux, so a deadline also holds in worker processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from core.errors import QueryTimeout


@dataclass(frozen=True)
class Deadline:
    """Ends at monotonic time ``at``; ``seconds`` is the budget it was made from."""

    seconds: float
    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(seconds, time.monotonic() + seconds)

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def check(self) -> None:
        """Raise QueryTimeout once the budget is spent."""
        if time.monotonic() > self.at:
            raise QueryTimeout(self.seconds)


def check(deadline: Deadline | None) -> None:
    """:meth:`Deadline.check` when there is a deadline."""
    if deadline is not None:
        deadline.check()
