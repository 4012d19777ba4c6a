"""Training: the one engine (a run as one jit-compiled scan), sweeps, reference loops, estimators.

    >>> from optiscale_jax.training import run
    >>> result = run(problem, "adam", hyperparams={"learning_rate": 1e-2}, epochs=300,
    ...              f_star=problem.optimum().f_star)
    >>> result.status, result.epochs_to, result.time_per_epoch_s
"""

from optiscale_jax.training import events
from optiscale_jax.training.batching import batch_plan, epoch_permutation
from optiscale_jax.training.engine import Objective, TrainData, build_program, execute, run_objective
from optiscale_jax.training.estimators import (
    SGD,
    Adagrad,
    Adam,
    AdamW,
    FirstOrderEstimator,
    JAXOptimizer,
    Momentum,
    Nesterov,
    RMSProp,
)
from optiscale_jax.training.reference import run_reference
from optiscale_jax.training.result import LEVELS, RunResult, relative_suboptimality, to_json_value
from optiscale_jax.training.run import CompiledRun, compile_run, run
from optiscale_jax.training.steps_to_target import StepsToTargetResult, steps_to_target
from optiscale_jax.training.sweep import SweepResult, sweep

__all__ = [
    "SGD", "Adagrad", "Adam", "AdamW", "FirstOrderEstimator", "JAXOptimizer", "Momentum",
    "Nesterov", "RMSProp",
    "LEVELS", "Objective", "RunResult", "TrainData", "batch_plan", "build_program",
    "epoch_permutation", "events", "execute", "relative_suboptimality", "run", "run_objective",
    "run_reference", "SweepResult", "sweep", "CompiledRun", "compile_run", "to_json_value",
    "StepsToTargetResult", "steps_to_target",
]
