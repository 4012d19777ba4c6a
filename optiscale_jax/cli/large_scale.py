"""optiscale-bench: benchmark optimizers on a suite of data sets and write a report.

Runs every optimizer on every data set of a suite (default: MNIST-10k,
California Housing, synthetic regression with d = 100 and 1,000, and extreme
conditioning with kappa = 1e3 and 1e6; SGD, Momentum, Nesterov, Adam, AdamW),
measuring each run's time (compile apart), final loss, relative
suboptimality against the exact optimum f*, test error and memory. Writes to
--output_dir: runs/<identity>.json (one file per run, as soon as it
finishes), large_scale_results.json (every run), BENCHMARK_REPORT.md and
convergence_<data set>.png. MNIST and California Housing are read from
--data_dir, else $OPTISCALE_DATA_DIR, else the user cache (see docs/data.md).

Examples:
  optiscale-bench --backend=jax                       # the default suite (30 runs)
  optiscale-bench --suite=quick --output_dir=/tmp/q   # 8 short runs
  optiscale-bench --datasets=mnist_10k --optimizers=sgd,adam --tune
  optiscale-bench --suite=extended                    # plus Lion, Adafactor, Muon, ... from optax
  optiscale-bench --optimizers=adam,optax:lion,my_pkg.my_opt:make \\
      --hparams=lion.learning_rate=3e-4,make.beta=0.9
  optiscale-bench --resume                            # finish a stopped campaign
  optiscale-bench --workers=2                         # two processes on this machine
  optiscale-bench --num_shards=4 --shard_index=0      # a quarter of the runs (per machine)
  optiscale-bench --report_only                       # rebuild the report from the JSON

Also runnable as `python -m experiments.large_scale` from the repository root.
"""

from __future__ import annotations

from typing import Any

from absl import flags

from optiscale_jax.benchmark import campaign, suites
from optiscale_jax.cli import _common

FLAGS = flags.FLAGS

__all__ = ["define_flags", "main", "run"]

_RECORDED = ("suite", "datasets", "optimizers", "hparams", "config", "epochs", "backend", "precision", "seed",
             "data_dir", "output_dir", "tune", "resume", "overwrite", "allow_missing_data",
             "workers", "executor", "num_shards", "shard_index")


