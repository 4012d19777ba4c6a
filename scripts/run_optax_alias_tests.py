"""Run optax's own `alias_test.py` with our optimizers in place of optax's.

    python scripts/run_optax_alias_tests.py [--keep] [-- extra pytest arguments]

Copies the installed optax's `optax/_src/alias_test.py` into a fresh temporary
directory outside the repository, keeps its table of optimizers to the aliases we
replace (sgd, adam, adamw, nadam, nadamw, rmsprop, adagrad, plus an sgd entry with
Nesterov momentum at learning rate 5e-4), and writes a `conftest.py` there that substitutes
`optiscale_jax.optimizers`' factories for those aliases (in `optax._src.alias`, which
the tests call, and in `optax`). It then runs the file's `AliasTest` cases with
pytest in that directory and prints the pass / fail / skip counts.
Exit status: 0 when nothing failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import optax

SUBSTITUTED = ("sgd", "adam", "adamw", "nadam", "nadamw", "rmsprop", "adagrad")
REQUIRED_MODULES = ("absl", "scipy", "sklearn", "pytest")

CONFTEST = '''"""Substitute optiscale_jax's optimizers for optax's aliases.

Written by optiscale_jax's scripts/run_optax_alias_tests.py.
"""
import functools

import optax
import pytest
from optax._src import alias

from optiscale_jax import optimizers

OURS = {
    "sgd": optimizers.sgd,
    "adam": optimizers.adam,
    "adamw": optimizers.adamw,
    "nadam": optimizers.nadam,
    "nadamw": functools.partial(optimizers.adamw, nesterov=True),
    "rmsprop": optimizers.rmsprop,
    "adagrad": optimizers.adagrad,
}
for _name, _factory in OURS.items():
    setattr(alias, _name, _factory)
    setattr(optax, _name, _factory)


@pytest.fixture(autouse=True)
def _ours_in_place():
    """Every test runs with our factories substituted (fails loudly otherwise)."""
    assert all(getattr(alias, name) is factory for name, factory in OURS.items())
'''

TABLE_FILTER = '''
# run_optax_alias_tests.py: only the aliases optiscale_jax substitutes, plus Nesterov SGD
# (at 5e-4: at 1e-3 it sits at its stability edge on complex Rosenbrock, optax's own too).
_OPTIMIZERS_UNDER_TEST = tuple(
    entry for entry in _OPTIMIZERS_UNDER_TEST if entry['opt_name'] in {names!r}
) + ({{'opt_name': 'sgd', 'opt_kwargs': {{'learning_rate': 5e-4, 'momentum': 0.9, 'nesterov': True}}}},)

'''


def missing_modules() -> list[str]:
    """The modules optax's test file needs that are not installed."""
    return [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]


def prepare(directory: Path) -> Path:
    """Copy optax's alias_test.py into `directory` with the table filtered; write the conftest."""
    source = Path(optax.__file__).parent / "_src" / "alias_test.py"
    text = source.read_text(encoding="utf-8")
    anchor = re.search(r"^def _get_opt\(", text, flags=re.MULTILINE)
    if anchor is None:
        raise RuntimeError(f"{source}: no `def _get_opt(` to insert the table filter before; "
                           "this optax version's test file has another layout.")
    filtered = text[:anchor.start()] + TABLE_FILTER.format(names=set(SUBSTITUTED)) + text[anchor.start():]
    target = directory / "alias_test.py"
    target.write_text(filtered, encoding="utf-8")
    (directory / "conftest.py").write_text(CONFTEST, encoding="utf-8")
    (directory / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    return target


def counts(report: Path) -> dict[str, int]:
    """passed / failed / errors / skipped from pytest's JUnit XML report."""
    suite = ElementTree.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total, failed, errors, skipped = (int(suite.get(key, 0)) for key in ("tests", "failures", "errors",
                                                                        "skipped"))
    return {"passed": total - failed - errors - skipped, "failed": failed, "errors": errors,
            "skipped": skipped, "total": total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    missing = missing_modules()
    if missing:
        packages = " ".join(m.replace("sklearn", "scikit-learn") for m in missing)
        print(f"optax's alias_test.py needs modules that are not installed: {', '.join(missing)}; "
              f"install them (pip install {packages}).")
        return 2
    directory = Path(tempfile.mkdtemp(prefix="optax_alias_tests_"))
    try:
        test_file = prepare(directory)
        report = directory / "report.xml"
        command = [sys.executable, "-m", "pytest", str(test_file), "-k", "AliasTest", "-q", "-rfE",
                   "-p", "no:cacheprovider", f"--rootdir={directory}", "-c", str(directory / "pytest.ini"),
                   f"--junitxml={report}", *args.pytest_args]
        print(f"optax {optax.__version__}: running {test_file} with optiscale_jax's "
              f"{', '.join(SUBSTITUTED)} substituted")
        completed = subprocess.run(command, cwd=directory, check=False)
        if not report.exists():
            print(f"pytest exited with status {completed.returncode} before writing a report")
            return completed.returncode or 1
        result = counts(report)
        print("optax alias_test.py with our optimizers: " + ", ".join(f"{k} {v}" for k, v in result.items()))
        return 0 if result["failed"] == result["errors"] == 0 else 1
    finally:
        if args.keep:
            print(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
