# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: language_info
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
# # optiscale_jax quick start
#
# **What it shows.** Two real data sets (California Housing regression and
# MNIST digits 0-4 vs 5-9 as logistic regression), trained with SGD,
# Nesterov, Adam and AdamW in two ways: the scikit-learn style estimators
# (`Adam(...).fit(X, y)`) and the optax-style transforms
# (`optimizers.adam(...)`) driven by the training engine and by a
# hand-written `lax.scan` loop, which must agree. Then a profiled run
# (time per epoch, compile time, peak memory), suboptimality curves
# `f(w_t) - f*` on a log scale against the exact optimum `f*`, and the same
# run on the NumPy and JAX backends. On the way, the labels decide the model:
# the 10 MNIST digits fit a softmax classifier, labels {-1, +1} a logistic one.
#
# **How long it takes.** On a 2-core CPU shared with about 15 other jobs:
# 6 minutes at full size (MNIST 10,000 images, 1,000 epochs per optimizer)
# and 50 seconds in small-size mode, measured; a quiet machine takes a
# fraction of that. Much of it is XLA compilation, about 1 s per program on
# a quiet machine. No GPU needed.
#
# **Small-size mode.** With the environment variable `OPTISCALE_NOTEBOOK_SMALL=1`
# the parameters cell picks tiny sizes (fewer rows, epochs and configurations)
# so the whole notebook runs in seconds; the test `tests/test_notebooks.py` runs
# it that way. The numbers printed then show that everything works, not how the
# methods compare.
#
# **Data and outputs.** The data sets are read from `$OPTISCALE_DATA_DIR`
# (a relative path is read against the working directory, which Jupyter sets
# to the notebook's folder and `python notebooks/quickstart.py` leaves where
# you are: the first cell prints the absolute path it uses), else from the
# user cache. Figures are saved under `notebooks/outputs/quickstart/`
# (`$OPTISCALE_NOTEBOOK_OUTPUT_DIR` to move them), a folder git ignores.

# %%
# Parameters: full sizes by default, tiny ones with OPTISCALE_NOTEBOOK_SMALL=1.
import os
import pathlib

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from optiscale_jax import optimizers
from optiscale_jax.datasets import load_california_housing, load_mnist
from optiscale_jax.notebook_setup import FigureSaver, announce_data_dir
from optiscale_jax.profiling import MemoryTracker, OptimizerProfiler, SpeedBenchmark
from optiscale_jax.training import SGD, Adam, AdamW, JAXOptimizer, Nesterov, run, run_reference

SMALL = os.environ.get("OPTISCALE_NOTEBOOK_SMALL", "0") == "1"
MNIST_SAMPLES = 1_000 if SMALL else 10_000   # rows drawn from MNIST (80 % train, 20 % test)
MNIST_EPOCHS = 100 if SMALL else 1_000       # full-batch epochs per optimizer
DIGITS_EPOCHS = 100 if SMALL else 300        # the 10-digit softmax classifier
HOUSING_EPOCHS = 100 if SMALL else 1_000
EAGER_EPOCHS = 5 if SMALL else 50            # the un-jitted JAX loop is slow: fewer epochs
OPTIMIZERS = ("sgd", "nesterov", "adam", "adamw")
ESTIMATORS = {"sgd": SGD, "nesterov": Nesterov, "adam": Adam, "adamw": AdamW}
print(f"small-size mode: {SMALL}")
print("jax", jax.__version__, "| devices:", jax.devices())

# Data: $OPTISCALE_DATA_DIR made absolute once, so every loader below reads the same folder.
announce_data_dir()
# Figures: saved to notebooks/outputs/quickstart/ (git-ignored; $OPTISCALE_NOTEBOOK_OUTPUT_DIR moves
# them), then shown. The notebook's folder is the script's when run by `python`, else the
# kernel's working directory (Jupyter starts it in the notebook's folder).
HERE = pathlib.Path(__file__).resolve().parent if "__file__" in globals() else pathlib.Path.cwd()
show = FigureSaver("quickstart", here=HERE)

# %% [markdown]
# ## 1. Data
#
# The loaders read the files under `$OPTISCALE_DATA_DIR` (or the user cache)
# and return `X_train, y_train, X_test, y_test, metadata`.
# The metadata's condition number is that of the least-squares Hessian
# `X^T X / n`; for MNIST it is infinite because 116 pixel columns are zero
# in every image (`X^T X` is singular), so the finite ratio over the nonzero
# spectrum is printed next to it.

# %%
Xh, yh, Xh_test, yh_test, housing_meta = load_california_housing()   # standardized features
Xm, ym, Xm_test, ym_test, mnist_meta = load_mnist(n_samples=MNIST_SAMPLES,
                                                  binary_classification=True)
