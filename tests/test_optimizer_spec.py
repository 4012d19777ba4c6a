"""Bring your own optimizer: spec resolution, hyperparameter flags and files, baselines, memory."""

from __future__ import annotations

import json
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import yaml

from optiscale_jax import optimizers
from optiscale_jax.optimizers import OptimizerSpecError, resolve_optimizer

USER_MODULE = textwrap.dedent('''
    """A user's optimizer package, outside optiscale_jax."""
    import optax

    __version__ = "1.2.3"


    def make(learning_rate, momentum=0.5):
        return optax.sgd(learning_rate, momentum=momentum)


    def broken(learning_rate=0.1):
        raise RuntimeError("the GPU kernel is missing")


    def not_a_transform(learning_rate=0.1):
        return {"learning_rate": learning_rate}


    def anything(**kwargs):
        return optax.sgd(kwargs.get("learning_rate", 0.1))
''')


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    """`my_opts.factories` importable from sys.path (a directory outside the repository)."""
    package = tmp_path / "my_opts"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "factories.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return package / "factories.py"


def test_a_name_of_ours():
    spec = resolve_optimizer("Adam", {"learning_rate": 0.01, "nesterov": True})
    assert (spec.name, spec.source) == ("adam", "optiscale")
    assert spec.import_path == "optiscale_jax.optimizers.adam"
    assert spec.accepts_learning_rate and spec.version == optimizers.resolve_optimizer("sgd").version
    assert spec.hyperparams == (("learning_rate", 0.01), ("nesterov", True))
    assert spec.full_hyperparams()["b2"] == 0.999 and spec.full_hyperparams()["nesterov"] is True


@pytest.mark.parametrize("text,name,path", [
    ("optax:lion", "lion", "optax.lion"),
    ("optax:contrib.muon", "muon", "optax.contrib.muon"),
    ("optax:contrib.schedule_free_adamw", "schedule_free_adamw", "optax.contrib.schedule_free_adamw"),
    ("fast=optax:adamw", "fast", "optax.adamw"),
])
def test_optax_optimizers(text, name, path):
    spec = resolve_optimizer(text, {"learning_rate": 1e-3})
    assert (spec.name, spec.source, spec.import_path) == (name, "optax", path)
    assert spec.version == optax.__version__
    assert isinstance(spec.build(), optax.GradientTransformation)


def test_user_module_and_file(user_package):
    spec = resolve_optimizer("my_opts.factories:make", {"learning_rate": 0.1})
    assert (spec.name, spec.source, spec.import_path, spec.version) == (
        "make", "user", "my_opts.factories:make", "1.2.3")
    from_file = resolve_optimizer(f"mine={user_package}:make", {"learning_rate": 0.1, "momentum": 0.9})
    assert from_file.name == "mine" and from_file.import_path == f"{user_package}:make"
    assert from_file.version.startswith("sha256:") and len(from_file.version) == 7 + 16
    params = jnp.ones(3)
    updates, _ = from_file.build().update(params, from_file.build().init(params))
    np.testing.assert_allclose(updates, -0.1)


def test_an_edited_file_is_imported_again(tmp_path):
    path = tmp_path / "opt_file.py"
    path.write_text("import optax\ndef make(learning_rate=0.1):\n    return optax.sgd(learning_rate)\n")
    first = resolve_optimizer(f"{path}:make")
    path.write_text("import optax\ndef make(learning_rate=0.1):\n    return optax.adam(learning_rate)\n")
    second = resolve_optimizer(f"{path}:make")
    assert first.version != second.version
    assert len(second.build().init(jnp.ones(2))[0]) == 3  # adam's (count, mu, nu), not sgd's state


def test_json_round_trip(user_package):
    for spec in (resolve_optimizer("optax:contrib.prodigy", {"betas": [0.9, 0.99]}),
                 resolve_optimizer("adam", {"mu_dtype": "bfloat16"}),
                 resolve_optimizer("my_opts.factories:make", {"learning_rate": 0.1})):
        record = json.loads(json.dumps(spec.to_json()))
        assert optimizers.OptimizerSpec.from_json(record) == spec
    record = resolve_optimizer("optax:lion", {"learning_rate": 1e-4}).to_json()
    with pytest.warns(UserWarning, match="recorded with version 0.0.1 of optax.lion; version 0.2.8"):
        optimizers.OptimizerSpec.from_json({**record, "version": "0.0.1"})


