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
# # Flax models trained with optiscale_jax optimizers
#
# **What it shows.** A two-layer MLP classifier for the 10 MNIST digits,
# written in Flax `nnx`, trained with the `optiscale_jax` transforms
# through `nnx.Optimizer(model, tx, wrt=nnx.Param)`, one optimizer after
# another (SGD, Momentum, Nesterov, Adam, AdamW, NAdam, RMSProp, Adagrad)
# from the same initial weights and on the same mini-batches; then a
# learning-rate sweep done as **one vmapped program** (`nnx.split` the
# model, `jax.vmap` a pure training function over the learning rates), its
# curves plotted, and one of its lanes checked against the `nnx.Optimizer`
# run with the same rate.
#
# **How long it takes.** On a 2-core CPU shared with about 15 other jobs:
# 3.3 minutes at full size (10,000 images, hidden width 256, 10 epochs, 13
# learning rates) and 36 seconds in small-size mode, measured; a quiet
# machine takes a fraction of that. No GPU needed.
#
# **Small-size mode.** With the environment variable `OPTISCALE_NOTEBOOK_SMALL=1`
# the parameters cell picks tiny sizes (fewer rows, epochs and configurations)
# so the whole notebook runs in seconds; the test `tests/test_notebooks.py` runs
# it that way. The numbers printed then show that everything works, not how the
# methods compare.
#
# **Data and outputs.** The data sets are read from `$OPTISCALE_DATA_DIR`
# (a relative path is read against the working directory, which Jupyter sets
# to the notebook's folder and `python notebooks/flax_models.py` leaves where
# you are: the first cell prints the absolute path it uses), else from the
# user cache. Figures are saved under `notebooks/outputs/flax_models/`
# (`$OPTISCALE_NOTEBOOK_OUTPUT_DIR` to move them), a folder git ignores.

# %%
# Parameters: full sizes by default, tiny ones with OPTISCALE_NOTEBOOK_SMALL=1.
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

from optiscale_jax import optimizers
from optiscale_jax.datasets import load_mnist
from optiscale_jax.notebook_setup import FigureSaver, announce_data_dir

SMALL = os.environ.get("OPTISCALE_NOTEBOOK_SMALL", "0") == "1"
N_SAMPLES = 1_000 if SMALL else 10_000   # MNIST rows (80 % train, 20 % test)
HIDDEN = 64 if SMALL else 256            # hidden units
EPOCHS = 3 if SMALL else 10
BATCH_SIZE = 100 if SMALL else 125
# The optimizers to compare, each with a learning rate that suits it.
OPTIMIZER_RATES = ({"sgd": 0.1, "nesterov": 0.05, "adam": 1e-3, "adamw": 1e-3} if SMALL else
                   {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adam": 1e-3, "adamw": 1e-3,
                    "nadam": 1e-3, "rmsprop": 1e-3, "adagrad": 0.05})
# Adam's rates for the sweep: powers of 10^(1/2) (small) or 10^(1/4), 1e-4 .. 1e-1, 1e-3 among them.
SWEEP_RATES = ([10.0 ** (k / 2) for k in range(-8, -1)] if SMALL
               else [10.0 ** (k / 4) for k in range(-16, -3)])
print(f"small-size mode: {SMALL}")
print("jax", jax.__version__, "| devices:", jax.devices())

# Data: $OPTISCALE_DATA_DIR made absolute once, so every loader below reads the same folder.
announce_data_dir()
# Figures: saved to notebooks/outputs/flax_models/ (git-ignored; $OPTISCALE_NOTEBOOK_OUTPUT_DIR moves
# them), then shown. The notebook's folder is the script's when run by `python`, else the
# kernel's working directory (Jupyter starts it in the notebook's folder).
HERE = pathlib.Path(__file__).resolve().parent if "__file__" in globals() else pathlib.Path.cwd()
show = FigureSaver("flax_models", here=HERE)

# %% [markdown]
# ## 1. Data and model
#
# MNIST with its 10 labels, pixels in [0, 1]. The model is
# `784 -> HIDDEN (ReLU) -> 10` logits with the mean softmax cross-entropy
# loss. Every optimizer starts from the same weights (`nnx.Rngs(0)`) and
# sees the same mini-batches in the same order (a seeded permutation per epoch).

# %%
X_train, y_train, X_test, y_test, meta = load_mnist(n_samples=N_SAMPLES)
n_batches = X_train.shape[0] // BATCH_SIZE
# batch_index[e, b]: the rows of mini-batch b in epoch e (a remainder of rows is dropped).
batch_index = np.stack([
    np.random.default_rng(epoch).permutation(X_train.shape[0])[:n_batches * BATCH_SIZE]
    .reshape(n_batches, BATCH_SIZE) for epoch in range(EPOCHS)])
