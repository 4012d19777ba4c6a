"""The examples in docs/optimizers.md run and print what the page says."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "optimizers.md"


@pytest.mark.slow
def test_docs_optimizers_examples():
    result = doctest.testfile(str(DOC), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 20
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {DOC.name} failed"
