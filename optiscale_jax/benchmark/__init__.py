"""Benchmark campaigns: run identities, the results store, progress, the report and plots."""

from optiscale_jax.benchmark.environment import environment_record
from optiscale_jax.benchmark.identity import RunSpec, data_fingerprint, derive_seed, run_identity
from optiscale_jax.benchmark.progress import ProgressReporter
from optiscale_jax.benchmark.report import REPORT_FILENAME, write_report
from optiscale_jax.benchmark.store import ResultsStore, atomic_write_json, load_results

__all__ = [
    "REPORT_FILENAME", "ProgressReporter", "ResultsStore", "RunSpec", "atomic_write_json",
    "data_fingerprint", "derive_seed", "environment_record", "load_results", "run_identity",
    "write_report",
]
