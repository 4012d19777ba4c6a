"""Where data and cached results live: argument, environment variable, user cache."""

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
        return pathlib.Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = pathlib.Path(xdg).expanduser() if xdg else pathlib.Path.home() / ".cache"
    return base / "optiscale_jax"


def resolve_cache_dir(cache_dir: str | os.PathLike | None, subdir: str) -> pathlib.Path:
    """``cache_dir`` if given, else the user cache root; then ``subdir`` below it."""
    root = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else user_cache_dir()
    return root / subdir


def data_roots(data_dir: str | os.PathLike | None) -> list[pathlib.Path]:
    """Directories to search for data files, in order.

    ``data_dir`` if given, else ``$OPTISCALE_DATA_DIR`` if set; then always the
    user cache's ``data`` folder (where downloads go).
    """
    roots: list[pathlib.Path] = []
    if data_dir is not None:
        roots.append(pathlib.Path(data_dir).expanduser())
    elif os.environ.get(DATA_DIR_ENV):
        roots.append(pathlib.Path(os.environ[DATA_DIR_ENV]).expanduser())
    roots.append(download_dir())
    return roots


def download_dir() -> pathlib.Path:
    """Where downloaded data sets are stored: ``<user cache>/data``."""
    return user_cache_dir() / "data"
