"""The typed run record: one type written and read, its documented schema, the package exports."""

import math
import pathlib

import pytest

import optiscale_jax
from optiscale_jax.benchmark.record import RunRecord, RunStatus, schema_markdown

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs" / "benchmark.md"


def test_the_documented_schema_is_the_dataclass():
    assert schema_markdown() in DOCS.read_text(encoding="utf-8")


def test_statuses_include_failed():
    assert [s.value for s in RunStatus] == ["converged", "max_epochs", "diverged", "failed"]


def test_json_round_trip_keeps_values_unknown_keys_and_leaves_out_empty_optionals():
    record = RunRecord(identity="x", dataset="d", status=RunStatus.DIVERGED,
                       final_loss=math.inf, extra={"written_by_a_newer_version": [1, 2]})
    data = record.to_json()
    assert data["status"] == "diverged" and data["final_loss"] == "Infinity"
    assert "error" not in data and data["written_by_a_newer_version"] == [1, 2]
    assert data["diverged_epoch"] is None  # not optional: always written
    back = RunRecord.from_json({**data, "final_loss": math.inf})
    assert back == record and back["status"] == "diverged" and back.get("error") is None
    with pytest.raises(ValueError, match="identity"):
        RunRecord.from_json({"dataset": "d"})


def test_get_optimizer_is_importable_from_the_package():
    transform = optiscale_jax.get_optimizer("adam", learning_rate=0.1)
    assert hasattr(transform, "init") and hasattr(transform, "update")
    with pytest.raises(AttributeError):
        optiscale_jax.no_such_name  # noqa: B018
