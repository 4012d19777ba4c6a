"""Estimators in scikit-learn's style: `Adam(learning_rate=0.01, epochs=1000).fit(X, y)`.

Each estimator builds a Problem from (X, y) and trains it on the one engine (`run`),
on a reference backend (`run_reference`) for `backend="numpy"|"cupy"`, or op by op
for `use_jit=False`. The problem kind follows the one label rule,
`optiscale_jax.problems.labels.infer_problem_kind`: integer / bool / string labels
with 2 classes -> logistic, more -> softmax, continuous targets -> least squares,
`loss=` to override. The objective adds `(l2/2)||w||^2` (`l2=1e-4` by default, making
least squares "ridge"). An intercept is a column of ones appended to X (penalised like
the other weights): by default for least squares, not for classification
(`fit_intercept=None`).

The estimators follow scikit-learn's conventions (checked by
`sklearn.utils.estimator_checks` in the tests): every constructor argument is a
parameter (`get_params` / `set_params` / `clone`), `fit` returns self, a fitted
classifier has `classes_`, `predict_proba`, `decision_function` and accuracy as
`score`, a fitted regressor has R^2 as `score`. Unlike scikit-learn's own estimators,
bad hyperparameters are refused when the estimator is built (and by `set_params`),
naming the value. The estimator type (`sklearn.base.is_classifier`) follows `loss`,
and after `fit` the fitted kind; with `loss="auto"` an unfitted estimator is neither.

Defaults (learning rate, epochs) per class are chosen so that full-batch float32 fits
of MNIST-10k binary (0-4 vs 5-9, pixels in [0, 1]) and of standardised California
Housing reach relative suboptimality (f - f*) / |f*| <= 1e-3; see docs/training.md.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import ClassifierTags, RegressorTags, Tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from optiscale_jax.backends import get_backend
from optiscale_jax.optimizers import default_hyperparams, get_optimizer
from optiscale_jax.problems import Problem, make_problem
from optiscale_jax.problems.labels import CLASSIFICATION_LOSSES, LabelRule, infer_problem_kind
from optiscale_jax.training import _checks, events
from optiscale_jax.training.engine import canonical_dtype, precision
from optiscale_jax.training.reference import run_reference
from optiscale_jax.training.run import run

# (learning_rate, epochs, overridden optimizer defaults) per optimizer; docs/training.md.
DEFAULTS: dict[str, tuple[float, int, dict[str, float]]] = {
    "sgd": (0.3, 1000, {}),
    "momentum": (0.3, 900, {"momentum": 0.99}),
    "nesterov": (0.3, 700, {"momentum": 0.99}),
    "adam": (0.01, 1000, {}),
    "adamw": (0.01, 1000, {}),
    "rmsprop": (0.003, 1000, {}),
    "adagrad": (0.3, 1000, {}),
}
# Keyword-only arguments every estimator takes, with their defaults.
COMMON_KEYWORDS: dict[str, Any] = {"l2": 1e-4, "fit_intercept": None, "seed": 0,
                                   "dtype": "float32", "use_jit": True, "divergence_factor": 1e6}


def optimizer_defaults(optimizer: str) -> dict[str, Any]:
    """The optimizer's own hyperparameters (learning rate excluded) with the estimator defaults."""
    own = {k: v for k, v in default_hyperparams(optimizer).items() if k != "learning_rate"}
    return {**own, **DEFAULTS[optimizer][2]}


