"""Bring your own optimizer: resolve a spec string to a validated, reportable `OptimizerSpec`.

A spec names where an optimizer factory lives; the factory, called with the
hyperparameters, returns an `optax.GradientTransformation`:

    adam                       one of ours (`OPTIMIZER_NAMES`), `optiscale_jax.optimizers.adam`
    optax:lion                 an optax alias, `optax.lion`
    optax:contrib.muon         anything under the `optax` namespace, `optax.contrib.muon`
    my_pkg.my_opt:make         a user factory: module importable from sys.path, attribute
    path/to/file.py:make       a user factory in a Python file
    mine=my_pkg.my_opt:make    any of the above under a display name (default: the attribute)

`resolve_optimizer(spec, hyperparams)` imports the factory and checks, before any run,
that every hyperparameter is one the factory takes (by `inspect.signature`), that the
call succeeds and that it returns a `GradientTransformation`; every failure raises
`OptimizerSpecError` (a ValueError) naming the spec and the fix. The spec records the
import path, the version of where it came from and the full hyperparameters, and
`spec.build(learning_rate=...)` rebuilds the transform with overrides, for a vmapped
learning-rate sweep whenever `spec.accepts_learning_rate`.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import math
import re
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

from optiscale_jax.optimizers import _alias
from optiscale_jax.optimizers._registry import OPTIMIZER_NAMES

SOURCES: tuple[str, ...] = ("optiscale", "optax", "user")
_SYNTAX = ("use a name of ours (" + ", ".join(OPTIMIZER_NAMES) + "), 'optax:NAME' (e.g. optax:lion, "
           "optax:contrib.muon), 'module.path:factory' or 'path/to/file.py:factory'")
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


class OptimizerSpecError(ValueError):
    """A spec, its hyperparameters or a config file is invalid; the message says how to fix it."""


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """A resolved optimizer: where its factory lives, which version, which hyperparameters.

    Attributes:
      name: display name and key (e.g. "adam", "lion", "mine").
      source: "optiscale", "optax" or "user".
      import_path: "optiscale_jax.optimizers.adam", "optax.contrib.muon",
        "my_pkg.my_opt:make" or "/abs/path/file.py:make".
      version: version of the package it came from ("0.2.8"); for a user factory outside an
        installed distribution, "sha256:" and the first 16 hex digits of its source file.
      hyperparams: the hyperparameters given, as sorted (key, value) pairs of JSON values
        (numbers, bools, None, strings and tuples of them); unspecified ones take the
        factory's defaults, listed by `full_hyperparams()`.
      accepts_learning_rate: the factory has a `learning_rate` parameter, so
        `build(learning_rate=tracer)` works inside `jax.vmap` (a learning-rate sweep).
      factory: the callable itself (not compared, not serialized).
    """

    name: str
    source: str
    import_path: str
    version: str
    hyperparams: tuple[tuple[str, Any], ...]
    accepts_learning_rate: bool
    factory: Callable[..., Any] = dataclasses.field(repr=False, compare=False)

    @property
    def spec(self) -> str:
        """The string `resolve_optimizer` takes to find this factory again."""
        if self.source == "optiscale":
            return self.import_path.rsplit(".", 1)[1]
        if self.source == "optax":
            return "optax:" + self.import_path.removeprefix("optax.")
        return self.import_path

    def full_hyperparams(self) -> dict[str, Any]:
        """Every keyword of the factory with a default, overridden by the given ones."""
        defaults = {p.name: p.default for p in _parameters(self.factory)
                    if p.default is not inspect.Parameter.empty and p.name != "namespace"}
        return {**defaults, **dict(self.hyperparams)}

    def build(self, **overrides: Any) -> optax.GradientTransformation:
        """The transform `factory(**hyperparams, **overrides)`; overrides may be traced values."""
        return self.factory(**{**dict(self.hyperparams), **overrides})

    def to_json(self) -> dict[str, Any]:
        """A JSON-able record of the spec (`from_json` reads it back)."""
        return {"name": self.name, "spec": self.spec, "source": self.source,
                "import_path": self.import_path, "version": self.version,
                "hyperparams": {key: _to_json_value(value) for key, value in self.hyperparams},
                "accepts_learning_rate": self.accepts_learning_rate}

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> OptimizerSpec:
        """Resolves a `to_json` record again; warns when the installed version differs."""
        if not isinstance(record, Mapping) or "spec" not in record:
            raise OptimizerSpecError(f"{record!r} is not an OptimizerSpec record: it needs a 'spec' key "
                                     "(write it with OptimizerSpec.to_json()).")
        spec = resolve_optimizer(record["spec"], record.get("hyperparams"), name=record.get("name"))
        recorded = record.get("version")
        if recorded is not None and recorded != spec.version:
            warnings.warn(f"optimizer {spec.name!r} was recorded with version {recorded} of "
                          f"{spec.import_path}; version {spec.version} is installed", stacklevel=2)
        return spec


def _parameters(factory: Callable[..., Any]) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check against
        return []


def _to_json_value(value: Any) -> Any:
    return list(map(_to_json_value, value)) if isinstance(value, tuple) else value


def _frozen_value(key: str, value: Any, where: str) -> Any:
    """A JSON-able hyperparameter value (lists become tuples), else OptimizerSpecError."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen_value(key, item, where) for item in value)
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise OptimizerSpecError(f"{where}: hyperparameter {key}={value!r} is not finite; "
                                     "give a finite number.")
        return value
    raise OptimizerSpecError(
        f"{where}: hyperparameter {key}={value!r} ({type(value).__name__}) cannot be recorded; a spec "
        "takes numbers, bools, None, strings and tuples of them. For schedules, masks or other "
        "objects write a factory function that builds them and name it as 'module:factory'.")


