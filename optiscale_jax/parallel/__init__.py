"""Data, model and pipeline parallel training with ``jax.shard_map``; multi-host start-up.

    >>> from optiscale_jax.parallel import ParallelTrainer
    >>> ParallelTrainer(n_devices=8, strategy="data_parallel").fit(X, y).coef_
"""

from optiscale_jax.parallel.distributed import (
    DistributedInfo,
    distributed_info,
    global_rows,
    initialize_distributed,
    replicated,
    shutdown_distributed,
)
from optiscale_jax.parallel.mesh import STRATEGIES, MeshLayout, make_layout
from optiscale_jax.parallel.mlp import MLPParams, MLPSpec, init_mlp_params, mlp_logits, mlp_loss
from optiscale_jax.parallel.pipeline import bubble_fraction, measure_bubble_fraction
from optiscale_jax.parallel.trainer import ParallelTrainer, make_loss, train

__all__ = [
    "DistributedInfo", "MLPParams", "MLPSpec", "MeshLayout", "ParallelTrainer", "STRATEGIES",
    "bubble_fraction", "distributed_info", "global_rows", "init_mlp_params",
    "initialize_distributed", "make_layout", "make_loss", "measure_bubble_fraction",
    "mlp_logits", "mlp_loss", "replicated", "shutdown_distributed", "train",
]