for name, X, meta in (("California Housing", Xh, housing_meta), ("MNIST 0-4 vs 5-9", Xm, mnist_meta)):
    print(f"{name:20s} X_train {X.shape}, rank {meta['rank']}, "
          f"kappa(X^T X / n) = {meta['condition_number']:.3g}, "
          f"over the nonzero spectrum {meta['condition_number_nonzero']:.3g}")
print(f"MNIST positives (digits 5-9): {ym.mean():.1%}")
print(f"read from: {housing_meta['source']} and {mnist_meta['source']}")

# %% [markdown]
# ## 2. Estimators
#
# Each estimator builds a `Problem` from `(X, y)` (least squares with an L2
# term of `1e-4`, i.e. ridge, for real targets; L2 logistic regression for
# two classes, here the labels 0 and 1) and trains it full batch on the one
# compiled engine.
# California Housing gets an intercept (`fit_intercept=True`), since its
# target is not centred. `problem_.optimum()` solves the same objective
# exactly in float64 (a direct solve for ridge, Newton for logistic) and
# caches it, which gives `f*` for the suboptimality curves below.

# %%
DATASETS = {
    "California Housing": dict(X=Xh, y=yh, X_test=Xh_test, y_test=yh_test,
                               epochs=HOUSING_EPOCHS, fit_intercept=True),
    "MNIST 0-4 vs 5-9": dict(X=Xm, y=ym, X_test=Xm_test, y_test=ym_test,
                             epochs=MNIST_EPOCHS, fit_intercept=False),
}
fitted, f_star = {}, {}
print(f"{'data set':20s} {'optimizer':9s} {'lr':>7s} {'final f':>10s} {'(f-f*)/|f*|':>12s} "
      f"{'compile s':>9s} {'ms/epoch':>9s} {'test score':>10s}  other hyperparameters")
for data_name, d in DATASETS.items():
    for name in OPTIMIZERS:
        est = ESTIMATORS[name](epochs=d["epochs"], fit_intercept=d["fit_intercept"])
        est.fit(d["X"], d["y"])
        fitted[data_name, name] = est
        f_star[data_name] = est.problem_.optimum().f_star   # same objective for every optimizer
        final = est.history_["loss"][-1]
        print(f"{data_name:20s} {name:9s} {est.learning_rate:7.3g} {final:10.6f} "
              f"{(final - f_star[data_name]) / abs(f_star[data_name]):12.2e} "
              f"{est.compile_time_s_:9.2f} {1e3 * est.result_.time_per_epoch_s:9.3f} "
              f"{est.score(d['X_test'], d['y_test']):10.4f}  "
              f"{ {k: v for k, v in est.result_.hyperparams.items() if k != 'learning_rate'} }")
print("test score: R^2 for California Housing, accuracy for MNIST")

# %% [markdown]
# ### The labels decide the model
#
# One rule (`optiscale_jax.problems.labels.infer_problem_kind`) reads the
# labels: integer (or string) labels with more than two classes fit a
# softmax classifier, two classes a logistic one (any two labels, kept in
# `classes_`), real-valued targets least squares; `loss=` overrides it.
# `score` is then the accuracy, as in scikit-learn.

# %%
Xd, yd, Xd_test, yd_test, _ = load_mnist(n_samples=MNIST_SAMPLES)   # the 10 digits, int64
digits = Adam(epochs=DIGITS_EPOCHS).fit(Xd, yd)
held_out = np.mean(digits.predict(Xd_test) == yd_test)
print(f"labels {np.unique(yd).tolist()} -> loss_ {digits.loss_!r}, coef_ {digits.coef_.shape}, "
      f"held-out accuracy {held_out:.3f} (score: {digits.score(Xd_test, yd_test):.3f})")
assert digits.loss_ == "softmax" and digits.score(Xd_test, yd_test) == held_out

signs = np.where(ym == 1, 1, -1)                                      # the same task as {-1, +1}
signed = Adam(epochs=MNIST_EPOCHS).fit(Xm, signs)
print(f"labels {{-1, +1}} -> loss_ {signed.loss_!r}, classes_ {signed.classes_.tolist()}, "
      f"predictions {np.unique(signed.predict(Xm_test)).tolist()}")
np.testing.assert_allclose(signed.coef_, fitted["MNIST 0-4 vs 5-9", "adam"].coef_, rtol=1e-6)

