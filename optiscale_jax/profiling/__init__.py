"""Profiling: time, host and device memory, NVML readings and speed comparisons.

    >>> from optiscale_jax.profiling import OptimizerProfiler
    >>> with OptimizerProfiler() as profiler:
    ...     Adam(learning_rate=0.01, epochs=1000).fit(X, y)
    >>> profiler.get_stats()["avg_epoch_time"]
"""

from optiscale_jax.profiling._device_memory import first_gpu
from optiscale_jax.profiling._host_memory import (
    HostPeak,
    PeakReset,
    current_rss_bytes,
    host_peak,
    reset_host_peak,
)
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
from optiscale_jax.profiling.sharding_memory import ShardedMemory, per_device_bytes, sharded_memory
from optiscale_jax.profiling.speed import SpeedBenchmark, summarize_times

__all__ = [
    "ArrayRecord", "GPUMonitor", "GPUSample", "HostPeak", "MemoryTracker", "OptimizerProfiler",
    "PeakReset", "ShardedMemory", "SpeedBenchmark", "array_record", "current_rss_bytes",
    "engine_device_arrays", "estimate_optimizer_memory", "estimate_training_memory", "first_gpu",
    "host_peak", "integrate_power_j", "optimizer_state_shapes", "per_device_bytes",
    "reset_host_peak", "sharded_memory", "summarize_times", "tree_bytes",
]
