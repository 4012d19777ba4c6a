"""What every ``optiscale-*`` command line shares: absl app start-up, help, errors, cache.

A binary defines its flags with ``absl.flags`` and hands its ``main`` to
:func:`run_app`::

    from absl import flags
    from optiscale_jax.cli import _common

    _N = flags.DEFINE_integer("n", 3, "How many.")

    def main(argv: list[str]) -> int:
        _common.reject_positional(argv)
        counts = _common.parse_int_list(FLAGS.device_counts, "device_counts", minimum=1)
        ...
        return 0

    def run() -> None:            # the console-script entry point
        _common.run_app(main, doc=__doc__)

API:

* :func:`run_app(main, doc=..., argv=None)` runs an absl app with:
  ``-h`` / ``--help`` / ``--helpshort`` (the binary's own flags and the
  shared ones below, after ``doc``) and ``--helpfull`` (every flag) printed
  to stdout with exit code 0; the "Unable to initialize backend ..." INFO log
  line that JAX writes when probing platforms that are not installed (libtpu,
  CUDA plugins) dropped, so a healthy CPU run has a clean stderr (a platform
  the user asks for with ``JAX_PLATFORMS`` still fails loudly, as JAX raises
  then); JAX's persistent compilation cache switched on (see below);
  :class:`UsageError` (and its subclasses) raised anywhere in ``main``
  printed as one line ``<program>: error: <message>`` on stderr with exit
  code 2, and an ``OSError`` (a read-only folder, a full disk) as one line
  with exit code 1 (the full traceback only with ``--verbose``); Ctrl-C
  printed as one line with exit code 130.
* Shared flags, defined once here: ``--verbose`` (tracebacks for clear
  errors) and ``--compilation_cache_dir`` (default
  :func:`default_compilation_cache_dir`; empty string turns the cache off);
  :func:`define_data_dir` defines ``--data_dir`` for binaries that read the
  real data sets (idempotent, so several binaries' modules can be imported in
  one process, e.g. by tests).
* :class:`UsageError`: a ``ValueError`` for bad input found at validation,
  whose message names the bad value and the fix.
* :func:`reject_positional(argv)`: UsageError for positional arguments.
* :func:`parse_int_list(text, flag, minimum=...)`, :func:`parse_float_list`,
  :func:`parse_str_list`: comma-separated flag values (``"1,2,4"``) to
  lists, with a UsageError naming the flag and the bad item
  (``--device_counts=1,x``).
* :func:`check_int(value, flag, minimum=..., maximum=...)`: one integer-range
  check for flags (``--seed >= 0``, ``--repeats >= 1``).
* :func:`check_writable_file(path, flag)`: an output file's path, checked
  before any work (not a folder, its folder writable).
* :func:`configure_compilation_cache(path)` and
  :func:`default_compilation_cache_dir` (``$OPTISCALE_CACHE_DIR/jax_compilation``,
  else ``$XDG_CACHE_HOME/optiscale_jax/jax_compilation``, else
  ``~/.cache/optiscale_jax/jax_compilation``). Every compiled program is
  cached (no minimum compile time), so a second run of the same command
  loads its programs instead of compiling them.
* :class:`EtaPrinter` (re-exported from ``optiscale_jax.benchmark.progress``):
  ``[k/N] text | elapsed | ETA`` lines for any long loop.
"""

from __future__ import annotations

import logging
import os
import pathlib
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import jax
from absl import app, flags

from optiscale_jax.benchmark import checks
from optiscale_jax.benchmark.progress import EtaPrinter, format_duration
from optiscale_jax.datasets import user_cache_dir

__all__ = [
    "EtaPrinter",
    "UsageError",
    "check_int",
    "check_writable_file",
    "configure_compilation_cache",
    "define_data_dir",
    "default_compilation_cache_dir",
    "format_duration",
    "parse_float_list",
    "parse_int_list",
    "parse_str_list",
    "quiet_platform_probe_logs",
    "reject_positional",
    "run_app",
]

