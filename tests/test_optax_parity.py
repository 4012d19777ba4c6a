"""Every keyword combination of our eight optimizers equals optax 0.2.8 step for step.

The same 20 random gradients (some exact zeros) drive our optimizer and optax's
alias with the same keywords, on a nested pytree with real and complex leaves.
Each step's update and parameters agree leaf by leaf in the relative 2-norm:
1e-6 in float32, jitted (one `lax.scan` over the steps), and 1e-12 in float64,
op by op for every combination and jitted for one combination per optimizer.
The quick loop runs Adam; the products are marked slow.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optiscale_jax import optimizers

N_STEPS = 20
TOLERANCE = {np.float32: 1e-6, np.float64: 1e-12}
COMPLEX = {np.float32: np.complex64, np.float64: np.complex128}
LOW_DTYPE = {np.float32: "bfloat16", np.float64: "float32"}  # a state dtype below the params'


def _decay_matrices(params):
    """adamw mask: decay only the matrices."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def _product(**choices) -> list[dict]:
    keys = list(choices)
    return [dict(zip(keys, values)) for values in itertools.product(*choices.values())]


def _keyword_cases() -> list[tuple[str, dict]]:
    """(our name, keywords): every keyword of every optimizer, each boolean both ways.

    Boolean and dtype options are crossed where they interact (sgd's momentum x
    nesterov, adam's nesterov x mu_dtype, rmsprop's eps_in_sqrt x centered x
    bias_correction); rmsprop's momentum / nesterov cycle through those eight.
    "low" as a dtype keyword stands for a state dtype below the parameters' one;
    "schedule" for a learning-rate (or weight-decay) schedule.
    """
    cases = [("sgd", dict(learning_rate=lr)) for lr in (0.05, "schedule")]
    cases += [("sgd", dict(learning_rate=0.05, momentum=0.8, nesterov=n, accumulator_dtype=d))
              for n, d in ((False, None), (True, None), (True, "low"))]
    cases += [(name, dict(learning_rate=0.05, momentum=0.7, accumulator_dtype=d))
              for name in ("momentum", "nesterov") for d in (None, "low")]
    cases += [("adam", dict(learning_rate=0.01, b1=0.85, b2=0.99, eps=1e-6, eps_root=1e-8 * i, **k))
              for i, k in enumerate(_product(nesterov=(False, True), mu_dtype=(None, "low")))]
    cases += [("adam", dict(learning_rate="schedule"))]
    cases += [("nadam", dict(learning_rate=0.01, b1=0.8, b2=0.99, eps=1e-7, eps_root=1e-9,
                             nesterov=n, mu_dtype=d)) for n, d in ((True, None), (False, "low"))]
    cases += [("adamw", dict(learning_rate=0.01, weight_decay=w, mask=m, nesterov=i % 2 == 1))
              for i, (w, m) in enumerate(itertools.product((0.05, 0.0, "schedule"),
                                                           (None, _decay_matrices)))]
    cases += [("adamw", dict(learning_rate=0.01, b1=0.8, b2=0.99, eps=1e-7, eps_root=1e-9,
                             weight_decay=0.05, mu_dtype="low"))]
    momenta = [dict(momentum=None), dict(momentum=0.7, nesterov=False), dict(momentum=0.7, nesterov=True)]
    for i, flags in enumerate(_product(eps_in_sqrt=(True, False), centered=(False, True),
                                       bias_correction=(False, True))):
        # centered + bias_correction from nu_0 = 0: the first variance estimate is exactly 0,
        # computed as rounding noise in both libraries; start nu above 0 to compare them.
        initial_scale = 0.1 if (flags["centered"] and flags["bias_correction"]) or i % 2 else 0.0
        cases.append(("rmsprop", dict(learning_rate=0.01, decay=0.95, eps=1e-6,
                                      initial_scale=initial_scale, **flags, **momenta[i % 3])))
    cases += [("adagrad", dict(learning_rate=lr, initial_accumulator_value=v, eps=1e-7))
              for lr, v in ((0.1, 0.2), (0.1, 0.0), ("schedule", 0.1))]
    return cases


KEYWORD_CASES = _keyword_cases()
# one representative per optimizer for the quick loop
QUICK_CASES = [next(c for c in KEYWORD_CASES if c[0] == name) for name in optimizers.OPTIMIZER_NAMES]


def _optax_alias(name: str, keywords: dict) -> optax.GradientTransformation:
    """optax's optimizer for our `name` with the same keywords."""
    if name in ("momentum", "nesterov"):
        return optax.sgd(**keywords, nesterov=name == "nesterov")
    return getattr(optax, name)(**keywords)


def _concrete(keywords: dict, real_dtype) -> dict:
    """Replace the "low" and "schedule" placeholders."""
    out = {}
    for key, value in keywords.items():
        if value == "low":
            value = LOW_DTYPE[real_dtype]
        elif value == "schedule":
            value = (optax.linear_schedule(0.1, 0.0, 15) if key == "weight_decay"
                     else optax.exponential_decay(0.05, transition_steps=4, decay_rate=0.6))
        out[key] = value
    return out


def _uses_low_dtype(keywords: dict) -> bool:
    return any(value == "low" for value in keywords.values())


