"""Compare two results files run by run, leaving out what differs between identical runs.

    python -m optiscale_jax.benchmark.compare BEFORE.json AFTER.json

Runs are matched by identity. For each run of BEFORE, every key it holds
must be in AFTER's run with an equal value, except the volatile ones
(:data:`VOLATILE`: times and timestamps, the session's environment, memory
high-water marks, whether f* came from the cache) and the curve's ``time_s``.
Keys only AFTER has are new fields, listed but not differences. Exit code 0
when every run of BEFORE is in AFTER with equal values, 1 otherwise.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from optiscale_jax.benchmark.store import load_results

__all__ = ["VOLATILE", "Comparison", "compare_results", "main"]

VOLATILE = frozenset({
    "run_time_s", "compile_time_s", "time_per_epoch_s", "setup_time_s", "wall_time_s",
    "started_at", "finished_at", "environment_id", "peak_memory_mb", "peak_memory_increase_mb",
    "peak_memory_source", "gpu_peak_memory_mb", "gpu_memory_source", "f_star_from_cache",
    "traceback", "plan_position"})
_VOLATILE_NESTED = {"curve": {"time_s"},
                    "tuning": {"sweep_wall_time_s", "sweep_compile_time_s", "sweep_run_time_s"}}


class Comparison(NamedTuple):
    """What :func:`compare_results` found."""

    matched: int
    missing: list[str]                  # identities of BEFORE absent from AFTER
    differences: list[str]              # "<dataset>/<label> <key>: before != after"
    new_keys: list[str]                 # keys only AFTER's runs hold

    @property
    def equal(self) -> bool:
        return not self.missing and not self.differences


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _comparable(run: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in run.items() if k not in VOLATILE}
    for key, drop in _VOLATILE_NESTED.items():
        if isinstance(out.get(key), Mapping):
            out[key] = {k: v for k, v in out[key].items() if k not in drop}
    return out


def compare_results(before: Mapping[str, Any], after: Mapping[str, Any]) -> Comparison:
    """Compares two loaded results files (see the module docstring)."""
    after_runs = {r["identity"]: _comparable(r) for r in after["runs"]}
    missing, differences, new_keys = [], [], set()
    matched = 0
    for run in before["runs"]:
        old = _comparable(run)
        new = after_runs.get(run["identity"])
        if new is None:
            missing.append(run["identity"])
            continue
        matched += 1
        new_keys |= new.keys() - old.keys()
        for key, value in old.items():
            if not _same(value, new.get(key)):
                differences.append(f"{run.get('dataset')}/{run.get('label')} {key}: "
                                   f"{str(value)[:80]} != {str(new.get(key))[:80]}")
    return Comparison(matched, missing, differences, sorted(new_keys))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m optiscale_jax.benchmark.compare BEFORE.json AFTER.json``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    result = compare_results(load_results(args[0]), load_results(args[1]))
    print(f"{result.matched} runs matched by identity, {len(result.missing)} missing, "
          f"{len(result.differences)} differing values (volatile keys left out: "
          f"{', '.join(sorted(VOLATILE))}, curve.time_s)")
    for line in result.differences + [f"missing: {i}" for i in result.missing]:
        print("  " + line)
    if result.new_keys:
        print(f"keys only the second file holds (new fields): {', '.join(result.new_keys)}")
    return 0 if result.equal else 1


if __name__ == "__main__":
    sys.exit(main())
