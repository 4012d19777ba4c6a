"""The modern optax optimizers of the extended suite, with default hyperparameters and sources.

Each entry is optax's own implementation (no re-implementation), resolved to an
`OptimizerSpec` with the hyperparameters below. Weight decay is 0 throughout: the
benchmark measures suboptimality on a fixed objective (whose L2 term is part of the
problem), and decoupled decay would move the minimiser. Learning rates are the
authors' recommended defaults (or optax's, which follow them); the suite may tune
them further.

Optimizers optax 0.2.8 ships that are left out: `optax.contrib.sophia` (its update
needs the loss function, `update(..., obj_fn=...)`, so it is not a drop-in
transform); line-search and Polyak methods (`lbfgs`, `polyak_sgd`) that need the
loss value; sign methods and `sm3`, `fromage`, `lars` that are not competitive
first-order baselines for these problems.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

from optiscale_jax.optimizers._spec import OptimizerSpec, resolve_optimizer


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A baseline: display name, spec string, hyperparameters and where they come from."""

    name: str
    spec: str
    hyperparams: tuple[tuple[str, Any], ...]
    reference: str


_ENTRIES = (
    Baseline("lion", "optax:lion",
             (("learning_rate", 1e-4), ("b1", 0.9), ("b2", 0.99), ("weight_decay", 0.0)),
             "Chen et al. 2023, Symbolic Discovery of Optimization Algorithms: b1 0.9, b2 0.99, a "
             "learning rate 3-10x below AdamW's (1e-3 -> 1e-4)."),
    Baseline("adafactor", "optax:adafactor",
             (("learning_rate", 1e-2), ("multiply_by_parameter_scale", False)),
             "Shazeer & Stern 2018: relative step cap 1e-2, decay 0.8, clipping 1.0 (optax defaults); "
             "parameter-scale multiplication off, since linear models start at w = 0 where it would "
             "shrink the first steps to 1e-3 x lr."),
    Baseline("muon", "optax:contrib.muon", (("learning_rate", 0.02), ("beta", 0.95)),
             "Jordan et al. 2024 (Muon): lr 0.02, momentum 0.95, Nesterov, 5 Newton-Schulz steps "
             "(optax defaults). Non-matrix parameters (a weight vector) get optax's fallback, "
             "AdamW with Nesterov momentum (NAdam; adam_weight_decay 0) at the same learning rate."),
    Baseline("schedule_free_adamw", "optax:contrib.schedule_free_adamw",
             (("learning_rate", 2.5e-3), ("b1", 0.9), ("b2", 0.999), ("weight_decay", 0.0)),
             "Defazio et al. 2024, The Road Less Scheduled: lr 2.5e-3, b1 0.9, b2 0.999 (optax "
             "defaults). Evaluate at `eval_params(spec, state, params)`."),
    Baseline("adan", "optax:adan", (("learning_rate", 1e-3),),
             "Xie et al. 2022 (Adan): b1 0.98, b2 0.92, b3 0.99 (optax defaults), lr 1e-3."),
    Baseline("lamb", "optax:lamb", (("learning_rate", 1e-3),),
             "You et al. 2020 (LAMB): b1 0.9, b2 0.999, eps 1e-6 (optax defaults), lr 1e-3."),
    Baseline("novograd", "optax:novograd", (("learning_rate", 1e-3),),
             "Ginsburg et al. 2019 (NovoGrad): b1 0.9, b2 0.25 (optax defaults), lr 1e-3."),
    Baseline("prodigy", "optax:contrib.prodigy", (("learning_rate", 1.0),),
             "Mishchenko & Defazio 2023 (Prodigy): lr 1.0, the step size is estimated (optax default)."),
    Baseline("adopt", "optax:contrib.adopt", (("learning_rate", 1e-3),),
             "Taniguchi et al. 2024 (ADOPT): b1 0.9, b2 0.9999, eps 1e-6 (optax defaults), lr 1e-3."),
    Baseline("ademamix", "optax:contrib.ademamix", (("learning_rate", 1e-3),),
             "Pagliardini et al. 2024 (AdEMAMix): b1 0.9, b2 0.999, b3 0.9999, alpha 5 (optax "
             "defaults), lr 1e-3."),
    Baseline("radam", "optax:radam", (("learning_rate", 1e-3),),
             "Liu et al. 2020 (RAdam): b1 0.9, b2 0.999 (optax defaults), lr 1e-3."),
)

#: name -> resolved `OptimizerSpec` of each modern baseline, in a fixed order.
EXTENDED_BASELINES: MappingProxyType[str, OptimizerSpec] = MappingProxyType({
    entry.name: resolve_optimizer(entry.spec, dict(entry.hyperparams), name=entry.name)
    for entry in _ENTRIES})

#: name -> the source of its default hyperparameters.
BASELINE_REFERENCES: MappingProxyType[str, str] = MappingProxyType(
    {entry.name: entry.reference for entry in _ENTRIES})
