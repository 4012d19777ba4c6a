"""Where data and cached results live: argument, environment variable, user cache.

One rule for every entry point (library calls, command lines, notebooks, tests): the
``data_dir`` argument (a command's ``--data_dir`` flag), else ``$OPTISCALE_DATA_DIR``, else
the user cache's ``data`` folder (where downloads go). A relative path is resolved against
the current directory at the moment it is read, and every message shows it absolute.
"""

from __future__ import annotations

import os
import pathlib

DATA_DIR_ENV = "OPTISCALE_DATA_DIR"
CACHE_DIR_ENV = "OPTISCALE_CACHE_DIR"


def user_cache_dir() -> pathlib.Path:
    """The per-user cache root: ``$OPTISCALE_CACHE_DIR``, else ``$XDG_CACHE_HOME/optiscale_jax``,
    else ``~/.cache/optiscale_jax``."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return absolute(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = absolute(xdg) if xdg else pathlib.Path.home() / ".cache"
    return base / "optiscale_jax"


def resolve_cache_dir(cache_dir: str | os.PathLike | None, subdir: str) -> pathlib.Path:
    """``cache_dir`` if given, else the user cache root; then ``subdir`` below it."""
    root = absolute(cache_dir) if cache_dir is not None else user_cache_dir()
    return root / subdir


class DataNotFoundError(FileNotFoundError):
    """A data set is in none of the places the data-location rule looks; the message names
    the data set, every place looked in (absolute), the flag / variable and the download
    command."""


def absolute(path: str | os.PathLike) -> pathlib.Path:
    """``path`` with ``~`` expanded, made absolute against the current directory now."""
    return pathlib.Path(os.path.abspath(pathlib.Path(path).expanduser()))


def data_roots(data_dir: str | os.PathLike | None) -> list[pathlib.Path]:
    """Directories to search for data files, in order, absolute.

    ``data_dir`` if given, else ``$OPTISCALE_DATA_DIR`` if set; then always the
    user cache's ``data`` folder (where downloads go).
    """
    roots: list[pathlib.Path] = []
    if data_dir is not None and str(data_dir) != "":
        roots.append(absolute(data_dir))
    elif os.environ.get(DATA_DIR_ENV):
        roots.append(absolute(os.environ[DATA_DIR_ENV]))
    roots.append(absolute(download_dir()))
    return roots


def download_dir() -> pathlib.Path:
    """Where downloaded data sets are stored: ``<user cache>/data``."""
    return user_cache_dir() / "data"


DOWNLOAD_COMMANDS = {
    "mnist": ('python -c "from optiscale_jax.datasets import load_mnist; '
              'load_mnist(download=True)"'),
    "california_housing": ('python -c "from optiscale_jax.datasets import '
                           'load_california_housing; load_california_housing(download=True)"'),
}
_LAYOUT = {
    "mnist": "mnist/ with the IDX files (t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz, "
             "and optionally the train-* pair)",
    "california_housing": "california_housing/cal_housing.data",
}


def not_found_message(name: str, searched: list[pathlib.Path],
                      data_dir: str | os.PathLike | None, notes: list[str] = ()) -> str:
    """The one message for a missing data set (used by the loaders too)."""
    given = (f"data_dir / --data_dir = {data_roots(data_dir)[0]}" if data_dir is not None else
             f"${DATA_DIR_ENV} = {data_roots(None)[0]}" if os.environ.get(DATA_DIR_ENV) else
             f"neither --data_dir nor ${DATA_DIR_ENV} is set")
    lines = [f"data set {name!r} not found ({given}). Looked in:"]
    lines += [f"  {path}" for path in searched]
    lines += [f"  ({note})" for note in notes]
    lines += [f"Fix: pass --data_dir=DIR (data_dir=DIR in Python) or set {DATA_DIR_ENV}=DIR, "
              f"DIR holding {_LAYOUT[name]}; or download it into the user cache with:",
              f"  {DOWNLOAD_COMMANDS[name]}"]
    return "\n".join(lines)
