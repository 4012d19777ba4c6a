"""Results store: atomic writes, readable after a SIGKILL at any moment, resume, strict JSON."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from optiscale_jax.benchmark.store import ResultsStore, atomic_write_json, load_results


def test_records_round_trip_with_non_finite_numbers(tmp_path):
    path = tmp_path / "r.json"
    store = ResultsStore(path)
    env_id = store.add_environment({"python": "3.11"})
    store.add_run({"identity": "a", "final_loss": math.inf, "rel": math.nan, "environment_id": env_id})
    store.add_skipped("MNIST", "files missing")
    text = path.read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON token {c}"))
    data = load_results(path)
    assert data["runs"][0]["final_loss"] == math.inf and math.isnan(data["runs"][0]["rel"])
    assert data["skipped"][0]["reason"] == "files missing"
    assert data["environments"][env_id] == {"python": "3.11"}
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_resume_keeps_runs_and_fresh_start_drops_them(tmp_path):
    path = tmp_path / "r.json"
    ResultsStore(path).add_run({"identity": "a", "x": 1})
    resumed = ResultsStore(path, resume=True)
    assert resumed.has("a") and not resumed.has("b")
    resumed.add_run({"identity": "a", "x": 2})  # same identity replaces, never duplicates
    assert [r["x"] for r in load_results(path)["runs"]] == [2]
    fresh = ResultsStore(path, resume=False)
    assert not fresh.has("a")


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results file"):
        load_results(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_results(bad)
    atomic_write_json(bad, {"schema_version": 99})
    with pytest.raises(ValueError, match="schema version"):
        load_results(bad)
    with pytest.raises(ValueError, match="identity"):
        ResultsStore(tmp_path / "x.json").add_run({"x": 1})


_WRITER = textwrap.dedent("""
    import sys
    from optiscale_jax.benchmark.store import ResultsStore
    store = ResultsStore(sys.argv[1])
    blob = "x" * 200_000  # big records make a write take long enough to be interrupted
    for i in range(100000):
        store.add_run({"identity": str(i), "payload": blob})
        print(i, flush=True)
""")


def test_sigkill_during_writes_leaves_a_complete_file(tmp_path):
    path = tmp_path / "r.json"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        written = -1
        deadline = time.monotonic() + 60
        while written < 20 and time.monotonic() < deadline:
            written = int(proc.stdout.readline())
        assert written >= 20, "the writer did not get going"
        proc.send_signal(signal.SIGKILL)  # in the middle of the next writes
    finally:
        proc.kill()
        proc.wait()
    data = load_results(path)
    ids = [int(r["identity"]) for r in data["runs"]]
    assert ids == list(range(len(ids)))          # nothing lost in the middle
    assert len(ids) >= written + 1               # every acknowledged run is there
    assert all(len(r["payload"]) == 200_000 for r in data["runs"])
    ResultsStore(path, resume=True)  # a new session clears a temporary the kill left
    assert not list(tmp_path.glob(".*.tmp"))