def _freeze(hyperparams: Mapping[str, Any] | None, where: str) -> tuple[tuple[str, Any], ...]:
    if hyperparams is None:
        return ()
    if not isinstance(hyperparams, Mapping):
        raise OptimizerSpecError(f"{where}: hyperparams must be a mapping {{name: value}}, "
                                 f"got {hyperparams!r}.")
    for key in hyperparams:
        if not isinstance(key, str) or not key.isidentifier():
            raise OptimizerSpecError(f"{where}: hyperparameter name {key!r} is not a Python identifier.")
    return tuple(sorted((key, _frozen_value(key, value, where)) for key, value in hyperparams.items()))


def _distribution_version(module_name: str) -> str | None:
    top = module_name.split(".", 1)[0]
    for distribution in importlib.metadata.packages_distributions().get(top, []):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _file_version(path: Path | None) -> str:
    if path is None or not path.is_file():
        return "unknown"
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _lookup(root: Any, dotted: str, where: str, candidates: Callable[[], list[str]]) -> Any:
    """getattr along `dotted` from `root`; on a miss, an error listing close names."""
    value = root
    for part in dotted.split("."):
        if not part.isidentifier() or not hasattr(value, part):
            close = difflib.get_close_matches(dotted, candidates(), n=5, cutoff=0.6)
            hint = f"close matches: {', '.join(close)}" if close else _SYNTAX
            raise OptimizerSpecError(f"{where}: {dotted!r} was not found; {hint}.")
        value = getattr(value, part)
    return value


def _optax_names() -> list[str]:
    names = [n for n in dir(optax) if not n.startswith("_") and callable(getattr(optax, n))]
    names += ["contrib." + n for n in dir(optax.contrib) if not n.startswith("_")]
    return names


def _import_file(path_text: str, where: str) -> tuple[Any, Path]:
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise OptimizerSpecError(f"{where}: the file {str(path)!r} does not exist; give the path to a "
                                 "Python file defining the factory (relative to the working directory).")
    # path and content in the name: an edited file is imported afresh, not served from the cache
    digest = hashlib.sha256(str(path).encode() + b"\0" + path.read_bytes()).hexdigest()[:12]
    module_name = f"optiscale_user_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name], path
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[module_name]
        raise OptimizerSpecError(f"{where}: importing {str(path)!r} raised "
                                 f"{type(error).__name__}: {error}") from error
    return module, path