X_train_d, y_train_d = jnp.asarray(X_train), jnp.asarray(y_train)
X_test_d, y_test_d = jnp.asarray(X_test), jnp.asarray(y_test)
print(f"train {X_train.shape}, test {X_test.shape}, classes {np.bincount(y_train).size}, "
      f"{n_batches} mini-batches of {BATCH_SIZE} per epoch")


class MLP(nnx.Module):
    """logits = W2 relu(W1 x + b1) + b2."""

    def __init__(self, n_in: int, n_hidden: int, n_out: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(n_in, n_hidden, rngs=rngs)
        self.out = nnx.Linear(n_hidden, n_out, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.hidden(x)))


def cross_entropy(model, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


def new_model():
    return MLP(X_train.shape[1], HIDDEN, 10, rngs=nnx.Rngs(0))


n_params = sum(p.size for p in jax.tree.leaves(nnx.state(new_model(), nnx.Param)))
print(f"MLP with {n_params:,} parameters")


# %% [markdown]
# ## 2. One optimizer after another, through `nnx.Optimizer`
#
# `nnx.Optimizer(model, tx, wrt=nnx.Param)` takes any optax
# `GradientTransformation`; here `tx = optimizers.get_optimizer(name, learning_rate=...)`.

# %%
@nnx.jit
def train_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(cross_entropy)(model, x, y)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def accuracy(model, x, y):
    return jnp.mean(jnp.argmax(model(x), axis=-1) == y)


history = {}
for name, rate in OPTIMIZER_RATES.items():
    model = new_model()
    tx = optimizers.get_optimizer(name, learning_rate=rate)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    start = time.perf_counter()
    train_loss, test_acc = [], []
    for epoch in range(EPOCHS):
        losses = [train_step(model, optimizer, X_train_d[rows], y_train_d[rows])
                  for rows in batch_index[epoch]]
        train_loss.append(float(jnp.mean(jnp.stack(losses))))
        test_acc.append(float(accuracy(model, X_test_d, y_test_d)))
    seconds = time.perf_counter() - start   # includes the first call's compilation
    history[name] = {"train_loss": np.array(train_loss), "test_accuracy": np.array(test_acc)}
    print(f"{name:9s} lr {rate:<6g} final train loss {train_loss[-1]:.4f}, "
          f"test accuracy {test_acc[-1]:.3f} ({seconds:.1f} s with compilation)")

# %%
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.2))
epochs_axis = np.arange(1, EPOCHS + 1)
# A marker and a line style per optimizer: several curves nearly coincide (AdamW with a
# small decay tracks Adam, Momentum tracks Nesterov) and must stay visible.
for index, (name, h) in enumerate(history.items()):
    style = dict(marker="osv^DPX*"[index % 8], linestyle=("-", "--", "-.", ":")[index % 4],
                 markersize=9 - 0.5 * index)
    ax_loss.plot(epochs_axis, h["train_loss"], label=f"{name} ({OPTIMIZER_RATES[name]:g})", **style)
    ax_acc.plot(epochs_axis, h["test_accuracy"], label=name, **style)
ax_loss.set_yscale("log")
ax_loss.set_xlabel("epoch")
ax_loss.set_ylabel("mean training cross-entropy over the epoch")
ax_acc.set_xlabel("epoch")
ax_acc.set_ylabel("test accuracy")
for ax in (ax_loss, ax_acc):
    ax.grid(True, which="both", alpha=0.3)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
ax_loss.legend(title="optimizer (lr)")
fig.suptitle(f"MLP 784-{HIDDEN}-10 on MNIST, mini-batches of {BATCH_SIZE}")
fig.tight_layout()
show(fig, "optimizers")

# %% [markdown]
# ## 3. A learning-rate sweep as one vmapped program
#
# `nnx.split(model)` separates the module's structure (`graphdef`) from its
# parameters (a pytree). A pure function trains from the parameters for a
# given learning rate (`lax.scan` over epochs and mini-batches, the
# transform's `init` / `update`); the learning rate is traced, so
# `jax.vmap` over the rates compiles **one** program that trains every
# configuration side by side. Compile and run times are reported apart
# (the run blocks on the result).

# %%
graphdef, params0 = nnx.split(new_model())


def loss_of_params(params, x, y):
    return cross_entropy(nnx.merge(graphdef, params), x, y)


