"""``python -m experiments.large_scale`` from the repository root: the ``optiscale-bench`` command.

See ``optiscale_jax/cli/large_scale.py`` (or ``optiscale-bench --help``) and docs/benchmark.md.
"""

from optiscale_jax.cli.large_scale import run

if __name__ == "__main__":
    run()
