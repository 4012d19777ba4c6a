"""Large-scale optimizer benchmark: ``python -m experiments.large_scale --backend=jax``.

Runs a suite of data sets x optimizers, writes ``large_scale_results.json``
(every run, written as soon as it finishes) and ``BENCHMARK_REPORT.md`` with
convergence plots to ``--output_dir``. This file only parses flags; the work
is ``optiscale_jax.benchmark.campaign``. See docs/benchmark.md.

Examples::

    python -m experiments.large_scale --backend=jax                 # default suite
    python -m experiments.large_scale --suite=quick --output_dir=/tmp/quick
    python -m experiments.large_scale --datasets=mnist_10k --optimizers=sgd,adam --tune
    python -m experiments.large_scale --resume                      # continue after a kill
    python -m experiments.large_scale --report_only                 # rebuild the report
"""

from __future__ import annotations

import sys

from absl import app, flags

from optiscale_jax.benchmark import campaign, suites

_SUITE = flags.DEFINE_enum("suite", "default", list(suites.SUITES),
                           "Which suite: quick (a test), default (the spec's), full.")
_DATASETS = flags.DEFINE_list("datasets", None,
                              f"Data sets to run instead of the suite's: {', '.join(suites.DATASETS)}.")
_OPTIMIZERS = flags.DEFINE_list("optimizers", None,
                                "Optimizers instead of the suite's (e.g. sgd,adam).")
_EPOCHS = flags.DEFINE_integer("epochs", None, "Epochs per run for every data set "
                               "(default: the suite's per data set).", lower_bound=1)
_BACKEND = flags.DEFINE_enum("backend", "jax", ["jax", "numpy", "cupy"],
                             "jax: compiled engine; numpy / cupy: the reference loop.")
_PRECISION = flags.DEFINE_enum("precision", "float32", ["float32", "float64"],
                               "Floating point precision of the runs.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the data splits, generators and batch orders.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with mnist/ and california_housing/ "
                                "(default: $OPTISCALE_DATA_DIR, then the user cache).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "benchmark_results",
                                  "Where the JSON, the report and the plots go.")
_TUNE = flags.DEFINE_bool("tune", False, "Sweep a learning-rate grid (one vmapped program per "
                          "optimizer) and report the best rate.")
_RESUME = flags.DEFINE_bool("resume", False, "Keep stored runs and skip their identities.")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False,
                                 "Only rebuild the report and plots from the JSON.")



def _validator(check):
    """A flag validator whose error is the check's own message (it lists the choices)."""
    def validate(value):
        if value is None:
            return True
        try:
            check(value)
        except ValueError as err:
            raise flags.ValidationError(str(err)) from err
        return True
    return validate


flags.register_validator("datasets", _validator(suites.check_datasets))
flags.register_validator("optimizers", _validator(suites.check_optimizers))


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    if _REPORT_ONLY.value:
        print(f"report written to {campaign.rebuild_report(_OUTPUT_DIR.value)}")
        return 0
    try:
        plan = campaign.plan_campaign(suite=_SUITE.value, datasets=_DATASETS.value,
                                      optimizers=_OPTIMIZERS.value, epochs=_EPOCHS.value,
                                      backend=_BACKEND.value, precision=_PRECISION.value)
    except (ValueError, RuntimeError) as err:
        raise app.UsageError(str(err)) from err
    recorded = {name: flags.FLAGS[name].value for name in (
        "suite", "datasets", "optimizers", "epochs", "backend", "precision", "seed", "data_dir",
        "output_dir", "tune", "resume")}
    try:
        campaign.run_campaign(plan, output_dir=_OUTPUT_DIR.value, seed=_SEED.value,
                              data_dir=_DATA_DIR.value, tune=_TUNE.value,
                              resume=_RESUME.value, flags=recorded)
    except KeyboardInterrupt:
        sys.exit(130)
    return 0


if __name__ == "__main__":
    app.run(main)
