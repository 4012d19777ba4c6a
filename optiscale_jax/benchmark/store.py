"""Results store: one JSON file, rewritten atomically after every finished run.

Layout of the file (strict JSON; non-finite floats are the strings
``"NaN"``, ``"Infinity"``, ``"-Infinity"`` and are read back as floats)::

    {
      "schema_version": 1,
      "created_at": "...", "updated_at": "...",
      "environments": {"<environment id>": {...environment record...}},
      "runs": [ {...one record per finished run...} ],
      "skipped": [ {"dataset": ..., "reason": ..., "environment_id": ...} ]
    }

Every write goes to a temporary file in the same directory, is flushed and
fsynced, then replaces the old file with ``os.replace`` (atomic on POSIX), so
the file on disk is always either the previous complete version or the new
complete version, whatever moment the process is killed at.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import pathlib
import tempfile
from collections.abc import Mapping
from typing import Any

from optiscale_jax.benchmark.identity import canonical_json, to_json_value

__all__ = [
    "SCHEMA_VERSION",
    "ResultsStore",
    "atomic_write_json",
    "load_results",
    "utc_now",
]

SCHEMA_VERSION = 1
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def utc_now() -> str:
    """The current UTC time, ISO 8601 with microseconds."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")


def _decode(value: Any) -> Any:
    """Inverse of :func:`_encode` for the non-finite float strings."""
    if isinstance(value, str):
        return _NON_FINITE.get(value, value)
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def atomic_write_json(path: str | os.PathLike, obj: Any) -> pathlib.Path:
    """Writes ``obj`` as JSON to ``path`` atomically (temp file + fsync + os.replace)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_json_value(obj), indent=1, allow_nan=False)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        # Never leave a half-written temporary behind, even on Ctrl-C.
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a results file written by :class:`ResultsStore` and checks its shape."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no results file at {path}; run the benchmark first "
            "(python -m experiments.large_scale) or pass the right --output_dir")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); it was not written by "
                         "this benchmark's store, which never leaves partial files") from err
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{path} is not a benchmark results file of schema version {SCHEMA_VERSION} "
            f"(found {data.get('schema_version') if isinstance(data, dict) else type(data).__name__!r})")
    for key in ("runs", "environments", "skipped"):
        if key not in data:
            raise ValueError(f"{path} lacks the '{key}' section of a results file")
    return _decode(data)


class ResultsStore:
    """The campaign's results file: records added one by one, each saved at once.

    Args:
      path: the JSON file.
      resume: when True and ``path`` exists, its runs are loaded and
        :meth:`has` reports their identities as done; when False an existing
        file is replaced by a fresh campaign at the first write.
    """

    def __init__(self, path: str | os.PathLike, *, resume: bool = False):
        self.path = pathlib.Path(path)
        # A process killed between writing a temporary and renaming it leaves the
        # temporary behind (the results file itself is intact): remove such leftovers.
        # One campaign per results file at a time (two would overwrite each other anyway).
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        if resume and self.path.exists():
            self._data = load_results(self.path)
        else:
            now = utc_now()
            self._data = {"schema_version": SCHEMA_VERSION, "created_at": now,
                          "updated_at": now, "environments": {}, "runs": [],
                          "skipped": []}
        self._identities = {run["identity"] for run in self._data["runs"]}

    @property
    def runs(self) -> list[dict[str, Any]]:
        """The stored run records, in the order they finished."""
        return list(self._data["runs"])

    @property
    def skipped(self) -> list[dict[str, Any]]:
        """Data sets that were skipped, each with the reason."""
        return list(self._data["skipped"])

    @property
    def environments(self) -> dict[str, dict[str, Any]]:
        """Environment records by id (one per session that wrote to the file)."""
        return dict(self._data["environments"])

    def has(self, identity: str) -> bool:
        """Whether a run with this identity is stored."""
        return identity in self._identities

    def get(self, identity: str) -> dict[str, Any] | None:
        """The stored record with this identity, or None."""
        for run in self._data["runs"]:
            if run["identity"] == identity:
                return run
        return None

    def add_environment(self, environment: Mapping[str, Any]) -> str:
        """Stores an environment record; returns its id (hash of its content)."""
        env_id = hashlib.sha256(canonical_json(dict(environment)).encode()).hexdigest()[:16]
        self._data["environments"][env_id] = to_json_value(dict(environment))
        self.save()
        return env_id

    def add_run(self, record: Mapping[str, Any]) -> None:
        """Stores one finished run (replacing one with the same identity) and saves."""
        if "identity" not in record:
            raise ValueError("a run record needs an 'identity' (see run_identity)")
        record = to_json_value(dict(record))
        runs = self._data["runs"]
        self._data["runs"] = [r for r in runs if r["identity"] != record["identity"]]
        self._data["runs"].append(record)
        self._identities.add(record["identity"])
        self.save()

    def add_skipped(self, dataset: str, reason: str, **details: Any) -> None:
        """Records that ``dataset`` was skipped and why, then saves."""
        entry = {"dataset": dataset, "reason": reason, "recorded_at": utc_now(), **details}
        self._data["skipped"] = [s for s in self._data["skipped"] if s["dataset"] != dataset]
        self._data["skipped"].append(to_json_value(entry))
        self.save()

    def as_dict(self) -> dict[str, Any]:
        """The whole file's content (decoded: non-finite floats as floats)."""
        return _decode(json.loads(json.dumps(self._data)))

    def save(self, path: str | os.PathLike | None = None) -> pathlib.Path:
        """Writes the store atomically to its own path, or to ``path``."""
        self._data["updated_at"] = utc_now()
        return atomic_write_json(self.path if path is None else path, self._data)
