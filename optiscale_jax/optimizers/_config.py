"""Optimizer hyperparameters from a flag string, and optimizer lists from a JSON or YAML file.

    parse_hparams("lion.learning_rate=3e-4,lion.b1=0.95")
        -> {"lion": {"learning_rate": 3e-4, "b1": 0.95}}

Values are Python literals (numbers, True/False/None, quoted strings, tuples such as
`prodigy.betas=(0.9,0.99)`); `true`, `false`, `none` and `null` are accepted in any
case, and a bare word that is not a literal is kept as a string (`adam.mu_dtype=bfloat16`).

A config file (`study.json`, `study.yaml` / `.yml`) lists optimizers under the key
`optimizers`, either as a list of entries or as a mapping from display name to entry;
an entry has `spec` (default: the display name) and optional `hyperparams`:

    {"optimizers": [{"name": "lion", "spec": "optax:lion", "hyperparams": {"learning_rate": 3e-4}},
                    {"spec": "adam"}]}

Other top-level keys are left to the caller. In YAML, `3e-4` is read as a number (as in
YAML 1.2 and JSON). Errors name the file, the entry and the fix.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from optiscale_jax.optimizers._spec import OptimizerSpec, OptimizerSpecError, resolve_optimizer

_WORDS = {"true": True, "false": False, "none": None, "null": None}


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading exponent floats without a dot (`3e-4`) as floats.

    YAML 1.1 (PyYAML) reads `learning_rate: 3e-4` as the string "3e-4"; YAML 1.2 and
    JSON read a number, and so does this loader.
    """


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"), list("-+0123456789"))
_ENTRY_KEYS = ("name", "spec", "hyperparams")


def _split_top_level(text: str) -> list[str]:
    """Split at commas outside brackets and quotes: 'a=(1,2),b=3' -> ['a=(1,2)', 'b=3']."""
    items, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def parse_value(text: str) -> Any:
    """A hyperparameter value from its text: a Python literal, true/false/none, else the string."""
    stripped = text.strip()
    if stripped.lower() in _WORDS:
        return _WORDS[stripped.lower()]
    try:
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError):
        return stripped


def parse_hparams(text: str | None) -> dict[str, dict[str, Any]]:
    """`"NAME.KEY=VALUE,..."` -> {NAME: {KEY: VALUE}}; NAME is an optimizer's display name.

    Raises OptimizerSpecError naming the item and the expected form.
    """
    result: dict[str, dict[str, Any]] = {}
    for item in _split_top_level(text or ""):
        key, equals, value = item.partition("=")
        name, dot, hyperparam = key.strip().rpartition(".")
        if not equals or not dot or not name or not hyperparam.isidentifier() or not value.strip():
            raise OptimizerSpecError(
                f"--hparams item {item!r} is not of the form NAME.KEY=VALUE "
                "(e.g. lion.learning_rate=3e-4,lion.b1=0.95).")
        if hyperparam in result.get(name, {}):
            raise OptimizerSpecError(f"--hparams sets {name}.{hyperparam} twice; give it once.")
        result.setdefault(name, {})[hyperparam] = parse_value(value)
    return result


def _read(path: Path) -> Any:
    """The parsed content of a .json, .yaml or .yml file."""
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise OptimizerSpecError(f"config file {str(path)!r}: unknown extension {suffix!r}; "
                                 "use .json, .yaml or .yml.")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise OptimizerSpecError(f"config file {str(path)!r} does not exist; check the path.") from error
    except (OSError, UnicodeDecodeError) as error:
        raise OptimizerSpecError(f"config file {str(path)!r} cannot be read: {error}.") from error
    try:
        if suffix == ".json":
            return json.loads(text)
        return yaml.load(text, Loader=_YamlLoader)  # a SafeLoader subclass: no arbitrary objects
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        detail = str(error).replace("\n", " ")
        raise OptimizerSpecError(f"config file {str(path)!r} is not valid {suffix[1:].upper()}: "
                                 f"{detail}") from error


def _entries(content: Any, where: str) -> list[tuple[str, Mapping[str, Any]]]:
    """(label for messages, entry) for each optimizer listed under `optimizers`."""
    if not isinstance(content, Mapping) or "optimizers" not in content:
        raise OptimizerSpecError(f"{where}: no 'optimizers' key at the top level; write e.g. "
                                 "{\"optimizers\": [{\"spec\": \"adam\"}, {\"spec\": \"optax:lion\", "
                                 "\"hyperparams\": {\"learning_rate\": 3e-4}}]}.")
    listed = content["optimizers"]
    if isinstance(listed, Mapping):
        return [(f"optimizers.{name}", {"name": name, "spec": name,
                                        **(entry if isinstance(entry, Mapping) else {"spec": entry})})
                for name, entry in listed.items()]
    if isinstance(listed, list) and listed:
        return [(f"optimizers[{i}]", entry if isinstance(entry, Mapping) else {"spec": entry})
                for i, entry in enumerate(listed)]
    raise OptimizerSpecError(f"{where}: 'optimizers' must be a non-empty list or mapping, got {listed!r}.")


def load_optimizer_config(path: str | Path) -> tuple[OptimizerSpec, ...]:
    """The optimizers listed in a JSON or YAML config file, each resolved and validated.

    Raises OptimizerSpecError naming the file, the entry (`optimizers[2]` or
    `optimizers.lion`), the key and the fix.
    """
    path = Path(path)
    where = f"config file {str(path)!r}"
    specs = []
    for label, entry in _entries(_read(path), where):
        unknown = sorted(set(entry) - set(_ENTRY_KEYS))
        if unknown:
            raise OptimizerSpecError(f"{where}, {label}: unknown key(s) {', '.join(map(repr, unknown))}; "
                                     f"an entry takes {', '.join(_ENTRY_KEYS)}.")
        if not isinstance(entry.get("spec"), str):
            raise OptimizerSpecError(f"{where}, {label}: 'spec' must be a string such as \"adam\" or "
                                     f"\"optax:lion\", got {entry.get('spec')!r}.")
        try:
            specs.append(resolve_optimizer(entry["spec"], entry.get("hyperparams"), name=entry.get("name")))
        except OptimizerSpecError as error:
            raise OptimizerSpecError(f"{where}, {label}: {error}") from error
    names = [spec.name for spec in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise OptimizerSpecError(f"{where}: optimizer name(s) {', '.join(duplicates)} appear twice; "
                                 "give each entry its own 'name'.")
    return tuple(specs)
