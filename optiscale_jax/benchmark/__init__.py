"""Benchmark campaigns: ``LargeScaleBenchmark``, suites, the results store, the report.

Small modules with one job each: ``identity`` (run identity hashes, derived
seeds), ``store`` (the atomic JSON results file), ``environment`` (the system
record), ``progress`` (terminal lines with an ETA), ``metrics`` (test-set
numbers), ``report`` and ``plots`` (Markdown and PNG from the JSON alone),
``runner`` (``LargeScaleBenchmark``), ``suites`` (data sets, suites, starting
learning rates) and ``campaign`` (what ``python -m experiments.large_scale``
runs).
"""

from optiscale_jax.benchmark.campaign import (
    CampaignPlan,
    CampaignSummary,
    plan_campaign,
    rebuild_report,
    run_campaign,
)
from optiscale_jax.benchmark.environment import environment_record
from optiscale_jax.benchmark.identity import RunSpec, data_fingerprint, derive_seed, run_identity
from optiscale_jax.benchmark.progress import ProgressReporter
from optiscale_jax.benchmark.report import REPORT_FILENAME, write_report
from optiscale_jax.benchmark.runner import RESULTS_FILENAME, LargeScaleBenchmark
from optiscale_jax.benchmark.store import ResultsStore, atomic_write_json, load_results
from optiscale_jax.benchmark.suites import DATASETS, SUITES, starting_configs

__all__ = [
    "DATASETS", "REPORT_FILENAME", "RESULTS_FILENAME", "SUITES", "CampaignPlan",
    "CampaignSummary", "LargeScaleBenchmark", "ProgressReporter", "ResultsStore", "RunSpec",
    "atomic_write_json", "data_fingerprint", "derive_seed", "environment_record",
    "load_results", "plan_campaign", "rebuild_report", "run_campaign", "run_identity",
    "starting_configs", "write_report",
]