FLAGS = flags.FLAGS
HELP_ARGS = ("-h", "--help", "-help", "--helpshort", "-helpshort")
HELPFULL_ARGS = ("--helpfull", "-helpfull")
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_VERBOSE = flags.DEFINE_bool("verbose", False,
                             "Print the full traceback of errors that otherwise take one line.")
_CACHE_DIR = flags.DEFINE_string(
    "compilation_cache_dir", None,
    "Folder of JAX's persistent compilation cache (a second run loads its compiled programs "
    "from there). Default: $OPTISCALE_CACHE_DIR/jax_compilation, else "
    "$XDG_CACHE_HOME/optiscale_jax/jax_compilation, else ~/.cache/optiscale_jax/"
    "jax_compilation. An empty value turns the cache off.")


def define_data_dir() -> None:
    """Defines ``--data_dir`` once for every binary that reads MNIST / California Housing."""
    if "data_dir" not in FLAGS:
        flags.DEFINE_string(
            "data_dir", None, "Folder holding mnist/ and california_housing/. Default: "
            "$OPTISCALE_DATA_DIR, then the user cache (a relative path is taken from the "
            "current folder; messages show it absolute).")


class UsageError(ValueError):
    """Bad input found at validation: printed as one line naming the value and the fix."""


# ----------------------------------------------------------------------------- parsing
def reject_positional(argv: Sequence[str]) -> None:
    """UsageError when the command line holds positional arguments (absl leaves them)."""
    if len(argv) > 1:
        raise UsageError(f"unexpected argument(s) {' '.join(argv[1:])!r}: every option is a "
                         "--flag=value (see --help)")


def parse_str_list(text: str | Sequence[str] | None, flag: str) -> list[str]:
    """``"a, b,c"`` (or an absl list) -> ``["a", "b", "c"]``; UsageError when empty."""
    items = text.split(",") if isinstance(text, str) else list(text or [])
    items = [str(item).strip() for item in items if str(item).strip()]
    if not items:
        raise UsageError(f"--{flag} is empty; give a comma-separated list, e.g. --{flag}=a,b")
    return items


def _parse_numbers(text: Any, flag: str, kind: type, example: str) -> list:
    values = []
    for item in parse_str_list(text, flag):
        try:
            values.append(kind(item))
        except ValueError:
            raise UsageError(f"--{flag}: {item!r} is not a{'n integer' if kind is int else ' number'}; "
                             f"give a comma-separated list such as --{flag}={example}") from None
    return values


def check_int(value: Any, flag: str, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """The one integer-range check (``optiscale_jax.benchmark.checks.check_int``) for a
    flag: UsageError naming ``--flag``, the value and the allowed range."""
    try:
        return checks.check_int(value, f"--{flag}", minimum=minimum, maximum=maximum)
    except ValueError as err:
        raise UsageError(str(err)) from None


def parse_int_list(text: Any, flag: str, *, minimum: int | None = None,
                   maximum: int | None = None) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]``, each checked by :func:`check_int`."""
    return [check_int(v, flag, minimum=minimum, maximum=maximum)
            for v in _parse_numbers(text, flag, int, "1,2,4")]


def parse_float_list(text: Any, flag: str) -> list[float]:
    """``"1e-3,0.01"`` -> ``[0.001, 0.01]``; UsageError naming a non-numeric item."""
    return _parse_numbers(text, flag, float, "1e-3,1e-2")


def check_writable_file(path: str | os.PathLike, flag: str) -> pathlib.Path:
    """The absolute path of an output file, checked before any work: UsageError when it is
    a folder or its folder cannot be created or written."""
    target = pathlib.Path(path).expanduser().resolve()
    if target.is_dir():
        raise UsageError(f"--{flag}={target} is a folder; give a file path")
    existing = target.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--{flag}={target}: {existing} is not a writable folder")
    return target


# ----------------------------------------------------------------------------- runtime
def default_compilation_cache_dir() -> pathlib.Path:
    """Where the compilation cache lives unless ``--compilation_cache_dir`` says otherwise:
    ``jax_compilation`` in the user cache (``optiscale_jax.datasets.user_cache_dir``)."""
    return (user_cache_dir() / "jax_compilation").expanduser().resolve()


def configure_compilation_cache(path: str | os.PathLike | None) -> pathlib.Path | None:
    """Points JAX's persistent compilation cache at ``path`` (None: the default folder;
    ``""``: off) and caches every program whatever its compile time or size. Returns
    the folder in use, or None when off."""
    if path is not None and str(path) == "":
        jax.config.update("jax_compilation_cache_dir", None)
        return None
    folder = pathlib.Path(path).expanduser().resolve() if path else default_compilation_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--compilation_cache_dir={folder} cannot be created ({err}); give a "
                         "writable folder or --compilation_cache_dir= (empty) to turn it off"
                         ) from err
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


class _DropPlatformProbeFailures(logging.Filter):
    """Drops JAX's INFO record for an optional platform that is not installed."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.INFO
                    and str(record.msg).startswith("Unable to initialize backend"))