class FirstOrderEstimator(BaseEstimator):
    """A linear model trained by one first-order optimizer (base of SGD, Adam, ...).

    Args:
      learning_rate: step size (None: the class's documented default).
      epochs: passes over the data (None: the class's documented default).
      batch_size: None for full batch, else mini-batches (seeded per-epoch shuffle).
      loss: "auto" (the label rule), "least_squares", "logistic" or "softmax".
      backend: "jax" (the compiled engine), "numpy" or "cupy" (reference loops).
      l2: L2 coefficient (default 1e-4).
      fit_intercept: append a column of ones to X (penalised by l2 like the other weights);
        None (default) = True for least squares, False for logistic / softmax.
      seed: mini-batch shuffling seed in [0, 2**32 - 1]. dtype: "float32" or "float64".
      use_jit: False runs the JAX loop op by op (no jit) to show the JIT speed-up.
      divergence_factor: see `run`.
      the optimizer's other hyperparameters (e.g. b1, momentum, weight_decay), keyword-only;
        None means the class default.

    After `fit`: `coef_`, `intercept_`, `classes_` (classifiers), `history_` ({"loss",
    "grad_norm"} per epoch; `step` appends to "loss"), `result_` (RunResult),
    `compile_time_s_`, `fit_time_s_` (training run, compile excluded), `total_time_s_`
    (the whole fit call), `problem_`, `loss_`, `n_features_in_`.
    """

    optimizer_name: ClassVar[str] = ""

    # -- parameters --------------------------------------------------------------------
    def _optimizer(self) -> str:
        return self.optimizer_name

    def _hyperparams(self) -> dict[str, Any]:
        """learning_rate and the optimizer's hyperparameters, None replaced by the defaults."""
        name = self._optimizer()
        given = {key: getattr(self, key) for key in optimizer_defaults(name)}
        chosen = {key: value for key, value in given.items() if value is not None}
        rate = DEFAULTS[name][0] if self.learning_rate is None else self.learning_rate
        return {"learning_rate": rate, **{**optimizer_defaults(name), **chosen}}

    def _epochs(self) -> int:
        return DEFAULTS[self._optimizer()][1] if self.epochs is None else int(self.epochs)

    def _check_params(self) -> None:
        """Every parameter checked (nothing stored): ValueError naming the bad one."""
        _checks.check_number(self.learning_rate, "learning_rate")
        for key, default in optimizer_defaults(self._optimizer()).items():
            _checks.check_number(getattr(self, key), key, example=default)
        get_optimizer(self._optimizer(), **self._hyperparams())       # the ranges
        if self.epochs is not None:
            _checks.check_positive_int(self.epochs, "epochs", _checks.MAX_EPOCHS)
        if self.batch_size is not None:
            _checks.check_positive_int(self.batch_size, "batch_size")
        _checks.check_choice(self.loss, "loss", _checks.LOSSES)
        _checks.check_backend(self.backend)
        _checks.check_l2(self.l2)
        _checks.check_choice(self.fit_intercept, "fit_intercept", (None, True, False))
        _checks.check_seed(self.seed)
        canonical_dtype(self.dtype)
        _checks.check_choice(self.use_jit, "use_jit", (True, False))
        _checks.check_number(self.divergence_factor, "divergence_factor", optional=False)
        if self.divergence_factor <= 1:
            raise ValueError(f"divergence_factor={self.divergence_factor!r} is invalid; pass a "
                             "number > 1 (a loss above factor * initial loss is divergence)")

    def set_params(self, **params: Any) -> FirstOrderEstimator:
        """scikit-learn's set_params, then the constructor's checks; on a bad value the
        parameters are left as they were and ValueError names the value."""
        before = self.get_params(deep=False)
        super().set_params(**params)
        try:
            self._check_params()
        except ValueError:
            super().set_params(**before)
            raise
        return self

    def __sklearn_tags__(self) -> Tags:
        """Classifier or regressor by the fitted kind, else by `loss` (neither for "auto")."""
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        kind = self._kind()
        if kind in CLASSIFICATION_LOSSES:
            tags.estimator_type = "classifier"
            tags.classifier_tags = ClassifierTags(multi_class=kind != "logistic")
        elif kind != "auto":
            tags.estimator_type = "regressor"
            tags.regressor_tags = RegressorTags()
        return tags

    def _kind(self) -> str:
        return getattr(self, "loss_", None) or self.loss

    def _is_classifier(self) -> bool:
        return self._kind() in (*CLASSIFICATION_LOSSES, "auto")

    # -- fitting -----------------------------------------------------------------------
    def _intercept_for(self, kind: str) -> bool:
        """fit_intercept resolved: None means True for least squares, False for classifiers."""
        if self.fit_intercept is None:
            return kind == "least_squares"
        return self.fit_intercept

    @staticmethod
    def _design(X: np.ndarray, intercept: bool) -> np.ndarray:
        return np.hstack([X, np.ones((X.shape[0], 1))]) if intercept else X

    def _problem(self, X: np.ndarray, rule: LabelRule) -> Problem:
        kind = "ridge" if rule.kind == "least_squares" and self.l2 > 0 else rule.kind
        return make_problem(kind, X, rule.encoded_y, l2=self.l2, n_classes=rule.n_classes)

    def _prepare(self, X: Any, y: Any) -> tuple[np.ndarray, LabelRule]:
        """Checked features and the label rule's encoding of y."""
        self._check_params()
        features = _checks.check_features(X)
        if y is not None and np.asarray(y).ndim >= 1:   # a count mismatch named first
            _checks.check_n_targets(np.asarray(y), features.shape[0])
        rule = infer_problem_kind(y, self.loss)
        return features, rule

    def fit(self, X: Any, y: Any) -> FirstOrderEstimator:
        """Trains on (X, y) from zero weights; returns self. Raises ValueError on bad input."""
        start = time.perf_counter()
        features, rule = self._prepare(X, y)
        batch_size = _checks.check_batch_size(self.batch_size, features.shape[0])
        intercept = self._intercept_for(rule.kind)
        problem = self._problem(self._design(features, intercept), rule)
        common = dict(epochs=self._epochs(), batch_size=batch_size, seed=self.seed,
                      dtype=canonical_dtype(self.dtype), divergence_factor=self.divergence_factor)
        events.emit("setup", time.perf_counter() - start)     # input checks, the Problem
        if self.backend == "jax" and self.use_jit:
            result = run(problem, self._optimizer(), hyperparams=self._hyperparams(), **common)
        else:
            result = run_reference(problem, self._optimizer(), self._hyperparams(),
                                   backend=self.backend.lower(), **common)
        self._start(problem, rule, intercept, X)
        self.result_ = result
        self._set_params(np.asarray(result.params))
        self.history_ = {"loss": list(np.asarray(result.train_loss, np.float64)),
                         "grad_norm": list(np.asarray(result.grad_norm, np.float64))}
        self.compile_time_s_ = result.compile_time_s
        self.fit_time_s_ = result.run_time_s
        self.total_time_s_ = time.perf_counter() - start
        return self

    def _start(self, problem: Problem, rule: LabelRule, intercept: bool, X: Any) -> None:
        """Fitted attributes that describe the model (not the run)."""
        validate_data(self, X, skip_check_array=True, reset=True)   # n_features_in_, names
        self.problem_ = problem
        self.loss_ = rule.kind
        self.fit_intercept_ = intercept
        if rule.classes is not None:
            self.classes_ = rule.classes
        elif hasattr(self, "classes_"):
            del self.classes_                  # refitted as a regressor
        self._stepper: _Stepper | None = None

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
        state. The labels are encoded with the fitted classes; unfitted, the label rule
        reads this first batch (which must then hold every class). Appends the loss to
        history_["loss"].
        """
        features = _checks.check_features(X_batch, "X_batch")
        if not hasattr(self, "params_"):
            self._check_params()
            rule = infer_problem_kind(y_batch, self.loss, name="y_batch")
            _checks.check_n_targets(rule.encoded_y, features.shape[0], "y_batch")
            intercept = self._intercept_for(rule.kind)
            problem = self._problem(self._design(features, intercept), rule)
            self._start(problem, rule, intercept, X_batch)
            self._set_params(problem.init_params(np.float64))
            self.history_ = {"loss": [], "grad_norm": []}
        validate_data(self, X_batch, skip_check_array=True, reset=False)
        targets = self._encode(y_batch, features.shape[0])
        if self._stepper is None:
            self._stepper = _Stepper(self.problem_, self._optimizer(), self._hyperparams(),
                                     self.backend.lower(), self.use_jit,
                                     canonical_dtype(self.dtype), self.params_)
        loss = self._stepper.step(self._design(features, self.fit_intercept_), targets)
        self._set_params(self._stepper.params_numpy())
        self.history_["loss"].append(loss)
        return loss

    def _encode(self, y: Any, n_samples: int) -> np.ndarray:
        """y encoded as the fitted problem's targets (class indices for classifiers)."""
        if self.loss_ not in CLASSIFICATION_LOSSES:
            targets = infer_problem_kind(y, "least_squares", name="y_batch").encoded_y
        else:
            labels = np.asarray(y)
            labels = labels.ravel() if labels.ndim == 2 and labels.shape[1] == 1 else labels
            unseen = np.setdiff1d(labels, self.classes_)
            if labels.ndim != 1 or unseen.size:
                raise ValueError(f"y_batch holds label(s) {unseen[:5].tolist()} (shape "
                                 f"{labels.shape}) this estimator was not fitted with; its "
                                 f"classes are {self.classes_.tolist()}")
            index = np.searchsorted(self.classes_, labels)
            targets = index.astype(np.float64 if self.loss_ == "logistic" else np.int64)
        _checks.check_n_targets(targets, n_samples, "y_batch")
        return targets

    # -- predictions ---------------------------------------------------------------------
    def _scores(self, X: Any) -> np.ndarray:
        """X w (+ intercept) in float64: regression values or logits, shape (n,) or (n, k)."""
        check_is_fitted(self, "params_")
        features = _checks.check_features(X)
        validate_data(self, X, skip_check_array=True, reset=False)
        return features @ np.asarray(self.coef_, np.float64) + self.intercept_

    @available_if(_is_classifier)
    def decision_function(self, X: Any) -> np.ndarray:
        """Logits: shape (n,) for two classes (the score of classes_[1]), else (n, k)."""
        scores = self._scores(X)
        if scores.ndim == 2 and scores.shape[1] == 2:
            return scores[:, 1] - scores[:, 0]
        return scores

    @available_if(_is_classifier)
    def predict_log_proba(self, X: Any) -> np.ndarray:
        """log P(class | x), shape (n, k), k >= 2; columns in the order of classes_."""
        scores = self._scores(X)
        if scores.ndim == 1:                                   # logistic
            scores = np.stack([np.zeros_like(scores), scores], axis=1)
        shifted = scores - scores.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    @available_if(_is_classifier)
    def predict_proba(self, X: Any) -> np.ndarray:
        """P(class | x), shape (n, k), k >= 2; columns in the order of classes_."""
        return np.exp(self.predict_log_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """Regression values, or class labels (from classes_)."""
        scores = self._scores(X)
        if self.loss_ == "logistic":
            return self.classes_[(scores >= 0).astype(np.int64)]
        if self.loss_ == "softmax":
            return self.classes_[np.argmax(scores, axis=1)]
        return scores

    def score(self, X: Any, y: Any) -> float:
        """Accuracy for a fitted classifier, R^2 for a fitted regressor (scikit-learn's metrics)."""
        prediction = self.predict(X)
        targets = np.asarray(y)
        _checks.check_n_targets(targets, prediction.shape[0])
        if self.loss_ in CLASSIFICATION_LOSSES:
            return float(accuracy_score(targets, prediction))
        return float(r2_score(targets, prediction))


class _Stepper:
    """Params and optimizer state for `step`, on the estimator's backend."""

    def __init__(self, problem: Problem, optimizer_name: str, hyperparams: dict[str, Any],
                 backend: str, use_jit: bool, dtype: str, params: np.ndarray) -> None:
        self.backend = get_backend(backend)
        self.dtype = dtype
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


# -- the constructors ------------------------------------------------------------------------
# scikit-learn reads an estimator's parameters from its __init__ signature, so each class
# needs its optimizer's hyperparameters there. Rather than seven hand-copied signatures,
# `_constructor` builds one __init__ per class from a Signature: it binds the arguments,
# stores each unchanged under its own name (as `clone` requires) and runs the checks.
POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD
KEYWORD = inspect.Parameter.KEYWORD_ONLY


def _signature(positional: dict[str, Any], keyword: dict[str, Any]) -> inspect.Signature:
    return inspect.Signature(
        [inspect.Parameter("self", POSITIONAL)]
        + [inspect.Parameter(k, POSITIONAL, default=v) for k, v in positional.items()]
        + [inspect.Parameter(k, KEYWORD, default=v) for k, v in {**keyword, **COMMON_KEYWORDS}.items()
           if k not in positional])


def _constructor(signature: inspect.Signature) -> Callable[..., None]:
    def __init__(self: FirstOrderEstimator, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        for key, value in list(bound.arguments.items())[1:]:
            setattr(self, key, value)
        self._check_params()

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    return __init__


def _estimator(name: str, optimizer: str, doc: str) -> type[FirstOrderEstimator]:
    rate, epochs, _ = DEFAULTS[optimizer]
    hyper = optimizer_defaults(optimizer)
    shown = "".join(f", {key}={value}" for key, value in hyper.items())
    signature = _signature({"learning_rate": rate, "epochs": epochs, "batch_size": None,
                            "loss": "auto", "backend": "jax"}, hyper)
    return type(name, (FirstOrderEstimator,), {
        "optimizer_name": optimizer,
        "__init__": _constructor(signature),
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
# Every hyperparameter any estimator optimizer takes (JAXOptimizer's keyword arguments).
ALL_HYPERPARAMS: tuple[str, ...] = tuple(dict.fromkeys(
    key for optimizer in ESTIMATORS for key in optimizer_defaults(optimizer)))


class JAXOptimizer(FirstOrderEstimator):
    """An estimator chosen by name: `JAXOptimizer(optimizer_type="adam", learning_rate=0.01,
    use_jit=True).fit(X, y)`. `use_jit=False` runs the same loop op by op.

    optimizer_type: one of sgd, momentum, nesterov, adam, adamw, rmsprop, adagrad.
    Hyperparameters of the optimizer (momentum, b1, b2, eps, eps_root, weight_decay, decay,
    initial_accumulator_value) are keyword arguments, None meaning that optimizer's
    estimator default; one the chosen optimizer does not take is refused. Other
    arguments as FirstOrderEstimator; the backend is always "jax".
    """

    backend: ClassVar[str] = "jax"
    __init__ = _constructor(_signature(
        {"optimizer_type": "adam", "learning_rate": None, "use_jit": True, "epochs": None,
         "batch_size": None, "loss": "auto"},
        dict.fromkeys(ALL_HYPERPARAMS)))

    @property
    def optimizer_name(self) -> str:  # type: ignore[override]
        return self._optimizer()

    def _optimizer(self) -> str:
        if not isinstance(self.optimizer_type, str) or self.optimizer_type.lower() not in ESTIMATORS:
            raise ValueError(f"optimizer_type={self.optimizer_type!r} is unknown; choose one of: "
                             f"{', '.join(sorted(ESTIMATORS))}")
        return self.optimizer_type.lower()

    def _check_params(self) -> None:
        name = self._optimizer()
        foreign = [key for key in ALL_HYPERPARAMS
                   if key not in optimizer_defaults(name) and getattr(self, key) is not None]
        if foreign:
            takes = ", ".join(["learning_rate", *optimizer_defaults(name)])
            raise ValueError(f"{', '.join(f'{k}={getattr(self, k)!r}' for k in foreign)}: not a "
                             f"hyperparameter of optimizer_type={name!r}, which takes: {takes}")
        super()._check_params()

