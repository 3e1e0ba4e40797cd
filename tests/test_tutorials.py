"""The tutorials execute top to bottom (each checks its own numbers against the exact posterior)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
_PROBE = "import sys; print('KERNEL-EXECUTABLE', sys.executable)"


def test_tutorials_are_found() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_swap_autonormal.ipynb",
        "02_numpyro.ipynb",
        "04_iterative.ipynb",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_tutorial_executes(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(_PROBE))  # in memory only
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(TUTORIALS)}},
    )
    client.execute()  # raises CellExecutionError (naming the cell) if any cell raises

    # The kernel ran this interpreter (jupyter_client substitutes sys.executable for the
    # kernelspec's bare "python"), so the notebooks were tested against this environment.
    probe = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert "KERNEL-EXECUTABLE" in probe, probe
    kernel_python = probe.split("KERNEL-EXECUTABLE", 1)[1].strip()
    assert os.path.realpath(kernel_python) == os.path.realpath(sys.executable)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
