"""GPU check, part 2: backend speed and a monitored training run, CPU against GPU.

Run by ``scripts/gpu_check.sh`` (which runs the gpu-marked tests first), from
the source tree with ``PYTHONPATH=.``, on a machine with an NVIDIA GPU, the
packages of requirements-cuda.txt, and no network:

  1. ``compare_backends`` (NumPy / JAX / CuPy) on 1000x1000 and 4096x4096
     float32 products ``X @ X.T``: median ms, speed-up over NumPy, error;
  2. one Adam run of the engine on MNIST-10k (binary 0-4 vs 5-9; a synthetic
     10,000 x 784 stand-in, labelled so, when the MNIST files are not found)
     on the CPU and on the GPU, each under an ``OptimizerProfiler`` and a
     sampling ``GPUMonitor``;
  3. fsdp (parameters and Adam state split over every GPU present) on an MLP on the
     same data: bytes per device measured from the arrays' shards and each GPU's
     ``memory_stats()`` (bytes in use, peak) after training;
  4. a short table, and everything as JSON with ``--out FILE``.

Exit status: 0 when every check holds, 1 when one fails, 2 when no GPU is
usable (the reason is printed). ``--cpu-dry-run`` runs the same code with the
GPU parts reported unavailable, to try the script on a machine without one.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time
from typing import Any

import jax
import numpy as np
import optax

from optiscale_jax import training
from optiscale_jax.backends import backend_available
from optiscale_jax.datasets import load_mnist
from optiscale_jax.parallel import MLPSpec, ParallelTrainer, measure_memory
from optiscale_jax.problems import make_problem
from optiscale_jax.profiling import GPUMonitor, OptimizerProfiler, SpeedBenchmark, first_gpu

REPO = pathlib.Path(__file__).resolve().parents[1]
MATMUL_SIZES = (1000, 4096)
EPOCHS = 1000


def gpu_device(dry_run: bool) -> Any:
    """The first JAX GPU, or None in a dry run; exits 2 with the reason otherwise."""
    device, why = first_gpu()
    if device is not None:
        return device
    if dry_run:
        print(f"[dry run] no GPU: {why}")
        return None
    print(f"gpu_check: FAIL: JAX sees no GPU ({why}). Install the CUDA wheels "
          "(pip install -r requirements-cuda.txt) on a machine with an NVIDIA GPU.")
    sys.exit(2)


def environment() -> dict[str, Any]:
    return {"python": platform.python_version(), "jax": jax.__version__,
            "devices": [str(d) for d in jax.devices()], "cpu_count": os.cpu_count(),
            "cupy_available": backend_available("cupy")}


def backend_comparison() -> list[dict[str, Any]]:
    """compare_backends on float32 X @ X.T for each size."""
    rows = []
    rng = np.random.default_rng(0)
    for size in MATMUL_SIZES:
        X = rng.standard_normal((size, size), dtype=np.float32)
        runs = 10 if size <= 1000 else 5
        result = SpeedBenchmark(warmup=2).compare_backends(lambda m: m @ m.T, X, n_runs=runs)
        for backend, entry in result.items():
            rows.append({"size": size, "backend": backend, **{
                k: v for k, v in entry.items() if k != "times"}})
    return rows


def mnist_problem() -> tuple[Any, str]:
    """MNIST-10k as a logistic Problem, or a labelled synthetic stand-in of the same shape."""
    candidates = [os.environ.get("OPTISCALE_DATA_DIR"), REPO / "shared" / "data",
                  REPO.parent / "shared" / "data"]
    for root in [pathlib.Path(c) for c in candidates if c]:
        if (root / "mnist").is_dir():
            X, y, _, _, meta = load_mnist(n_samples=10_000, binary_classification=True,
                                          test_size=0.0, data_dir=root)
            return make_problem("logistic", X, y, l2=1e-4), f"MNIST-10k ({root / 'mnist'})"
    rng = np.random.default_rng(0)
    X = rng.random((10_000, 784))
    y = (X @ rng.standard_normal(784) > 0).astype(float)
    looked = ", ".join(str(c) for c in candidates if c)
    return (make_problem("logistic", X, y, l2=1e-4),
            f"synthetic 10000x784 (no mnist/ under: {looked})")


def monitored_run(problem: Any, device: Any, label: str) -> dict[str, Any]:
    """One profiled, NVML-monitored engine run on `device`."""
    with jax.default_device(device):
        with GPUMonitor(device_id=0, interval_s=0.05) as monitor, OptimizerProfiler() as profiler:
            result = training.run(problem, "adam", epochs=EPOCHS,
                                  hyperparams={"learning_rate": 1e-2})
    stats, gpu = profiler.get_stats(), monitor.get_stats()
    monitor.close()
    return {
        "platform": label, "device": str(device), "epochs": stats["epochs"],
        "compile_s": stats["compile_time"], "run_s": stats["epoch_time_sum"],
        "ms_per_epoch": 1e3 * stats["avg_epoch_time"], "outside_epochs_s": stats["unattributed_time"],
        "final_loss": float(result.train_loss[-1]), "status": result.status,
        "host_peak_increase_mb": stats.get("peak_memory_increase_mb"),
        "host_peak_source": stats["peak_memory_source"],
        # JAX's GPU peak is process-wide and never reset: meaningful for the GPU run only.
        "jax_gpu_peak_mb": stats.get("gpu_peak_memory_mb") if label == "gpu" else None,
        "nvml_available": gpu["available"], "nvml_reason": gpu["reason"],
        "nvml_peak_used_mb": gpu["memory"]["peak_mb"],
        "gpu_util_avg": gpu["utilization"]["gpu_avg_percent"],
        "gpu_util_max": gpu["utilization"]["gpu_max_percent"],
        "power_avg_w": gpu["power"]["avg_w"], "energy_j": gpu["energy"]["joules"],
        "nvml_samples": gpu["n_samples"],
    }


FSDP_EPOCHS = 20
FSDP_ROWS = 2048


def fsdp_run(problem: Any, gpu: Any) -> dict[str, Any]:
    """An MLP trained with Adam under fsdp over every GPU (the CPU in a dry run): per-device
    bytes from the shards, ``memory_stats()`` of each device, and the 1-device loss to match."""
    devices = jax.devices("cpu")[:1] if gpu is None else jax.devices(gpu.platform)
    X, y = np.asarray(problem.X, np.float32), np.asarray(problem.y, np.float32)
    n = (min(X.shape[0], FSDP_ROWS) // (8 * len(devices))) * 8 * len(devices)  # divides over devices
    spec = MLPSpec(n_features=X.shape[1], width=128 * len(devices), n_blocks=4, l2=1e-4)

    def fit(devs: list) -> ParallelTrainer:
        return ParallelTrainer(len(devs), "fsdp", optax.adam(1e-3), model=spec, epochs=FSDP_EPOCHS,
                               devices=devs).fit(X[:n], y[:n])

    trainer = fit(devices)
    memory = measure_memory(trainer)
    single = fit(devices[:1]) if len(devices) > 1 else trainer
    return {
        "devices": [str(d) for d in devices], "width": spec.width,
        "final_loss": float(trainer.history_[-1]), "single_device_final_loss": float(single.history_[-1]),
        "initial_loss": float(trainer.result_.initial_loss),
        "params_per_device": memory.parts["params"], "opt_state_per_device": memory.parts["opt_state"],
        "replicated_params_and_state": memory.replicated_bytes("params", "opt_state"),
        "max_params_and_state_per_device": memory.max_per_device("params", "opt_state"),
        "memory_stats": [m._asdict() for m in memory.device_stats],
        "ms_per_step": 1e3 * trainer.result_.time_per_epoch_s, "compile_s": trainer.result_.compile_time_s,
    }


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def print_tables(report: dict[str, Any]) -> None:
    print("\n== compare_backends: float32 X @ X.T (median of timed runs, after warm-up)")
    print(f"{'size':>6} {'backend':<7} {'median ms':>10} {'speedup':>8} {'rel err':>9}  device / reason")
    for row in report["backends"]:
        if row["available"]:
            print(f"{row['size']:>6} {row['backend']:<7} {_fmt(1e3 * row['median_time']):>10} "
                  f"{_fmt(row['speedup_vs_numpy']):>8} {_fmt(row['max_rel_error_vs_numpy'], '.1e'):>9}"
                  f"  {row['device']}")
        else:
            print(f"{row['size']:>6} {row['backend']:<7} {'-':>10} {'-':>8} {'-':>9}  "
                  f"unavailable: {row['reason'][:70]}")
    print(f"\n== Adam, {EPOCHS} full-batch epochs on {report['data']}")
    print(f"{'run':<4} {'compile s':>9} {'run s':>8} {'ms/epoch':>9} {'final loss':>11} "
          f"{'host MB':>8} {'jaxGPU MB':>9} {'NVML MB':>8} {'util avg/max':>12} {'energy J':>9}")
    for row in report["training"]:
        util = (f"{_fmt(row['gpu_util_avg'], '.0f')}/{_fmt(row['gpu_util_max'], '.0f')}"
                if row["gpu_util_avg"] is not None else "-")
        print(f"{row['platform']:<4} {_fmt(row['compile_s']):>9} {_fmt(row['run_s']):>8} "
              f"{_fmt(row['ms_per_epoch']):>9} {_fmt(row['final_loss'], '.6f'):>11} "
              f"{_fmt(row['host_peak_increase_mb'], '.0f'):>8} {_fmt(row['jax_gpu_peak_mb'], '.0f'):>9} "
              f"{_fmt(row['nvml_peak_used_mb'], '.0f'):>8} {util:>12} {_fmt(row['energy_j']):>9}")
    fsdp = report["fsdp"]
    print(f"\n== fsdp, Adam, {FSDP_EPOCHS} steps, MLP width {fsdp['width']} on {len(fsdp['devices'])} "
          f"device(s): loss {fsdp['initial_loss']:.4f} -> {fsdp['final_loss']:.4f} "
          f"(1 device: {fsdp['single_device_final_loss']:.4f}), {_fmt(fsdp['ms_per_step'])} ms/step")
    print(f"params + Adam state per device {fsdp['max_params_and_state_per_device'] / 2**20:.2f} MiB "
          f"of {fsdp['replicated_params_and_state'] / 2**20:.2f} MiB replicated")
    for stats in fsdp["memory_stats"] or [{"device": "-", "bytes_in_use": None, "peak_bytes_in_use": None}]:
        print(f"  memory_stats {stats['device']}: in use {_fmt(stats['bytes_in_use'])} B, "
              f"peak {_fmt(stats['peak_bytes_in_use'])} B")
    print("\n== checks")
    for name, (ok, detail) in report["checks"].items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")


def checks(report: dict[str, Any], dry_run: bool) -> dict[str, tuple[bool, str]]:
    """The facts this script asserts on the GPU machine."""
    out: dict[str, tuple[bool, str]] = {}
    by_key = {(row["size"], row["backend"]): row for row in report["backends"]}
    for size in MATMUL_SIZES:
        for backend in ("jax",) + (() if dry_run else ("cupy",)):
            row = by_key[(size, backend)]
            ok = row["available"] and row["max_rel_error_vs_numpy"] < 1e-2
            out[f"{backend} {size}x{size} matches NumPy"] = (
                ok, f"rel err {_fmt(row.get('max_rel_error_vs_numpy'), '.1e')} "
                    f"(< 1e-2: float32, TF32 allowed)" if row["available"] else row["reason"])
    runs = {row["platform"]: row for row in report["training"]}
    if "gpu" in runs:
        cpu, gpu = runs["cpu"], runs["gpu"]
        rel = abs(gpu["final_loss"] - cpu["final_loss"]) / abs(cpu["final_loss"])
        out["GPU run matches CPU run"] = (rel < 1e-3, f"final loss rel diff {rel:.1e} (< 1e-3)")
        out["NVML saw the GPU run"] = (
            bool(gpu["nvml_available"]) and gpu["nvml_samples"] >= 2,
            f"{gpu['nvml_samples']} samples, peak {_fmt(gpu['nvml_peak_used_mb'], '.0f')} MiB")
        out["JAX device memory_stats present"] = (
            gpu["jax_gpu_peak_mb"] is not None, f"peak {_fmt(gpu['jax_gpu_peak_mb'], '.0f')} MiB")
    fsdp = report["fsdp"]
    n = len(fsdp["devices"])
    share = fsdp["max_params_and_state_per_device"] / fsdp["replicated_params_and_state"]
    out["fsdp splits params + state"] = (share <= 1.01 / n, f"{share:.4f} of replicated per device "
                                         f"(<= 1.01 / {n})")
    rel = abs(fsdp["final_loss"] - fsdp["single_device_final_loss"]) / abs(fsdp["single_device_final_loss"])
    out["fsdp matches 1 device"] = (rel < 1e-3 and fsdp["final_loss"] < fsdp["initial_loss"],
                                    f"final loss rel diff {rel:.1e} (< 1e-3), loss decreased")
    if not dry_run:
        out["fsdp memory_stats recorded"] = (len(fsdp["memory_stats"]) == n, f"{len(fsdp['memory_stats'])} "
                                             f"of {n} GPUs report memory_stats()")
    for row in report["training"]:
        out[f"{row['platform']} run finished"] = (
            row["epochs"] == EPOCHS and np.isfinite(row["final_loss"]),
            f"{row['epochs']} epochs, status {row['status']}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the full report as JSON to this file")
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="run without a GPU, GPU parts reported unavailable")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    gpu = gpu_device(args.cpu_dry_run)
    report: dict[str, Any] = {"environment": environment()}
    print(json.dumps(report["environment"]))
    report["backends"] = backend_comparison()
    problem, report["data"] = mnist_problem()
    report["training"] = [monitored_run(problem, jax.devices("cpu")[0], "cpu")]
    if gpu is not None:
        report["training"].append(monitored_run(problem, gpu, "gpu"))
    report["fsdp"] = fsdp_run(problem, gpu)
    report["checks"] = checks(report, args.cpu_dry_run)
    report["wall_time_s"] = time.perf_counter() - start
    print_tables(report)
    print(f"\ngpu_check.py: {report['wall_time_s']:.1f} s")
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    return 0 if all(ok for ok, _ in report["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
