"""The notebooks: jupytext percent scripts (notebooks/*.py) with .ipynb pairs for Colab.

Fast: each stored .ipynb equals what jupytext makes of its .py (cells and notebook
metadata; `jupytext --sync notebooks/*.py` rewrites them), is stored without outputs,
and opens with a first cell that says what it shows and how long it takes.

Slow: each notebook, read from its .py, runs top to bottom in a real Jupyter kernel
(nbclient, "python3" kernel from ipykernel) in small-size mode (``OPTISCALE_NOTEBOOK_SMALL=1``),
started the way Jupyter starts it: in notebooks/, with ``OPTISCALE_DATA_DIR`` given as a
path relative to that folder. A cell that raises fails the test (the notebooks also assert
their own cross-checks: estimator vs transform vs hand-written loop, NumPy vs JAX, vmapped
lane vs nnx.Optimizer, every parallel strategy vs one device). Outputs go to a temporary
``OPTISCALE_NOTEBOOK_OUTPUT_DIR``; the figures each notebook saves there and the PNGs it
shows are decoded and checked to be real pictures (also copied to
``OPTISCALE_NOTEBOOK_PNG_DIR`` when set, for a person to look at).
"""

from __future__ import annotations

import base64
import io
import os
import pathlib
import re
import time

import jupytext
import matplotlib.image
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = ("quickstart", "flax_models", "colab_tpu_scaling")
# Figures each notebook saves (the scaling notebook's benchmark report adds its own PNGs).
SAVED_FIGURES = {"quickstart": {"suboptimality.png", "backends.png"},
                 "flax_models": {"optimizers.png", "sweep.png"},
                 "colab_tpu_scaling": {"strong_scaling.png"}}
MIN_SHOWN_PNGS = {"quickstart": 2, "flax_models": 2, "colab_tpu_scaling": 2}
CELL_TIMEOUT_S = 240
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"

_executions: dict[str, tuple[nbformat.NotebookNode, float]] = {}


def stored(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)


def from_script(name: str) -> nbformat.NotebookNode:
    """What `jupytext --to ipynb notebooks/<name>.py` writes."""
    return jupytext.read(NOTEBOOK_DIR / f"{name}.py")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_ipynb_pair_is_in_sync_with_its_percent_script(name):
    ipynb, script = stored(name), from_script(name)
    assert [(c.cell_type, c.source) for c in ipynb.cells] == \
        [(c.cell_type, c.source) for c in script.cells], \
        f"notebooks/{name}.ipynb differs from {name}.py: run jupytext --sync notebooks/{name}.py"
    for key in ("kernelspec", "language_info", "colab", "accelerator"):
        assert ipynb.metadata.get(key) == script.metadata.get(key), key
    assert ipynb.metadata["jupytext"]["formats"] == "ipynb,py:percent"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_first_cell_says_what_it_shows_and_how_long_it_takes(name):
    first = from_script(name).cells[0]
    assert first.cell_type == "markdown"
    assert "**What it shows.**" in first.source
    how_long = first.source.split("**How long it takes.**", 1)
    assert len(how_long) == 2, "no 'How long it takes' paragraph"
    assert re.search(r"\d+(\.\d+)?\s+(seconds|minutes)", how_long[1]), how_long[1][:200]
    assert "notebooks/outputs/" in first.source and "OPTISCALE_DATA_DIR" in first.source
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


# --- executed in a real kernel ----------------------------------------------------------------
@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory, data_dir):
    """Small sizes, inline plots, data given relative to notebooks/, outputs in tmp."""
    output_dir = tmp_path_factory.mktemp("notebook_outputs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPTISCALE_NOTEBOOK_SMALL", "1")
        patch.setenv("OPTISCALE_NOTEBOOK_OUTPUT_DIR", str(output_dir))
        patch.setenv("OPTISCALE_DATA_DIR", os.path.relpath(data_dir.resolve(), NOTEBOOK_DIR))
        patch.setenv("MPLBACKEND", INLINE_BACKEND)  # conftest's Agg would swallow plt.show()
        # The scaling notebook must ask for its own virtual CPU devices (its first cell).
        patch.delenv("XLA_FLAGS", raising=False)
        yield output_dir


def execute(name: str) -> tuple[nbformat.NotebookNode, float]:
    """The notebook (from its .py) executed once per session in notebooks/, and its wall time."""
    if name not in _executions:
        nb = from_script(name)
        client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
        start = time.perf_counter()
        client.execute()  # raises CellExecutionError on the first failing cell
        _executions[name] = (nb, time.perf_counter() - start)
    return _executions[name]


def png_outputs(nb: nbformat.NotebookNode) -> list[bytes]:
    return [base64.b64decode(output["data"]["image/png"])
            for cell in nb.cells if cell.cell_type == "code"
            for output in cell.get("outputs", [])
            if "image/png" in output.get("data", {})]


def text_of(cells: list[nbformat.NotebookNode]) -> str:
    return "".join(output.get("text", "") for cell in cells for output in cell.get("outputs", []))


def assert_real_picture(data: bytes, label: str) -> None:
    image = matplotlib.image.imread(io.BytesIO(data), format="png")
    height, width = image.shape[:2]
    assert height >= 200 and width >= 300, (label, image.shape)
    rgb = image[..., :3]
    # A plot has ink: a fair share of non-background pixels and several distinct colours.
    background = np.all(rgb > 0.97, axis=-1)
    assert 0.01 < 1.0 - background.mean() < 0.9, (label, background.mean())
    assert len(np.unique((rgb * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 20, label


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_to_the_end_in_small_mode(name, kernel_env):
    nb, seconds = execute(name)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code_cells), "a cell was not executed"
    errors = [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    printed = text_of(code_cells)
    assert "small-size mode: True" in text_of(code_cells[:1]), text_of(code_cells[:1])
    # The relative data path is named with the folder it was read against, then made absolute.
    assert f"is relative: read against the working directory {NOTEBOOK_DIR}" in printed
    assert f"data: {(NOTEBOOK_DIR / os.environ['OPTISCALE_DATA_DIR']).resolve()}" in printed
    if name == "colab_tpu_scaling":
        assert "8 local device(s)" in printed
    print(f"{name}: {seconds:.1f} s")


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_plots_are_shown_and_saved_in_the_output_folder(name, kernel_env):
    nb, _ = execute(name)
    shown = png_outputs(nb)
    assert len(shown) >= MIN_SHOWN_PNGS[name], f"{name} showed {len(shown)} PNG(s)"
    folder = kernel_env / name
    saved = {path.name: path.read_bytes() for path in folder.glob("*.png")}
    assert SAVED_FIGURES[name] <= set(saved), sorted(saved)
    pictures = {f"shown_{i}.png": data for i, data in enumerate(shown)} | saved
    copy_to = os.environ.get("OPTISCALE_NOTEBOOK_PNG_DIR")
    for label, data in pictures.items():
        assert_real_picture(data, f"{name}/{label}")
        if copy_to:
            pathlib.Path(copy_to, name).mkdir(parents=True, exist_ok=True)
            pathlib.Path(copy_to, name, label).write_bytes(data)
    # Nothing was written next to the notebooks (outputs go to OPTISCALE_NOTEBOOK_OUTPUT_DIR).
    written = [p for p in (NOTEBOOK_DIR / "outputs" / name).rglob("*") if p.stat().st_mtime >= START]
    assert not written, written


START = time.time()


def test_the_percent_scripts_are_the_only_source():
    assert not (NOTEBOOK_DIR / "build_notebooks.py").exists(), "the string-building generator is back"
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("*.py")) == sorted(NOTEBOOKS)
