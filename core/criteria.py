"""One criteria object for every cell query (neuPrint's ``NeuronCriteria`` is the model):
the cells of a page, the partners of a cell, the cells a census keeps.

    CellCriteria(cell_types=("23P", "4P"), is_neuron=True)

Every field left ``None`` does not filter. Graph reads turn it into ``$parameters``
(graph.queries); in-memory analysis applies :meth:`CellCriteria.mask` to arrays.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt


def _tuple(values: Iterable[Any] | None) -> tuple[Any, ...] | None:
    return None if values is None else tuple(values)


@dataclass(frozen=True)
class CellCriteria:
    """Which cells: by cell type (any of), neuron or not, classification system (any of),
    nucleus ID (any of)."""

    cell_types: tuple[str, ...] | None = None
    is_neuron: bool | None = None
    classification_systems: tuple[str, ...] | None = None
    nucleus_ids: tuple[int, ...] | None = None

    @classmethod
    def of(
        cls,
        *,
        cell_type: str | Iterable[str] | None = None,
        is_neuron: bool | None = None,
        classification_system: str | Iterable[str] | None = None,
        nucleus_ids: Iterable[int] | None = None,
    ) -> CellCriteria:
        """From single values or iterables (a string is one value)."""

        def many(v: str | Iterable[str] | None) -> tuple[str, ...] | None:
            return (v,) if isinstance(v, str) else _tuple(v)

        return cls(many(cell_type), is_neuron, many(classification_system),
                   None if nucleus_ids is None else tuple(int(i) for i in nucleus_ids))  # fmt: skip

    @property
    def empty(self) -> bool:
        return all(v is None for v in (self.cell_types, self.is_neuron,
                                        self.classification_systems, self.nucleus_ids))  # fmt: skip

    def params(self, prefix: str = "") -> dict[str, Any]:
        """Query parameters, one per field (None: no filter)."""
        return {
            f"{prefix}cell_types": None if self.cell_types is None else list(self.cell_types),
            f"{prefix}is_neuron": self.is_neuron,
            f"{prefix}systems": None
            if self.classification_systems is None
            else list(self.classification_systems),
            f"{prefix}nucleus_ids": None if self.nucleus_ids is None else list(self.nucleus_ids),
        }

    def mask(
        self,
        nucleus_ids: npt.NDArray[np.int64],
        cell_type: npt.NDArray[np.object_] | None,
        is_neuron: npt.NDArray[np.object_] | None,
        classification_system: npt.NDArray[np.object_] | None,
    ) -> npt.NDArray[np.bool_]:
        """Which of these cells match (attribute arrays None: nothing known, so no match for a
        filter on it)."""
        n = nucleus_ids.shape[0]
        keep = np.ones(n, dtype=bool)

        def isin(values: npt.NDArray[np.object_] | None, wanted: tuple[Any, ...]) -> Any:
            if values is None:
                return np.zeros(n, dtype=bool)
            allowed = set(wanted)
            return np.fromiter((v in allowed for v in values), dtype=bool, count=n)

        if self.cell_types is not None:
            keep &= isin(cell_type, self.cell_types)
        if self.is_neuron is not None:
            keep &= isin(is_neuron, (self.is_neuron,))
        if self.classification_systems is not None:
            keep &= isin(classification_system, self.classification_systems)
        if self.nucleus_ids is not None:
            keep &= np.isin(nucleus_ids, np.asarray(self.nucleus_ids, dtype=np.int64))
        return keep
