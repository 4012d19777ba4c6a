"""``python -m experiments.data_scale`` from the repository root: the size ladder.

See ``optiscale_jax/cli/data_scale.py`` (``python -m experiments.data_scale --help``) and
docs/data-scale.md.
"""

from optiscale_jax.cli.data_scale import run

if __name__ == "__main__":
    run()
