"""optiscale-batch-scaling: steps to a target loss against batch size, per optimizer, tuned.

    python -m experiments.batch_scaling                      # the default study (< 10 min, 2 cores)
    python -m experiments.batch_scaling --quick              # under a minute
    python -m experiments.batch_scaling --optimizers=sgd,adam,optax:lion,mine=my_pkg.opt:make
    python -m experiments.batch_scaling --resume             # continue after an interruption
    python -m experiments.batch_scaling --report_only        # rebuild the report from the JSON

For each workload, optimizer and batch size B = 2^k: one vmapped sweep over learning rates (and
momentum where the optimizer has one) on a shared batch stream, stopped at the first
configuration that reaches the target loss (best of grid; a best on the grid's edge extends the
grid). Writes batch_scaling_results.json (after every cell), BATCH_SCALING_REPORT.md and one
PNG per workload (steps vs B with the ideal 1/B line; tuned learning rate vs B) to --output_dir.
Workloads: nqm (closed form), nqm_sim, streaming_least_squares, streaming_logistic,
mnist_binary, california_housing (these two from --data_dir or $OPTISCALE_DATA_DIR).
See docs/scaling-studies.md.
"""

from __future__ import annotations

import sys

from absl import flags

from optiscale_jax.cli import _common
from optiscale_jax.studies import batch_scaling

FLAGS = flags.FLAGS
_DEFAULTS = batch_scaling.StudySettings()


def define_flags() -> None:
    """The binary's flags (defined when run, so importing the module defines nothing)."""
    if "quick" in FLAGS:
        return
    flags.DEFINE_string("output_dir", "batch_scaling_results", "Where the JSON, report and PNGs go.")
    flags.DEFINE_bool("quick", False, "The quick preset: NQM closed form and a small streaming least-squares "
                      "problem with SGD (under a minute); other flags given explicitly still apply.")
    flags.DEFINE_bool("resume", False, "Keep the cells stored in --output_dir and run only the missing ones "
                      "(the stored settings must match).")
    flags.DEFINE_bool("report_only", False, "Only rebuild the report and plots from the JSON.")
    flags.DEFINE_string("workloads", None, "Comma-separated workloads (default: all): "
                        + ", ".join(batch_scaling.WORKLOAD_NAMES))
    flags.DEFINE_string("optimizers", None, "Comma-separated optimizer specs (default sgd,momentum,adam): "
                        "our names, optax:NAME, module.path:factory or label=spec.")
    flags.DEFINE_string("batch_exponents", None, "B = 2^k for these k on the simulated workloads "
                        "(default 2,4,6,8,10).")
    flags.DEFINE_string("nqm_batch_exponents", None, "B = 2^k for the NQM closed form (default 0..14).")
    flags.DEFINE_integer("max_steps", None, f"Step budget per sweep (default {_DEFAULTS.max_steps}).")
    flags.DEFINE_integer("nqm_dim", None, f"NQM dimension of the closed form (default {_DEFAULTS.nqm_dim}).")
    flags.DEFINE_float("nqm_target", None, f"NQM target expected loss (default {_DEFAULTS.nqm_target}).")
    flags.DEFINE_integer("streaming_dim", None, f"Streaming dimension (default {_DEFAULTS.streaming_dim}).")
    flags.DEFINE_float("streaming_kappa", None, "Condition number of the streaming covariance, in [1, 1e12] "
                       f"(default {_DEFAULTS.streaming_kappa:g}).")
    flags.DEFINE_string("streaming_spectrum", None, "power or exponential (default power).")
    flags.DEFINE_float("target_fraction", None, "Target = f* + fraction (f(w_0) - f*) for the simulated "
                       f"workloads (default {_DEFAULTS.target_fraction}).")
    flags.DEFINE_float("relative_target", None, "Target relative suboptimality (f - f*)/|f*| on the finite "
                       f"data sets (default {_DEFAULTS.relative_target}).")
    flags.DEFINE_integer("seed", 0, "Seed of the streams, the batch orders and the problems.")
    _common.define_data_dir()


def _settings() -> batch_scaling.StudySettings:
    """The settings from the flags (unset ones: the preset's), validated; UsageError on bad input."""
    overrides = {}
    for name in ("workloads", "optimizers"):
        if FLAGS[name].value is not None:
            overrides[name] = tuple(_common.parse_str_list(FLAGS[name].value, name))
    for name in ("batch_exponents", "nqm_batch_exponents"):
        if FLAGS[name].value is not None:
            overrides[name] = tuple(_common.parse_int_list(FLAGS[name].value, name, minimum=0, maximum=24))
    for name in ("max_steps", "nqm_dim", "streaming_dim"):
        if FLAGS[name].value is not None:
            overrides[name] = _common.check_int(FLAGS[name].value, name, minimum=1 if name != "streaming_dim"
                                                else 2)
    for name in ("nqm_target", "streaming_kappa", "streaming_spectrum", "target_fraction", "relative_target"):
        if FLAGS[name].value is not None:
            overrides[name] = FLAGS[name].value
    overrides["seed"] = _common.check_int(FLAGS.seed, "seed", minimum=0)
    overrides["data_dir"] = FLAGS.data_dir
    try:
        settings = (batch_scaling.quick_settings(**overrides) if FLAGS.quick
                    else batch_scaling.StudySettings(**overrides))
        batch_scaling.check_settings(settings)
        batch_scaling.resolve_specs(settings.optimizers)
    except (TypeError, ValueError) as err:
        raise _common.UsageError(str(err)) from err
    return settings


def main(argv: list[str]) -> int:
    """Validates every flag, then runs (or resumes) the study and writes the report."""
    _common.reject_positional(argv)
    try:
        if FLAGS.report_only:
            print(f"report written to {batch_scaling.rebuild(FLAGS.output_dir)}")
            return 0
        settings = _settings()
        path = batch_scaling.run_study(settings, FLAGS.output_dir, resume=FLAGS.resume, stream=sys.stdout)
    except (ValueError, FileNotFoundError) as err:
        raise _common.UsageError(str(err)) from err
    print(f"results: {path}\nreport:  {path.parent / batch_scaling.report.REPORT_FILENAME}")
    return 0


def run() -> None:
    """Console-script entry point (``optiscale-batch-scaling``)."""
    define_flags()
    _common.run_app(main, doc=__doc__, program="optiscale-batch-scaling")


if __name__ == "__main__":
    run()
