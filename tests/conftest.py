"""Shared test set-up: 8 virtual CPU devices, the data directory, a private cache."""

import os
import pathlib
import tempfile

# Must happen before JAX initialises its backends (first JAX call).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("MPLBACKEND", "Agg")
# Tests check correctness, not speed: one BLAS thread keeps OpenBLAS from spinning
# against XLA's threads (and other processes) on small machines, where two threads
# made a 1,600 x 784 SVD take 19 s instead of 0.3 s. Subprocesses inherit it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

_REPO = pathlib.Path(__file__).resolve().parents[1]
_SHARED_DATA = _REPO.parent / "shared" / "data"
if "OPTISCALE_DATA_DIR" not in os.environ and _SHARED_DATA.is_dir():
    os.environ["OPTISCALE_DATA_DIR"] = str(_SHARED_DATA)
# A cache private to this test session unless the caller chose one.
os.environ.setdefault("OPTISCALE_CACHE_DIR", tempfile.mkdtemp(prefix="optiscale_test_cache_"))
# README's command passes a relative path (../shared/data); tests that change directory,
# subprocesses and notebook kernels (which start in notebooks/) need it absolute.
for _variable in ("OPTISCALE_DATA_DIR", "OPTISCALE_CACHE_DIR"):
    os.environ[_variable] = str(pathlib.Path(os.environ[_variable]).resolve())

import pytest  # noqa: E402
import threadpoolctl  # noqa: E402

threadpoolctl.threadpool_limits(limits=1, user_api="blas")


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    """The directory holding the real MNIST / California Housing files."""
    path = pathlib.Path(os.environ["OPTISCALE_DATA_DIR"])
    if not (path / "mnist").is_dir():
        pytest.fail(
            f"OPTISCALE_DATA_DIR={path} has no mnist/ folder; point it at shared/data "
            "(see README.md)")
    return path


def pytest_collection_modifyitems(config, items):
    """GPU tests are deselected by default (``addopts``); when a ``-m`` expression brings them
    back on a machine whose JAX sees no GPU, they are skipped with that reason instead of failing."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    import jax  # noqa: PLC0415  (only when GPU tests were selected; after XLA_FLAGS above)

    if any(device.platform == "gpu" for device in jax.devices()):
        return
    skip = pytest.mark.skip(reason=f"needs an NVIDIA GPU; JAX sees {jax.default_backend()} only "
                                   "(run scripts/gpu_check.sh on a GPU machine)")
    for item in gpu_items:
        item.add_marker(skip)