# %% [markdown]
# ## 3. The same optimizers as transforms
#
# `optimizers.adam(learning_rate)` and friends are `optax.GradientTransformation`s
# (`init(params)`, `update(grads, state, params)`). `run(problem, tx, ...)`
# drives one on the engine (one jit-compiled scan over epochs), and they
# work just as well in a loop you write yourself. Both must reproduce the
# estimators' curves (shown here on MNIST).

# %%
data_name = "MNIST 0-4 vs 5-9"
transform_runs = {}
for name in OPTIMIZERS:
    est = fitted[data_name, name]
    # The estimator's full hyperparameters (its class defaults, e.g. Nesterov's momentum 0.99).
    tx = optimizers.get_optimizer(name, **est.result_.hyperparams)
    result = run(est.problem_, tx, epochs=est.epochs, f_star=f_star[data_name])
    transform_runs[name] = result
    gap = np.max(np.abs(result.train_loss - np.asarray(est.history_["loss"])))
    assert gap <= 1e-5 * abs(f_star[data_name]), (name, gap)
    print(f"{name:9s} status {result.status:10s} epochs to (f-f*)/|f*| <= 1e-2: "
          f"{result.epochs_to['1e-2']}, <= 1e-4: {result.epochs_to['1e-4']}; "
          f"max |loss(transform) - loss(estimator)| = {gap:.1e}")


# %%
# A hand-written training loop with a transform: jit + lax.scan over full-batch steps.
# Compared in float64, where rounding cannot hide a difference in the math: over
# hundreds of float32 Adam steps the two programs' roundings drift apart by ~1e-3.
def train_by_hand(problem, tx, epochs):
    X, y = jnp.asarray(problem.X, jnp.float64), jnp.asarray(problem.y, jnp.float64)

    @jax.jit
    def train(w0):
        def step(carry, _):
            w, state = carry
            updates, state = tx.update(problem.grad(w, X, y), state, w)
            w = optax.apply_updates(w, updates)
            return (w, state), problem.loss(w, X, y)
        (w, _), losses = jax.lax.scan(step, (w0, tx.init(w0)), None, length=epochs)
        return w, losses

    return train(jnp.zeros(problem.param_shape, jnp.float64))

est = fitted["MNIST 0-4 vs 5-9", "adam"]
tx = optimizers.adam(**est.result_.hyperparams)
with jax.enable_x64(True):
    w_hand, loss_hand = train_by_hand(est.problem_, tx, est.epochs)
    loss_hand = np.asarray(loss_hand)
engine64 = run(est.problem_, tx, epochs=est.epochs, dtype="float64",
               f_star=f_star["MNIST 0-4 vs 5-9"])
relative_gap = np.max(np.abs(loss_hand - engine64.train_loss) / np.abs(engine64.train_loss))
float32_gap = abs(transform_runs["adam"].final_loss - engine64.final_loss) / engine64.final_loss
print(f"hand-written loop vs engine, Adam on MNIST in float64: max relative loss difference "
      f"{relative_gap:.1e}")
print(f"(the float32 engine run ends {float32_gap:.1e} away from the float64 one)")
assert relative_gap < 1e-9, relative_gap

# %% [markdown]
# ## 4. Profiling a run
#
# `OptimizerProfiler` listens to the engine's events while it is active, so
# a plain `fit` inside it reports compile time apart from run time
# (device work blocked on) and the process's peak host memory (`VmHWM`,
# reset at start). `MemoryTracker` sizes arrays and optimizer states
# (from `jax.eval_shape` of the optimizer's `init`, nothing allocated).

# %%
with OptimizerProfiler() as profiler:
    Adam(epochs=MNIST_EPOCHS).fit(Xm, ym)
stats = profiler.get_stats()
print(f"compile {stats['compile_time']:.2f} s | run {stats['total_time']:.3f} s "
      f"over {stats['epochs']} epochs = {1e3 * stats['avg_epoch_time']:.3f} ms/epoch | "
      f"peak host memory {stats['peak_memory_mb']:.0f} MB ({stats['peak_memory_source']})")

tracker = MemoryTracker()
tracker.track_array("X_train", Xm)
tracker.track_array("y_train", ym)
summary = tracker.get_summary()
print(f"tracked data: {summary['tracked_arrays']} arrays, {summary['total_bytes'] / 2**20:.2f} MiB")
n_params = Xm.shape[1]
for name in OPTIMIZERS:
    e = tracker.estimate_optimizer_memory(n_params=n_params, optimizer_type=name)
    print(f"{name:9s} params + state = {e['resident_multiplier']:.2f} x params "
          f"({e['params_bytes'] + e['state_bytes']:,} bytes for {n_params} float32 parameters)")

