"""``LargeScaleBenchmark``: runs optimizer configurations on data sets and records every run.

One campaign object composes the other packages: a data set becomes a
``Problem`` (``optiscale_jax.problems``) whose exact optimum ``f*`` is solved
once in float64 and cached; each configuration runs on the training engine
(``training.run``, one compiled program, for the ``jax`` backend) or on the
reference loop (``training.run_reference`` for ``numpy`` / ``cupy``), under an
``OptimizerProfiler`` (host peak memory); with tuning, a learning-rate grid
runs first as one vmapped sweep (``training.sweep``) and the best rate is then
run and timed on its own. Each finished run is a :class:`RunRecord` written to
the results store at once (diverged and failed runs included) and the
campaign goes on; a run whose identity is already stored is skipped.

The work is split in one-job steps that the campaign (and its workers) reuse:
:meth:`LargeScaleBenchmark.dataset_context` (data -> problem, fingerprint,
metadata), :meth:`~LargeScaleBenchmark.plan_runs` (configurations -> planned
runs with their identities), :meth:`~LargeScaleBenchmark.run_planned` (the
skip / run / store loop) and :meth:`~LargeScaleBenchmark.run_one` (one planned
run -> one record).

Example::

    benchmark = LargeScaleBenchmark(output_dir="./my_results")
    X_train, y_train, X_test, y_test, metadata = load_mnist(n_samples=5000)
    configs = {"Adam": {"learning_rate": 0.001},
               "AdamW": {"learning_rate": 0.001, "weight_decay": 0.01}}
    results = benchmark.benchmark_dataset("MNIST-5k", X_train, y_train, X_test, y_test,
                                          metadata, configs, max_epochs=500)
    benchmark.save_results("mnist_5k_results.json")
    benchmark.generate_summary_report()
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import sys
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from optiscale_jax import training
from optiscale_jax.benchmark import optimizer_choice
from optiscale_jax.benchmark.checks import check_int
from optiscale_jax.benchmark.environment import environment_record
from optiscale_jax.benchmark.identity import RunSpec, data_fingerprint, derive_seed, run_identity
from optiscale_jax.benchmark.metrics import (
    classification_accuracy,
    downsample_indices,
    mean_squared_error,
    relative_suboptimality,
)
from optiscale_jax.benchmark.progress import ProgressReporter
from optiscale_jax.benchmark.record import RunRecord, RunStatus
from optiscale_jax.benchmark.report import REPORT_FILENAME, write_report
from optiscale_jax.benchmark.store import RESULTS_FILENAME, ResultsStore, atomic_write_json, utc_now
from optiscale_jax.benchmark.suites import BACKENDS, DTYPES, check_choice
from optiscale_jax.problems import Problem, labels, make_problem
from optiscale_jax.profiling.profiler import OptimizerProfiler

__all__ = ["BACKENDS", "DTYPES", "RESULTS_FILENAME", "DatasetContext", "LargeScaleBenchmark",
           "PlannedRun", "infer_problem_kind", "label_rule", "learning_rate_grid"]

# Learning-rate multipliers of a tuning grid around the configured rate.
GRID_FACTORS = tuple(2.0**k for k in range(-4, 4))


def learning_rate_grid(center: float, factors: Sequence[float] = GRID_FACTORS) -> list[float]:
    """The tuning grid: ``center * 2**k`` for k = -4..3 (8 rates, 1/16x to 8x)."""
    if not (isinstance(center, (int, float)) and math.isfinite(center) and center > 0):
        raise ValueError(f"a tuning grid needs a positive learning rate to centre on, got {center!r}")
    return [float(center) * f for f in factors]


def label_rule(y_train: np.ndarray, metadata: Mapping[str, Any]) -> labels.LabelRule:
    """The project's one label rule (``optiscale_jax.problems.labels``) for these targets,
    with the loader's ``task`` (when it names one) settling ambiguous labels."""
    task = metadata.get("task")
    return labels.infer_problem_kind(y_train, task=task if task in labels.TASKS else None,
                                     name="y_train")


def infer_problem_kind(y_train: np.ndarray, metadata: Mapping[str, Any]) -> str:
    """The problem kind of :func:`label_rule`: ``logistic`` for two classes, ``softmax`` for
    more, ``least_squares`` for real targets."""
    return label_rule(y_train, metadata).kind


