"""How much of a profiled estimator fit is epochs: ``python scripts/profiler_accounting.py``.

A measurement, not a test (timings depend on the machine's load): fits Adam for 600
epochs on 16,000 x 256 logistic data inside an ``OptimizerProfiler`` and prints the
epoch time, the total (wall less compile and set-up), and their ratio. On a quiet
2-core machine the epochs are within 5% of the total.
"""

from __future__ import annotations

import numpy as np

from optiscale_jax.profiling import OptimizerProfiler
from optiscale_jax.training.estimators import Adam


def main(n_samples: int = 16_000, n_features: int = 256, epochs: int = 600) -> float:
    """Run the measurement and return ``epoch_time_sum / total_time``."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((n_samples, n_features))
    y = (X @ rng.standard_normal(n_features) + rng.standard_normal(n_samples) > 0).astype(float)
    Adam(learning_rate=0.01, epochs=2).fit(X[:100], y[:100])     # first-call Python paths
    with OptimizerProfiler() as profiler:
        Adam(learning_rate=0.01, epochs=epochs).fit(X, y)
    stats = profiler.get_stats()
    ratio = stats["epoch_time_sum"] / stats["total_time"]
    print(f"epochs {stats['epoch_time_sum']:.3f} s of total {stats['total_time']:.3f} s "
          f"({100 * ratio:.1f}%); set-up {stats['setup_time']:.3f} s, "
          f"compile {stats['compile_time']:.3f} s apart")
    return ratio


if __name__ == "__main__":
    main()
