"""The results store never loses a run: one file per run, an index rebuilt under a lock,
refusal / resume / overwrite, damaged files kept byte for byte, umask modes, concurrent
writers from several processes, and a SIGKILL in the middle of writes."""

import json
import math
import multiprocessing
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from optiscale_jax.benchmark.record import RunRecord, RunStatus
from optiscale_jax.benchmark.store import (
    ResultsStore,
    StoreNotEmptyError,
    atomic_write_json,
    load_results,
)


def _run(identity, **fields):
    return RunRecord(identity=identity, dataset="toy", label=identity, optimizer="sgd",
                     status=RunStatus.MAX_EPOCHS, **fields)


def _snapshot(folder):
    """Every file under ``folder`` with its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


def test_records_round_trip_through_the_type_with_non_finite_numbers(tmp_path):
    store = ResultsStore(tmp_path / "r.json")
    env_id = store.add_environment({"python": "3.11"})
    store.add_run(_run("a", final_loss=math.inf, relative_suboptimality=math.nan,
                       environment_id=env_id, extra={"from_the_future": 1}))
    store.add_skipped("MNIST", "files missing")
    text = (tmp_path / "r.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON token {c}"))
    data = load_results(tmp_path / "r.json")
    (record,) = [RunRecord.from_json(r) for r in data["runs"]]
    assert record.final_loss == math.inf and math.isnan(record.relative_suboptimality)
    assert record.status is RunStatus.MAX_EPOCHS and record.extra == {"from_the_future": 1}
    assert store.get("a") == record
    assert data["skipped"][0]["reason"] == "files missing"
    assert data["environments"][env_id] == {"python": "3.11"}
    assert not [p for p in tmp_path.rglob("*.tmp")]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_file_modes_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        store = ResultsStore(tmp_path / "r.json")
        store.add_run(_run("a"))
    finally:
        os.umask(old)
    for path in (tmp_path / "r.json", tmp_path / "runs" / "a.json"):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


def test_a_new_campaign_on_stored_results_is_refused_and_touches_nothing(tmp_path):
    ResultsStore(tmp_path / "r.json").add_run(_run("a"))
    before = _snapshot(tmp_path)
    with pytest.raises(StoreNotEmptyError, match="--resume.*--overwrite"):
        ResultsStore(tmp_path / "r.json")
    assert _snapshot(tmp_path) == before


def test_resume_keeps_runs_and_overwrite_moves_them_aside(tmp_path):
    ResultsStore(tmp_path / "r.json").add_run(_run("a", final_loss=1.0))
    before = _snapshot(tmp_path)
    resumed = ResultsStore(tmp_path / "r.json", resume=True)
    assert resumed.has("a") and not resumed.has("b")
    resumed.add_run(_run("a", final_loss=2.0))  # same identity: one record, never two
    assert [r["final_loss"] for r in load_results(tmp_path / "r.json")["runs"]] == [2.0]
    fresh = ResultsStore(tmp_path / "r.json", overwrite=True)
    assert not fresh.has("a") and fresh.records == []
    aside = fresh.superseded
    assert aside.parent == tmp_path and aside.name.startswith("superseded-")
    assert load_results(aside / "r.json")["runs"][0]["final_loss"] == 2.0
    assert (aside / "runs" / "a.json").is_file()
    assert before.keys() - {p for p in before if p.parts[0] in ("runs", "r.json")} <= {
        p.relative_to(aside) for p in aside.rglob("*") if p.is_file()}


def test_a_damaged_run_file_is_kept_byte_for_byte_reported_and_not_rerun(tmp_path):
    store = ResultsStore(tmp_path / "r.json")
    store.add_run(_run("a"))
    damaged = tmp_path / "runs" / "b.json"
    damaged.write_bytes(b'{"identity": "b", "fin')
    resumed = ResultsStore(tmp_path / "r.json", resume=True)
    assert [d.path for d in resumed.damaged] == [damaged]
    assert resumed.has("b") and resumed.get("b") is None
    resumed.add_run(_run("c"))
    assert damaged.read_bytes() == b'{"identity": "b", "fin'
    assert [r["identity"] for r in load_results(tmp_path / "r.json")["runs"]] == ["a", "c"]


def test_a_truncated_index_alone_is_refused_and_left_untouched(tmp_path):
    index = tmp_path / "r.json"
    atomic_write_json(index, {"schema_version": 1, "runs": [{"identity": "a"}],
                              "environments": {}, "skipped": []})
    truncated = index.read_bytes()[:-20]
    index.write_bytes(truncated)
    with pytest.raises(ValueError, match="not valid JSON.*left untouched"):
        ResultsStore(index, resume=True)
    assert index.read_bytes() == truncated


def test_a_damaged_index_next_to_run_files_is_moved_aside_and_rebuilt(tmp_path):
    ResultsStore(tmp_path / "r.json").add_run(_run("a"))
    (tmp_path / "r.json").write_bytes(b"{ broken")
    store = ResultsStore(tmp_path / "r.json", resume=True)
    assert [d.path.name for d in store.damaged] == ["r.json"]
    store.add_run(_run("b"))
    (kept,) = tmp_path.glob("r.json.damaged-*")
    assert kept.read_bytes() == b"{ broken"
    assert [r["identity"] for r in load_results(tmp_path / "r.json")["runs"]] == ["a", "b"]


def test_an_index_without_run_files_is_imported_on_resume(tmp_path):
    """A folder written by an older version holds only the index."""
    atomic_write_json(tmp_path / "r.json", {
        "schema_version": 1, "environments": {"e": {"python": "3.11"}},
        "runs": [_run("a", final_loss=0.5).to_json()],
        "skipped": [{"dataset": "MNIST", "reason": "missing"}]})
    store = ResultsStore(tmp_path / "r.json", resume=True)
    assert store.has("a") and store.environments == {"e": {"python": "3.11"}}
    store.add_run(_run("b"))
    data = load_results(tmp_path / "r.json")
    assert [r["identity"] for r in data["runs"]] == ["a", "b"]
    assert data["skipped"][0]["dataset"] == "MNIST"


def test_temporaries_of_live_or_foreign_writers_are_never_removed(tmp_path):
    ResultsStore(tmp_path / "r.json").add_run(_run("a"))
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = tmp_path / "runs" / f".b.json.{host}.{os.getpid()}.0123abcd.tmp"
    foreign = tmp_path / "runs" / f".c.json.other-host.{dead.pid}.0123abcd.tmp"
    stale = tmp_path / "runs" / f".d.json.{host}.{dead.pid}.0123abcd.tmp"
    for path in (live, foreign, stale):
        path.write_text("partial")
    ResultsStore(tmp_path / "r.json", resume=True)
    assert live.exists() and foreign.exists() and not stale.exists()


def _writer(path, first, count, start):
    start.wait()
    store = ResultsStore(path, resume=True)
    for i in range(first, first + count):
        store.add_run(_run(f"run{i:03d}", final_loss=float(i)))


def test_concurrent_writers_from_several_processes_lose_nothing(tmp_path):
    ResultsStore(tmp_path / "r.json")
    context = multiprocessing.get_context("fork")
    start = context.Event()
    writers = [context.Process(target=_writer, args=(tmp_path / "r.json", 10 * k, 10, start))
               for k in range(4)]
    for writer in writers:
        writer.start()
    start.set()
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    runs = load_results(tmp_path / "r.json")["runs"]
    assert sorted(r["identity"] for r in runs) == [f"run{i:03d}" for i in range(40)]


_KILLED_WRITER = textwrap.dedent("""
    import sys
    from optiscale_jax.benchmark.record import RunRecord
    from optiscale_jax.benchmark.store import ResultsStore
    store = ResultsStore(sys.argv[1], resume=True)
    blob = "x" * 200_000  # big records make a write take long enough to be interrupted
    for i in range(100000):
        store.add_run(RunRecord(identity=f"{i:06d}", extra={"payload": blob}))
        print(i, flush=True)
""")


@pytest.mark.slow
def test_sigkill_during_writes_keeps_every_acknowledged_run(tmp_path):
    path = tmp_path / "r.json"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        written = -1
        deadline = time.monotonic() + 120
        while written < 20 and time.monotonic() < deadline:
            written = int(proc.stdout.readline())
        assert written >= 20, "the writer did not get going"
        proc.send_signal(signal.SIGKILL)  # in the middle of the next writes
    finally:
        proc.kill()
        proc.wait()
    store = ResultsStore(path, resume=True)  # also removes the dead writer's temporary
    ids = [int(r.identity) for r in store.records]
    assert ids == list(range(len(ids))) and len(ids) >= written + 1
    assert all(len(r.extra["payload"]) == 200_000 for r in store.records)
    assert store.damaged == []
    assert not list(tmp_path.rglob(".*.tmp"))