def _encode_test_labels(rule: labels.LabelRule, y_test: Any) -> np.ndarray:
    """Held-out labels in the training rule's encoding (class ``classes[i]`` -> ``i``)."""
    y_test = np.asarray(y_test)
    if rule.classes is None or y_test.size == 0:
        return y_test
    index = np.searchsorted(rule.classes, y_test)
    known = (index < rule.classes.size) & (rule.classes[np.minimum(index, rule.classes.size - 1)]
                                           == y_test)
    if not np.all(known):
        raise ValueError(f"y_test holds labels not seen in y_train: "
                         f"{np.unique(y_test[~known])[:5].tolist()}")
    return index.astype(rule.encoded_y.dtype)


def _category(kind: str) -> str:
    return "classification" if kind in ("logistic", "softmax") else "regression"


class DatasetContext(NamedTuple):
    """One data set, ready to run on: its problem, fingerprint and report metadata."""

    name: str
    category: str
    problem: Problem
    fingerprint: str
    X_test: np.ndarray
    y_test: np.ndarray
    info: dict[str, Any]


class PlannedRun(NamedTuple):
    """One configuration on one data set, before it runs."""

    label: str
    optimizer: str                 # name or spec, e.g. "adam", "optax:lion", "pkg.mod:make"
    hyperparameters: dict[str, Any]
    spec: RunSpec
    identity: str
    position: int | None           # in the campaign's plan (report order)


def _dataset_info(prob: Problem, n_test: int, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Scalars and strings of the loader's metadata (arrays such as spectra are left out)."""
    info: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, (int, float, str, bool)) or value is None:
            info[str(key)] = value
    info.update(n_train=int(prob.n_samples), n_features=int(prob.n_features), n_test=int(n_test))
    return info


def _test_metrics(prob: Problem, params: np.ndarray, X_test: Any, y_test: Any) -> dict[str, Any]:
    """Held-out metrics: error rate and accuracy (classification) or MSE, and the test loss."""
    X_test = np.asarray(X_test, dtype=np.float64)
    y_test = np.asarray(y_test)
    if X_test.shape[0] == 0:
        return {"test_metric": None}
    predicted = np.asarray(prob.predict(params, X_test, xp=np))
    test_loss = float(prob.loss(params, X_test, y_test, xp=np))
    if prob.kind in ("logistic", "softmax"):
        accuracy = classification_accuracy(predicted, y_test.astype(np.int64))
        return {"test_metric": "error_rate", "test_accuracy": accuracy,
                "test_error": 1.0 - accuracy, "test_loss": test_loss}
    return {"test_metric": "mse", "test_mse": mean_squared_error(predicted, y_test),
            "test_loss": test_loss}


def _curve(result: Any, f_star: float) -> dict[str, list]:
    """The run's own loss per epoch (its dtype) and its relative suboptimality, at most
    400 log-spaced epochs, the first and the last always included."""
    losses = np.concatenate([[result.initial_loss], np.asarray(result.train_loss, np.float64)])
    relative = relative_suboptimality(losses, f_star)
    keep = downsample_indices(relative.size)
    return {"epoch": keep.tolist(), "time_s": (keep * float(result.time_per_epoch_s)).tolist(),
            "train_loss": losses[keep].tolist(), "relative_suboptimality": relative[keep].tolist()}


def _final_loss_float64(prob: Problem, params: np.ndarray, fallback: float) -> float:
    """The objective of the final iterate in float64 on the training data: in float32 a
    small f next to a large ||y||^2/2n is dominated by rounding, and each backend rounds
    its own way (the run's own value is kept as final_loss_recorded)."""
    if not np.all(np.isfinite(params)):
        return float(fallback)
    return float(prob.loss(params, np.asarray(prob.X, np.float64), np.asarray(prob.y), xp=np))