@pytest.mark.parametrize("text,hyperparams,match", [
    ("adm", None, r"unknown optimizer 'adm' \(close: adam.*'optax:NAME'"),
    ("optax:lino", {"learning_rate": 1}, r"'lino' was not found; close matches: lion"),
    ("optax:contrib.muonn", {"learning_rate": 1}, "close matches: contrib.muon"),
    ("no_such_pkg.opt:make", None, r"module 'no_such_pkg.opt' cannot be imported.*PYTHONPATH"),
    ("/nonexistent/opt.py:make", None, "does not exist"),
    ("my_opts.factories:mke", None, "'mke' was not found; close matches: make"),
    ("my_opts.factories:broken", None, "raised RuntimeError: the GPU kernel is missing"),
    ("my_opts.factories:not_a_transform", None, "returned a dict, not an optax.GradientTransformation"),
    ("my_opts.factories:__version__", None, "is a str, not a factory"),
    ("my_opts.factories:make", {"learning_rate": 0.1, "beta": 0.9},
     "takes no hyperparameter 'beta'; it accepts: learning_rate, momentum"),
    ("optax:lion", None, "needs 'learning_rate' \\(no default\\)"),
    ("adam", {"learning_rate": "fast"}, "learning_rate='fast' is not a number"),
    ("adam", {"learning_rate": float("nan")}, "learning_rate=nan is not finite"),
    ("adam", {"learning_rate": optax.constant_schedule(0.1)}, "cannot be recorded.*module:factory"),
    ("adam", {"b1": 1.5}, r"b1=1.5 is outside the valid range \[0, 1\)"),
    ("", None, "not a non-empty string"),
    ("optax:", None, "not found"),
])
def test_bad_specs_say_what_and_how_to_fix(user_package, text, hyperparams, match):
    with pytest.raises(OptimizerSpecError, match=match) as caught:
        resolve_optimizer(text, hyperparams)
    if text:
        assert repr(text.strip()) in str(caught.value)


def test_a_factory_taking_any_keyword_is_accepted(user_package):
    spec = resolve_optimizer("my_opts.factories:anything", {"learning_rate": 0.3, "whatever": 1})
    assert not spec.accepts_learning_rate  # not a named parameter: no sweep promised


def test_parse_hparams():
    parsed = optimizers.parse_hparams(
        "lion.learning_rate=3e-4, lion.b1=0.95,prodigy.betas=(0.9,0.99),adam.nesterov=true,"
        "adam.mu_dtype=bfloat16,adam.eps_root=None,my.opt.name='x,y'")
    assert parsed == {"lion": {"learning_rate": 3e-4, "b1": 0.95}, "prodigy": {"betas": (0.9, 0.99)},
                      "adam": {"nesterov": True, "mu_dtype": "bfloat16", "eps_root": None},
                      "my.opt": {"name": "x,y"}}
    assert optimizers.parse_hparams("") == {}


@pytest.mark.parametrize("text,match", [
    ("learning_rate=3e-4", "not of the form NAME.KEY=VALUE"),
    ("lion.learning_rate", "not of the form"),
    ("lion.learning_rate=", "not of the form"),
    ("lion.b1=0.9,lion.b1=0.95", "sets lion.b1 twice"),
])
def test_parse_hparams_errors(text, match):
    with pytest.raises(OptimizerSpecError, match=match):
        optimizers.parse_hparams(text)


