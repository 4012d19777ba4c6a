"""Writes the three notebooks of this folder from the cell sources below.

The notebooks are generated, not edited by hand, so that a review reads plain
Python and a change is one re-run away:

    python notebooks/build_notebooks.py            # rewrite the .ipynb files
    python notebooks/build_notebooks.py --check    # exit 1 if a stored notebook is stale

They are stored without outputs; ``tests/test_notebooks.py`` executes them
with a real Jupyter kernel in their small-size mode (``OPTISCALE_NOTEBOOK_SMALL=1``).
The run times quoted in each notebook's first cell were measured by that test
(small mode) and by a full-size run, on a 2-core x86-64 CPU; see docs/notebooks.md.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import textwrap

import nbformat
from nbformat import v4

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parent

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python", "pygments_lexer": "ipython3"}


def md(text: str) -> nbformat.NotebookNode:
    """A markdown cell from an indented triple-quoted string; a line SMALL_MODE_NOTE becomes
    the note on the small-size mode (inserted after dedenting, so the indentation stays common)."""
    return v4.new_markdown_cell(
        textwrap.dedent(text).strip("\n").replace("SMALL_MODE_NOTE", SMALL_MODE_NOTE))


def code(text: str) -> nbformat.NotebookNode:
    """A code cell from an indented triple-quoted string."""
    return v4.new_code_cell(textwrap.dedent(text).strip("\n"))


def notebook(cells: list[nbformat.NotebookNode], *, colab: bool = False) -> nbformat.NotebookNode:
    """A notebook without outputs, with stable cell ids (so rebuilding changes nothing)."""
    nb = v4.new_notebook()
    nb.cells = cells
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{index:02d}"
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = dict(LANGUAGE_INFO)
    if colab:
        nb.metadata["colab"] = {"provenance": [], "toc_visible": True}
        nb.metadata["accelerator"] = "TPU"
    return nb


# --------------------------------------------------------------------------- shared cells
SMALL_MODE_NOTE = """\
**Small-size mode.** With the environment variable `OPTISCALE_NOTEBOOK_SMALL=1`
the parameters cell picks tiny sizes (fewer rows, epochs and configurations)
so the whole notebook runs in seconds; the test `tests/test_notebooks.py` runs
it that way. The numbers printed then show that everything works, not how the
methods compare."""


# --------------------------------------------------------------------------- quickstart
def quickstart() -> nbformat.NotebookNode:
    cells = [
        md("""
        # optiscale_jax quick start

        **What it shows.** Two real data sets (California Housing regression and
        MNIST digits 0-4 vs 5-9 as logistic regression), trained with SGD,
        Nesterov, Adam and AdamW in two ways: the scikit-learn style estimators
        (`Adam(...).fit(X, y)`) and the optax-style transforms
        (`optimizers.adam(...)`) driven by the training engine and by a
        hand-written `lax.scan` loop, which must agree. Then a profiled run
        (time per epoch, compile time, peak memory), suboptimality curves
        `f(w_t) - f*` on a log scale against the exact optimum `f*`, and the same
        run on the NumPy and JAX backends.

        **How long it takes.** About 80 seconds at full size (MNIST 10,000
        images, 1,000 epochs per optimizer) and about 20 seconds in small-size
        mode, measured on a 2-core CPU (up to 3 times longer when the machine is
        busy); much of it is XLA compilation, about 1 s per program. No GPU needed.

        SMALL_MODE_NOTE
        """),
        code("""
        # Parameters: full sizes by default, tiny ones with OPTISCALE_NOTEBOOK_SMALL=1.
        import os

        SMALL = os.environ.get("OPTISCALE_NOTEBOOK_SMALL", "0") == "1"
        MNIST_SAMPLES = 1_000 if SMALL else 10_000   # rows drawn from MNIST (80 % train, 20 % test)
        MNIST_EPOCHS = 100 if SMALL else 1_000       # full-batch epochs per optimizer
        HOUSING_EPOCHS = 100 if SMALL else 1_000
        EAGER_EPOCHS = 5 if SMALL else 50            # the un-jitted JAX loop is slow: fewer epochs
        OPTIMIZERS = ("sgd", "nesterov", "adam", "adamw")
        print(f"small-size mode: {SMALL}")
        """),
        code("""
        import jax
        import jax.numpy as jnp
        import matplotlib.pyplot as plt
        import numpy as np
        import optax

        from optiscale_jax import optimizers
        from optiscale_jax.datasets import load_california_housing, load_mnist
        from optiscale_jax.profiling import MemoryTracker, OptimizerProfiler, SpeedBenchmark
        from optiscale_jax.training import SGD, Adam, AdamW, JAXOptimizer, Nesterov, run, run_reference

        ESTIMATORS = {"sgd": SGD, "nesterov": Nesterov, "adam": Adam, "adamw": AdamW}
        print("jax", jax.__version__, "| devices:", jax.devices())
        """),
        md("""
        ## 1. Data

        The loaders read the files under `$OPTISCALE_DATA_DIR` (this repository's
        `../shared/data`) and return `X_train, y_train, X_test, y_test, metadata`.
        The metadata's condition number is that of the least-squares Hessian
        `X^T X / n`; for MNIST it is infinite because 116 pixel columns are zero
        in every image (`X^T X` is singular), so the finite ratio over the nonzero
        spectrum is printed next to it.
        """),
        code("""
        Xh, yh, Xh_test, yh_test, housing_meta = load_california_housing()   # standardized features
        Xm, ym, Xm_test, ym_test, mnist_meta = load_mnist(n_samples=MNIST_SAMPLES,
                                                          binary_classification=True)
        for name, X, meta in (("California Housing", Xh, housing_meta), ("MNIST 0-4 vs 5-9", Xm, mnist_meta)):
            print(f"{name:20s} X_train {X.shape}, rank {meta['rank']}, "
                  f"kappa(X^T X / n) = {meta['condition_number']:.3g}, "
                  f"over the nonzero spectrum {meta['condition_number_nonzero']:.3g}")
        print(f"MNIST positives (digits 5-9): {ym.mean():.1%}")
        """),
        md("""
        ## 2. Estimators

        Each estimator builds a `Problem` from `(X, y)` (least squares with an L2
        term of `1e-4`, i.e. ridge, for real targets; L2 logistic regression for
        labels in {0, 1}) and trains it full batch on the one compiled engine.
        California Housing gets an intercept (`fit_intercept=True`), since its
        target is not centred. `problem_.optimum()` solves the same objective
        exactly in float64 (a direct solve for ridge, Newton for logistic) and
        caches it, which gives `f*` for the suboptimality curves below.
        """),
        code("""
        DATASETS = {
            "California Housing": dict(X=Xh, y=yh, X_test=Xh_test, y_test=yh_test,
                                       epochs=HOUSING_EPOCHS, fit_intercept=True),
            "MNIST 0-4 vs 5-9": dict(X=Xm, y=ym, X_test=Xm_test, y_test=ym_test,
                                     epochs=MNIST_EPOCHS, fit_intercept=False),
        }
        fitted, f_star = {}, {}
        header = f"{'data set':20s} {'optimizer':9s} {'lr':>7s} {'final f':>10s} {'(f-f*)/|f*|':>12s} {'compile s':>9s} {'ms/epoch':>9s} {'test score':>10s}  other hyperparameters"
        print(header)
        for data_name, d in DATASETS.items():
            for name in OPTIMIZERS:
                est = ESTIMATORS[name](epochs=d["epochs"], fit_intercept=d["fit_intercept"]).fit(d["X"], d["y"])
                fitted[data_name, name] = est
                f_star[data_name] = est.problem_.optimum().f_star   # same objective for every optimizer
                final = est.history_["loss"][-1]
                print(f"{data_name:20s} {name:9s} {est.learning_rate:7.3g} {final:10.6f} "
                      f"{(final - f_star[data_name]) / abs(f_star[data_name]):12.2e} "
                      f"{est.compile_time_s_:9.2f} {1e3 * est.result_.time_per_epoch_s:9.3f} "
                      f"{est.score(d['X_test'], d['y_test']):10.4f}  {est.hyperparams or ''}")
        print("test score: R^2 for California Housing, accuracy for MNIST")
        """),
        md("""
        ## 3. The same optimizers as transforms

        `optimizers.adam(learning_rate)` and friends are `optax.GradientTransformation`s
        (`init(params)`, `update(grads, state, params)`). `run(problem, tx, ...)`
        drives one on the engine (one jit-compiled scan over epochs), and they
        work just as well in a loop you write yourself. Both must reproduce the
        estimators' curves (shown here on MNIST).
        """),
        code("""
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
        """),
        code("""
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
        engine64 = run(est.problem_, tx, epochs=est.epochs, dtype="float64", f_star=f_star["MNIST 0-4 vs 5-9"])
        relative_gap = np.max(np.abs(loss_hand - engine64.train_loss) / np.abs(engine64.train_loss))
        print(f"hand-written loop vs engine, Adam on MNIST in float64: max relative loss difference {relative_gap:.1e}")
        print(f"(the float32 engine run ends {abs(transform_runs['adam'].final_loss - engine64.final_loss) / engine64.final_loss:.1e} "
              "away from the float64 one)")
        assert relative_gap < 1e-9, relative_gap
        """),
        md("""
        ## 4. Profiling a run

        `OptimizerProfiler` listens to the engine's events while it is active, so
        a plain `fit` inside it reports compile time apart from run time
        (device work blocked on) and the process's peak host memory (`VmHWM`,
        reset at start). `MemoryTracker` sizes arrays and optimizer states
        (from `jax.eval_shape` of the optimizer's `init`, nothing allocated).
        """),
        code("""
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
        """),
        md("""
        ## 5. Suboptimality curves

        `f(w_t) - f*` per epoch, log scale. A float32 run cannot resolve the
        objective much below `eps_32 * |f*|` (dotted line): points at or under
        that floor are drawn on it.
        """),
        code("""
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
        plt.show()
        """),
        md("""
        ## 6. NumPy and JAX backends

        `run_reference(..., backend="numpy")` is the same run as a Python loop over
        NumPy arrays (same optimizer code, written once against an array
        namespace; same problem math); `run` is the compiled JAX engine; the JAX
        estimator with `use_jit=False` runs the JAX loop op by op. They must end
        at the same loss; the times are per epoch, compile time apart.
        """),
        code("""
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
                  f"jax jit {1e3 * jax_run.time_per_epoch_s:8.3f} (+{jax_run.compile_time_s:.2f} s compile) | "
                  f"jax op by op {1e3 * eager.result_.time_per_epoch_s:8.3f}; "
                  f"final loss numpy {numpy_run.final_loss:.7f} jax {jax_run.final_loss:.7f} (rel. diff {rel:.1e})")

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
        plt.show()
        """),
        code("""
        # One operation on every backend (CuPy is reported unavailable without a GPU).
        comparison = SpeedBenchmark(warmup=1).compare_backends(lambda X: X.T @ X, Xm,
                                                               backends=["numpy", "jax", "cupy"], n_runs=5)
        for backend, timing in comparison.items():
            if not timing["available"]:
                print(f"{backend:6s} unavailable: {timing['reason']}")
                continue
            print(f"{backend:6s} X^T X ({Xm.shape[1]}x{Xm.shape[1]}): median {1e3 * timing['median_time']:.2f} ms, "
                  f"speed-up vs numpy {timing['speedup_vs_numpy']:.2f}x, "
                  f"max rel. error vs numpy {timing['max_rel_error_vs_numpy']:.1e}")
        """),
        md("""
        ## Where next

        - `flax_models.ipynb`: the same transforms training a Flax `nnx` network,
          and a learning-rate sweep as one vmapped program.
        - `colab_tpu_scaling.ipynb`: data / model / pipeline parallel training over
          all local devices, the scaling table, and the large-scale benchmark suite.
        - `python -m experiments.large_scale --backend=jax` runs the whole benchmark
          (see `docs/benchmark.md`).
        """),
    ]
    return notebook(cells)


# --------------------------------------------------------------------------- flax models
def flax_models() -> nbformat.NotebookNode:
    cells = [
        md("""
        # Flax models trained with optiscale_jax optimizers

        **What it shows.** A two-layer MLP classifier for the 10 MNIST digits,
        written in Flax `nnx`, trained with the `optiscale_jax` transforms
        through `nnx.Optimizer(model, tx, wrt=nnx.Param)`, one optimizer after
        another (SGD, Momentum, Nesterov, Adam, AdamW, NAdam, RMSProp, Adagrad)
        from the same initial weights and on the same mini-batches; then a
        learning-rate sweep done as **one vmapped program** (`nnx.split` the
        model, `jax.vmap` a pure training function over the learning rates), its
        curves plotted, and one of its lanes checked against the `nnx.Optimizer`
        run with the same rate.

        **How long it takes.** About 1 minute at full size (10,000 images, hidden
        width 256, 10 epochs, 13 learning rates; 43-68 s measured) and about 12
        seconds in small-size mode, on a 2-core CPU. No GPU needed.

        SMALL_MODE_NOTE
        """),
        code("""
        # Parameters: full sizes by default, tiny ones with OPTISCALE_NOTEBOOK_SMALL=1.
        import os

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
        SWEEP_RATES = [10.0 ** (k / 2) for k in range(-8, -1)] if SMALL else [10.0 ** (k / 4) for k in range(-16, -3)]
        print(f"small-size mode: {SMALL}")
        """),
        code("""
        import time

        import jax
        import jax.numpy as jnp
        import matplotlib.pyplot as plt
        import numpy as np
        import optax
        from flax import nnx

        from optiscale_jax import optimizers
        from optiscale_jax.datasets import load_mnist

        print("jax", jax.__version__, "| devices:", jax.devices())
        """),
        md("""
        ## 1. Data and model

        MNIST with its 10 labels, pixels in [0, 1]. The model is
        `784 -> HIDDEN (ReLU) -> 10` logits with the mean softmax cross-entropy
        loss. Every optimizer starts from the same weights (`nnx.Rngs(0)`) and
        sees the same mini-batches in the same order (a seeded permutation per epoch).
        """),
        code("""
        X_train, y_train, X_test, y_test, meta = load_mnist(n_samples=N_SAMPLES)
        n_batches = X_train.shape[0] // BATCH_SIZE
        # batch_index[e, b]: the rows of mini-batch b in epoch e (a remainder of rows is dropped).
        batch_index = np.stack([np.random.default_rng(epoch).permutation(X_train.shape[0])[:n_batches * BATCH_SIZE]
                                .reshape(n_batches, BATCH_SIZE) for epoch in range(EPOCHS)])
        X_train_d, y_train_d = jnp.asarray(X_train), jnp.asarray(y_train)
        X_test_d, y_test_d = jnp.asarray(X_test), jnp.asarray(y_test)
        print(f"train {X_train.shape}, test {X_test.shape}, classes {np.bincount(y_train).size}, "
              f"{n_batches} mini-batches of {BATCH_SIZE} per epoch")


        class MLP(nnx.Module):
            \"\"\"logits = W2 relu(W1 x + b1) + b2.\"\"\"

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
        """),
        md("""
        ## 2. One optimizer after another, through `nnx.Optimizer`

        `nnx.Optimizer(model, tx, wrt=nnx.Param)` takes any optax
        `GradientTransformation`; here `tx = optimizers.get_optimizer(name, learning_rate=...)`.
        """),
        code("""
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
            optimizer = nnx.Optimizer(model, optimizers.get_optimizer(name, learning_rate=rate), wrt=nnx.Param)
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
        """),
        code("""
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.2))
        epochs_axis = np.arange(1, EPOCHS + 1)
        for name, h in history.items():
            style = "--" if name == "adamw" else "-"   # AdamW with a small decay tracks Adam
            ax_loss.plot(epochs_axis, h["train_loss"], style, marker="o", label=f"{name} ({OPTIMIZER_RATES[name]:g})")
            ax_acc.plot(epochs_axis, h["test_accuracy"], style, marker="o", label=name)
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
        plt.show()
        """),
        md("""
        ## 3. A learning-rate sweep as one vmapped program

        `nnx.split(model)` separates the module's structure (`graphdef`) from its
        parameters (a pytree). A pure function trains from the parameters for a
        given learning rate (`lax.scan` over epochs and mini-batches, the
        transform's `init` / `update`); the learning rate is traced, so
        `jax.vmap` over the rates compiles **one** program that trains every
        configuration side by side. Compile and run times are reported apart
        (the run blocks on the result).
        """),
        code("""
        graphdef, params0 = nnx.split(new_model())


        def loss_of_params(params, x, y):
            return cross_entropy(nnx.merge(graphdef, params), x, y)


        def train_with_rate(learning_rate):
            \"\"\"Adam at `learning_rate` on the mini-batches above; (epoch losses, test accuracy).\"\"\"
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
              f"run {run_s:.2f} s ({1e3 * run_s / (len(SWEEP_RATES) * EPOCHS * n_batches):.3f} ms per step per rate)")
        for rate, losses, acc in zip(SWEEP_RATES, sweep_losses, sweep_acc):
            print(f"  lr {rate:9.2e}: final epoch loss {losses[-1]:.4f}, test accuracy {acc:.3f}"
                  + ("   <- best" if rate == SWEEP_RATES[best] else ""))
        """),
        code("""
        # The lane with Adam's rate 1e-3 must retrace the nnx.Optimizer run of section 2.
        lane = int(np.argmin(np.abs(np.log(np.asarray(SWEEP_RATES) / 1e-3))))
        assert abs(SWEEP_RATES[lane] - 1e-3) < 1e-12 and OPTIMIZER_RATES["adam"] == 1e-3
        difference = np.max(np.abs(sweep_losses[lane] - history["adam"]["train_loss"]) / history["adam"]["train_loss"])
        print(f"vmapped lane lr=1e-3 vs nnx.Optimizer run: max relative difference of the epoch losses {difference:.1e}")
        assert difference < 1e-4, difference
        """),
        code("""
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
        plt.show()
        """),
        md("""
        ## Notes

        - The transforms are plain optax `GradientTransformation`s, so they work
          the same in `flax.training.train_state.TrainState.create(apply_fn=..., params=..., tx=tx)`
          for linen models.
        - Every lane of the vmapped sweep is independent: a rate that diverges
          only spoils its own curve. For sweeps over linear models with the exact
          optimum known, `optiscale_jax.training.sweep` does the same with
          suboptimality curves and the best configuration.
        """),
    ]
    return notebook(cells)


# --------------------------------------------------------------------------- colab / TPU
def colab_tpu_scaling() -> nbformat.NotebookNode:
    cells = [
        md("""
        # Scaling on Colab: GPUs, TPUs, or virtual CPU devices

        **What it shows.** Made for Google Colab (Runtime > Change runtime type >
        TPU or GPU), and runs anywhere: installs the package when on Colab,
        detects the devices (CPU / GPU / TPU), trains an MLP with
        `ParallelTrainer` under each strategy (data, model, pipeline parallel and
        the two 2-d combinations) over **all local devices**, checks each against
        the single-device run, prints the strong-scaling table (time per epoch,
        speed-up, efficiency on 1, 2, 4, ... devices), and runs the large-scale
        benchmark suite on the device (the `default` suite on an accelerator,
        the `quick` suite on a CPU) with its report and plots.

        Without an accelerator it asks XLA for 8 virtual CPU devices (first
        code cell, before JAX starts). They share the host's cores, so the
        table then measures the overhead of sharding and collectives, not a
        speed-up.

        **How long it takes.** On a 2-core CPU with 8 virtual devices: about
        2 minutes at full size (20 parallel fits, most of it compilation, then
        the `quick` benchmark suite in about 10 s), and about 25 seconds in
        small-size mode (up to a minute when the machine is busy). On a Colab
        accelerator add the installation (a minute or two) and the `default`
        benchmark suite.

        SMALL_MODE_NOTE
        """),
        code("""
        # Parameters, and the accelerator probe that must run before JAX is imported.
        import os
        import pathlib
        import shutil
        import subprocess
        import sys

        SMALL = os.environ.get("OPTISCALE_NOTEBOOK_SMALL", "0") == "1"
        ON_COLAB = "google.colab" in sys.modules
        OUTPUT_DIR = pathlib.Path(os.environ.get("OPTISCALE_NOTEBOOK_OUTPUT_DIR", "notebook_results")) / "colab_tpu_scaling"
        N_ROWS = 512 if SMALL else 8_192    # MNIST rows, digits 0-4 vs 5-9
        WIDTH = 16 if SMALL else 64         # MLP hidden width
        EPOCHS = 5 if SMALL else 20         # full-batch epochs per timed fit
        VIRTUAL_CPU_DEVICES = 8


        def probe_accelerator() -> str:
            \"\"\"'tpu', 'gpu' or 'cpu', from the machine alone (JAX must not start before XLA_FLAGS is set).\"\"\"
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
        if ACCELERATOR == "cpu" and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                       + f" --xla_force_host_platform_device_count={VIRTUAL_CPU_DEVICES}").strip()
        print(f"small-size mode: {SMALL} | on Colab: {ON_COLAB} | accelerator probe: {ACCELERATOR} | "
              f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
        """),
        md("""
        ## Install (Colab only)

        On Colab the cell below installs the JAX build for the runtime
        (`jax[tpu]` or `jax[cuda12]`) and this package. Put the repository where
        `OPTISCALE_SOURCE` points (default `/content/optiscale_jax`: upload it, or
        `git clone` your copy there), or set `OPTISCALE_SOURCE` to any `pip install`
        target such as a `git+https://...` URL. MNIST and California Housing are
        then downloaded on first use (`OPTISCALE_DOWNLOAD=1`). Anywhere else the
        cell does nothing: install with `pip install -e ".[dev]"` from the repository.
        """),
        code("""
        if ON_COLAB:
            source = os.environ.get("OPTISCALE_SOURCE", "/content/optiscale_jax")
            is_url = "://" in source or source.startswith("git+")
            if not is_url and not (pathlib.Path(source) / "pyproject.toml").is_file():
                raise FileNotFoundError(
                    f"no optiscale_jax repository at {source!r}: upload or clone it there, or set "
                    "os.environ['OPTISCALE_SOURCE'] to a pip target (e.g. 'git+https://<your repository>')")
            jax_build = {"tpu": "jax[tpu]>=0.10", "gpu": "jax[cuda12]>=0.10", "cpu": "jax>=0.10"}[ACCELERATOR]
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--upgrade", jax_build, source],
                           check=True)
            os.environ.setdefault("OPTISCALE_DOWNLOAD", "1")
            print(f"installed {jax_build} and {source}")
        else:
            print("not on Colab: using this environment's installation")
        """),
        md("""
        ## Devices

        `jax.devices()` after start-up is the ground truth; the probe above only
        decided whether to ask for virtual CPU devices.
        """),
        code("""
        import jax
        import matplotlib.pyplot as plt
        import numpy as np
        from IPython.display import Image, Markdown, display

        from optiscale_jax.datasets import load_mnist
        from optiscale_jax.parallel import STRATEGIES, MLPSpec, ParallelTrainer
        from optiscale_jax.parallel.scaling import ScalingRow, format_table, scaling_efficiency

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
        """),
        md("""
        ## Data and model

        MNIST digits 0-4 vs 5-9 and a small MLP binary classifier
        (`MLPSpec`: an input layer, `n_blocks` width-to-width tanh layers, a
        logistic output). Pipeline parallelism splits the `n_blocks` layers into
        one stage per device, so `n_blocks` is a multiple of the device count;
        model parallelism splits the hidden units, so the width is too.
        """),
        code("""
        X, y, _, _, meta = load_mnist(n_samples=N_ROWS, binary_classification=True, test_size=0.0)
        n_blocks = max(N_DEVICES, 2)
        width = -(-max(WIDTH, N_DEVICES) // N_DEVICES) * N_DEVICES   # rounded up to a multiple of N_DEVICES
        spec = MLPSpec(n_features=X.shape[1], width=width, n_blocks=n_blocks, l2=1e-4)
        HYPER = {"learning_rate": 1e-2}
        print(f"X {X.shape} {X.dtype}, {y.mean():.1%} positive; {spec}")
        """),
        md("""
        ## Every strategy, on one device and over all local devices

        The same MLP, optimizer (Adam, `lr = 1e-2`, full batch) and initial
        weights under each strategy: first on a 1-device mesh (the same program
        without communication, the baseline `T_1` of the scaling table below),
        then over all local devices (and, at full size, over the powers of two in
        between). Every run's loss curve must match the 1-device data-parallel
        run: the sharded programs add the same terms in another order, so only
        float32 rounding may differ.
        """),
        code("""
        def fit(strategy, n_devices):
            return ParallelTrainer(n_devices, strategy, "adam", hyperparams=HYPER, model=spec,
                                   epochs=EPOCHS).fit(X, y)


        intermediate = [] if SMALL else [n for n in (2, 4, 8, 16, 32, 64) if n < N_DEVICES and N_DEVICES % n == 0]
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
        """),
        md("""
        ## Strong scaling

        For each strategy on `n` devices with time per epoch `T_n` (compile
        excluded, device work blocked on): speed-up `T_1 / T_n` and efficiency
        `T_1 / (n T_n)`, where `T_1` is the same strategy on one device (the
        runs above). On virtual CPU devices, which share the host's cores,
        expect speed-ups below 1: the table then prices the sharding and the
        collectives.
        """),
        code("""
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

        fig, ax = plt.subplots(figsize=(7, 4))
        for strategy in STRATEGIES:
            points = [(r.n_devices, r.speedup) for r in rows if r.strategy == strategy]
            ax.plot(*zip(*points), marker="o", label=strategy)
        ax.plot(COUNTS, COUNTS, color="gray", linestyle=":", label="linear")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xticks(COUNTS, [str(n) for n in COUNTS])
        ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel(f"{PLATFORM} devices")
        ax.set_ylabel("speed-up T_1 / T_n")
        ax.set_title(f"Strong scaling, MLP width {spec.width}, {spec.n_blocks} blocks, {N_ROWS} rows")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        plt.show()
        """),
        md("""
        ## The large-scale benchmark suite on this device

        The same campaign as `python -m experiments.large_scale` (see
        `docs/benchmark.md`): data sets x optimizers on the compiled engine, each
        run's JSON record written as soon as it finishes, then a Markdown report
        and convergence plots built from the JSON. The `default` suite on an
        accelerator, the `quick` one on a CPU; in small-size mode one of the
        quick suite's data sets with fewer epochs.
        """),
        code("""
        from optiscale_jax.benchmark import plan_campaign, run_campaign

        if SMALL:
            plan = plan_campaign(suite="quick", datasets=["california_housing"], epochs=50)
        else:
            plan = plan_campaign(suite="default" if ON_ACCELERATOR else "quick")
        print(f"{len(plan.entries)} data sets x {len(plan.optimizers)} optimizers on {PLATFORM}: "
              f"{[e.dataset for e in plan.entries]} x {list(plan.optimizers)}")
        summary = run_campaign(plan, output_dir=OUTPUT_DIR)
        print(f"{summary.executed_runs} runs in {summary.wall_time_s:.1f} s; skipped data sets: {summary.skipped_datasets}")
        """),
        code("""
        import re

        # The report embeds its plots by relative path; show its text, then the plots it names.
        report = summary.report_path.read_text()
        plots = list(dict.fromkeys(re.findall(r"!\\[[^\\]]*\\]\\(([^)]+\\.png)\\)", report)))
        display(Markdown(re.sub(r"!\\[[^\\]]*\\]\\([^)]+\\)\\n?", "", report)))
        for name in plots:
            print(name)
            display(Image(filename=str(summary.report_path.parent / name)))
        """),
    ]
    return notebook(cells, colab=True)


NOTEBOOKS = {
    "quickstart.ipynb": quickstart,
    "flax_models.ipynb": flax_models,
    "colab_tpu_scaling.ipynb": colab_tpu_scaling,
}


def render(builder) -> str:
    """The notebook's file contents."""
    return nbformat.writes(builder(), version=4) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if a stored notebook differs from its source")
    args = parser.parse_args(argv)
    stale = []
    for filename, builder in NOTEBOOKS.items():
        path = NOTEBOOK_DIR / filename
        text = render(builder)
        nbformat.validate(nbformat.reads(text, as_version=4))
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(filename)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"stale notebooks (run python notebooks/build_notebooks.py): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
