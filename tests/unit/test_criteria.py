"""CellCriteria.mask against a pandas filter of the same table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.criteria import CellCriteria

CELLS = pd.DataFrame(
    {
        "nucleus_id": [101, 102, 103, 104, 105, 106],
        "cell_type": ["23P", "BC", None, "23P", "MC", "4P"],
        "is_neuron": [True, True, None, False, True, True],
        "classification_system": ["excitatory_neuron", "inhibitory_neuron", None, None,
                                  "inhibitory_neuron", "excitatory_neuron"],
    }
)  # fmt: skip


@pytest.mark.parametrize(
    ("criteria", "query"),
    [
        (CellCriteria(), lambda d: d),
        (CellCriteria.of(cell_type="23P"), lambda d: d[d.cell_type == "23P"]),
        (CellCriteria.of(cell_type=["BC", "MC"]), lambda d: d[d.cell_type.isin(["BC", "MC"])]),
        (CellCriteria.of(is_neuron=True), lambda d: d[d.is_neuron.eq(True)]),
        (CellCriteria.of(classification_system="inhibitory_neuron", nucleus_ids=[102, 103]),
         lambda d: d[(d.classification_system == "inhibitory_neuron") & d.nucleus_id.isin([102, 103])]),
    ],
)  # fmt: skip
def test_mask_equals_pandas(criteria: CellCriteria, query: object) -> None:
    got = criteria.mask(
        CELLS.nucleus_id.to_numpy(np.int64),
        CELLS.cell_type.to_numpy(object),
        CELLS.is_neuron.to_numpy(object),
        CELLS.classification_system.to_numpy(object),
    )
    want = query(CELLS)  # type: ignore[operator]
    assert CELLS.nucleus_id[got].tolist() == want.nucleus_id.tolist()


def test_params_name_every_field_and_a_string_is_one_value() -> None:
    c = CellCriteria.of(cell_type="23P")
    assert c.cell_types == ("23P",) and not c.empty and CellCriteria().empty
    assert c.params("p_") == {"p_cell_types": ["23P"], "p_is_neuron": None, "p_systems": None,
                              "p_nucleus_ids": None}  # fmt: skip
