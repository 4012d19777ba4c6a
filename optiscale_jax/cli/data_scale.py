"""optiscale-data-scale: how the in-memory path scales with the data, rung by rung.

    python -m experiments.data_scale [--sizes=10000x1000,100000x1000,100000x10000,1000000x1000]
        [--epochs=10] [--batch_size=0] [--json_out=data_scale.json] [--shuffle_check]

For each n x d rung, in a fresh process (so its host peak is its own): least-squares
data generated directly in float32 (kappa 100, DCT factors), a Problem on it (a view,
with the construction's factors and spectrum), f* (exact from the factors, with its
certificate ||grad f||), one compiled training run (SGD at 1/L, --epochs epochs,
kernel "generic": every epoch reads X), and one pass over X (`X @ w` in XLA) as the
floor of an epoch. Printed per rung: set-up (generation + Problem) seconds, f*
seconds, compile seconds, ms/epoch, ms/epoch over the one-pass floor, and the host
peak (the process's peak resident set, VmHWM, above its resident set before
the data, JAX's runtime included) over the data's size.
A rung whose estimate does not fit the machine's memory is refused by the generator
(MemoryError) and reported, the ladder going on.

--shuffle_check times one mini-batch epoch's two parts at 1e6 x 100 (batch 256) in one
process: the per-epoch permutation (the engine's Feistel bijection) and the scan of
3,906 gather-and-step updates, each compiled alone; it prints their ratio, and the
sort-based permutation (jax.random.permutation) for comparison.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import psutil
from absl import flags

from optiscale_jax.benchmark.store import atomic_write_json
from optiscale_jax.cli import _common
from optiscale_jax.datasets import generate_highdim_regression
from optiscale_jax.problems import make_problem
from optiscale_jax.profiling import host_peak
from optiscale_jax.training import compile_run
from optiscale_jax.training.batching import batch_plan, permutation_in_program, seed_key

FLAGS = flags.FLAGS
GIB = 2.0**30
CONDITION_NUMBER = 100.0


def define_flags() -> None:
    """The binary's flags (defined on first use, so importing the module defines none)."""
    if "sizes" in FLAGS:
        return
    flags.DEFINE_string("sizes", "10000x1000,100000x1000,100000x10000,1000000x1000",
                        "Comma-separated n x d rungs, e.g. 10000x1000,100000x1000.")
    flags.DEFINE_integer("epochs", 10, "Training epochs per rung (>= 1).")
    flags.DEFINE_integer("batch_size", 0, "Mini-batch size (0: full batch).")
    flags.DEFINE_string("json_out", None, "Also write every figure to this JSON file.")
    flags.DEFINE_bool("shuffle_check", False, "Time the shuffle against the update steps "
                      "at 1e6 x 100, batch 256, instead of the ladder.")
    flags.DEFINE_string("rung", None, "Internal: run one rung n x d in this process and "
                        "print its figures as JSON.")


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'10000x1000,1e5x1e3' -> [(10000, 1000), (100000, 1000)]; UsageError naming a bad item."""
    sizes = []
    for item in _common.parse_str_list(text, "sizes"):
        parts = item.lower().split("x")
        try:
            n, d = (int(float(p)) for p in parts)
        except ValueError:
            raise _common.UsageError(f"--sizes item {item!r} is not n x d (e.g. 10000x1000)") \
                from None
        if len(parts) != 2 or n < 2 or d < 1:
            raise _common.UsageError(f"--sizes item {item!r} needs n >= 2 and d >= 1")
        sizes.append((n, d))
    return sizes


def one_pass_seconds(X_device: jax.Array, repeats: int = 10) -> float:
    """Median seconds of `X @ w` in XLA: reading X once, the floor of any epoch."""
    w = jnp.ones(X_device.shape[1], X_device.dtype)
    matvec = jax.jit(lambda A, v: A @ v).lower(X_device, w).compile()
    jax.block_until_ready(matvec(X_device, w))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(matvec(X_device, w))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_rung(n: int, d: int, epochs: int, batch_size: int | None) -> dict[str, Any]:
    """One rung in this process: the figures the module docstring lists."""
    warm = make_problem("least_squares", np.ones((8, 2), np.float32), np.ones(8))
    compile_run(warm, "sgd", epochs=1)(1)                 # JAX's runtime up before the baseline
    baseline = psutil.Process().memory_info().rss
    start = time.perf_counter()
    X, y, _, meta = generate_highdim_regression(n, d, CONDITION_NUMBER, dtype=np.float32,
                                                orthogonal="dct")
    problem = make_problem("least_squares", X, y, factorization=meta["factorization"],
                           recipe=meta["recipe"])
    setup_s = time.perf_counter() - start
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        optimum = problem.optimum(cache_dir=cache)
    optimum_s = time.perf_counter() - start
    compiled = compile_run(problem, "sgd", epochs=epochs, batch_size=batch_size,
                           hyperparams={"learning_rate": 1.0 / problem.smoothness()},
                           f_star=optimum.f_star, kernel="generic")
    result = compiled(1)
    floor_s = one_pass_seconds(jax.device_put(X))
    # The process's peak resident set (VmHWM; each rung has its own process), above the start.
    peak = host_peak().peak_bytes - baseline
    return {"n": n, "d": d, "data_gib": X.nbytes / GIB, "setup_s": setup_s,
            "f_star": optimum.f_star, "f_star_s": optimum_s, "f_star_method": optimum.method,
            "f_star_grad_norm": optimum.grad_norm, "f_star_gap_bound": optimum.gap_bound,
            "compile_s": compiled.compile_time_s, "ms_per_epoch": 1e3 * result.time_per_epoch_s,
            "one_pass_ms": 1e3 * floor_s, "epoch_over_pass": result.time_per_epoch_s / floor_s,
            "peak_gib": peak / GIB, "peak_over_data": peak / X.nbytes, "kernel": result.kernel,
            "status": result.status, "epochs": epochs, "batch_size": batch_size}


def _rung_in_subprocess(n: int, d: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "optiscale_jax.cli.data_scale", f"--rung={n}x{d}",
               f"--epochs={FLAGS.epochs}", f"--batch_size={FLAGS.batch_size}"]
    proc = subprocess.run(command, capture_output=True, text=True, check=False,
                          env=dict(os.environ))
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"n": n, "d": d, "error": last}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _print_rung(row: dict[str, Any]) -> None:
    if "error" in row:
        print(f"{row['n']:>9,} x {row['d']:>6,}: not run: {row['error']}")
        return
    print(f"{row['n']:>9,} x {row['d']:>6,} | data {row['data_gib']:6.2f} GiB | set-up "
          f"{row['setup_s']:7.1f} s | f* {row['f_star_s']:6.2f} s (|g| "
          f"{row['f_star_grad_norm']:.1e}) | compile {row['compile_s']:5.2f} s | "
          f"{row['ms_per_epoch']:9.2f} ms/epoch = {row['epoch_over_pass']:5.2f} x one pass "
          f"({row['one_pass_ms']:.2f} ms) | peak {row['peak_gib']:6.2f} GiB = "
          f"{row['peak_over_data']:.2f} x data", flush=True)


def shuffle_check(n: int = 1_000_000, d: int = 100, batch: int = 256,
                  repeats: int = 5) -> dict[str, float]:
    """Seconds of one epoch's permutation and of its update steps, compiled separately."""
    rng = np.random.default_rng(0)
    X = jax.device_put(rng.standard_normal((n, d), dtype=np.float32))
    y = jax.device_put(rng.standard_normal(n).astype(np.float32))
    plan = batch_plan(n, batch)

    def updates(w: jax.Array, order: jax.Array) -> jax.Array:
        cut = plan.n_full * plan.batch_size

        def step(w: jax.Array, index: jax.Array) -> tuple[jax.Array, None]:
            rows, targets = jnp.take(X, index, axis=0), jnp.take(y, index, axis=0)
            return w - 1e-3 * ((rows @ w - targets) @ rows) / index.shape[0], None

        w, _ = jax.lax.scan(step, w, order[:cut].reshape(plan.n_full, plan.batch_size))
        return step(w, order[cut:])[0] if plan.remainder else w

    permute = jax.jit(lambda key, epoch: permutation_in_program(key, epoch, n))
    sort_based = jax.jit(lambda seed, epoch: jax.random.permutation(
        jax.random.fold_in(jax.random.PRNGKey(seed), epoch), n).astype(jnp.int32))
    step_all = jax.jit(updates)
    key, w0 = seed_key(0), jnp.zeros(d, jnp.float32)
    order = jax.block_until_ready(permute(key, jnp.uint32(0)))
    jax.block_until_ready((step_all(w0, order), sort_based(0, 0)))

    def median(fn) -> float:
        times = []
        for epoch in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(fn(epoch))
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    out = {"shuffle_s": median(lambda e: permute(key, jnp.uint32(e))),
           "updates_s": median(lambda e: step_all(w0, order)),
           "sort_shuffle_s": median(lambda e: sort_based(0, e))}
    out["shuffle_over_updates"] = out["shuffle_s"] / out["updates_s"]
    out["sort_over_updates"] = out["sort_shuffle_s"] / out["updates_s"]
    return out


