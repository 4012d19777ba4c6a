"""Environment record: the system a benchmark ran on, stored with its results.

Versions (Python, JAX, jaxlib, optax, NumPy, ...), JAX devices, CPU model and
core count, BLAS thread pools, the thread-related environment variables, the
git commit of the source tree, and the flags of the run. A number in a report
means little without these.
"""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import platform
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import jax
import psutil
import threadpoolctl

from optiscale_jax.backends import cpu_model
from optiscale_jax.benchmark.store import utc_now

__all__ = ["THREAD_ENV_VARS", "environment_record", "git_commit", "cpu_model"]

_PACKAGES = ("jax", "jaxlib", "optax", "numpy", "scipy", "scikit-learn", "flax",
             "matplotlib", "cupy-cuda12x", "nvidia-ml-py")
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                   "XLA_FLAGS", "JAX_PLATFORMS", "JAX_ENABLE_X64", "CUDA_VISIBLE_DEVICES",
                   "OPTISCALE_DATA_DIR", "OPTISCALE_CACHE_DIR")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The git commit of the source tree holding ``path`` and whether it is dirty.

    Returns ``{"commit": None, "reason": ...}`` outside a git checkout.
    """
    where = pathlib.Path(path) if path is not None else pathlib.Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=where, capture_output=True, text=True, timeout=10,
                                check=True).stdout
    except (OSError, subprocess.SubprocessError) as err:
        return {"commit": None, "reason": f"not a git checkout or git missing: {err}"}
    return {"commit": commit, "dirty": bool(status.strip())}


def _blas_threads() -> list[dict[str, Any]]:
    return [{"api": info.get("internal_api"), "version": info.get("version"),
             "num_threads": info.get("num_threads")}
            for info in threadpoolctl.threadpool_info()]


def _jax_devices() -> dict[str, Any]:
    try:
        devices = jax.devices()
        return {"default_backend": jax.default_backend(),
                "devices": [str(d) for d in devices],
                "device_kinds": sorted({d.device_kind for d in devices}),
                "x64_enabled": bool(jax.config.jax_enable_x64)}
    except Exception as err:  # a broken JAX install is itself a fact to record
        return {"error": f"{type(err).__name__}: {err}"}


def environment_record(flags: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything about the system and the invocation that a result depends on."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    total_memory_gb = psutil.virtual_memory().total / 2**30
    return {
        "recorded_at": utc_now(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in _PACKAGES},
        "jax": _jax_devices(),
        "cpu": {"model": cpu_model(), "logical_cores": os.cpu_count(),
                "cores_available": affinity, "total_memory_gb": total_memory_gb},
        "blas_threads": _blas_threads(),
        "env": {name: os.environ.get(name) for name in THREAD_ENV_VARS},
        "git": git_commit(),
        "argv": list(sys.argv),
        "flags": dict(flags or {}),
    }
