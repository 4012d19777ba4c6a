# ---
# jupyter:
#   accelerator: TPU
#   colab:
#     provenance: []
#     toc_visible: true
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: accelerator,colab,language_info
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   language_info:
#     name: python
#     pygments_lexer: ipython3
# ---

# %% [markdown]
# # Scaling on Colab: GPUs, TPUs, or virtual CPU devices
#
# **What it shows.** Made for Google Colab (Runtime > Change runtime type >
# TPU or GPU), and runs anywhere: installs the package when on Colab,
# detects the devices (CPU / GPU / TPU), trains an MLP with
# `ParallelTrainer` under each strategy (data, model, pipeline parallel and
# the two 2-d combinations) over **all local devices**, checks each against
# the single-device run, prints the strong-scaling table (time per epoch,
# speed-up, efficiency on 1, 2, 4, ... devices), and runs the large-scale
# benchmark suite on the device (the `default` suite on an accelerator,
# the `quick` suite on a CPU) with its report and plots.
#
# Without an accelerator it asks XLA for 8 virtual CPU devices (first
# code cell, before JAX starts). They share the host's cores, so the
# table then measures the overhead of sharding and collectives, not a
# speed-up.
#
# **How long it takes.** On a 2-core CPU with 8 virtual devices, shared
# with about 15 other jobs: 8 minutes at full size (28 parallel fits, most of
# it compilation, then the `quick` benchmark suite) and 84 seconds in
# small-size mode, measured; a quiet machine takes a fraction of that. On a
# Colab accelerator add the installation (a minute or two) and the `default`
# benchmark suite.
#
# **Small-size mode.** With the environment variable `OPTISCALE_NOTEBOOK_SMALL=1`
# the parameters cell picks tiny sizes (fewer rows, epochs and configurations)
# so the whole notebook runs in seconds; the test `tests/test_notebooks.py` runs
# it that way. The numbers printed then show that everything works, not how the
# methods compare.
#
# **Data and outputs.** The data sets are read from `$OPTISCALE_DATA_DIR`
# (a relative path is read against the working directory, which Jupyter sets
# to the notebook's folder and `python notebooks/colab_tpu_scaling.py` leaves
# where you are: the devices cell prints the absolute path it uses), else from
# the user cache (on Colab they are downloaded there). The benchmark's results,
# report and plots and the figures are saved under
# `notebooks/outputs/colab_tpu_scaling/` (`$OPTISCALE_NOTEBOOK_OUTPUT_DIR` to
# move them), a folder git ignores.

# %%
# Parameters, and the accelerator probe that must run before JAX is imported.
import os
import pathlib
import shutil
import subprocess
import sys

SMALL = os.environ.get("OPTISCALE_NOTEBOOK_SMALL", "0") == "1"
ON_COLAB = "google.colab" in sys.modules
N_ROWS = 512 if SMALL else 8_192    # MNIST rows, digits 0-4 vs 5-9
WIDTH = 16 if SMALL else 64         # MLP hidden width
EPOCHS = 5 if SMALL else 20         # full-batch epochs per timed fit
VIRTUAL_CPU_DEVICES = 8


def probe_accelerator() -> str:
    """'tpu', 'gpu' or 'cpu', from the machine alone (JAX must not start before XLA_FLAGS is set)."""
    tpu_env = ("COLAB_TPU_ADDR", "TPU_NAME", "TPU_ACCELERATOR_TYPE", "TPU_WORKER_ID")
    if any(os.environ.get(v) for v in tpu_env) or list(pathlib.Path("/dev").glob("accel[0-9]*")):
        return "tpu"
    if shutil.which("nvidia-smi"):
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
        if listing.returncode == 0 and "GPU" in listing.stdout:
            return "gpu"
    return "cpu"


ACCELERATOR = probe_accelerator()
if "jax" in sys.modules:
    print("JAX is already running in this kernel: restart it for XLA_FLAGS to take effect.")
XLA_FLAGS = os.environ.get("XLA_FLAGS", "")
if ACCELERATOR == "cpu" and "xla_force_host_platform_device_count" not in XLA_FLAGS:
    os.environ["XLA_FLAGS"] = (
        f"{XLA_FLAGS} --xla_force_host_platform_device_count={VIRTUAL_CPU_DEVICES}").strip()