_PROBE_FILTER = _DropPlatformProbeFailures()


def quiet_platform_probe_logs() -> None:
    """Installs the filter on JAX's platform logger (idempotent)."""
    logger = logging.getLogger("jax._src.xla_bridge")
    if _PROBE_FILTER not in logger.filters:
        logger.addFilter(_PROBE_FILTER)


# ----------------------------------------------------------------------------- app
def _print_help(doc: str | None, full: bool, main_module: str | None) -> NoReturn:
    FLAGS.mark_as_parsed()
    parts = [(doc or "").strip(), ""]
    if full:
        parts.append(FLAGS.get_help())
    else:
        modules = [m for m in (main_module, __name__) if m]
        for module in modules:
            text = FLAGS.module_help(module)
            if text.strip():
                parts.append(text)
        parts.append("\n(--helpfull lists every flag, absl's included.)")
    print("\n".join(parts), flush=True)
    sys.exit(0)


def _program(argv: Sequence[str]) -> str:
    name = pathlib.Path(argv[0]).name if argv and argv[0] else ""
    return "optiscale" if name in ("", "__main__.py") else name


def _wrap(main: Callable[[list[str]], int | None], program: str
          ) -> Callable[[list[str]], int | None]:
    def wrapped(argv: list[str]) -> int | None:
        quiet_platform_probe_logs()
        try:
            configure_compilation_cache(_CACHE_DIR.value)
            return main(argv)
        except UsageError as err:
            if _VERBOSE.value:
                traceback.print_exc()
            print(f"{program}: error: {err}", file=sys.stderr, flush=True)
            sys.exit(EXIT_USAGE)
        except OSError as err:  # a read-only folder, a full disk: the system's own words
            if _VERBOSE.value:
                traceback.print_exc()
            print(f"{program}: error: {err}", file=sys.stderr, flush=True)
            sys.exit(EXIT_FAILURE)
        except KeyboardInterrupt:
            print(f"{program}: interrupted (Ctrl-C); partial results written so far are kept",
                  file=sys.stderr, flush=True)
            sys.exit(EXIT_INTERRUPTED)
    return wrapped


def run_app(main: Callable[[list[str]], int | None], *, doc: str | None = None,
            argv: Sequence[str] | None = None, main_module: str | None = None,
            program: str | None = None) -> NoReturn:
    """Runs ``main`` as an absl app with this module's conventions (module docstring).

    Args:
      main: ``main(argv) -> exit code or None``, argv holding the positional arguments.
      doc: the text printed above the flags by ``--help`` (the binary's docstring).
      argv: the command line (default ``sys.argv``).
      main_module: the module that defines the binary's flags (``--help`` lists them;
        default: ``main``'s module).
      program: the name error lines start with (default: from ``argv[0]``).
    """
    argv = list(sys.argv if argv is None else argv)
    quiet_platform_probe_logs()
    module = main_module or getattr(main, "__module__", None)
    if any(arg in HELPFULL_ARGS for arg in argv[1:]):
        _print_help(doc, True, module)
    if any(arg in HELP_ARGS for arg in argv[1:]):
        _print_help(doc, False, module)
    app.run(_wrap(main, program or _program(argv)), argv=argv)
    raise AssertionError("absl's app.run returned")  # pragma: no cover (it always exits)