def define_flags() -> None:
    """Defines the flags (once; other binaries' modules can be imported alongside)."""
    if "suite" in FLAGS:
        return
    flags.DEFINE_enum("suite", "default", list(suites.SUITES),
                      "quick: 4 small data sets x SGD, Adam, few epochs (a smoke test); "
                      "default: the 6 data sets x 5 optimizers above; full: default plus "
                      "d = 5,000 and 10,000 and kappa = 1e9; extended: the default data sets "
                      "with the 5 optimizers and optax's modern baselines (Lion, Adafactor, "
                      "Muon, Schedule-Free AdamW, ...).")
    flags.DEFINE_list("datasets", None, "Data sets to run instead of the suite's, from: "
                      f"{', '.join(suites.DATASETS)}.")
    flags.DEFINE_list("optimizers", None, "Optimizers instead of the suite's, each a name of "
                      f"ours ({', '.join(suites.OPTIMIZER_NAMES)}), an optax optimizer "
                      "(optax:lion, optax:contrib.muon), a factory returning an optax "
                      "GradientTransformation (my_pkg.my_opt:make or path/to/file.py:make), "
                      "optionally under a display name (fast=optax:lion).")
    flags.DEFINE_string("hparams", None, "Hyperparameters by display name, e.g. "
                        "lion.learning_rate=3e-4,lion.b1=0.95,adam.b2=0.99 (our optimizers keep "
                        "the suite's starting rates unless given).")
    flags.DEFINE_string("config", None, "A JSON or YAML file listing the optimizers instead of "
                        "--optimizers: {\"optimizers\": [{\"spec\": \"optax:lion\", "
                        "\"hyperparams\": {\"learning_rate\": 3e-4}}, {\"spec\": \"adam\"}]}.")
    flags.DEFINE_integer("epochs", None, "Epochs per run for every data set (default: the "
                         "suite's per data set).")
    flags.DEFINE_enum("backend", "jax", list(suites.BACKENDS),
                      "jax: the compiled training engine; numpy / cupy: a plain reference loop.")
    flags.DEFINE_enum("precision", "float32", list(suites.DTYPES), "Precision of the runs "
                      "(f* is always solved in float64).")
    flags.DEFINE_integer("seed", 0, "Seed (>= 0) of the data splits, generators and batch "
                         "orders.")
    _common.define_data_dir()
    flags.DEFINE_string("output_dir", "benchmark_results", "Where results, report and plots go.")
    flags.DEFINE_bool("tune", False, "Sweep 8 learning rates around each starting rate (one "
                      "vmapped program per optimizer) and report the best.")
    flags.DEFINE_bool("resume", False, "Continue the campaign stored in --output_dir: only "
                      "runs not stored yet are run.")
    flags.DEFINE_bool("overwrite", False, "Move results stored in --output_dir into a "
                      "superseded-<time>/ folder there, then start afresh.")
    flags.DEFINE_bool("allow_missing_data", False, "Skip a data set whose files are missing or "
                      "unreadable (named in the summary and the report) instead of stopping.")
    flags.DEFINE_bool("report_only", False, "Only rebuild the report and plots from the "
                      "stored results.")
    flags.DEFINE_integer("workers", 1, "Processes that share the runs (through submitit).")
    flags.DEFINE_enum("executor", "local", list(campaign.EXECUTORS),
                      "local: --workers processes on this machine; slurm: a SLURM job array "
                      "of --workers jobs (see --slurm_partition, --slurm_time_min).")
    flags.DEFINE_integer("num_shards", 1, "Split the campaign into this many shards by run "
                         "identity (e.g. one per machine, all with one --output_dir).")
    flags.DEFINE_integer("shard_index", 0, "Which shard this command runs (0 .. num_shards-1).")
    flags.DEFINE_string("slurm_partition", None, "SLURM partition for --executor=slurm.")
    flags.DEFINE_integer("slurm_time_min", 240, "Time limit of each SLURM job, minutes.")
    flags.DEFINE_integer("slurm_cpus_per_task", 2, "CPUs of each SLURM job.")


def _slurm_parameters() -> dict[str, Any]:
    if FLAGS.executor != "slurm":
        return {}
    params: dict[str, Any] = {"timeout_min": _common.check_int(FLAGS.slurm_time_min,
                                                               "slurm_time_min", minimum=1),
                              "cpus_per_task": _common.check_int(FLAGS.slurm_cpus_per_task,
                                                                 "slurm_cpus_per_task",
                                                                 minimum=1)}
    if FLAGS.slurm_partition:
        params["slurm_partition"] = FLAGS.slurm_partition
    return params


def _plan() -> campaign.CampaignPlan:
    """Every flag that shapes the work, validated once, by ``campaign.plan_campaign``."""
    return campaign.plan_campaign(suite=FLAGS.suite, datasets=FLAGS.datasets,
                                  optimizers=FLAGS.optimizers, epochs=FLAGS.epochs,
                                  backend=FLAGS.backend, precision=FLAGS.precision,
                                  hparams=FLAGS.hparams, config=FLAGS.config)


def main(argv: list[str]) -> int:
    """Validates every flag, then runs the campaign (see the module docstring)."""
    _common.reject_positional(argv)
    try:
        if FLAGS.report_only:
            print(f"report written to {campaign.rebuild_report(FLAGS.output_dir)}")
            return 0
        plan = _plan()
        summary = campaign.run_campaign(
            plan, output_dir=FLAGS.output_dir, seed=FLAGS.seed, data_dir=FLAGS.data_dir,
            tune=FLAGS.tune, resume=FLAGS.resume, overwrite=FLAGS.overwrite,
            allow_missing_data=FLAGS.allow_missing_data, workers=FLAGS.workers,
            executor=FLAGS.executor, num_shards=FLAGS.num_shards,
            shard_index=FLAGS.shard_index, slurm_parameters=_slurm_parameters(),
            flags={name: FLAGS[name].value for name in _RECORDED})
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        raise _common.UsageError(str(err)) from err
    return 1 if summary.failed_workers else 0


def run() -> None:
    """Console-script entry point (``optiscale-bench``)."""
    define_flags()
    _common.run_app(main, doc=__doc__, program="optiscale-bench")


if __name__ == "__main__":
    run()
