"""``python -m experiments.scaling`` from the repository root: the ``optiscale-scaling`` command.

See ``optiscale_jax/cli/scaling.py`` (or ``--help``) and docs/parallel.md.
"""

from optiscale_jax.cli.scaling import run

if __name__ == "__main__":
    run()
