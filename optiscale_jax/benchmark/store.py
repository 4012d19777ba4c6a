"""Results store that cannot lose a run: one file per run, an index rebuilt from them.

Layout of a campaign's output folder::

    runs/<identity>.json             one finished run (a RunRecord), written once, atomically
    environments/<id>.json           one environment record per session
    skipped/<data set>.json          a data set that was skipped, with the reason
    large_scale_results.json         the index: every run, environment and skip, in one file
    .large_scale_results.json.lock   the lock around rebuilding the index

Why it cannot lose a run:

* A run is written to a temporary file in ``runs/`` (a unique name per
  host, process and call), flushed and fsynced, then renamed to
  ``runs/<identity>.json`` with ``os.replace`` (atomic on POSIX, also on a
  shared NFS folder) and the folder is fsynced. Different runs never share a
  file, so writers never overwrite each other: two campaigns, N worker
  processes or K shards on several machines write to one store safely. Two
  writers of the same identity did the same work; the last rename wins and
  the run is stored once.
* The index is derived: it is rebuilt from the files under a
  ``filelock.FileLock`` after every stored run, so the last rebuild always
  holds every run written before it. A reader that only wants the results
  reads the index (:func:`load_results`).
* Nothing is ever truncated or replaced by a new campaign: opening a store
  that holds results without ``resume`` raises :class:`StoreNotEmptyError`
  (naming ``--resume`` and ``--overwrite``); ``overwrite`` first moves every
  result into ``superseded-<UTC time>/`` (renames, no copies).
* A file that cannot be read (a damaged run file, a truncated index) is left
  byte for byte where it is and reported in :attr:`ResultsStore.damaged`;
  a damaged run is not run again over it (move the file away to do so). A
  folder holding only an index (no ``runs/``; written by an older version)
  is imported: each of its runs becomes a run file first.
* A temporary left by a killed writer is removed only when its name shows
  this host and a process that no longer exists; others are never touched.
* Files are created with the permissions the umask allows (0644 under the
  usual umask 022), like any other file the user writes.

Strict JSON: non-finite floats are the strings ``"NaN"``, ``"Infinity"``,
``"-Infinity"`` (``identity.to_json_value``) and are read back as floats.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import math
import os
import pathlib
import re
import socket
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

import filelock

from optiscale_jax.benchmark.identity import canonical_json, to_json_value
from optiscale_jax.benchmark.record import RunRecord

__all__ = [
    "RESULTS_FILENAME",
    "SCHEMA_VERSION",
    "DamagedFile",
    "ResultsStore",
    "StoreNotEmptyError",
    "atomic_write_json",
    "load_results",
    "move_results_aside",
    "stored_result_paths",
    "utc_now",
]

SCHEMA_VERSION = 1
RESULTS_FILENAME = "large_scale_results.json"
RUNS_DIR, ENVIRONMENTS_DIR, SKIPPED_DIR = "runs", "environments", "skipped"
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
LOCK_TIMEOUT_S = 600.0


class StoreNotEmptyError(ValueError):
    """A new campaign was pointed at a folder that already holds results."""


class DamagedFile(NamedTuple):
    """A results file that could not be read; it is left as it is."""

    path: pathlib.Path
    reason: str


def utc_now() -> str:
    """The current UTC time, ISO 8601 with microseconds."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")


def _decode(value: Any) -> Any:
    """Non-finite float strings back to floats, recursively."""
    if isinstance(value, str):
        return _NON_FINITE.get(value, value)
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _file_mode() -> int:
    """0666 minus the process's umask (os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(folder: pathlib.Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1) -> pathlib.Path:
    """Writes ``obj`` as strict JSON to ``path`` atomically: a temporary in the same
    folder (unique per host, process and call), fsync, ``os.replace``, fsync of the folder.
    The file's mode follows the umask. ``indent=None`` writes compact JSON (much faster
    for large files: Python's C encoder)."""
    return _atomic_write_text(path, json.dumps(to_json_value(obj), indent=indent,
                                               allow_nan=False))


def _atomic_write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{_HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _file_mode())
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # never leave our own half-written temporary, even on Ctrl-C
        raise
    _fsync_dir(path.parent)
    return path


def _read_json(path: pathlib.Path) -> Any:
    """The decoded JSON of ``path``; ValueError naming the file when it cannot be parsed."""
    try:
        return _decode(json.loads(path.read_text(encoding="utf-8")))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err})") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from err


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a results index (``large_scale_results.json``) and checks its shape."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no results file at {path}; run the benchmark first "
            "(python -m experiments.large_scale) or pass the right --output_dir")
    data = _read_json(path)
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{path} is not a benchmark results file of schema version {SCHEMA_VERSION} "
            f"(found {data.get('schema_version') if isinstance(data, dict) else type(data).__name__!r})")
    for key in ("runs", "environments", "skipped"):
        if key not in data:
            raise ValueError(f"{path} lacks the '{key}' section of a results file")
    return data


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno == errno.EPERM
    return True