def train_with_rate(learning_rate):
    """Adam at `learning_rate` on the mini-batches above; (epoch losses, test accuracy)."""
    tx = optimizers.adam(learning_rate)

    def step(carry, rows):
        params, state = carry
        loss, grads = jax.value_and_grad(loss_of_params)(params, X_train_d[rows], y_train_d[rows])
        updates, state = tx.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), loss

    def epoch(carry, rows_of_epoch):
        carry, losses = jax.lax.scan(step, carry, rows_of_epoch)
        return carry, losses.mean()

    (params, _), epoch_losses = jax.lax.scan(epoch, (params0, tx.init(params0)), batch_index)
    logits = nnx.merge(graphdef, params)(X_test_d)
    return epoch_losses, jnp.mean(jnp.argmax(logits, axis=-1) == y_test_d)


rates = jnp.asarray(SWEEP_RATES, jnp.float32)
start = time.perf_counter()
sweep = jax.jit(jax.vmap(train_with_rate)).lower(rates).compile()
compile_s = time.perf_counter() - start
start = time.perf_counter()
sweep_losses, sweep_acc = jax.block_until_ready(sweep(rates))
run_s = time.perf_counter() - start
sweep_losses, sweep_acc = np.asarray(sweep_losses), np.asarray(sweep_acc)
best = int(np.nanargmin(np.where(np.isfinite(sweep_losses[:, -1]), sweep_losses[:, -1], np.nan)))
print(f"{len(SWEEP_RATES)} learning rates in one program: compile {compile_s:.2f} s, "
      f"run {run_s:.2f} s "
      f"({1e3 * run_s / (len(SWEEP_RATES) * EPOCHS * n_batches):.3f} ms per step per rate)")
for rate, losses, acc in zip(SWEEP_RATES, sweep_losses, sweep_acc):
    print(f"  lr {rate:9.2e}: final epoch loss {losses[-1]:.4f}, test accuracy {acc:.3f}"
          + ("   <- best" if rate == SWEEP_RATES[best] else ""))

# %%
# The lane with Adam's rate 1e-3 must retrace the nnx.Optimizer run of section 2.
lane = int(np.argmin(np.abs(np.log(np.asarray(SWEEP_RATES) / 1e-3))))
assert abs(SWEEP_RATES[lane] - 1e-3) < 1e-12 and OPTIMIZER_RATES["adam"] == 1e-3
adam_losses = history["adam"]["train_loss"]
difference = np.max(np.abs(sweep_losses[lane] - adam_losses) / adam_losses)
print(f"vmapped lane lr=1e-3 vs nnx.Optimizer run: max relative difference of the epoch losses "
      f"{difference:.1e}")
assert difference < 1e-4, difference

# %%
fig, (ax_curves, ax_final) = plt.subplots(1, 2, figsize=(12, 4.2))
rate_norm = plt.matplotlib.colors.LogNorm(min(SWEEP_RATES), max(SWEEP_RATES))
for rate, losses in zip(SWEEP_RATES, sweep_losses):
    ax_curves.plot(epochs_axis, losses, marker="o", color=plt.cm.viridis(rate_norm(rate)))
fig.colorbar(plt.cm.ScalarMappable(norm=rate_norm, cmap="viridis"), ax=ax_curves,
             label="Adam learning rate")
ax_curves.set_yscale("log")
ax_curves.set_xlabel("epoch")
ax_curves.set_ylabel("mean training cross-entropy over the epoch")
ax_final.semilogx(SWEEP_RATES, sweep_losses[:, -1], marker="o", label="final training loss")
ax_final.set_xlabel("learning rate")
ax_final.set_ylabel("final training loss")
ax_final.set_yscale("log")
ax_acc2 = ax_final.twinx()
ax_acc2.semilogx(SWEEP_RATES, sweep_acc, marker="s", color="tab:orange", label="test accuracy")
ax_acc2.set_ylabel("test accuracy")
ax_final.axvline(SWEEP_RATES[best], color="gray", linestyle=":", label="best final loss")
handles = ax_final.get_legend_handles_labels()[0] + ax_acc2.get_legend_handles_labels()[0]
ax_final.legend(handles=handles, loc="center left", fontsize="small")
ax_curves.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
for ax in (ax_curves, ax_final):
    ax.grid(True, which="both", alpha=0.3)
fig.suptitle(f"Adam learning-rate sweep, {len(SWEEP_RATES)} rates in one vmapped program")
fig.tight_layout()
show(fig, "sweep")

# %% [markdown]
# ## Notes
#
# - The transforms are plain optax `GradientTransformation`s, so they work
#   the same in `flax.training.train_state.TrainState.create(apply_fn=..., params=..., tx=tx)`
#   for linen models.
# - Every lane of the vmapped sweep is independent: a rate that diverges
#   only spoils its own curve. For sweeps over linear models with the exact
#   optimum known, `optiscale_jax.training.sweep` does the same with
#   suboptimality curves and the best configuration.
