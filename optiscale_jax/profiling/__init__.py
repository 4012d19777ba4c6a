"""Profiling: time, host and device memory, NVML readings and speed comparisons.

    >>> from optiscale_jax.profiling import OptimizerProfiler
    >>> with OptimizerProfiler() as profiler:
    ...     Adam(learning_rate=0.01, epochs=1000).fit(X, y)
    >>> profiler.get_stats()["avg_epoch_time"]
"""

from optiscale_jax.profiling._device_memory import first_gpu
from optiscale_jax.profiling.gpu_monitor import GPUMonitor, GPUSample, integrate_power_j
from optiscale_jax.profiling.memory import (
    ArrayRecord,
    MemoryTracker,
    array_record,
    engine_device_arrays,
    estimate_optimizer_memory,
    estimate_training_memory,
    optimizer_state_shapes,
    tree_bytes,
)
from optiscale_jax.profiling.profiler import OptimizerProfiler
from optiscale_jax.profiling.sharding_memory import ShardedMemory, per_device_bytes, sharded_memory  # noqa: F401
from optiscale_jax.profiling.speed import SpeedBenchmark, summarize_times

__all__ = [
    "ArrayRecord", "GPUMonitor", "GPUSample", "MemoryTracker", "OptimizerProfiler",
    "SpeedBenchmark", "array_record", "engine_device_arrays", "estimate_optimizer_memory",
    "estimate_training_memory", "first_gpu", "integrate_power_j", "optimizer_state_shapes",
    "summarize_times", "tree_bytes",
]