class LargeScaleBenchmark:
    """A benchmark campaign writing its results store in ``output_dir``.

    Args:
      output_dir: folder for the results store, the report and the plots.
      backend: ``"jax"`` (the compiled engine), ``"numpy"`` or ``"cupy"``
        (the reference loop).
      dtype: ``"float32"`` or ``"float64"`` (the runs' precision; f* is
        always solved in float64).
      seed: the campaign's seed (>= 0); each run's mini-batch seed is derived from
        it, the data and the optimizer.
      resume: continue a store that holds results (stored identities are skipped).
      overwrite: move held results aside first (see ``store.move_results_aside``).
        With neither, a folder holding results is refused (``StoreNotEmptyError``).
      tune: run a learning-rate grid (:func:`learning_rate_grid` around each
        configured rate) as one vmapped sweep per optimizer, then run the best.
      progress: True (print to stdout), False, or a ``ProgressReporter``.
      flags: the invocation's flags, stored in the environment record.
      cache_dir: where optima are cached (default ``$OPTISCALE_CACHE_DIR``).
      results_filename: the index's name in ``output_dir``.
      divergence_factor: passed to the engine (loss above this times the
        initial loss counts as diverged).
    """

    def __init__(self, output_dir: str | os.PathLike = "benchmark_results", *,
                 backend: str = "jax", dtype: str = "float32", seed: int = 0,
                 resume: bool = False, overwrite: bool = False, tune: bool = False,
                 progress: bool | ProgressReporter = True,
                 flags: Mapping[str, Any] | None = None,
                 cache_dir: str | os.PathLike | None = None,
                 results_filename: str = RESULTS_FILENAME,
                 divergence_factor: float = 1e6):
        self.backend = check_choice(backend, BACKENDS, "backend")
        self.dtype = check_choice(dtype, DTYPES, "dtype")
        check_int(seed, "seed", minimum=0, maximum=2**32 - 1)
        self.output_dir = pathlib.Path(output_dir).resolve()
        self.seed = int(seed)
        self.tune = bool(tune)
        self.cache_dir = cache_dir
        self.divergence_factor = float(divergence_factor)
        self.store = ResultsStore(self.output_dir / results_filename, resume=resume,
                                  overwrite=overwrite)
        if isinstance(progress, ProgressReporter):
            self.progress = progress
        else:
            self.progress = ProgressReporter(0, stream=sys.stdout if progress else None)
        self._plan_owned = not isinstance(progress, ProgressReporter)
        self.environment_id = self.store.add_environment(environment_record(flags))
        self.results: dict[str, dict[str, RunRecord]] = {}
        self.executed_runs = 0
        self.skipped_runs = 0
        self._optima: dict[str, Any] = {}
        self._saved_path: pathlib.Path = self.store.path

    # ------------------------------------------------------------------ planning
    def dataset_context(self, name: str, X_train: Any, y_train: Any, X_test: Any, y_test: Any,
                        metadata: Mapping[str, Any] | None, *, problem: Problem | str | None = None,
                        l2: float | None = None, category: str | None = None) -> DatasetContext:
        """The data set's problem (given, or of the given / inferred kind), fingerprint
        and report metadata."""
        metadata = dict(metadata or {})
        if isinstance(problem, Problem):
            prob = problem
        else:
            rule = labels.infer_problem_kind(y_train, problem, name="y_train") if problem \
                else label_rule(y_train, metadata)
            weight = l2 if l2 is not None else (1e-4 if rule.is_classification else 0.0)
            prob = make_problem(rule.kind, X_train, rule.encoded_y, weight)
            y_test = _encode_test_labels(rule, y_test)
        return DatasetContext(name, category or _category(prob.kind), prob,
                              data_fingerprint(X_train, y_train, X_test, y_test),
                              np.asarray(X_test), np.asarray(y_test),
                              _dataset_info(prob, np.shape(X_test)[0], metadata))

    def plan_runs(self, context: DatasetContext, configs: Mapping[str, Mapping[str, Any]],
                  max_epochs: int, batch_size: int | None = None,
                  first_position: int | None = None) -> list[PlannedRun]:
        """Validates every configuration (ValueError before any run) and returns the runs.

        ``configs``: ``{label: hyperparameters}``; the optimizer is
        ``hyperparameters.get("optimizer", label)`` (case-insensitive for our names).
        """
        if not isinstance(configs, Mapping) or not configs:
            raise ValueError(f"configs must be a non-empty dict {{label: hyperparameters}}, "
                             f"got {configs!r}")
        check_int(max_epochs, "max_epochs", minimum=1, maximum=2**31 - 1)
        planned = []
        for index, (label, config) in enumerate(configs.items()):
            hyper = dict(config)
            optimizer = optimizer_choice.canonical(str(hyper.pop("optimizer", label)))
            optimizer_choice.validate(optimizer, hyper)
            if self.tune:  # the grid's centre: the configured rate, else the default one
                if "learning_rate" not in hyper:
                    hyper["learning_rate"] = optimizer_choice.default_learning_rate(optimizer)
                learning_rate_grid(hyper["learning_rate"])
                optimizer_choice.sweep_target(optimizer, hyper)  # sweepable: refused now if not
            spec = self._spec(context, optimizer, hyper, int(max_epochs), batch_size)
            planned.append(PlannedRun(str(label), optimizer, hyper, spec, run_identity(spec),
                                      None if first_position is None else first_position + index))
        return planned

    def _spec(self, context: DatasetContext, optimizer: str, hyper: Mapping[str, Any],
              epochs: int, batch_size: int | None) -> RunSpec:
        """The run's identity inputs (a tuned run is identified by its grid)."""
        hyper_for_id = ({**{k: v for k, v in hyper.items() if k != "learning_rate"},
                         "learning_rate_grid": learning_rate_grid(hyper["learning_rate"])}
                        if self.tune else dict(hyper))
        return RunSpec(data=context.fingerprint, problem=context.problem.kind,
                       l2=float(context.problem.l2), optimizer=optimizer,
                       hyperparameters=hyper_for_id, backend=self.backend, dtype=self.dtype,
                       seed=self.seed, epochs=epochs, batch_size=batch_size)

    # ------------------------------------------------------------------ campaign
    def benchmark_dataset(self, name: str, X_train: Any, y_train: Any, X_test: Any, y_test: Any,
                          metadata: Mapping[str, Any] | None,
                          configs: Mapping[str, Mapping[str, Any]], max_epochs: int = 500, *,
                          problem: Problem | str | None = None, l2: float | None = None,
                          batch_size: int | None = None, category: str | None = None,
                          ) -> dict[str, RunRecord]:
        """Runs every configuration on one data set; returns ``{label: RunRecord}``.

        Args:
          name: the data set's name in the report.
          X_train, y_train, X_test, y_test: the data (test split for test metrics).
          metadata: the loader's metadata (condition number, ...), stored.
          configs: ``{label: hyperparameters}`` (see :meth:`plan_runs`).
          max_epochs: epochs per run (full batch unless ``batch_size``).
          problem: a problem kind ("least_squares", "ridge", "logistic",
            "softmax"), a built ``Problem``, or None to infer the kind from the
            labels (binary -> logistic, integer classes -> softmax, else least
            squares).
          l2: L2 weight; default 1e-4 for classification, 0 for regression.
          category: the report section type; default from the kind.
        Raises:
          ValueError: bad configurations or data, before any run starts.
        """
        context = self.dataset_context(name, X_train, y_train, X_test, y_test, metadata,
                                       problem=problem, l2=l2, category=category)
        planned = self.plan_runs(context, configs, max_epochs, batch_size)
        if self._plan_owned:
            self.progress.add_planned(len(planned))
        return self.run_planned(context, planned)

    def run_planned(self, context: DatasetContext, planned: Iterable[PlannedRun]
                    ) -> dict[str, RunRecord]:
        """The skip / run / store loop: each planned run not yet stored runs and is stored
        at once; returns ``{label: record}`` (stored ones included)."""
        dataset_results = self.results.setdefault(context.name, {})
        for run in planned:
            if self.store.has(run.identity):
                stored = self.store.get(run.identity)
                if stored is not None:
                    dataset_results[run.label] = stored
                self.skipped_runs += 1
                self.progress.run_skipped(context.name, run.label,
                                          "stored" if stored else "stored file damaged, kept")
                continue
            record = self.run_one(context, run)
            self.store.add_run(record)
            self.executed_runs += 1
            dataset_results[run.label] = record
            self.progress.run_finished(record)
        return dict(dataset_results)

    def record_skipped_dataset(self, name: str, reason: str) -> None:
        """Stores that data set ``name`` was skipped and why (it shows in the report)."""
        self.store.add_skipped(name, reason, environment_id=self.environment_id)
        self.progress.message(f"skipped data set {name}: {reason}")

    # ------------------------------------------------------------------ outputs
    def save_results(self, filename: str | os.PathLike = RESULTS_FILENAME) -> pathlib.Path:
        """Writes every stored run to ``output_dir / filename`` (atomically) and returns the path.

        The campaign's own index is already up to date after each run; this
        copies it under another name when asked.
        """
        path = pathlib.Path(filename)
        if not path.is_absolute():
            path = self.output_dir / path
        if path.resolve() == self.store.path.resolve():
            self.store.save()
        else:
            atomic_write_json(path, self.store.as_dict())
        self._saved_path = path
        return path

    def generate_summary_report(self, filename: str = REPORT_FILENAME) -> pathlib.Path:
        """Writes ``BENCHMARK_REPORT.md`` and the plots from the last saved JSON."""
        return write_report(self._saved_path, self.output_dir, filename)

    # ------------------------------------------------------------------ one run
    def _base_record(self, context: DatasetContext, run: PlannedRun) -> RunRecord:
        return RunRecord(
            identity=run.identity, dataset=context.name, category=context.category,
            problem=context.problem.kind, l2=float(context.problem.l2), optimizer=run.optimizer,
            label=run.label, hyperparameters=dict(run.hyperparameters), backend=self.backend,
            dtype=self.dtype, seed=self.seed, epochs=run.spec.epochs,
            batch_size=run.spec.batch_size, data_fingerprint=context.fingerprint,
            dataset_info=dict(context.info), plan_position=run.position,
            environment_id=self.environment_id, started_at=utc_now())

    def _optimum(self, context: DatasetContext) -> Any:
        """f* of the data set, solved once (and cached on disk by the problem)."""
        if context.fingerprint not in self._optima:
            self._optima[context.fingerprint] = context.problem.optimum(self.cache_dir)
        return self._optima[context.fingerprint]

    def run_one(self, context: DatasetContext, run: PlannedRun) -> RunRecord:
        """Runs one planned run; any exception becomes a ``failed`` record (the campaign
        goes on), KeyboardInterrupt excepted."""
        wall_start = time.perf_counter()
        record = self._base_record(context, run)
        try:
            optimum = self._optimum(context)
            record = dataclasses.replace(
                record, f_star=float(optimum.f_star), f_star_method=optimum.method,
                f_star_grad_norm=float(optimum.grad_norm),
                f_star_from_cache=bool(optimum.from_cache),
                run_seed=derive_seed(self.seed, context.fingerprint, run.optimizer))
            record = self._measure(context, run, record)
        except Exception as err:  # any error is recorded and the campaign goes on
            record = dataclasses.replace(record, status=RunStatus.FAILED,
                                         error=f"{type(err).__name__}: {err}",
                                         traceback=traceback.format_exc(limit=8))
        return dataclasses.replace(record, finished_at=utc_now(),
                                   wall_time_s=time.perf_counter() - wall_start)

    def _train(self, prob: Problem, optimizer: str, hyper: Mapping[str, Any], epochs: int,
               batch_size: int | None, run_seed: int, f_star: float) -> Any:
        common = dict(epochs=epochs, batch_size=batch_size, seed=run_seed, dtype=self.dtype,
                      f_star=f_star, divergence_factor=self.divergence_factor)
        if self.backend == "jax":
            target, hyperparams = optimizer_choice.engine_arguments(optimizer, hyper)
            return training.run(prob, target, hyperparams=hyperparams, **common)
        return training.run_reference(prob, optimizer, dict(hyper), backend=self.backend,
                                      **common)

    def _tune(self, prob: Problem, optimizer: str, hyper: Mapping[str, Any], epochs: int,
              batch_size: int | None, run_seed: int, f_star: float) -> tuple[dict, dict]:
        """One vmapped sweep over the grid; returns (hyperparameters to run, tuning record)."""
        grid = learning_rate_grid(hyper["learning_rate"])
        fixed = {k: v for k, v in hyper.items() if k != "learning_rate"}
        start = time.perf_counter()
        target = optimizer_choice.sweep_target(optimizer, hyper)
        sweep = training.sweep(prob, target, learning_rates=grid, seeds=(run_seed,),
                               epochs=epochs, batch_size=batch_size, dtype=self.dtype,
                               f_star=f_star,
                               hyperparams=fixed if isinstance(target, str) else None,
                               divergence_factor=self.divergence_factor)
        sweep_wall_s = time.perf_counter() - start
        best = sweep.best_config
        if best is None:
            raise FloatingPointError(
                f"every learning rate of the tuning grid {grid} diverged for {optimizer}")
        best_lr = float(best["learning_rate"])
        tuning = {"learning_rates": grid,
                  "final_losses": [float(r.final_loss) for r in sweep.runs],
                  "statuses": list(sweep.statuses), "best_learning_rate": best_lr,
                  "sweep_wall_time_s": sweep_wall_s,
                  "sweep_compile_time_s": float(sweep.compile_time_s),
                  "sweep_run_time_s": float(sweep.run_time_s),
                  "selection": "lowest final training loss among non-diverged rates"}
        return {**fixed, "learning_rate": best_lr}, tuning

    def _measure(self, context: DatasetContext, run: PlannedRun, record: RunRecord) -> RunRecord:
        """Tunes (if asked), trains under the profiler and fills the record's measurements."""
        prob, f_star = context.problem, float(record.f_star)
        run_hyper, tuning = dict(run.hyperparameters), None
        if self.tune:
            run_hyper, tuning = self._tune(prob, run.optimizer, run.hyperparameters,
                                           run.spec.epochs, run.spec.batch_size,
                                           record.run_seed, f_star)
        with OptimizerProfiler() as profiler:
            result = self._train(prob, run.optimizer, run_hyper, run.spec.epochs,
                                 run.spec.batch_size, record.run_seed, f_star)
        stats = profiler.get_stats()
        params = np.asarray(result.params, dtype=np.float64)
        final_loss = _final_loss_float64(prob, params, result.final_loss)
        state_bytes = optimizer_choice.state_bytes(run.optimizer, run_hyper, prob.param_shape,
                                                   self.dtype)
        gpu = ({"gpu_peak_memory_mb": float(stats["gpu_peak_memory_mb"]),
                "gpu_memory_source": stats.get("gpu_memory_source")}
               if "gpu_peak_memory_mb" in stats else {})
        return dataclasses.replace(
            record, tuning=tuning, hyperparameters_run=run_hyper if self.tune else None,
            optimizer_info=optimizer_choice.describe(run.optimizer, run_hyper, prob.param_shape,
                                                     state_bytes),
            status=RunStatus(result.status), converged=result.status == "converged",
            device=result.device,
            hyperparameters_full=(dict(result.hyperparams) or
                                  optimizer_choice.full_hyperparameters(run.optimizer, run_hyper)),
            epochs_run=int(result.epochs), diverged_epoch=result.diverged_epoch,
            run_time_s=float(result.run_time_s), compile_time_s=float(result.compile_time_s),
            time_per_epoch_s=float(result.time_per_epoch_s),
            initial_loss=float(result.initial_loss), final_loss=final_loss,
            final_loss_recorded=float(result.final_loss), suboptimality=final_loss - f_star,
            relative_suboptimality=float(relative_suboptimality(final_loss, f_star)),
            relative_suboptimality_recorded=float(relative_suboptimality(result.final_loss,
                                                                         f_star)),
            final_grad_norm=float(np.asarray(result.grad_norm)[-1]),
            epochs_to=dict(result.epochs_to),
            peak_memory_mb=float(stats["peak_memory_mb"]),
            peak_memory_source=str(stats["peak_memory_source"]),
            peak_memory_increase_mb=stats.get("peak_memory_increase_mb"),
            optimizer_state_bytes=state_bytes, optimizer_state_mb=state_bytes / 2**20,
            setup_time_s=float(getattr(result, "setup_time_s", 0.0)),
            kernel=str(getattr(result, "kernel", "")), curve=_curve(result, f_star),
            **gpu, **_test_metrics(prob, params, context.X_test, context.y_test))