def test_resolve_several_with_flag_hyperparameters():
    specs = optimizers.resolve_optimizers(
        ["adam", "optax:lion", "slow=sgd"],
        optimizers.parse_hparams("lion.learning_rate=3e-4,lion.b1=0.95,slow.learning_rate=1e-3"))
    assert [s.name for s in specs] == ["adam", "lion", "slow"]
    assert dict(specs[1].hyperparams) == {"learning_rate": 3e-4, "b1": 0.95}
    with pytest.raises(OptimizerSpecError, match="hyperparameters given for 'lino'.*adam, lion"):
        optimizers.resolve_optimizers(["adam", "optax:lion"],
                                      {"lino": {"b1": 0.9}, "lion": {"learning_rate": 1}})
    with pytest.raises(OptimizerSpecError, match="adam appear twice.*'adam_fast=adam'"):
        optimizers.resolve_optimizers(["adam", "adam"])


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_config_file(tmp_path, suffix):
    content = {"optimizers": [{"name": "lion", "spec": "optax:lion", "hyperparams": {"learning_rate": 3e-4}},
                              {"spec": "adam"}],
               "datasets": ["mnist"]}  # other keys are the caller's
    path = tmp_path / f"study{suffix}"
    path.write_text(json.dumps(content) if suffix == ".json" else _yaml(content))
    specs = optimizers.load_optimizer_config(path)
    assert [(s.name, s.import_path) for s in specs] == [
        ("lion", "optax.lion"), ("adam", "optiscale_jax.optimizers.adam")]
    mapping = tmp_path / "study.yml"
    mapping.write_text("optimizers:\n  lion:\n    spec: optax:lion\n"
                       "    hyperparams: {learning_rate: 1e-4}\n  sgd: {}\n")
    lion, sgd = optimizers.load_optimizer_config(mapping)
    assert (lion.name, sgd.name) == ("lion", "sgd")
    assert lion.hyperparams == (("learning_rate", 1e-4),)  # a float, though YAML 1.1 reads a string


def _yaml(content):
    return yaml.safe_dump(content)


@pytest.mark.parametrize("name,text,match", [
    ("missing.json", None, "does not exist; check the path"),
    ("study.toml", "x = 1", "unknown extension '.toml'; use .json, .yaml or .yml"),
    ("bad.json", "{\"optimizers\": [", "is not valid JSON"),
    ("bad.yaml", "optimizers: [\n  - {spec: adam", "is not valid YAML"),
    ("none.json", "{\"runs\": 3}", "no 'optimizers' key at the top level"),
    ("empty.json", "{\"optimizers\": []}", "must be a non-empty list or mapping"),
    ("key.json", "{\"optimizers\": [{\"spec\": \"adam\", \"hyperparameters\": {}}]}",
     r"optimizers\[0\]: unknown key\(s\) 'hyperparameters'; an entry takes name, spec, hyperparams"),
    ("spec.json", "{\"optimizers\": [{\"spec\": 3}]}", r"optimizers\[0\]: 'spec' must be a string"),
    ("hp.json", "{\"optimizers\": {\"lion\": {\"spec\": \"optax:lion\", \"hyperparams\": {\"lr\": 1}}}}",
     "optimizers.lion: optimizer spec 'optax:lion': the factory takes no hyperparameter 'lr'"),
    ("dup.json", "{\"optimizers\": [\"adam\", \"adam\"]}", "adam appear twice"),
])
def test_config_file_errors_name_file_entry_and_fix(tmp_path, name, text, match):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(OptimizerSpecError, match=match) as caught:
        optimizers.load_optimizer_config(path)
    assert name in str(caught.value)


def test_state_bytes_per_parameter_counts_the_state():
    params = {"w": jax.ShapeDtypeStruct((10, 3), jnp.float32), "b": jax.ShapeDtypeStruct((3,), jnp.float32)}
    tx = optimizers.adam(1e-3)
    concrete = tx.init(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), params))
    expected = sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(concrete)) / 33
    assert optimizers.state_bytes_per_parameter(tx, params) == pytest.approx(expected)
    assert expected == pytest.approx(8 + 8 / 33)  # mu, nu; two int32 step counts
    assert optimizers.state_bytes_per_parameter(optimizers.sgd(0.1), params) == pytest.approx(4 / 33)
    with pytest.raises(ValueError, match="params hold no elements"):
        optimizers.state_bytes_per_parameter(tx, {})


def test_extended_baselines_are_optax_with_sources():
    names = set(optimizers.EXTENDED_BASELINES)
    assert {"lion", "adafactor", "muon", "schedule_free_adamw"} <= names and len(names) >= 8
    for name, spec in optimizers.EXTENDED_BASELINES.items():
        assert spec.source == "optax" and spec.import_path.startswith("optax.") and spec.accepts_learning_rate
        assert optimizers.BASELINE_REFERENCES[name]
        json.dumps(spec.to_json())
        for shape in [(50,), (20, 5)]:
            bytes_per_param = optimizers.state_bytes_per_parameter(
                spec.build(), jax.ShapeDtypeStruct(shape, jnp.float32))
            assert 0 < bytes_per_param < 40, (name, bytes_per_param)


