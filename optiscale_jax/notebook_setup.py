"""The set-up cells that every notebook shares: where the data is, where the figures go.

Notebooks run from the repository root, from ``notebooks/`` (Jupyter starts the kernel in the
notebook's folder), as plain ``python notebooks/<name>.py`` scripts, or on Colab; these two
helpers make them read the same data folder and write their figures to the same git-ignored
place in every case::

    from optiscale_jax.notebook_setup import FigureSaver, announce_data_dir
    announce_data_dir()                          # prints the absolute folder it will read
    show = FigureSaver("quickstart", here=...)   # show(fig, "curves") saves, then shows
"""

from __future__ import annotations

import os
import pathlib

import matplotlib.pyplot as plt

__all__ = ["DATA_VARIABLE", "OUTPUT_VARIABLE", "FigureSaver", "announce_data_dir"]

DATA_VARIABLE = "OPTISCALE_DATA_DIR"
OUTPUT_VARIABLE = "OPTISCALE_NOTEBOOK_OUTPUT_DIR"


def announce_data_dir() -> pathlib.Path | None:
    """Make ``$OPTISCALE_DATA_DIR`` absolute once and say which folder the loaders will read.

    A relative value is read against the current working directory, and the message says
    which one that is (a kernel started in ``notebooks/`` reads ``../shared/data`` from there).

    Returns:
      The absolute data folder, or None when the variable is unset (the loaders then look in
      the user cache).

    Raises:
      FileNotFoundError: the variable names something that is not a folder; the message gives
        the value, the absolute path it became and the fix.
    """
    given = os.environ.get(DATA_VARIABLE, "")
    if not given:
        print(f"data: {DATA_VARIABLE} is not set: the loaders look in the user cache")
        return None
    path = pathlib.Path(given).expanduser()
    if not path.is_absolute():
        print(f"{DATA_VARIABLE}={given!r} is relative: read against the working "
              f"directory {pathlib.Path.cwd()}")
    path = path.resolve()
    if not path.is_dir():
        raise FileNotFoundError(
            f"{DATA_VARIABLE}={given!r} is {path}, which is not a folder; set it to the folder "
            "holding mnist/ and california_housing/ (an absolute path reads the same from every "
            "directory)")
    os.environ[DATA_VARIABLE] = str(path)
    print(f"data: {path}")
    return path


class FigureSaver:
    """``saver(fig, name)`` saves ``fig`` as ``<output>/<notebook>/<name>.png``, then shows it.

    The output folder is ``$OPTISCALE_NOTEBOOK_OUTPUT_DIR`` if set, else ``here/outputs``
    (``notebooks/outputs/``, git-ignored). Under a non-interactive backend (a script without
    a display) the figure is closed instead of shown.

    Args:
      notebook: the notebook's name (a sub-folder of the output folder).
      here: the notebook's folder (the script's when run by ``python``, else the kernel's
        working directory).
      dpi: resolution of the saved PNG.
    """

    def __init__(self, notebook: str, here: pathlib.Path, dpi: int = 100):
        base = pathlib.Path(os.environ.get(OUTPUT_VARIABLE) or pathlib.Path(here) / "outputs")
        self.output_dir = base.expanduser().resolve() / notebook
        self.dpi = dpi

    def __call__(self, fig: plt.Figure, name: str) -> pathlib.Path:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / f"{name}.png"
        fig.savefig(path, dpi=self.dpi)
        print(f"figure saved: {path}")
        if plt.get_backend().lower() == "agg":
            plt.close(fig)
        else:
            plt.show()
        return path
