"""Optimizers as pure, optax-compatible `GradientTransformation`s.

    >>> from optiscale_jax import optimizers
    >>> tx = optimizers.adam(learning_rate=1e-3)        # or get_optimizer("adam", learning_rate=1e-3)
    >>> state = tx.init(params)
    >>> updates, state = tx.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)
"""

from optiscale_jax.optimizers._alias import adagrad, adam, adamw, momentum, nadam, nesterov, rmsprop, sgd
from optiscale_jax.optimizers._registry import (
    OPTIMIZER_NAMES,
    default_hyperparams,
    get_optimizer,
    optimizer_keywords,
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
    "OPTIMIZER_NAMES", "ScaleByAdagradState", "ScaleByAdamState", "ScaleByLearningRateState",
    "ScaleByRStdDevState", "ScaleByRStdDevWithCountState", "ScaleByRmsState", "ScaleByRmsWithCountState",
    "TraceState", "WeightDecayScheduleState", "adagrad", "adam", "adamw", "add_decayed_weights",
    "default_hyperparams", "get_optimizer", "momentum", "nadam", "nesterov", "optimizer_keywords",
    "rmsprop", "scale_by_adagrad", "scale_by_adam", "scale_by_learning_rate", "scale_by_momentum",
    "scale_by_rms", "scale_by_stddev", "sgd",
]
