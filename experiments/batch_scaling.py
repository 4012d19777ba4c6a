"""``python -m experiments.batch_scaling`` from the repository root: the ``optiscale-batch-scaling`` command.

See ``optiscale_jax/cli/batch_scaling.py`` (or ``--help``) and docs/scaling-studies.md.
"""

from optiscale_jax.cli.batch_scaling import run

if __name__ == "__main__":
    run()
