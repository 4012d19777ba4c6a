"""Optimizers as pure, optax-compatible `GradientTransformation`s, and any other optimizer by spec.

    >>> from optiscale_jax import optimizers
    >>> tx = optimizers.adam(learning_rate=1e-3)        # or get_optimizer("adam", learning_rate=1e-3)
    >>> state = tx.init(params)
    >>> updates, state = tx.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)

Bring your own optimizer: `resolve_optimizer(spec, hyperparams)` turns a spec string
into a validated `OptimizerSpec` (import path, version, full hyperparameters) whose
`build(**overrides)` returns the transform:

    "adam"                      one of ours (OPTIMIZER_NAMES)
    "optax:lion"                an optax optimizer; "optax:contrib.muon" for contrib
    "my_pkg.my_opt:make"        a factory in a module on sys.path
    "path/to/file.py:make"      a factory in a Python file
    "mine=my_pkg.my_opt:make"   any of these under a display name

    >>> spec = resolve_optimizer("optax:lion", {"learning_rate": 3e-4})
    >>> tx = spec.build()                               # or spec.build(learning_rate=lr) in a vmap
    >>> specs = resolve_optimizers(["adam", "optax:lion"],
    ...                            parse_hparams("lion.learning_rate=3e-4,lion.b1=0.95"))
    >>> specs = load_optimizer_config("study.json")     # or .yaml / .yml

Every failure (unknown path, a factory that raises or returns something that is not a
`GradientTransformation`, a hyperparameter the factory does not take) raises
`OptimizerSpecError` (a ValueError) naming the spec and the fix. `EXTENDED_BASELINES`
holds the modern optax baselines (Lion, Adafactor, Muon, Schedule-Free AdamW, ...);
`state_bytes_per_parameter(tx, params)` measures optimizer memory without allocating;
`eval_params(spec, state, params)` gives the parameters to evaluate (schedule-free's
averaged iterate, otherwise `params`). docs/optimizers.md has the details.
"""

from optiscale_jax.optimizers._alias import adagrad, adam, adamw, momentum, nadam, nesterov, rmsprop, sgd
from optiscale_jax.optimizers._baselines import BASELINE_REFERENCES, EXTENDED_BASELINES, Baseline
from optiscale_jax.optimizers._config import load_optimizer_config, parse_hparams, parse_value
from optiscale_jax.optimizers._registry import (
    OPTIMIZER_NAMES,
    default_hyperparams,
    get_optimizer,
    optimizer_keywords,
)
from optiscale_jax.optimizers._spec import (
    SOURCES,
    OptimizerSpec,
    OptimizerSpecError,
    eval_params,
    resolve_optimizer,
    resolve_optimizers,
    state_bytes_per_parameter,
)
from optiscale_jax.optimizers._transforms import (
    ScaleByAdagradState,
    ScaleByAdamState,
    ScaleByLearningRateState,
    ScaleByRmsState,
    ScaleByRmsWithCountState,
    ScaleByRStdDevState,
    ScaleByRStdDevWithCountState,
    TraceState,
    WeightDecayScheduleState,
    add_decayed_weights,
    scale_by_adagrad,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_momentum,
    scale_by_rms,
    scale_by_stddev,
)

__all__ = [
    "BASELINE_REFERENCES", "EXTENDED_BASELINES", "OPTIMIZER_NAMES", "SOURCES", "Baseline",
    "OptimizerSpec", "OptimizerSpecError", "ScaleByAdagradState", "ScaleByAdamState",
    "ScaleByLearningRateState", "ScaleByRStdDevState", "ScaleByRStdDevWithCountState", "ScaleByRmsState",
    "ScaleByRmsWithCountState", "TraceState", "WeightDecayScheduleState", "adagrad", "adam", "adamw",
    "add_decayed_weights", "default_hyperparams", "eval_params", "get_optimizer", "load_optimizer_config",
    "momentum", "nadam", "nesterov", "optimizer_keywords", "parse_hparams", "parse_value",
    "resolve_optimizer", "resolve_optimizers", "rmsprop", "scale_by_adagrad", "scale_by_adam",
    "scale_by_learning_rate", "scale_by_momentum", "scale_by_rms", "scale_by_stddev", "sgd",
    "state_bytes_per_parameter",
]