def _remove_dead_temporaries(folder: pathlib.Path) -> None:
    """Removes ``.*.<this host>.<pid>.<hex>.tmp`` files whose process is gone."""
    pattern = re.compile(rf"^\..+\.{re.escape(_HOST)}\.(\d+)\.[0-9a-f]{{8}}\.tmp$")
    for tmp in folder.glob(".*.tmp"):
        match = pattern.match(tmp.name)
        if match and not _pid_alive(int(match.group(1))):
            tmp.unlink(missing_ok=True)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "dataset"


def stored_result_paths(output_dir: str | os.PathLike,
                        results_filename: str = RESULTS_FILENAME) -> list[pathlib.Path]:
    """What a campaign left in ``output_dir`` that a new one must not touch: the run,
    environment and skip folders when not empty, and the index."""
    out = pathlib.Path(output_dir)
    paths = [out / d for d in (RUNS_DIR, ENVIRONMENTS_DIR, SKIPPED_DIR)
             if (out / d).is_dir() and any((out / d).iterdir())]
    if (out / results_filename).exists():
        paths.append(out / results_filename)
    return paths


def move_results_aside(output_dir: str | os.PathLike,
                       results_filename: str = RESULTS_FILENAME) -> pathlib.Path | None:
    """Moves every stored result (and the report and plots built from them) into
    ``output_dir/superseded-<UTC time>/`` by renaming; returns that folder (None if
    there was nothing to move)."""
    out = pathlib.Path(output_dir)
    paths = stored_result_paths(out, results_filename)
    if not paths:
        return None
    paths += [p for p in out.glob("convergence_*.png")] + [
        p for p in (out / "BENCHMARK_REPORT.md",) if p.exists()]
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    aside = out / f"superseded-{stamp}"
    aside.mkdir()
    for path in paths:
        os.replace(path, aside / path.name)
    _fsync_dir(out)
    return aside


