"""``LargeScaleBenchmark``: runs optimizer configurations on data sets and records every run.

One campaign object composes the other packages: a data set becomes a
``Problem`` (``optiscale_jax.problems``) whose exact optimum ``f*`` is solved
once in float64 and cached; each configuration runs on the training engine
(``training.run``, one compiled program, for the ``jax`` backend) or on the
reference loop (``training.run_reference`` for ``numpy`` / ``cupy``), under an
``OptimizerProfiler`` (host peak memory); with tuning, a learning-rate grid
runs first as one vmapped sweep (``training.sweep``) and the best rate is then
run and timed on its own. Each finished run is written to the results store at
once (atomically), diverged and failed runs included, and the campaign goes
on; a run whose identity is already stored is skipped when resuming.

Example (the spec's custom benchmark)::

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

import math
import os
import pathlib
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from optiscale_jax.benchmark.environment import environment_record
from optiscale_jax.benchmark.identity import RunSpec, data_fingerprint, derive_seed, run_identity
from optiscale_jax.benchmark.metrics import classification_accuracy, downsample_indices, mean_squared_error
from optiscale_jax.benchmark.progress import ProgressReporter
from optiscale_jax.benchmark.report import REPORT_FILENAME, write_report
from optiscale_jax.benchmark.store import ResultsStore, atomic_write_json, utc_now

__all__ = ["BACKENDS", "RESULTS_FILENAME", "LargeScaleBenchmark", "infer_problem_kind",
           "learning_rate_grid"]

RESULTS_FILENAME = "large_scale_results.json"
BACKENDS = ("jax", "numpy", "cupy")
DTYPES = ("float32", "float64")
# Learning-rate multipliers of a tuning grid around the configured rate.
GRID_FACTORS = tuple(2.0**k for k in range(-4, 4))


def learning_rate_grid(center: float, factors: Sequence[float] = GRID_FACTORS) -> list[float]:
    """The tuning grid: ``center * 2**k`` for k = -4..3 (8 rates, 1/16x to 8x)."""
    if not (isinstance(center, (int, float)) and math.isfinite(center) and center > 0):
        raise ValueError(f"a tuning grid needs a positive learning rate to centre on, got {center!r}")
    return [float(center) * f for f in factors]


def infer_problem_kind(y_train: np.ndarray, metadata: Mapping[str, Any]) -> str:
    """``logistic`` for labels in {0, 1}, ``softmax`` for integer classes 0..k-1
    (k > 2), ``least_squares`` otherwise; a ``task`` in the metadata saying
    regression or classification is honoured."""
    task = str(metadata.get("task", "")).lower()
    y = np.asarray(y_train)
    integral = y.size > 0 and np.all(np.isfinite(y)) and np.all(np.equal(np.mod(y, 1), 0))
    if "regression" in task or not integral:
        return "least_squares"
    values = np.unique(y)
    if values.size <= 2 and set(values.tolist()) <= {0, 1}:
        return "logistic"
    if "classification" in task or values.min() >= 0:
        return "softmax"
    return "least_squares"


def _category(kind: str) -> str:
    return "classification" if kind in ("logistic", "softmax") else "regression"


def _optimizer_state_bytes(optimizer: str, hyperparameters: Mapping[str, Any],
                           param_shape: tuple[int, ...], dtype: str) -> int:
    """Bytes of the optimizer's state for these parameters, from ``jax.eval_shape``
    of its ``init`` (allocates nothing)."""
    from optiscale_jax.optimizers import get_optimizer

    transform = get_optimizer(optimizer, **dict(hyperparameters))
    params = jax.ShapeDtypeStruct(param_shape, np.dtype(dtype))
    state = jax.eval_shape(transform.init, params)
    return int(sum(leaf.size * np.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(state)))


class LargeScaleBenchmark:
    """A benchmark campaign writing ``large_scale_results.json`` in ``output_dir``.

    Args:
      output_dir: folder for the results JSON, the report and the plots.
      backend: ``"jax"`` (the compiled engine), ``"numpy"`` or ``"cupy"``
        (the reference loop).
      dtype: ``"float32"`` or ``"float64"`` (the runs' precision; f* is
        always solved in float64).
      seed: the campaign's seed; each run's mini-batch seed is derived from
        it, the data and the optimizer.
      resume: keep the runs already in the results file and skip their
        identities; False starts a fresh file.
      tune: run a learning-rate grid (:func:`learning_rate_grid` around each
        configured rate) as one vmapped sweep per optimizer, then run the best.
      progress: True (print to stdout), False, or a ``ProgressReporter``.
      flags: the invocation's flags, stored in the environment record.
      cache_dir: where optima are cached (default ``$OPTISCALE_CACHE_DIR``).
      results_filename: the JSON's name in ``output_dir``.
      divergence_factor: passed to the engine (loss above this times the
        initial loss counts as diverged).
    """

    def __init__(self, output_dir: str | os.PathLike = "benchmark_results", *,
                 backend: str = "jax", dtype: str = "float32", seed: int = 0,
                 resume: bool = False, tune: bool = False,
                 progress: bool | ProgressReporter = True,
                 flags: Mapping[str, Any] | None = None,
                 cache_dir: str | os.PathLike | None = None,
                 results_filename: str = RESULTS_FILENAME,
                 divergence_factor: float = 1e6):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
        self.output_dir = pathlib.Path(output_dir).resolve()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.backend = backend
        self.dtype = dtype
        self.seed = int(seed)
        self.tune = bool(tune)
        self.cache_dir = cache_dir
        self.divergence_factor = float(divergence_factor)
        self.store = ResultsStore(self.output_dir / results_filename, resume=resume)
        if isinstance(progress, ProgressReporter):
            self.progress = progress
        else:
            self.progress = ProgressReporter(0, stream=sys.stdout if progress else None)
        self._plan_owned = not isinstance(progress, ProgressReporter)
        self.environment_id = self.store.add_environment(environment_record(flags))
        self.results: dict[str, dict[str, dict[str, Any]]] = {}
        self.executed_runs = 0
        self.skipped_runs = 0
        self._saved_path: pathlib.Path = self.store.path

    # ------------------------------------------------------------------ campaign
    def benchmark_dataset(self, name: str, X_train: Any, y_train: Any, X_test: Any, y_test: Any,
                          metadata: Mapping[str, Any] | None,
                          configs: Mapping[str, Mapping[str, Any]], max_epochs: int = 500, *,
                          problem: Any = None, l2: float | None = None,
                          batch_size: int | None = None, category: str | None = None,
                          ) -> dict[str, dict[str, Any]]:
        """Runs every configuration on one data set; returns ``{label: record}``.

        Args:
          name: the data set's name in the report.
          X_train, y_train, X_test, y_test: the data (test split for test metrics).
          metadata: the loader's metadata (condition number, ...), stored.
          configs: ``{label: hyperparameters}``; the optimizer is
            ``hyperparameters.get("optimizer", label)`` (case-insensitive, e.g.
            "Adam"); the other keys are its hyperparameters.
          max_epochs: epochs per run (full batch unless ``batch_size``).
          problem: a problem kind ("least_squares", "ridge", "logistic",
            "softmax"), a built ``Problem``, or None to infer the kind from the
            labels (binary -> logistic, integer classes -> softmax, else least
            squares).
          l2: L2 weight; default 1e-4 for classification, 0 for regression.
          category: the report section type ("classification", "regression",
            "high_dimensional", "extreme_conditioning"); default from the kind.
        Raises:
          ValueError: bad configurations or data, before any run starts.
        """
        from optiscale_jax.optimizers import default_hyperparams, get_optimizer
        from optiscale_jax.problems import Problem, make_problem

        metadata = dict(metadata or {})
        if not isinstance(configs, Mapping) or not configs:
            raise ValueError(f"configs must be a non-empty dict {{label: hyperparameters}}, "
                             f"got {configs!r}")
        if not (isinstance(max_epochs, (int, np.integer)) and max_epochs > 0):
            raise ValueError(f"max_epochs must be a positive integer, got {max_epochs!r}")
        plan = []
        for label, config in configs.items():
            hyper = dict(config)
            optimizer = str(hyper.pop("optimizer", label)).lower()
            get_optimizer(optimizer, **hyper)  # unknown name / hyperparameter: ValueError now
            if self.tune:  # the grid's centre: the configured rate, else the default one
                hyper.setdefault("learning_rate", default_hyperparams(optimizer)["learning_rate"])
                learning_rate_grid(hyper["learning_rate"])
            plan.append((str(label), optimizer, hyper))
        if isinstance(problem, Problem):
            prob = problem
        else:
            kind = problem or infer_problem_kind(np.asarray(y_train), metadata)
            weight = l2 if l2 is not None else (1e-4 if kind in ("logistic", "softmax") else 0.0)
            prob = make_problem(kind, X_train, y_train, weight)
        category = category or _category(prob.kind)
        if self._plan_owned:
            self.progress.add_planned(len(plan))

        fingerprint = data_fingerprint(X_train, y_train, X_test, y_test)
        optimum = None
        dataset_results = self.results.setdefault(name, {})
        for label, optimizer, hyper in plan:
            hyper_for_id = ({**{k: v for k, v in hyper.items() if k != "learning_rate"},
                             "learning_rate_grid": learning_rate_grid(hyper["learning_rate"])}
                            if self.tune else hyper)
            spec = RunSpec(data=fingerprint, problem=prob.kind, l2=float(prob.l2),
                           optimizer=optimizer, hyperparameters=hyper_for_id,
                           backend=self.backend, dtype=self.dtype, seed=self.seed,
                           epochs=int(max_epochs), batch_size=batch_size)
            identity = run_identity(spec)
            if self.store.has(identity):
                dataset_results[label] = self.store.get(identity)
                self.skipped_runs += 1
                self.progress.run_skipped(name, label)
                continue
            started_at, wall_start = utc_now(), time.perf_counter()
            record: dict[str, Any] = {
                "identity": identity, "dataset": name, "category": category,
                "problem": prob.kind, "l2": float(prob.l2), "optimizer": optimizer,
                "label": label, "hyperparameters": hyper, "backend": self.backend,
                "dtype": self.dtype, "seed": self.seed, "epochs": int(max_epochs),
                "batch_size": batch_size, "data_fingerprint": fingerprint,
                "dataset_info": self._dataset_info(prob, X_test, metadata),
                "environment_id": self.environment_id, "started_at": started_at,
            }
            try:
                if optimum is None:  # solved once per data set, inside the first run's try
                    optimum = prob.optimum(self.cache_dir)
                record.update(f_star=float(optimum.f_star), f_star_method=optimum.method,
                              f_star_grad_norm=float(optimum.grad_norm),
                              f_star_from_cache=bool(optimum.from_cache))
                run_seed = derive_seed(self.seed, fingerprint, optimizer)
                record["run_seed"] = run_seed
                record.update(self._execute(prob, optimizer, hyper, int(max_epochs),
                                            batch_size, run_seed, float(optimum.f_star),
                                            X_test, y_test))
            except Exception as err:  # noqa: BLE001  (record it, go on: the campaign's contract)
                record.update(status="failed", error=f"{type(err).__name__}: {err}",
                              traceback=traceback.format_exc(limit=8))
            record["finished_at"] = utc_now()
            record["wall_time_s"] = time.perf_counter() - wall_start
            self.store.add_run(record)
            self.executed_runs += 1
            dataset_results[label] = self.store.get(identity)
            self.progress.run_finished(record)
        return dict(dataset_results)

    def record_skipped_dataset(self, name: str, reason: str) -> None:
        """Stores that data set ``name`` was skipped and why (it shows in the report)."""
        self.store.add_skipped(name, reason, environment_id=self.environment_id)
        self.progress.message(f"skipped data set {name}: {reason}")

    # ------------------------------------------------------------------ outputs
    def save_results(self, filename: str | os.PathLike = RESULTS_FILENAME) -> pathlib.Path:
        """Writes every stored run to ``output_dir / filename`` (atomically) and returns the path.

        The campaign's own file is already up to date after each run; this
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
    def _dataset_info(self, prob: Any, X_test: Any, metadata: Mapping[str, Any]) -> dict[str, Any]:
        # Scalars and strings of the loader's metadata (arrays such as spectra are left out).
        info: dict[str, Any] = {}
        for key, value in metadata.items():
            if isinstance(value, np.generic):
                value = value.item()
            if isinstance(value, (int, float, str, bool)) or value is None:
                info[str(key)] = value
        info.update(n_train=int(prob.n_samples), n_features=int(prob.n_features),
                    n_test=int(np.shape(X_test)[0]))
        return info

    def _train(self, prob: Any, optimizer: str, hyper: Mapping[str, Any], epochs: int,
               batch_size: int | None, run_seed: int, f_star: float) -> Any:
        from optiscale_jax import training

        common = dict(epochs=epochs, batch_size=batch_size, seed=run_seed, dtype=self.dtype,
                      f_star=f_star, divergence_factor=self.divergence_factor)
        if self.backend == "jax":
            return training.run(prob, optimizer, hyperparams=dict(hyper), **common)
        return training.run_reference(prob, optimizer, dict(hyper), backend=self.backend,
                                      **common)

    def _tune(self, prob: Any, optimizer: str, hyper: Mapping[str, Any], epochs: int,
              batch_size: int | None, run_seed: int, f_star: float) -> tuple[dict, dict]:
        """One vmapped sweep over the grid; returns (hyperparameters to run, tuning record)."""
        from optiscale_jax import training

        grid = learning_rate_grid(hyper["learning_rate"])
        fixed = {k: v for k, v in hyper.items() if k != "learning_rate"}
        start = time.perf_counter()
        sweep = training.sweep(prob, optimizer, learning_rates=grid, seeds=(run_seed,),
                               epochs=epochs, batch_size=batch_size, dtype=self.dtype,
                               f_star=f_star, hyperparams=fixed,
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

    def _execute(self, prob: Any, optimizer: str, hyper: Mapping[str, Any], epochs: int,
                 batch_size: int | None, run_seed: int, f_star: float, X_test: Any,
                 y_test: Any) -> dict[str, Any]:
        from optiscale_jax.profiling.profiler import OptimizerProfiler

        out: dict[str, Any] = {}
        run_hyper = dict(hyper)
        if self.tune:
            run_hyper, out["tuning"] = self._tune(prob, optimizer, hyper, epochs, batch_size,
                                                  run_seed, f_star)
            out["hyperparameters_run"] = run_hyper
        with OptimizerProfiler() as profiler:
            result = self._train(prob, optimizer, run_hyper, epochs, batch_size, run_seed, f_star)
        stats = profiler.get_stats()
        params = np.asarray(result.params, dtype=np.float64)
        train_loss = np.asarray(result.train_loss, dtype=np.float64)
        # The objective of the final iterate, evaluated in float64 on the training data: in
        # float32 a small f next to a large ||y||^2/2n is dominated by rounding, and each
        # backend rounds its own way; the engine's own value is kept as final_loss_recorded.
        final_loss = (float(prob.loss(params, np.asarray(prob.X, np.float64), np.asarray(prob.y),
                                      xp=np)) if np.all(np.isfinite(params))
                      else float(result.final_loss))
        state_bytes = _optimizer_state_bytes(optimizer, run_hyper, prob.param_shape, self.dtype)
        rel_curve = np.concatenate([[result.initial_loss], train_loss])
        rel_curve = (rel_curve - f_star) / max(abs(f_star), 1e-30)
        keep = downsample_indices(rel_curve.size)
        out.update(
            status=result.status, converged=result.status == "converged",
            device=result.device, hyperparameters_full=dict(result.hyperparams),
            epochs_run=int(result.epochs), diverged_epoch=result.diverged_epoch,
            run_time_s=float(result.run_time_s), compile_time_s=float(result.compile_time_s),
            time_per_epoch_s=float(result.time_per_epoch_s),
            initial_loss=float(result.initial_loss), final_loss=float(final_loss),
            final_loss_recorded=float(result.final_loss),
            suboptimality=float(final_loss) - f_star,
            relative_suboptimality=(float(final_loss) - f_star) / max(abs(f_star), 1e-30),
            final_grad_norm=float(np.asarray(result.grad_norm)[-1]),
            epochs_to=dict(result.epochs_to),
            peak_memory_mb=float(stats["peak_memory_mb"]),
            peak_memory_source=str(stats["peak_memory_source"]),
            peak_memory_increase_mb=stats.get("peak_memory_increase_mb"),
            optimizer_state_bytes=state_bytes, optimizer_state_mb=state_bytes / 2**20,
            setup_time_s=float(getattr(result, "setup_time_s", 0.0)),
            kernel=str(getattr(result, "kernel", "")),
            curve={"epoch": keep.tolist(),
                   "time_s": (keep * float(result.time_per_epoch_s)).tolist(),
                   "train_loss": np.concatenate([[result.initial_loss], train_loss])[keep].tolist(),
                   "relative_suboptimality": rel_curve[keep].tolist()},
        )
        if "gpu_peak_memory_mb" in stats:
            out["gpu_peak_memory_mb"] = float(stats["gpu_peak_memory_mb"])
            out["gpu_memory_source"] = stats.get("gpu_memory_source")
        out.update(self._test_metrics(prob, params, X_test, y_test))
        return out

    @staticmethod
    def _test_metrics(prob: Any, params: np.ndarray, X_test: Any, y_test: Any) -> dict[str, Any]:
        X_test = np.asarray(X_test, dtype=np.float64)
        y_test = np.asarray(y_test)
        if X_test.shape[0] == 0:
            return {"test_metric": None}
        predicted = np.asarray(prob.predict(params, X_test, xp=np))
        if prob.kind in ("logistic", "softmax"):
            accuracy = classification_accuracy(predicted, y_test.astype(np.int64))
            return {"test_metric": "error_rate", "test_accuracy": accuracy,
                    "test_error": 1.0 - accuracy,
                    "test_loss": float(prob.loss(params, X_test, y_test, xp=np))}
        return {"test_metric": "mse", "test_mse": mean_squared_error(predicted, y_test),
                "test_loss": float(prob.loss(params, X_test, y_test, xp=np))}