print(f"small-size mode: {SMALL} | on Colab: {ON_COLAB} | accelerator probe: {ACCELERATOR} | "
      f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")

# %% [markdown]
# ## Install (Colab only)
#
# On Colab the cell below installs the JAX build for the runtime
# (`jax[tpu]` or `jax[cuda12]`) and this package. Put the repository where
# `OPTISCALE_SOURCE` points (default `/content/optiscale_jax`: upload it, or
# `git clone` your copy there), or set `OPTISCALE_SOURCE` to any `pip install`
# target such as a `git+https://...` URL. MNIST and California Housing are
# then downloaded on first use (`OPTISCALE_DOWNLOAD=1`). Anywhere else the
# cell does nothing: install with `pip install -e ".[notebooks]"` from the repository.

# %%
if ON_COLAB:
    source = os.environ.get("OPTISCALE_SOURCE", "/content/optiscale_jax")
    is_url = "://" in source or source.startswith("git+")
    if not is_url and not (pathlib.Path(source) / "pyproject.toml").is_file():
        raise FileNotFoundError(
            f"no optiscale_jax repository at {source!r}: upload or clone it there, or set "
            "os.environ['OPTISCALE_SOURCE'] to a pip target (e.g. 'git+https://<your repository>')")
    jax_build = {"tpu": "jax[tpu]>=0.10", "gpu": "jax[cuda12]>=0.10", "cpu": "jax>=0.10"}[ACCELERATOR]
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--upgrade", jax_build,
                    source], check=True)
    os.environ.setdefault("OPTISCALE_DOWNLOAD", "1")
    print(f"installed {jax_build} and {source}")
else:
    print("not on Colab: using this environment's installation")

# %% [markdown]
# ## Devices
#
# `jax.devices()` after start-up is the ground truth; the probe above only
# decided whether to ask for virtual CPU devices.

# %%
# JAX is imported only now: XLA_FLAGS (first cell) and the installation must come first.
import re  # noqa: E402

import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from IPython.display import Image, Markdown, display  # noqa: E402

from optiscale_jax.benchmark import plan_campaign, run_campaign  # noqa: E402
from optiscale_jax.datasets import load_mnist  # noqa: E402
from optiscale_jax.notebook_setup import FigureSaver, announce_data_dir  # noqa: E402
from optiscale_jax.parallel import STRATEGIES, MLPSpec, ParallelTrainer  # noqa: E402
from optiscale_jax.parallel.scaling import ScalingRow, format_table, scaling_efficiency  # noqa: E402

PLATFORM = jax.default_backend()       # 'cpu', 'gpu' or 'tpu'
DEVICES = jax.local_devices()
N_DEVICES = len(DEVICES)
ON_ACCELERATOR = PLATFORM in ("gpu", "tpu")
print(f"jax {jax.__version__}: platform {PLATFORM}, {N_DEVICES} local device(s), "
      f"{jax.device_count()} in all, {jax.process_count()} process(es)")
for device in DEVICES:
    print(f"  {device.id}: {device.platform} {device.device_kind}")
if ACCELERATOR != "cpu" and not ON_ACCELERATOR:
    print(f"warning: the probe found a {ACCELERATOR} but JAX runs on {PLATFORM}; "
          "install the matching JAX build (see the install cell)")

# Data: $OPTISCALE_DATA_DIR made absolute once, so every loader below reads the same folder.
announce_data_dir()
# Figures: saved to notebooks/outputs/colab_tpu_scaling/ (git-ignored; $OPTISCALE_NOTEBOOK_OUTPUT_DIR moves
# them), then shown. The notebook's folder is the script's when run by `python`, else the
# kernel's working directory (Jupyter starts it in the notebook's folder).
HERE = pathlib.Path(__file__).resolve().parent if "__file__" in globals() else pathlib.Path.cwd()
show = FigureSaver("colab_tpu_scaling", here=HERE)
OUTPUT_DIR = show.output_dir

# %% [markdown]
# ## Data and model
#
# MNIST digits 0-4 vs 5-9 and a small MLP binary classifier
# (`MLPSpec`: an input layer, `n_blocks` width-to-width tanh layers, a
# logistic output). Pipeline parallelism splits the `n_blocks` layers into
# one stage per device, so `n_blocks` is a multiple of the device count;
# model parallelism splits the hidden units, so the width is too.