def make_tree(rng, real_dtype, with_complex: bool) -> dict:
    """A nested pytree: real matrices/scalars and (if asked) complex vectors/cubes."""
    cplx = COMPLEX[real_dtype] if with_complex else real_dtype

    def draw(shape, dtype):
        x = rng.normal(size=shape)
        if np.issubdtype(dtype, np.complexfloating):
            x = x + 1j * rng.normal(size=shape)
        return x.astype(dtype)

    return {"dense": {"w": draw((4, 3), real_dtype)}, "scale": [draw((3,), cplx)]}


def gradient_stream(real_dtype, with_complex: bool) -> dict:
    """N_STEPS random gradients stacked on a leading axis (a few exact zeros included)."""
    rng = np.random.default_rng(7)
    steps = [make_tree(rng, real_dtype, with_complex) for _ in range(N_STEPS)]
    steps[0]["scale"][0][1] = 0
    steps[3]["dense"]["w"][1, 2] = 0
    return jax.tree.map(lambda *xs: jnp.asarray(np.stack(xs)), *steps)


def trajectory(tx: optax.GradientTransformation, params, grads, jit: bool = True):
    """(updates, params) after every step, stacked: one jitted scan, or eager op by op."""

    def step(carry, g):
        p, state = carry
        updates, state = tx.update(g, state, p)
        p = optax.apply_updates(p, updates)
        return (p, state), (updates, p)

    if jit:
        return jax.jit(lambda params, grads: jax.lax.scan(step, (params, tx.init(params)), grads)[1])(
            params, grads)
    carry, outputs = (params, tx.init(params)), []
    for i in range(N_STEPS):
        carry, out = step(carry, jax.tree.map(lambda x, i=i: x[i], grads))
        outputs.append(out)
    return jax.tree.map(lambda *xs: jnp.stack(xs), *outputs)


def max_relative_deviation(ours, theirs) -> float:
    """max over steps and leaves of ||ours - theirs|| / ||theirs|| (same dtypes asserted)."""
    worst = 0.0
    for a, e in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        assert a.dtype == e.dtype and a.shape == e.shape, (a.dtype, e.dtype, a.shape, e.shape)
        a = np.asarray(a).reshape(N_STEPS, -1).astype(np.complex128)
        e = np.asarray(e).reshape(N_STEPS, -1).astype(np.complex128)
        error = np.linalg.norm(a - e, axis=1)
        scale = np.maximum(np.linalg.norm(e, axis=1), np.finfo(np.float64).tiny)
        worst = max(worst, float(np.max(np.where(error == 0, 0.0, error / scale))))
    return worst


def parity(name: str, keywords: dict, real_dtype, jit: bool = True) -> float:
    """Largest relative deviation of our run from optax's, updates and parameters."""
    with jax.enable_x64(real_dtype == np.float64):
        with_complex = not _uses_low_dtype(keywords)  # a real state dtype would drop imaginary parts
        params = jax.tree.map(jnp.asarray, make_tree(np.random.default_rng(0), real_dtype, with_complex))
        grads = gradient_stream(real_dtype, with_complex)
        concrete = _concrete(keywords, real_dtype)
        ours = trajectory(optimizers.get_optimizer(name, **concrete), params, grads, jit)
        theirs = trajectory(_optax_alias(name, concrete), params, grads, jit)
        moved = np.abs(np.asarray(theirs[1]["dense"]["w"][-1]) - np.asarray(params["dense"]["w"]))
        assert moved.max() > 0, "the run did not move: the comparison would be vacuous"
        return max_relative_deviation(ours, theirs)


def _case_id(case) -> str:
    name, keywords = case
    return name + "-" + "-".join(f"{k}={getattr(v, '__name__', v)}" for k, v in keywords.items()
                                 if k != "learning_rate" or v == "schedule")


def test_adam_with_complex_leaves_matches_optax_jitted():
    name, keywords = QUICK_CASES[optimizers.OPTIMIZER_NAMES.index("adam")]
    assert parity(name, keywords, np.float32) <= TOLERANCE[np.float32]


@pytest.mark.slow
@pytest.mark.parametrize("case", QUICK_CASES, ids=_case_id)
def test_one_combination_per_optimizer_matches_optax_jitted_in_float64(case):
    name, keywords = case
    assert parity(name, keywords, np.float64) <= TOLERANCE[np.float64]


def _failures(dtype, jit: bool) -> dict:
    failures = {}
    for name, keywords in KEYWORD_CASES:
        deviation = parity(name, keywords, dtype, jit)
        if not deviation <= TOLERANCE[dtype]:
            failures[_case_id((name, keywords))] = deviation
    return failures


@pytest.mark.slow
def test_every_keyword_combination_matches_optax_jitted_in_float32():
    assert not _failures(np.float32, jit=True)


@pytest.mark.slow
def test_every_keyword_combination_matches_optax_in_float64():
    # op by op (the path of the reference loops under jax.disable_jit): a compile per
    # combination would cost minutes; float64 jitted runs one combination per optimizer above
    assert not _failures(np.float64, jit=False)


def test_the_product_covers_every_keyword_of_every_optimizer():
    for name in optimizers.OPTIMIZER_NAMES:
        covered = set().union(*(set(k) for n, k in KEYWORD_CASES if n == name))
        assert covered == set(optimizers.optimizer_keywords(name)), name
