"""Estimators in the spec's style: `Adam(learning_rate=0.01, epochs=1000).fit(X, y)`.

Each estimator builds a Problem from (X, y) (`loss="auto"`: logistic for labels
in {0, 1}, least squares otherwise; an L2 term `(l2/2)||w||^2` with
`l2=1e-4` by default, making least squares "ridge"), then trains it on the one
engine (`run`), or on a reference backend (`run_reference`) for
`backend="numpy"|"cupy"`, or op by op for `use_jit=False`. An intercept is a
column of ones appended to X (penalised like the other weights): by default for
least squares, not for classification (`fit_intercept=None`).

Defaults (learning rate, epochs) per class are chosen so that full-batch
float32 fits of MNIST-10k binary (0-4 vs 5-9, pixels in [0, 1]) and of
standardised California Housing reach relative suboptimality
(f - f*) / |f*| <= 1e-3; see docs/training.md for the measurements.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, ClassVar

import jax
import numpy as np
from sklearn.metrics import accuracy_score, r2_score

from optiscale_jax.training import _checks, events
from optiscale_jax.training.engine import canonical_dtype, precision
from optiscale_jax.training.reference import run_reference
from optiscale_jax.training.run import run

# (learning_rate, epochs, other hyperparameters) per optimizer; measured in docs/training.md.
DEFAULTS: dict[str, tuple[float, int, dict[str, float]]] = {
    "sgd": (0.3, 1000, {}),
    "momentum": (0.3, 900, {"momentum": 0.99}),
    "nesterov": (0.3, 700, {"momentum": 0.99}),
    "adam": (0.01, 1000, {}),
    "adamw": (0.01, 1000, {}),
    "rmsprop": (0.003, 1000, {}),
    "adagrad": (0.3, 1000, {}),
}


class FirstOrderEstimator:
    """A linear model trained by one first-order optimizer (base of SGD, Adam, ...).

    Args:
      learning_rate: step size (default: the class's documented default).
      epochs: passes over the data (default: the class's documented default).
      batch_size: None for full batch, else mini-batches (seeded per-epoch shuffle).
      loss: "auto", "least_squares", "logistic" or "softmax".
      backend: "jax" (the compiled engine), "numpy" or "cupy" (reference loops).
      l2: L2 coefficient (default 1e-4).
      fit_intercept: append a column of ones to X (penalised by l2 like the other weights);
        None (default) = True for least squares, False for logistic / softmax.
      seed: mini-batch shuffling seed. dtype: "float32" or "float64".
      use_jit: False runs the JAX loop op by op (no jit) to show the JIT speed-up.
      divergence_factor: see `run`.
      **hyperparams: the optimizer's other hyperparameters (e.g. b1, momentum, weight_decay).

    After `fit`: `coef_`, `intercept_`, `history_` ({"loss", "grad_norm"} per epoch;
    `step` appends to "loss"), `result_` (RunResult), `compile_time_s_`, `fit_time_s_`
    (training run, compile excluded), `total_time_s_` (the whole fit call),
    `problem_`, `loss_`, `n_features_in_`.
    """

    optimizer_name: ClassVar[str] = ""

    def __init__(self, learning_rate: float | None = None, epochs: int | None = None,
                 batch_size: int | None = None, loss: str = "auto", backend: str = "jax", *,
                 l2: float = 1e-4, fit_intercept: bool | None = None, seed: int = 0,
                 dtype: str = "float32", use_jit: bool = True,
                 divergence_factor: float = 1e6, **hyperparams: Any) -> None:
        from optiscale_jax.optimizers import get_optimizer
        default_rate, default_epochs, default_hyper = DEFAULTS[self.optimizer_name]
        self.learning_rate = default_rate if learning_rate is None else learning_rate
        self.epochs = _checks.check_positive_int(
            default_epochs if epochs is None else epochs, "epochs")
        if batch_size is not None:
            _checks.check_positive_int(batch_size, "batch_size")
        self.batch_size = batch_size
        if loss not in _checks.LOSSES:
            raise ValueError(f"loss={loss!r} is unknown; choose one of: {', '.join(_checks.LOSSES)}")
        self.loss = loss
        self.backend = _checks.check_backend(backend)
        self.l2 = _checks.check_l2(l2)
        if fit_intercept not in (None, True, False):
            raise ValueError(f"fit_intercept={fit_intercept!r} is invalid; pass True, False or "
                             "None (True for least squares, False for classification)")
        self.fit_intercept = fit_intercept
        self.seed = int(seed)
        self.dtype = canonical_dtype(dtype)
        self.use_jit = bool(use_jit)
        self.divergence_factor = divergence_factor
        self.hyperparams = {**default_hyper, **hyperparams}
        get_optimizer(self.optimizer_name, learning_rate=self.learning_rate, **self.hyperparams)
        self._stepper: _Stepper | None = None

    # -- fitting -----------------------------------------------------------------------
    def _intercept_for(self, kind: str) -> bool:
        """fit_intercept resolved: None means True for least squares, False for classifiers."""
        if self.fit_intercept is None:
            return kind == "least_squares"
        return self.fit_intercept

    @staticmethod
    def _design(X: np.ndarray, intercept: bool) -> np.ndarray:
        return np.hstack([X, np.ones((X.shape[0], 1))]) if intercept else X

    def _problem(self, X: np.ndarray, y: np.ndarray, kind: str) -> Any:
        from optiscale_jax.problems import make_problem
        if kind == "least_squares" and self.l2 > 0:
            kind = "ridge"
        return make_problem(kind, X, y, l2=self.l2)

    def fit(self, X: Any, y: Any) -> FirstOrderEstimator:
        """Trains on (X, y) from zero weights; returns self. Raises ValueError on bad input."""
        start = time.perf_counter()
        features = _checks.check_features(X)
        targets = _checks.check_targets(y, features.shape[0])
        kind = _checks.resolve_loss(self.loss, targets)
        batch_size = _checks.check_batch_size(self.batch_size, features.shape[0])
        intercept = self._intercept_for(kind)
        problem = self._problem(self._design(features, intercept), targets, kind)
        hyper = {"learning_rate": self.learning_rate, **self.hyperparams}
        common = dict(epochs=self.epochs, batch_size=batch_size, seed=self.seed,
                      dtype=self.dtype, divergence_factor=self.divergence_factor)
        events.emit("setup", time.perf_counter() - start)     # input checks, the Problem
        if self.backend == "jax" and self.use_jit:
            result = run(problem, self.optimizer_name, hyperparams=hyper, **common)
        else:
            result = run_reference(problem, self.optimizer_name, hyper, backend=self.backend,
                                   **common)
        self._start(problem, kind, intercept, features.shape[1])
        self.result_ = result
        self._set_params(np.asarray(result.params))
        self.history_ = {"loss": list(np.asarray(result.train_loss, np.float64)),
                         "grad_norm": list(np.asarray(result.grad_norm, np.float64))}
        self.compile_time_s_ = result.compile_time_s
        self.fit_time_s_ = result.run_time_s
        self.total_time_s_ = time.perf_counter() - start
        return self

    def _start(self, problem: Any, kind: str, intercept: bool, n_features: int) -> None:
        self.problem_ = problem
        self.loss_ = kind
        self.fit_intercept_ = intercept
        self.n_features_in_ = n_features
        self._stepper = None

    def _set_params(self, params: np.ndarray) -> None:
        self.params_ = params
        if self.fit_intercept_:
            self.coef_, self.intercept_ = params[:-1], params[-1]
        else:
            self.coef_ = params
            self.intercept_ = np.zeros(params.shape[1:]) if params.ndim > 1 else 0.0

    # -- hand-written loops --------------------------------------------------------------
    def step(self, X_batch: Any, y_batch: Any) -> float:
        """One optimizer step on a batch; returns the batch loss before the step.

        The first call starts from the fitted weights (or zeros) with a fresh optimizer
        state; the loss kind is the fitted one, else resolved from this batch's labels.
        Appends the loss to history_["loss"].
        """
        features = _checks.check_features(X_batch, "X_batch")
        targets = _checks.check_targets(y_batch, features.shape[0], "y_batch")
        fitted = hasattr(self, "params_")
        if fitted and features.shape[1] != self.n_features_in_:
            raise ValueError(f"X_batch has {features.shape[1]} features; this estimator was "
                             f"fitted (or stepped) with {self.n_features_in_}")
        kind = self.loss_ if fitted else _checks.resolve_loss(self.loss, targets)
        if kind == "logistic":
            _checks.resolve_loss("logistic", targets)
        if self._stepper is None:
            if not fitted:
                intercept = self._intercept_for(kind)
                problem = self._problem(self._design(features, intercept), targets, kind)
                self._start(problem, kind, intercept, features.shape[1])
                self._set_params(problem.init_params(np.float64))
                self.history_ = {"loss": [], "grad_norm": []}
            self._stepper = _Stepper(self.problem_, self.optimizer_name,
                                     {"learning_rate": self.learning_rate, **self.hyperparams},
                                     self.backend, self.use_jit, self.dtype, self.params_)
        loss = self._stepper.step(self._design(features, self.fit_intercept_), targets)
        self._set_params(self._stepper.params_numpy())
        self.history_["loss"].append(loss)
        return loss

    # -- predictions ---------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet; call fit(X, y) "
                               "(or step(X_batch, y_batch)) first")

    def decision_function(self, X: Any) -> np.ndarray:
        """X w (+ intercept) in float64: regression values or logits."""
        self._check_fitted()
        X = _checks.check_features(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features; this estimator was fitted with "
                             f"{self.n_features_in_}")
        return X @ np.asarray(self.coef_, np.float64) + self.intercept_

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n, 2) for logistic, (n, k) for softmax."""
        scores = self.decision_function(X)
        if self.loss_ == "logistic":
            p = 0.5 * (1.0 + np.tanh(0.5 * scores))
            return np.stack([1.0 - p, p], axis=1)
        if self.loss_ == "softmax":
            shifted = scores - scores.max(axis=1, keepdims=True)
            e = np.exp(shifted)
            return e / e.sum(axis=1, keepdims=True)
        raise ValueError("predict_proba is only defined for classification (logistic/softmax)")

    def predict(self, X: Any) -> np.ndarray:
        """Regression values, or class labels (0/1 for logistic, argmax for softmax)."""
        scores = self.decision_function(X)
        if self.loss_ == "logistic":
            return (scores >= 0).astype(np.int64)
        if self.loss_ == "softmax":
            return np.argmax(scores, axis=1)
        return scores

    def score(self, X: Any, y: Any) -> float:
        """Accuracy for classification, R^2 for regression."""
        prediction = self.predict(X)
        targets = _checks.check_targets(y, prediction.shape[0])
        if self.loss_ in ("logistic", "softmax"):
            return float(accuracy_score(targets, prediction))
        return float(r2_score(targets, prediction))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(learning_rate={self.learning_rate!r}, "
                f"epochs={self.epochs}, batch_size={self.batch_size!r}, loss={self.loss!r}, "
                f"backend={self.backend!r})")


class _Stepper:
    """Params and optimizer state for `step`, on the estimator's backend."""

    def __init__(self, problem: Any, optimizer_name: str, hyperparams: dict[str, Any],
                 backend: str, use_jit: bool, dtype: str, params: np.ndarray) -> None:
        from optiscale_jax.backends import get_backend
        self.backend = get_backend(backend)
        self.dtype = dtype
        self.n_columns = int(params.shape[0])
        self.eager = backend == "jax" and not use_jit
        xp = self.backend.xp
        transform = self.backend.optimizer(optimizer_name, **hyperparams)

        def step(params: Any, state: Any, X: Any, y: Any) -> tuple[Any, Any, Any]:
            loss = problem.loss(params, X, y, xp=xp)
            grad = problem.grad(params, X, y, xp=xp)
            updates, state = transform.update(grad, state, params)
            return loss, self.backend.apply_updates(params, updates), state

        self._step = jax.jit(step) if backend == "jax" and use_jit else step
        self.kind = problem.kind
        with self._context():
            self.params = self.backend.asarray(np.asarray(params, dtype))
            self.state = transform.init(self.params)

    def _context(self) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        stack.enter_context(precision(self.dtype))
        if self.eager:
            stack.enter_context(jax.disable_jit())
        return stack

    def step(self, X: np.ndarray, y: np.ndarray) -> float:
        with self._context():
            X_dev = self.backend.asarray(np.asarray(X, self.dtype))
            y_host = y if self.kind == "softmax" else np.asarray(y, self.dtype)
            loss, self.params, self.state = self._step(self.params, self.state, X_dev,
                                                       self.backend.asarray(y_host))
            return float(loss)

    def params_numpy(self) -> np.ndarray:
        return self.backend.to_numpy(self.params)


def _estimator(name: str, optimizer: str, doc: str) -> type[FirstOrderEstimator]:
    rate, epochs, extra = DEFAULTS[optimizer]
    shown = "".join(f", {key}={value}" for key, value in extra.items())
    return type(name, (FirstOrderEstimator,), {
        "optimizer_name": optimizer,
        "__doc__": f"{doc}\n\n    Defaults: learning_rate={rate}, epochs={epochs}{shown}, l2=1e-4, "
                   "full batch.\n"
                   "    See FirstOrderEstimator for the arguments and fitted attributes.",
        "__module__": __name__})


SGD = _estimator("SGD", "sgd", "Gradient descent (mini-batch SGD with batch_size): w <- w - lr g.")
Momentum = _estimator("Momentum", "momentum", "Heavy-ball momentum: m <- g + mu m; w <- w - lr m.")
Nesterov = _estimator("Nesterov", "nesterov",
                      "Nesterov momentum: m <- g + mu m; w <- w - lr (g + mu m).")
Adam = _estimator("Adam", "adam", "Adam (Kingma & Ba 2015) with bias correction.")
AdamW = _estimator("AdamW", "adamw", "AdamW: Adam plus decoupled weight decay lr * wd * w.")
RMSProp = _estimator("RMSProp", "rmsprop", "RMSProp: w <- w - lr g / sqrt(v + eps).")
Adagrad = _estimator("Adagrad", "adagrad", "Adagrad: w <- w - lr g / sqrt(sum g^2 + eps).")

ESTIMATORS: dict[str, type[FirstOrderEstimator]] = {
    cls.optimizer_name: cls for cls in (SGD, Momentum, Nesterov, Adam, AdamW, RMSProp, Adagrad)}


class JAXOptimizer(FirstOrderEstimator):
    """An estimator chosen by name: `JAXOptimizer(optimizer_type="adam", learning_rate=0.01,
    use_jit=True).fit(X, y)`. `use_jit=False` runs the same loop op by op.

    optimizer_type: one of sgd, momentum, nesterov, adam, adamw, rmsprop, adagrad.
    Other arguments as FirstOrderEstimator (backend is "jax").
    """

    def __init__(self, optimizer_type: str = "adam", learning_rate: float | None = None,
                 use_jit: bool = True, epochs: int | None = None,
                 batch_size: int | None = None, loss: str = "auto", **kwargs: Any) -> None:
        if not isinstance(optimizer_type, str) or optimizer_type.lower() not in ESTIMATORS:
            raise ValueError(f"optimizer_type={optimizer_type!r} is unknown; choose one of: "
                             f"{', '.join(sorted(ESTIMATORS))}")
        if kwargs.get("backend", "jax") != "jax":
            raise ValueError("JAXOptimizer runs on backend='jax'; use the optimizer classes "
                             "(e.g. Adam(backend='numpy')) for the reference backends")
        kwargs.pop("backend", None)
        self.optimizer_type = optimizer_type.lower()
        self.optimizer_name = self.optimizer_type
        super().__init__(learning_rate=learning_rate, epochs=epochs, batch_size=batch_size,
                         loss=loss, backend="jax", use_jit=use_jit, **kwargs)