# %% [markdown]
# ## 5. Suboptimality curves
#
# `f(w_t) - f*` per epoch, log scale. A float32 run cannot resolve the
# objective much below `eps_32 * |f*|` (dotted line): points at or under
# that floor are drawn on it.

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
for ax, data_name in zip(axes, DATASETS):
    floor = np.finfo(np.float32).eps * abs(f_star[data_name])
    for name, style in zip(OPTIMIZERS, ("-", "-", "-", "--")):   # AdamW dashed: it tracks Adam
        loss = np.asarray(fitted[data_name, name].history_["loss"])
        gap = np.maximum(loss - f_star[data_name], floor)
        ax.semilogy(np.arange(1, loss.size + 1), gap, style, label=name)
    ax.axhline(floor, color="gray", linestyle=":", label="float32 resolution")
    ax.set_title(f"{data_name} (f* = {f_star[data_name]:.6f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("f(w) - f*")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
fig.tight_layout()
show(fig, "suboptimality")

# %% [markdown]
# ## 6. NumPy and JAX backends
#
# `run_reference(..., backend="numpy")` is the same run as a Python loop over
# NumPy arrays (same optimizer code, written once against an array
# namespace; same problem math); `run` is the compiled JAX engine; the JAX
# estimator with `use_jit=False` runs the JAX loop op by op. They must end
# at the same loss; the times are per epoch, compile time apart.

# %%
rows = []
for data_name in DATASETS:
    est = fitted[data_name, "adam"]
    hyper = dict(est.result_.hyperparams)
    numpy_run = run_reference(est.problem_, "adam", hyper, backend="numpy",
                              epochs=est.epochs, f_star=f_star[data_name])
    jax_run = est.result_   # the estimator's run on the compiled engine
    eager = JAXOptimizer("adam", use_jit=False, epochs=EAGER_EPOCHS,
                         fit_intercept=DATASETS[data_name]["fit_intercept"], **hyper)
    eager.fit(DATASETS[data_name]["X"], DATASETS[data_name]["y"])
    rel = abs(numpy_run.final_loss - jax_run.final_loss) / abs(jax_run.final_loss)
    assert rel < 1e-4, (data_name, rel)
    rows.append((data_name, numpy_run, jax_run, eager, rel))
    print(f"{data_name:20s} ms/epoch: numpy {1e3 * numpy_run.time_per_epoch_s:8.3f} | "
          f"jax jit {1e3 * jax_run.time_per_epoch_s:8.3f} (+{jax_run.compile_time_s:.2f} s "
          f"compile) | jax op by op {1e3 * eager.result_.time_per_epoch_s:8.3f}; final loss numpy "
          f"{numpy_run.final_loss:.7f} jax {jax_run.final_loss:.7f} (rel. diff {rel:.1e})")

fig, ax = plt.subplots(figsize=(7, 3.5))
labels = ["numpy loop", "jax, jit (engine)", "jax, op by op"]
width = 0.38
for i, (data_name, numpy_run, jax_run, eager, _) in enumerate(rows):
    times = [numpy_run.time_per_epoch_s, jax_run.time_per_epoch_s, eager.result_.time_per_epoch_s]
    ax.bar(np.arange(3) + (i - 0.5) * width, 1e3 * np.asarray(times), width, label=data_name)
ax.set_xticks(np.arange(3), labels)
ax.set_yscale("log")
ax.set_ylabel("ms per epoch (Adam, full batch)")
ax.legend()
fig.tight_layout()
show(fig, "backends")

# %%
# One operation on every backend (CuPy is reported unavailable without a GPU).
comparison = SpeedBenchmark(warmup=1).compare_backends(lambda X: X.T @ X, Xm, n_runs=5,
                                                       backends=["numpy", "jax", "cupy"])
for backend, timing in comparison.items():
    if not timing["available"]:
        print(f"{backend:6s} unavailable: {timing['reason']}")
        continue
    print(f"{backend:6s} X^T X ({Xm.shape[1]}x{Xm.shape[1]}): "
          f"median {1e3 * timing['median_time']:.2f} ms, "
          f"speed-up vs numpy {timing['speedup_vs_numpy']:.2f}x, "
          f"max rel. error vs numpy {timing['max_rel_error_vs_numpy']:.1e}")

# %% [markdown]
# ## Where next
#
# - `flax_models.py` (`.ipynb`): the same transforms training a Flax `nnx` network,
#   and a learning-rate sweep as one vmapped program.
# - `colab_tpu_scaling.py` (`.ipynb`): data / model / pipeline parallel training over
#   all local devices, the scaling table, and the large-scale benchmark suite.
# - `python -m experiments.large_scale --backend=jax` runs the whole benchmark
#   (see `docs/benchmark.md`).