def main(argv: list[str]) -> None:
    """Checks the flags, then runs the ladder (or the shuffle check)."""
    _common.reject_positional(argv)
    _common.check_int(FLAGS.epochs, "epochs", minimum=1)
    _common.check_int(FLAGS.batch_size, "batch_size", minimum=0)
    batch_size = FLAGS.batch_size or None
    if FLAGS.rung:
        (n, d), = parse_sizes(FLAGS.rung)
        print(json.dumps(measure_rung(n, d, FLAGS.epochs, batch_size)))
        return
    if FLAGS.json_out:
        _common.check_writable_file(FLAGS.json_out, "json_out")
    if FLAGS.shuffle_check:
        report: Any = shuffle_check()
        print(f"1e6 x 100, batch 256: shuffle {1e3 * report['shuffle_s']:.1f} ms, updates "
              f"{1e3 * report['updates_s']:.1f} ms -> shuffle / updates = "
              f"{report['shuffle_over_updates']:.3f} (sort-based permutation "
              f"{1e3 * report['sort_shuffle_s']:.1f} ms = {report['sort_over_updates']:.2f} x)")
    else:
        sizes = parse_sizes(FLAGS.sizes)
        progress = _common.EtaPrinter(len(sizes))
        report = []
        for n, d in sizes:
            row = _rung_in_subprocess(n, d)
            _print_rung(row)
            report.append(row)
            progress.step(f"{n} x {d} done")
    if FLAGS.json_out:
        print(f"wrote {atomic_write_json(FLAGS.json_out, report)}")


def run() -> None:
    """Console-script entry point (``optiscale-data-scale``)."""
    define_flags()
    _common.run_app(main, doc=__doc__, program="optiscale-data-scale")


if __name__ == "__main__":
    run()