def test_muon_on_a_weight_vector_is_optax_nadam():
    muon = optimizers.EXTENDED_BASELINES["muon"].build()
    adam = optax.nadam(0.02)  # muon's fallback: adamw(nesterov=True) with weight decay 0
    params = jnp.linspace(-1.0, 1.0, 7)
    grads = jnp.cos(jnp.arange(7.0))
    ours, _ = muon.update(grads, muon.init(params), params)
    theirs, _ = adam.update(grads, adam.init(params), params)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    matrix = jnp.ones((4, 3))
    assert optimizers.state_bytes_per_parameter(muon, matrix) < optimizers.state_bytes_per_parameter(
        muon, jnp.ones(12))  # a matrix keeps only the momentum


@pytest.mark.slow
def test_eval_params_schedule_free_and_others():
    spec = optimizers.EXTENDED_BASELINES["schedule_free_adamw"]
    tx = spec.build()
    params = jnp.array([1.0, -2.0])
    state = tx.init(params)
    for _ in range(3):
        updates, state = tx.update(params, state, params)
        params = optax.apply_updates(params, updates)
    evaluated = optimizers.eval_params(spec, state, params)
    np.testing.assert_allclose(evaluated, optax.contrib.schedule_free_eval_params(state, params))
    assert not np.allclose(evaluated, params)
    adam = resolve_optimizer("adam")
    assert optimizers.eval_params(adam, adam.build().init(params), params) is params
    with pytest.raises(OptimizerSpecError, match="holds no ScheduleFreeState"):
        optimizers.eval_params(spec, adam.build().init(params), params)


@pytest.mark.slow
def test_vmapped_learning_rate_sweep_of_a_user_factory_is_one_program(tmp_path, monkeypatch):
    module = tmp_path / "sweep_user_opt.py"
    module.write_text(textwrap.dedent('''
        import optax

        def make(learning_rate, b1=0.9):
            return optax.chain(optax.scale_by_adam(b1=b1), optax.scale_by_learning_rate(learning_rate))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = resolve_optimizer("sweep_user_opt:make", {"learning_rate": 0.1, "b1": 0.8})
    assert spec.accepts_learning_rate and spec.source == "user"
    A = jnp.array([[2.0, 0.3], [0.3, 1.0]])
    loss = lambda w: 0.5 * w @ A @ w - w.sum()  # noqa: E731 - minimiser A^-1 1
    traces = []

    def train(learning_rate):
        traces.append(1)  # runs only while tracing
        tx = spec.build(learning_rate=learning_rate)
        w = jnp.zeros(2)

        def step(carry, _):
            w, state = carry
            updates, state = tx.update(jax.grad(loss)(w), state, w)
            return (optax.apply_updates(w, updates), state), None

        (w, _), _ = jax.lax.scan(step, (w, tx.init(w)), length=30)
        return loss(w)

    learning_rates = jnp.array([1e-3, 1e-2, 5e-2, 1e-1])
    sweep = jax.jit(jax.vmap(train))
    losses = sweep(learning_rates)
    sweep(learning_rates * 2)
    assert len(traces) == 1  # one compiled program for the whole sweep, reused
    for i, lr in enumerate(np.asarray(learning_rates)):
        np.testing.assert_allclose(losses[i], train(float(lr)), rtol=1e-5)
    assert losses[0] > losses[2]  # the sweep really varied the learning rate


@pytest.mark.slow
def test_every_extended_baseline_decreases_a_least_squares_loss():
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(64, 8)), jnp.float32)
    y = X @ jnp.asarray(rng.normal(size=8), jnp.float32)
    loss = lambda w: 0.5 * jnp.mean((X @ w - y) ** 2)  # noqa: E731
    for name, spec in optimizers.EXTENDED_BASELINES.items():
        tx = spec.build()

        def step(carry, _, tx=tx):
            w, state = carry
            updates, state = tx.update(jax.grad(loss)(w), state, w)
            return (optax.apply_updates(w, updates), state), None

        w0 = jnp.zeros(8)
        (w, state), _ = jax.jit(lambda w0, tx=tx, step=step: jax.lax.scan(step, (w0, tx.init(w0)),
                                                                            length=200))(w0)
        final = loss(optimizers.eval_params(spec, state, w))
        assert jnp.isfinite(final) and final < loss(w0), name
