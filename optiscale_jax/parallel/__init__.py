"""Sharded training on a device mesh: data, fsdp, model (tensor) and pipeline parallelism.

Parameters and optimizer state are pytrees of sharded ``jax.Array``s that stay split
between steps (fsdp, model and pipeline parallelism divide their memory per device);
Orbax checkpoints hold them and restore onto another mesh; multi-host start-up.

    >>> from optiscale_jax.parallel import ParallelTrainer
    >>> ParallelTrainer(n_devices=8, strategy="fsdp", optimizer="adam").fit(X, y).coef_
"""

from optiscale_jax.parallel.checkpoint import latest_epoch, restore_checkpoint, save_checkpoint
from optiscale_jax.parallel.distributed import (
    DistributedInfo,
    distributed_info,
    global_rows,
    initialize_distributed,
    replicated,
    shutdown_distributed,
)
from optiscale_jax.parallel.loop import TrainState
from optiscale_jax.parallel.memory import MemoryEstimate, estimate_parallel_memory
from optiscale_jax.parallel.memory import measure as measure_memory
from optiscale_jax.parallel.mesh import STRATEGIES, MeshLayout, make_layout
from optiscale_jax.parallel.mlp import (
    MLPParams,
    MLPSpec,
    init_mlp_params,
    mlp_logits,
    mlp_loss,
    n_params,
)
from optiscale_jax.parallel.pipeline import bubble_fraction, measure_bubble_fraction
from optiscale_jax.parallel.sharded_model import ShardedModel, init_stored_mlp, sharded_model
from optiscale_jax.parallel.trainer import ParallelTrainer, ShardedRun, fit_sharded, make_loss, train

__all__ = [
    "DistributedInfo", "MLPParams", "MLPSpec", "MemoryEstimate", "MeshLayout", "ParallelTrainer",
    "STRATEGIES", "ShardedModel", "ShardedRun", "TrainState",
    "bubble_fraction", "distributed_info", "estimate_parallel_memory", "fit_sharded", "global_rows",
    "init_mlp_params", "init_stored_mlp", "initialize_distributed", "latest_epoch", "make_layout",
    "make_loss", "measure_bubble_fraction", "measure_memory", "mlp_logits", "mlp_loss", "n_params",
    "replicated", "restore_checkpoint", "save_checkpoint", "sharded_model", "shutdown_distributed",
    "train",
]
