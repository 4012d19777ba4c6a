"""The notebooks in notebooks/ run top to bottom in a real Jupyter kernel, in small-size mode.

Each notebook is executed once per test session with nbclient and the
"python3" kernel (ipykernel), with ``OPTISCALE_NOTEBOOK_SMALL=1`` and this
session's ``OPTISCALE_DATA_DIR`` / ``OPTISCALE_CACHE_DIR`` passed through. A
cell that raises fails the test (the notebooks also assert their own
cross-checks: estimator vs transform vs hand-written loop, NumPy vs JAX,
vmapped lane vs nnx.Optimizer, every parallel strategy vs one device). The
PNG outputs are decoded, checked to be real pictures and written to the
session's temporary folder; with ``OPTISCALE_NOTEBOOK_PNG_DIR`` set also
there, for a person to look at.
"""

from __future__ import annotations

import base64
import io
import os
import pathlib
import re
import time

import matplotlib.image
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = ("quickstart.ipynb", "flax_models.ipynb", "colab_tpu_scaling.ipynb")
# Least number of plots each notebook draws (figures, plus the report's PNGs for the last one).
MIN_PNGS = {"quickstart.ipynb": 2, "flax_models.ipynb": 2, "colab_tpu_scaling.ipynb": 2}
CELL_TIMEOUT_S = 240
TOTAL_BUDGET_S = 300  # the limit for the three notebooks together
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"

_executions: dict[str, tuple[nbformat.NotebookNode, float]] = {}


def stored(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """Environment of the kernels: small sizes, inline plots, the repo importable, outputs in tmp."""
    output_dir = tmp_path_factory.mktemp("notebook_outputs")
    python_path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPTISCALE_NOTEBOOK_SMALL", "1")
        patch.setenv("OPTISCALE_NOTEBOOK_OUTPUT_DIR", str(output_dir))
        patch.setenv("MPLBACKEND", INLINE_BACKEND)  # conftest's Agg would swallow plt.show()
        patch.setenv("PYTHONPATH", python_path)
        # The scaling notebook must ask for its own virtual CPU devices (its first cell).
        patch.delenv("XLA_FLAGS", raising=False)
        yield output_dir


def execute(name: str, working_dir: pathlib.Path) -> tuple[nbformat.NotebookNode, float]:
    """The notebook executed (once per session) and its wall time in seconds."""
    if name not in _executions:
        nb = stored(name)
        client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                resources={"metadata": {"path": str(working_dir)}})
        start = time.perf_counter()
        client.execute()  # raises CellExecutionError on the first failing cell
        _executions[name] = (nb, time.perf_counter() - start)
    return _executions[name]


def png_outputs(nb: nbformat.NotebookNode) -> list[bytes]:
    return [base64.b64decode(output["data"]["image/png"])
            for cell in nb.cells if cell.cell_type == "code"
            for output in cell.get("outputs", [])
            if "image/png" in output.get("data", {})]


def text_of(cell: nbformat.NotebookNode) -> str:
    return "".join(output.get("text", "") for output in cell.get("outputs", []))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_to_the_end_in_small_mode(name, kernel_env):
    nb, seconds = execute(name, kernel_env)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code_cells), "a cell was not executed"
    errors = [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    assert "small-size mode: True" in text_of(code_cells[0]), text_of(code_cells[0])
    if name == "colab_tpu_scaling.ipynb":
        assert "8 local device(s)" in "".join(text_of(c) for c in code_cells)
    print(f"{name}: {seconds:.1f} s")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_plots_render_as_real_pictures(name, kernel_env):
    nb, _ = execute(name, kernel_env)
    pngs = png_outputs(nb)
    assert len(pngs) >= MIN_PNGS[name], f"{name} drew {len(pngs)} PNG(s)"
    # Always written under the session's temporary folder; also where a person asked for them.
    folders = [kernel_env / "png"] + ([pathlib.Path(os.environ["OPTISCALE_NOTEBOOK_PNG_DIR"])]
                                      if os.environ.get("OPTISCALE_NOTEBOOK_PNG_DIR") else [])
    for index, data in enumerate(pngs):
        image = matplotlib.image.imread(io.BytesIO(data), format="png")
        height, width = image.shape[:2]
        assert height >= 200 and width >= 300, (name, index, image.shape)
        rgb = image[..., :3]
        # A plot has ink: a fair share of non-background pixels and several distinct colours.
        background = np.all(rgb > 0.97, axis=-1)
        assert 0.01 < 1.0 - background.mean() < 0.9, (name, index, background.mean())
        assert len(np.unique((rgb * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 20
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{pathlib.Path(name).stem}_{index}.png").write_bytes(data)


def test_the_three_notebooks_fit_the_time_budget(kernel_env):
    seconds = {name: execute(name, kernel_env)[1] for name in NOTEBOOKS}
    print(", ".join(f"{name} {s:.1f} s" for name, s in seconds.items()))
    assert sum(seconds.values()) < TOTAL_BUDGET_S, seconds


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_first_cell_says_what_it_shows_and_how_long_it_takes(name):
    first = stored(name).cells[0]
    assert first.cell_type == "markdown"
    assert "**What it shows.**" in first.source
    how_long = first.source.split("**How long it takes.**", 1)
    assert len(how_long) == 2, "no 'How long it takes' paragraph"
    assert re.search(r"\d+(\.\d+)?\s+(seconds|minutes)", how_long[1]), how_long[1][:200]
    # Markdown renders a line indented by 4 spaces as code: the prose must not be indented.
    assert not [line for line in first.source.splitlines() if line.startswith("    ")]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stored_without_outputs_with_a_small_mode_parameter_cell(name):
    nb = stored(name)
    nbformat.validate(nb)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code_cells)
    assert 'os.environ.get("OPTISCALE_NOTEBOOK_SMALL"' in code_cells[0].source
    assert nb.metadata.kernelspec.name == "python3"


def test_stored_notebooks_equal_their_build_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_notebooks", NOTEBOOK_DIR / "build_notebooks.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    assert builder.main(["--check"]) == 0, "run python notebooks/build_notebooks.py"