# %%
X, y, _, _, meta = load_mnist(n_samples=N_ROWS, binary_classification=True, test_size=0.0)
n_blocks = max(N_DEVICES, 2)
width = -(-max(WIDTH, N_DEVICES) // N_DEVICES) * N_DEVICES   # rounded up to a multiple of N_DEVICES
spec = MLPSpec(n_features=X.shape[1], width=width, n_blocks=n_blocks, l2=1e-4)
HYPER = {"learning_rate": 1e-2}
print(f"X {X.shape} {X.dtype}, {y.mean():.1%} positive; {spec}")


# %% [markdown]
# ## Every strategy, on one device and over all local devices
#
# The same MLP, optimizer (Adam, `lr = 1e-2`, full batch) and initial
# weights under each strategy: first on a 1-device mesh (the same program
# without communication, the baseline `T_1` of the scaling table below),
# then over all local devices (and, at full size, over the powers of two in
# between). Every run's loss curve must match the 1-device data-parallel
# run: the sharded programs add the same terms in another order, so only
# float32 rounding may differ.

# %%
def fit(strategy, n_devices):
    return ParallelTrainer(n_devices, strategy, "adam", hyperparams=HYPER, model=spec,
                           epochs=EPOCHS).fit(X, y)


intermediate = [] if SMALL else [n for n in (2, 4, 8, 16, 32, 64)
                                 if n < N_DEVICES and N_DEVICES % n == 0]
COUNTS = sorted({1, N_DEVICES, *intermediate})
runs = {}
for strategy in STRATEGIES:
    for n in COUNTS:
        trainer = runs[strategy, n] = fit(strategy, n)
        reference = runs["data_parallel", 1].history_
        gap = np.max(np.abs(trainer.history_ - reference) / reference)
        extra = (f", pipeline bubble {trainer.bubble_fraction_:.0%}"
                 if n > 1 and hasattr(trainer, "bubble_fraction_") else "")
        print(f"{strategy:23s} {n:3d} device(s), mesh {dict(trainer.layout_.mesh.shape)}: "
              f"final loss {trainer.history_[-1]:.6f}, max rel. difference from 1 device {gap:.1e}, "
              f"compile {trainer.result_.compile_time_s:.2f} s, "
              f"{1e3 * trainer.result_.time_per_epoch_s:.2f} ms/epoch{extra}")
        assert gap < 1e-3, (strategy, n, gap)

# %% [markdown]
# ## Strong scaling
#
# For each strategy on `n` devices with time per epoch `T_n` (compile
# excluded, device work blocked on): speed-up `T_1 / T_n` and efficiency
# `T_1 / (n T_n)`, where `T_1` is the same strategy on one device (the
# runs above). On virtual CPU devices, which share the host's cores,
# expect speed-ups below 1: the table then prices the sharding and the
# collectives.

# %%
rows = []
for strategy in STRATEGIES:
    t_1 = runs[strategy, 1].result_.time_per_epoch_s
    for n in COUNTS:
        result = runs[strategy, n].result_
        mesh = tuple(runs[strategy, n].layout_.mesh.shape.values())
        rows.append(ScalingRow(strategy, n, mesh, result.compile_time_s, result.time_per_epoch_s,
                               t_1 / result.time_per_epoch_s,
                               scaling_efficiency(t_1, result.time_per_epoch_s, n)))
display(Markdown(format_table(rows)))

fig, ax = plt.subplots(figsize=(9, 4))
# A marker and a line style per strategy, so that strategies with equal times stay visible.
for index, strategy in enumerate(STRATEGIES):
    points = [(r.n_devices, r.speedup) for r in rows if r.strategy == strategy]
    ax.plot(*zip(*points), marker="osv^DPX"[index % 7], linestyle=("-", "--", "-.")[index % 3],
            markersize=9 - index, label=strategy)
ax.plot(COUNTS, COUNTS, color="gray", linestyle=":", label="linear")
ax.set_xscale("log", base=2)
ax.set_yscale("log", base=2)
ax.set_xticks(COUNTS, [str(n) for n in COUNTS])
ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
ax.set_xlabel(f"{PLATFORM} devices")
ax.set_ylabel("speed-up T_1 / T_n")
ax.set_title(f"Strong scaling, MLP width {spec.width}, {spec.n_blocks} blocks, {N_ROWS} rows")
ax.grid(True, which="both", alpha=0.3)
ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
fig.tight_layout()
show(fig, "strong_scaling")

# %% [markdown]
# ## The large-scale benchmark suite on this device
#
# The same campaign as `python -m experiments.large_scale` (see
# `docs/benchmark.md`): data sets x optimizers on the compiled engine, each
# run's JSON record written as soon as it finishes, then a Markdown report
# and convergence plots built from the JSON. The `default` suite on an
# accelerator, the `quick` one on a CPU; in small-size mode one of the
# quick suite's data sets with fewer epochs. Running the cell again starts
# afresh: the store moves the earlier results aside (`overwrite=True`).

# %%
if SMALL:
    plan = plan_campaign(suite="quick", datasets=["california_housing"], epochs=50)
else:
    plan = plan_campaign(suite="default" if ON_ACCELERATOR else "quick")
print(f"{len(plan.entries)} data sets x {len(plan.optimizers)} optimizers on {PLATFORM}: "
      f"{[e.dataset for e in plan.entries]} x {list(plan.optimizers)}")
summary = run_campaign(plan, output_dir=OUTPUT_DIR / "benchmark", overwrite=True)
print(f"{summary.executed_runs} runs in {summary.wall_time_s:.1f} s; "
      f"skipped data sets: {summary.skipped_datasets}; results in {summary.results_path}")

# %%
# The report embeds its plots by relative path; show its text, then the plots it names.
report = summary.report_path.read_text()
plots = list(dict.fromkeys(re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report)))
display(Markdown(re.sub(r"!\[[^\]]*\]\([^)]+\)\n?", "", report)))
for name in plots:
    print(name)
    display(Image(filename=str(summary.report_path.parent / name)))
