"""Optimizer scaling studies: the noisy quadratic model, streaming problems, batch-size scaling.

* :mod:`~optiscale_jax.studies.nqm_theory` / :mod:`~optiscale_jax.studies.nqm`: the NQM, its exact
  expected loss under SGD, heavy-ball momentum and ``h^-p`` preconditioning, and simulation.
* :mod:`~optiscale_jax.studies.streaming`: streaming least squares / logistic regression with a
  structured orthogonal covariance, exact population risk, logistic f* by quadrature.
* :mod:`~optiscale_jax.studies.batch_scaling`: the study behind ``python -m experiments.batch_scaling``
  (tuned steps to target against B, critical batch size, gradient noise scale), with
  :mod:`~optiscale_jax.studies.report` and :mod:`~optiscale_jax.studies.plots` rebuilding the report
  from its JSON. See docs/scaling-studies.md.

Nothing else in the package imports this one (only ``optiscale_jax.cli`` and ``experiments``).
"""

from optiscale_jax.studies.analysis import ScalingSummary, scaling_summary
from optiscale_jax.studies.batch_scaling import (
    RESULTS_FILENAME,
    WORKLOAD_NAMES,
    StudySettings,
    check_settings,
    quick_settings,
    rebuild,
    run_study,
)
from optiscale_jax.studies.nqm import NQM, NQMOptimizer, make_nqm, nqm_transform, simulate, tune_closed_form
from optiscale_jax.studies.report import REPORT_FILENAME, load_study, write_report
from optiscale_jax.studies.streaming import (
    SPECTRA,
    StreamingProblem,
    logistic_f_star,
    make_streaming,
    spectrum,
)

__all__ = [
    "NQM", "REPORT_FILENAME", "RESULTS_FILENAME", "SPECTRA", "WORKLOAD_NAMES", "NQMOptimizer",
    "ScalingSummary", "StreamingProblem", "StudySettings", "check_settings", "load_study",
    "logistic_f_star", "make_nqm", "make_streaming", "nqm_transform", "quick_settings", "rebuild",
    "run_study", "scaling_summary", "simulate", "spectrum", "tune_closed_form", "write_report",
]