def _import_module(module_name: str, where: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise OptimizerSpecError(
            f"{where}: module {module_name!r} cannot be imported ({error}); put its directory on "
            "sys.path (e.g. PYTHONPATH=/path/to/dir) or name the file: 'path/to/file.py:factory'.") from error
    except Exception as error:
        raise OptimizerSpecError(f"{where}: importing {module_name!r} raised "
                                 f"{type(error).__name__}: {error}") from error


def _locate(target: str, where: str) -> tuple[str, str, str, Callable[..., Any], str]:
    """(source, import_path, version, factory, default name) for a spec without its label."""
    if ":" not in target or target.startswith("optiscale:"):
        key = target.removeprefix("optiscale:").lower()
        if key not in OPTIMIZER_NAMES:
            close = difflib.get_close_matches(key, list(OPTIMIZER_NAMES) + _optax_names(), n=5, cutoff=0.5)
            hint = f" (close: {', '.join(close)})" if close else ""
            raise OptimizerSpecError(f"{where}: unknown optimizer {target!r}{hint}; {_SYNTAX}.")
        return ("optiscale", f"optiscale_jax.optimizers.{key}", importlib.metadata.version("optiscale_jax"),
                getattr(_alias, key), key)
    left, _, attribute = target.rpartition(":")
    if left == "optax":
        factory = _lookup(optax, attribute, where, _optax_names)
        return "optax", f"optax.{attribute}", optax.__version__, factory, attribute.rsplit(".", 1)[-1]
    if not left or not attribute:
        raise OptimizerSpecError(f"{where}: {target!r} is incomplete; {_SYNTAX}.")
    if left.endswith(".py") or "/" in left or "\\" in left:
        module, path = _import_file(left, where)
        import_path, version = f"{path}:{attribute}", _file_version(path)
    else:
        module = _import_module(left, where)
        module_file = getattr(module, "__file__", None)
        version = (_distribution_version(left) or getattr(module, "__version__", None)
                   or _file_version(Path(module_file) if module_file else None))
        import_path = f"{left}:{attribute}"
    public = lambda: [n for n in dir(module) if not n.startswith("_")]  # noqa: E731 - lazy listing
    factory = _lookup(module, attribute, where, public)
    return "user", import_path, str(version), factory, attribute.rsplit(".", 1)[-1]


def _check_keywords(factory: Callable[..., Any], given: Mapping[str, Any], where: str) -> bool:
    """Every given keyword is a parameter of `factory` and no required one is missing.

    Returns whether the factory takes `learning_rate`.
    """
    parameters = [p for p in _parameters(factory) if p.name != "namespace"]
    named = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    open_ended = any(p.kind is p.VAR_KEYWORD for p in parameters) or not parameters
    unknown = sorted(set(given) - set(named))
    if unknown and not open_ended:
        raise OptimizerSpecError(
            f"{where}: the factory takes no hyperparameter {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(named) or '(none)'}.")
    missing = [p.name for p in parameters if p.default is p.empty and p.name not in given
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if missing:
        raise OptimizerSpecError(
            f"{where}: the factory needs {', '.join(map(repr, missing))} (no default); give it, e.g. "
            f"hyperparams={{{missing[0]!r}: 1e-3}} or --hparams=NAME.{missing[0]}=1e-3.")
    return "learning_rate" in named


def _split_label(text: str) -> tuple[str | None, str]:
    """'mine=my_pkg.opt:make' -> ('mine', 'my_pkg.opt:make'); no label -> (None, text)."""
    if "=" in text.split(":", 1)[0]:
        label, target = text.split("=", 1)
        return label.strip(), target.strip()
    return None, text


def resolve_optimizer(spec: str, hyperparams: Mapping[str, Any] | None = None, *,
                      name: str | None = None) -> OptimizerSpec:
    """The validated `OptimizerSpec` for a spec string (syntax in the module docstring).

    Imports the factory, checks the hyperparameters against its signature, calls it once
    and checks that it returns an `optax.GradientTransformation`. `name` (or a `label=`
    prefix) sets the display name. Raises OptimizerSpecError naming the spec and the fix.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise OptimizerSpecError(f"optimizer spec {spec!r} is not a non-empty string; {_SYNTAX}.")
    text = spec.strip()
    label, target = _split_label(text)
    where = f"optimizer spec {text!r}"
    label = name or label
    if label is not None and not _LABEL.match(label):
        raise OptimizerSpecError(f"{where}: display name {label!r} must start with a letter and use "
                                 "letters, digits, '_', '-', '.' only.")
    source, import_path, version, factory, default_name = _locate(target.strip(), where)
    if not callable(factory):
        raise OptimizerSpecError(f"{where}: {import_path} is a {type(factory).__name__}, not a factory "
                                 "function returning an optax.GradientTransformation.")
    frozen = _freeze(hyperparams, where)
    given = dict(frozen)
    accepts_learning_rate = _check_keywords(factory, given, where)
    try:
        transform = factory(**given)
    except Exception as error:
        raise OptimizerSpecError(f"{where}: {import_path}(**{given}) raised {type(error).__name__}: "
                                 f"{error}") from error
    if not isinstance(transform, optax.GradientTransformation):
        raise OptimizerSpecError(
            f"{where}: {import_path}(**{given}) returned a {type(transform).__name__}, not an "
            "optax.GradientTransformation; the factory must return e.g. optax.chain(...) or "
            "optax.GradientTransformation(init_fn, update_fn).")
    return OptimizerSpec(name=label or default_name, source=source, import_path=import_path,
                         version=version, hyperparams=frozen,
                         accepts_learning_rate=accepts_learning_rate, factory=factory)


def resolve_optimizers(
    specs: list[str] | tuple[str, ...], hyperparams: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[OptimizerSpec, ...]:
    """Resolve several specs; `hyperparams` maps display names to their hyperparameters.

    Raises OptimizerSpecError for a duplicate display name or hyperparameters for a
    name that no spec has (the `parse_hparams` keys must match the names).
    """
    hyperparams = dict(hyperparams or {})
    resolved = []
    for text in specs:
        if not isinstance(text, str):
            raise OptimizerSpecError(f"optimizer spec {text!r} is not a string; {_SYNTAX}.")
        label, target = _split_label(text.strip())
        name = label or _locate(target, f"optimizer spec {text!r}")[4]
        resolved.append(resolve_optimizer(text, hyperparams.get(name), name=name))
    names = [spec.name for spec in resolved]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise OptimizerSpecError(f"optimizer name(s) {', '.join(duplicates)} appear twice; give each a "
                                 "display name, e.g. 'adam_fast=adam'.")
    orphans = sorted(set(hyperparams) - set(names))
    if orphans:
        raise OptimizerSpecError(f"hyperparameters given for {', '.join(map(repr, orphans))}, which no "
                                 f"optimizer is called; the optimizers are: {', '.join(names)}.")
    return tuple(resolved)


def state_bytes_per_parameter(transform: optax.GradientTransformation, params: Any) -> float:
    """Bytes of optimizer state per parameter element, from `jax.eval_shape(transform.init, params)`.

    `params` may hold arrays or `jax.ShapeDtypeStruct`s; nothing is allocated. Adam on
    float32 parameters: 8.0 plus its 4-byte step counts spread over the parameters.
    """
    shapes = jax.eval_shape(transform.init, params)
    n_params = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))
    if n_params == 0:
        raise ValueError("state_bytes_per_parameter: params hold no elements; pass the model's parameters.")
    state_bytes = sum(int(np.prod(leaf.shape)) * leaf.dtype.itemsize for leaf in jax.tree.leaves(shapes))
    return state_bytes / n_params


def _schedule_free_state(state: Any) -> Any:
    """The first `optax.contrib.ScheduleFreeState` inside `state` (depth first), else None."""
    if isinstance(state, optax.contrib.ScheduleFreeState):
        return state
    children = state.values() if isinstance(state, Mapping) else state if isinstance(state, tuple) else ()
    for child in children:
        found = _schedule_free_state(child)
        if found is not None:
            return found
    return None


def eval_params(spec: OptimizerSpec | None, state: Any, params: Any) -> Any:
    """The parameters at which to evaluate the model: schedule-free's x, else `params`.

    Schedule-free optimizers (`optax.contrib.schedule_free_*`) train at y but their
    iterate is x = (y - (1 - b1) z) / b1 (`optax.contrib.schedule_free_eval_params`);
    any other optimizer evaluates at `params` itself.
    """
    found = _schedule_free_state(state)
    if found is None:
        if spec is not None and "schedule_free" in spec.import_path:
            raise OptimizerSpecError(f"{spec.name}: the state holds no ScheduleFreeState; pass the "
                                     "state this optimizer's update returned.")
        return params
    return optax.contrib.schedule_free_eval_params(found, params)
