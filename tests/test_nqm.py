"""The NQM: exact theory against simulation, brute-force iteration and the reference figures."""

import numpy as np
import pytest

from optiscale_jax.studies import nqm, nqm_theory

OPTIMIZERS = {  # name: (learning rate, momentum, preconditioning power)
    "sgd": (0.5, 0.0, 0.0),
    "momentum": (0.1, 0.9, 0.0),
    "preconditioned": (0.05, 0.0, 0.5),
}


def _expected_curve(model, batch_size, lr, mu, p, steps):
    step = nqm_theory.affine_step(model.h, model.c, batch_size, np.array(lr), np.array(mu), p)
    start = nqm_theory.initial_moments(model.theta0 ** 2, step)
    return nqm_theory.expected_loss_curve(model.h, step, start, steps)


@pytest.mark.slow  # ~3 s each (compiles a 200-seed program)
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_simulated_mean_loss_within_three_standard_errors_of_closed_form(name):
    lr, mu, p = OPTIMIZERS[name]
    model = nqm.make_nqm(30)
    steps, losses = nqm.simulate(model, lambda: nqm.nqm_transform(model, lr, mu, p), batch_size=4,
                                 steps=120, seeds=200, log_every=10, seed=1)
    expected = _expected_curve(model, 4, lr, mu, p, steps)
    standard_error = losses.std(0, ddof=1) / np.sqrt(losses.shape[0])
    assert losses.shape == (200, 13)
    np.testing.assert_allclose(losses[:, 0], expected[0], rtol=1e-12)  # theta_0 is deterministic
    z = np.abs(losses.mean(0)[1:] - expected[1:]) / standard_error[1:]
    assert np.all(z < 3.0), (name, z)
    assert expected[-1] < 0.5 * expected[0]  # the runs actually moved


@pytest.mark.parametrize("mu", [0.0, 0.9, 0.99])
def test_binary_lifting_finds_a_crossing_and_the_first_one_when_monotone(mu):
    model = nqm.make_nqm(40)
    lrs = np.array([0.02, 0.1, 0.5, 1.2])
    step = nqm_theory.affine_step(model.h, model.c, 8, lrs, np.full(4, mu))
    s = nqm_theory.initial_moments(model.theta0 ** 2, step)
    target = 0.3
    lifted = nqm_theory.steps_to_target(model.h, step, s, target, 5000)
    losses = []
    for _ in range(5001):
        losses.append(nqm_theory.expected_loss(model.h, s))
        s = nqm_theory.apply(step, s)
    losses = np.array(losses)  # (steps, configurations)
    brute = np.array([int(np.argmax(col <= target)) if np.any(col <= target) else -1 for col in losses.T])
    for j, t in enumerate(lifted):
        assert (t < 0) == (brute[j] < 0)
        if t > 0:
            assert losses[t, j] <= target < losses[t - 1, j]
        if mu == 0.0:
            assert t == brute[j]
    for j in range(4):  # the exact first crossing, one configuration at a time
        single = nqm_theory.affine_step(model.h, model.c, 8, lrs[j:j + 1], np.full(1, mu))
        s0 = nqm_theory.initial_moments(model.theta0 ** 2, single)
        assert nqm_theory.first_crossing(model.h, single, s0, target, 5000) == brute[j]
    if mu == 0.99:
        assert np.any(lifted != brute)  # an oscillating loss: lifting alone is not the first crossing


def test_stability_rule_matches_the_spectral_radius():
    h = np.array([1.0, 0.3, 0.01])
    for lr in (0.5, 1.9, 2.1, 3.0, 3.8):
        for mu in (0.0, 0.5, 0.95):
            radius = max(np.max(np.abs(np.linalg.eigvals(np.array([[1 - lr * hi, -lr * mu], [hi, mu]]))))
                         for hi in h)
            assert nqm_theory.is_stable(h, lr, mu) == (radius < 1), (lr, mu, radius)


def test_reference_steps_at_d2000():
    """An independent closed-form computation (d = 2,000, target 0.05) gave SGD 137,600 / 9,160 /
    1,245 / 1,070 steps at B = 1 / 16 / 256 / 16,384 and momentum 136,800 / 8,920 / 518 / 107. Tuned
    on our finer grid we land at or below them (the optimum can only be lower); with the reference's
    apparent learning-rate ceiling of 1.4 (momentum 0.9) the large-B figures are reproduced."""
    model = nqm.make_nqm(2000)
    grid = 2.0 ** (np.arange(-56, 9) / 4)
    sgd = nqm.NQMOptimizer("sgd")
    tuned = [nqm.tune_closed_form(model, sgd, b, grid, target=0.05, max_steps=10 ** 6).steps for b in (1, 16)]
    assert 0.97 * 137_600 < tuned[0] <= 137_600 and 0.95 * 9_160 < tuned[1] <= 9_160
    capped = nqm.grid_steps(model, sgd, 256, np.array([1.4]), 0.05, 10 ** 6)[0, 0]
    assert abs(capped - 1_245) <= 0.01 * 1_245
    capped = nqm.grid_steps(model, sgd, 16_384, np.array([1.4]), 0.05, 10 ** 6)[0, 0]
    assert abs(capped - 1_070) <= 0.01 * 1_070
    heavy_ball = nqm.NQMOptimizer("momentum", (0.9,))
    heavy = nqm.grid_steps(model, heavy_ball, 16_384, np.array([1.4]), 0.05, 10 ** 6)[0, 0]
    assert abs(heavy - 107) <= 2


@pytest.mark.parametrize("kwargs, match", [
    ({"dim": 0}, "dim must be a positive integer"),
    ({"dim": 10, "curvature_power": -1.0}, "curvature_power"),
    ({"dim": 10, "noise_scale": float("nan")}, "noise_scale"),
])
def test_bad_nqm_settings_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nqm.make_nqm(**kwargs)


def test_bad_spectrum_arrays_name_the_fix():
    with pytest.raises(ValueError, match="must be > 0"):
        nqm.NQM(h=np.array([1.0, 0.0]), c=np.ones(2), theta0=np.ones(2))
    with pytest.raises(ValueError, match="one shape"):
        nqm.NQM(h=np.ones(2), c=np.ones(3), theta0=np.ones(2))
