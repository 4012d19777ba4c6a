"""Cost and memory of a streaming problem at large d, as one JSON line.

    python -m optiscale_jax.cli.streaming_memory --dim=1000000 --batch_size=4 --steps=200

Runs ``--steps`` SGD steps of a streaming problem (each batch drawn inside the compiled program
from ``fold_in(key, t)``; no data set in memory) as one jitted loop, and, as the floor, the same
loop doing only the random-number generation of those batches. Prints seconds per step of both
(median of ``--repeats`` runs, compile excluded), their ratio, the final population loss against
f*, and the process's peak resident memory in GiB (Linux ``VmHWM``; run it in a fresh process,
the peak covers imports and compilation). See docs/scaling-studies.md.
"""

from __future__ import annotations

import json

from absl import flags

from optiscale_jax.cli import _common
from optiscale_jax.studies import streaming_memory

FLAGS = flags.FLAGS
KINDS = ("least_squares", "logistic")


def define_flags() -> None:
    """The binary's flags (defined when run, so importing the module defines nothing)."""
    if "dim" in FLAGS:
        return
    flags.DEFINE_integer("dim", 1_000_000, "Dimension d of the streaming problem.")
    flags.DEFINE_integer("batch_size", 4, "Samples per step.")
    flags.DEFINE_integer("steps", 200, "SGD steps per timed run.")
    flags.DEFINE_enum("kind", "least_squares", list(KINDS), "Streaming least squares or logistic.")
    flags.DEFINE_integer("repeats", 3, "Timed runs; the median is reported.")


def main(argv: list[str]) -> int:
    """Validate the flags, measure, print one JSON line."""
    _common.reject_positional(argv)
    dim = _common.check_int(FLAGS.dim, "dim", minimum=2)
    batch_size = _common.check_int(FLAGS.batch_size, "batch_size", minimum=1)
    steps = _common.check_int(FLAGS.steps, "steps", minimum=1)
    repeats = _common.check_int(FLAGS.repeats, "repeats", minimum=1)
    print(json.dumps(streaming_memory.measure(dim, batch_size, steps, kind=FLAGS.kind, repeats=repeats)))
    return 0


def run() -> None:
    """Entry point (``python -m optiscale_jax.cli.streaming_memory``)."""
    define_flags()
    _common.run_app(main, doc=__doc__, program="python -m optiscale_jax.cli.streaming_memory")


if __name__ == "__main__":
    run()
