"""Benchmark campaigns: ``LargeScaleBenchmark``, suites, the results store, the report.

Small modules with one job each: ``record`` (the typed ``RunRecord`` and
``RunStatus``), ``identity`` (run identity hashes, derived seeds, the one JSON
spelling), ``store`` (one file per run plus a rebuilt index; never loses a
run), ``environment`` (the system record), ``progress`` (terminal lines with
an ETA), ``metrics`` (relative suboptimality and test-set numbers), ``report``
and ``plots`` (Markdown and PNG from the JSON alone), ``optimizer_choice``
(validate, build and describe an optimizer), ``runner``
(``LargeScaleBenchmark``), ``suites`` (data sets, suites, starting learning
rates), ``campaign`` (what ``optiscale-bench`` runs) and ``workers`` (a
campaign's runs on submitit jobs: local processes or a SLURM array).
"""

from optiscale_jax.benchmark.campaign import (
    CampaignPlan,
    CampaignSummary,
    DataUnavailableError,
    plan_campaign,
    rebuild_report,
    run_campaign,
)
from optiscale_jax.benchmark.environment import environment_record
from optiscale_jax.benchmark.identity import RunSpec, data_fingerprint, derive_seed, run_identity
from optiscale_jax.benchmark.progress import ProgressReporter
from optiscale_jax.benchmark.record import RunRecord, RunStatus
from optiscale_jax.benchmark.report import REPORT_FILENAME, write_report
from optiscale_jax.benchmark.runner import LargeScaleBenchmark
from optiscale_jax.benchmark.store import (
    RESULTS_FILENAME,
    ResultsStore,
    StoreNotEmptyError,
    atomic_write_json,
    load_results,
)
from optiscale_jax.benchmark.suites import DATASETS, SUITES, starting_configs

__all__ = [
    "DATASETS", "REPORT_FILENAME", "RESULTS_FILENAME", "SUITES", "CampaignPlan",
    "CampaignSummary", "DataUnavailableError", "LargeScaleBenchmark", "ProgressReporter",
    "ResultsStore", "RunRecord", "RunSpec", "RunStatus", "StoreNotEmptyError",
    "atomic_write_json", "data_fingerprint", "derive_seed", "environment_record",
    "load_results", "plan_campaign", "rebuild_report", "run_campaign", "run_identity",
    "starting_configs", "write_report",
]