class ResultsStore:
    """A campaign's results (see the module docstring for the layout and guarantees).

    Args:
      path: the index file (``<output_dir>/large_scale_results.json``); the run
        files live next to it.
      resume: continue a store that holds results (their identities count as done).
      overwrite: move the held results aside first (:func:`move_results_aside`).
    Raises:
      StoreNotEmptyError: the folder holds results and neither flag was given.
      ValueError: the folder holds only an index that cannot be read (it is
        left untouched).
    """

    def __init__(self, path: str | os.PathLike, *, resume: bool = False, overwrite: bool = False):
        self.path = pathlib.Path(path)
        self.folder = self.path.parent
        self.runs_dir = self.folder / RUNS_DIR
        self.lock = filelock.FileLock(str(self.folder / f".{self.path.name}.lock"),
                                      timeout=LOCK_TIMEOUT_S)
        self.superseded: pathlib.Path | None = None
        self._parsed: dict[pathlib.Path, tuple[tuple[int, int], Any]] = {}
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.lock:
            held = stored_result_paths(self.folder, self.path.name)
            if held and overwrite:
                self.superseded = move_results_aside(self.folder, self.path.name)
            elif held and not resume:
                raise StoreNotEmptyError(
                    f"{self.folder} already holds results ({', '.join(p.name for p in held)}); "
                    "pass --resume to continue that campaign (only missing runs run), "
                    "--overwrite to move them into a superseded-<time>/ folder first, or "
                    "another --output_dir")
            for sub in (RUNS_DIR, ENVIRONMENTS_DIR, SKIPPED_DIR):
                (self.folder / sub).mkdir(exist_ok=True)
                _remove_dead_temporaries(self.folder / sub)
            _remove_dead_temporaries(self.folder)
            self._import_index()

    # ------------------------------------------------------------------ reading
    def _import_index(self) -> None:
        """An index whose runs have no run file (an older layout) is imported run by run;
        an unreadable index is left where it is (refused when it is all there is)."""
        if not self.path.exists():
            return
        try:
            data = load_results(self.path)
        except ValueError as err:
            if not any(self.runs_dir.iterdir()):
                raise ValueError(f"{err}; the file was left untouched. Move it away (or pass "
                                 "--overwrite to move it aside) and run again") from err
            return  # derived from runs/: rebuilt (after being moved aside) by save()
        for run in data["runs"]:
            if not (self.runs_dir / f"{run['identity']}.json").exists():
                atomic_write_json(self.runs_dir / f"{run['identity']}.json", run)
        for env_id, env in data["environments"].items():
            target = self.folder / ENVIRONMENTS_DIR / f"{env_id}.json"
            if not target.exists():
                atomic_write_json(target, env)
        for entry in data["skipped"]:
            target = self.folder / SKIPPED_DIR / f"{_slug(entry['dataset'])}.json"
            if not target.exists():
                atomic_write_json(target, entry)

    def _scan(self, sub: str) -> tuple[list[tuple[pathlib.Path, Any]], list[DamagedFile]]:
        """Every file of ``sub`` parsed (files seen before, same size and time, from memory:
        a run file is replaced whole, never edited), and those that cannot be read."""
        good, damaged = [], []
        for path in sorted((self.folder / sub).glob("*.json")):
            try:
                stat = path.stat()
                key = (stat.st_mtime_ns, stat.st_size)
                cached = self._parsed.get(path)
                if cached is None or cached[0] != key:
                    cached = (key, _read_json(path))
                    self._parsed[path] = cached
                good.append((path, cached[1]))
            except (ValueError, OSError) as err:
                damaged.append(DamagedFile(path, str(err)))
        return good, damaged

    def _records(self) -> tuple[list[RunRecord], list[DamagedFile]]:
        files, damaged = self._scan(RUNS_DIR)
        records = []
        for path, data in files:
            if not isinstance(data, dict) or data.get("identity") != path.stem:
                damaged.append(DamagedFile(path, "not a run record of this identity"))
                continue
            records.append(RunRecord.from_json(data))
        records.sort(key=lambda r: (r.plan_position is None, r.plan_position or 0,
                                    r.finished_at or "", r.identity))
        return records, damaged

    @property
    def records(self) -> list[RunRecord]:
        """Every stored run, in plan order (then finishing order)."""
        return self._records()[0]

    @property
    def runs(self) -> list[dict[str, Any]]:
        """Every stored run as its JSON (decoded floats)."""
        return [_decode(r.to_json()) for r in self.records]

    @property
    def damaged(self) -> list[DamagedFile]:
        """Files of this store that could not be read (left untouched)."""
        damaged = self._records()[1] + self._scan(ENVIRONMENTS_DIR)[1] + self._scan(SKIPPED_DIR)[1]
        if self.path.exists():
            try:
                load_results(self.path)
            except ValueError as err:
                damaged.append(DamagedFile(self.path, str(err)))
        return damaged

    @property
    def skipped(self) -> list[dict[str, Any]]:
        """Data sets that were skipped, each with the reason."""
        return [data for _, data in self._scan(SKIPPED_DIR)[0]]

    @property
    def environments(self) -> dict[str, dict[str, Any]]:
        """Environment records by id (one per session that wrote to the store)."""
        return {path.stem: data for path, data in self._scan(ENVIRONMENTS_DIR)[0]}

    def has(self, identity: str) -> bool:
        """Whether a run with this identity is stored (a damaged file counts: it is kept)."""
        return (self.runs_dir / f"{identity}.json").exists()

    def get(self, identity: str) -> RunRecord | None:
        """The stored record with this identity, or None (also when its file is damaged)."""
        path = self.runs_dir / f"{identity}.json"
        try:
            return RunRecord.from_json(_read_json(path))
        except (FileNotFoundError, ValueError):
            return None

    # ------------------------------------------------------------------ writing
    def add_environment(self, environment: Mapping[str, Any]) -> str:
        """Stores an environment record; returns its id (hash of its content)."""
        env_id = hashlib.sha256(canonical_json(dict(environment)).encode()).hexdigest()[:16]
        atomic_write_json(self.folder / ENVIRONMENTS_DIR / f"{env_id}.json", dict(environment))
        self.save()
        return env_id

    def add_run(self, record: RunRecord | Mapping[str, Any]) -> None:
        """Stores one finished run durably, then rebuilds the index."""
        if not isinstance(record, RunRecord):
            record = RunRecord.from_json(dict(record))
        atomic_write_json(self.runs_dir / f"{record.identity}.json", record.to_json())
        self.save()

    def add_skipped(self, dataset: str, reason: str, **details: Any) -> None:
        """Records that ``dataset`` was skipped and why, then rebuilds the index."""
        entry = {"dataset": dataset, "reason": reason, "recorded_at": utc_now(), **details}
        atomic_write_json(self.folder / SKIPPED_DIR / f"{_slug(dataset)}.json", entry)
        self.save()

    def _index_json(self) -> dict[str, Any]:
        """The index's content as JSON values (non-finite floats as strings)."""
        records = self.records
        times = [r.started_at for r in records if r.started_at]
        return {"schema_version": SCHEMA_VERSION,
                "created_at": min(times) if times else utc_now(), "updated_at": utc_now(),
                "environments": to_json_value(self.environments),
                "runs": [r.to_json() for r in records],
                "skipped": to_json_value(self.skipped)}

    def as_dict(self) -> dict[str, Any]:
        """The index's content (decoded: non-finite floats as floats)."""
        return _decode(self._index_json())

    def save(self, path: str | os.PathLike | None = None) -> pathlib.Path:
        """Rebuilds the index from the files under the lock (to ``path`` if given). An
        unreadable index is moved aside to ``<name>.damaged-<UTC time>`` first, byte for byte."""
        target = self.path if path is None else pathlib.Path(path)
        with self.lock:
            if target.exists():
                try:
                    load_results(target)
                except ValueError:
                    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
                    os.replace(target, target.with_name(f"{target.name}.damaged-{stamp}"))
            return _atomic_write_text(target, json.dumps(self._index_json(), allow_nan=False))
