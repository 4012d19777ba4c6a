"""Problems: objectives on three namespaces, exact optima against independent solvers, cache."""

import dataclasses
import gzip
import pathlib
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import threadpoolctl
from sklearn.linear_model import LogisticRegression

from optiscale_jax.problems import PROBLEM_KINDS, Optimum, Problem, make_problem, solvers


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Multi-threaded BLAS stalls on a shared 2-core machine; one thread is far faster here."""
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        yield


def _small_data(kind, n=60, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * np.linspace(0.5, 2.0, d)
    w = rng.normal(size=d)
    if kind in ("least_squares", "ridge"):
        y = X @ w + 0.3 * rng.normal(size=n)
    elif kind == "logistic":
        y = (X @ w + rng.normal(size=n) > 0).astype(float)
    else:
        y = rng.integers(0, k, size=n)
    return X, y


_L2 = {"least_squares": 0.0, "ridge": 0.05, "logistic": 0.01, "softmax": 0.01}


@pytest.fixture(params=PROBLEM_KINDS)
def small_problem(request) -> Problem:
    X, y = _small_data(request.param)
    return make_problem(request.param, X, y, l2=_L2[request.param])


# ---------------------------------------------------------------- objectives


def _reference_loss(problem: Problem, w: np.ndarray) -> float:
    """The objective written out independently, element by element, in float64."""
    X, y, l2 = problem.X, problem.y, problem.l2
    n = X.shape[0]
    if problem.kind in ("least_squares", "ridge"):
        return sum((X[i] @ w - y[i]) ** 2 for i in range(n)) / (2 * n) + 0.5 * l2 * np.sum(w**2)
    if problem.kind == "logistic":
        z = X @ w
        return float(np.mean(-y * np.log(1 / (1 + np.exp(-z))) - (1 - y) * np.log(
            1 - 1 / (1 + np.exp(-z))))) + 0.5 * l2 * np.sum(w**2)
    z = X @ w
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(p[np.arange(n), y]))) + 0.5 * l2 * np.sum(w**2)


def test_loss_matches_written_out_definition(small_problem):
    rng = np.random.default_rng(1)
    w = 0.3 * rng.normal(size=small_problem.param_shape)
    expected = _reference_loss(small_problem, w)
    assert small_problem.full_loss(w) == pytest.approx(expected, rel=1e-12)
    assert float(small_problem.loss(w, small_problem.X, small_problem.y, xp=np)) == pytest.approx(
        expected, rel=1e-12)


def test_grad_matches_jax_autodiff_and_numpy(small_problem):
    rng = np.random.default_rng(2)
    w = 0.3 * rng.normal(size=small_problem.param_shape)
    with jax.enable_x64(True):
        X = jnp.asarray(small_problem.X)
        y = jnp.asarray(small_problem.y)
        wj = jnp.asarray(w)
        auto = jax.grad(lambda v: small_problem.loss(v, X, y))(wj)
        closed = jax.jit(small_problem.grad)(wj, X, y)
        np.testing.assert_allclose(np.asarray(closed), np.asarray(auto), rtol=1e-10, atol=1e-13)
        loss_jit = jax.jit(small_problem.loss)(wj, X, y)
    g_np = small_problem.grad(w, small_problem.X, small_problem.y, xp=np)
    np.testing.assert_allclose(g_np, np.asarray(auto), rtol=1e-10, atol=1e-13)
    assert float(loss_jit) == pytest.approx(small_problem.full_loss(w), rel=1e-12)


def test_float32_jax_keeps_dtype_and_is_traceable_in_data(small_problem):
    """X and y are traced (mini-batches), float32 stays float32, int labels do not promote."""
    w = small_problem.init_params(dtype=np.float32, xp=jnp) + 0.1
    X = jnp.asarray(small_problem.X, dtype=jnp.float32)
    y = jnp.asarray(small_problem.y.astype(np.int32 if small_problem.kind == "softmax"
                                           else np.float32))
    step = jax.jit(lambda w, X, y: (small_problem.loss(w, X, y), small_problem.grad(w, X, y)))
    loss, g = step(w, X[:16], y[:16])
    assert loss.dtype == jnp.float32 and g.dtype == jnp.float32 and g.shape == w.shape
    w64 = np.full(small_problem.param_shape, 0.1)
    batch_loss = small_problem.loss(w64, small_problem.X[:16], small_problem.y[:16], xp=np)
    assert float(loss) == pytest.approx(float(batch_loss), rel=1e-5)
    # numpy float32 with integer labels: no silent promotion to float64
    g_np = small_problem.grad(np.asarray(w), np.asarray(X), small_problem.y, xp=np)
    assert g_np.dtype == np.float32


# The only namespace functions the objectives may use: all exist in numpy, cupy and jax.numpy.
_PORTABLE = ("zeros", "logaddexp", "tanh", "exp", "log", "sum", "mean", "max", "arange")


def test_objectives_use_only_functions_common_to_numpy_cupy_and_jax(small_problem):
    """Run with a namespace that has nothing but the portable functions (a missing one
    raises AttributeError), and check each of them exists in jax.numpy too."""
    portable = types.SimpleNamespace(**{name: getattr(np, name) for name in _PORTABLE})
    assert all(hasattr(jnp, name) for name in _PORTABLE)
    w = small_problem.init_params(dtype=np.float64, xp=portable) + 0.1
    X, y = small_problem.X, small_problem.y
    assert float(small_problem.loss(w, X, y, xp=portable)) == small_problem.full_loss(w)
    np.testing.assert_array_equal(small_problem.grad(w, X, y, xp=portable),
                                  small_problem.grad(w, X, y, xp=np))
    np.testing.assert_array_equal(small_problem.predict(w, X, xp=portable),
                                  small_problem.predict(w, X, xp=np))


def test_logistic_loss_is_stable_for_huge_margins():
    X = np.array([[1.0], [-1.0]])
    p = make_problem("logistic", X, np.array([1.0, 0.0]))
    w = np.array([1000.0])
    assert p.full_loss(w) == 0.0
    assert p.full_loss(-w) == pytest.approx(1000.0)
    np.testing.assert_allclose(p.grad(-w, p.X, p.y, xp=np), [-1.0])
    with jax.enable_x64(True):
        assert np.isfinite(float(p.loss(jnp.asarray(-w), p.X, p.y)))


def test_predict_shapes_and_ranges(small_problem):
    w = np.full(small_problem.param_shape, 0.2)
    out = np.asarray(small_problem.predict(w, small_problem.X, xp=np))
    if small_problem.kind == "softmax":
        assert out.shape == (small_problem.n_samples, small_problem.n_classes)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-12)
    elif small_problem.kind == "logistic":
        assert out.shape == (small_problem.n_samples,) and np.all((out > 0) & (out < 1))
    else:
        np.testing.assert_allclose(out, small_problem.X @ w)


def test_init_params_shapes():
    X, y = _small_data("softmax", k=4)
    p = make_problem("softmax", X, y, l2=0.1)
    assert p.n_classes == 4
    params = p.init_params()
    assert params.shape == (5, 4) and params.dtype == np.float32 and not params.any()
    assert p.init_params(dtype=jnp.float32, xp=jnp).shape == (5, 4)


def test_smoothness_and_strong_convexity_bound_the_hessian(small_problem):
    """L and mu bracket the Hessian's eigenvalues (exact for quadratics)."""
    w = np.full(small_problem.param_shape, 0.1).ravel()
    shape, X, y = small_problem.param_shape, small_problem.X, small_problem.y
    def grad(v):
        return np.ravel(small_problem.grad(v.reshape(shape), X, y, xp=np))

    step = 1e-5  # central differences of the gradient: exact for quadratics up to rounding
    H = np.stack([(grad(w + step * e) - grad(w - step * e)) / (2 * step)
                  for e in np.eye(w.size)])
    H = 0.5 * (H + H.T)
    eig = np.linalg.eigvalsh(H)
    assert eig[-1] <= small_problem.smoothness() * (1 + 1e-7)
    assert eig[0] >= small_problem.strong_convexity() * (1 - 1e-7)
    if small_problem.kind in ("least_squares", "ridge"):
        assert eig[-1] == pytest.approx(small_problem.smoothness(), rel=1e-7)
        assert eig[0] == pytest.approx(small_problem.strong_convexity(), rel=1e-7)


# ---------------------------------------------------------------- exact optima


def _independent_optimum(problem: Problem) -> float:
    """f* from solvers that share no code with ours: numpy lstsq, scipy L-BFGS."""
    X, y, l2, n = problem.X, problem.y, problem.l2, problem.n_samples
    if problem.kind in ("least_squares", "ridge"):
        d = problem.n_features
        A = np.vstack([X / np.sqrt(n), np.sqrt(l2) * np.eye(d)])
        b = np.concatenate([y / np.sqrt(n), np.zeros(d)])
        w = np.linalg.lstsq(A, b, rcond=None)[0]
        return 0.5 * np.sum((A @ w - b) ** 2)
    shape = problem.param_shape

    def f_and_g(v):
        return (problem.full_loss(v.reshape(shape)),
                np.ravel(problem.grad(v.reshape(shape), X, y, xp=np)))

    res = scipy.optimize.minimize(f_and_g, np.zeros(int(np.prod(shape))), jac=True,
                                  method="L-BFGS-B",
                                  options={"gtol": 1e-13, "ftol": 1e-16, "maxiter": 5000})
    return float(res.fun)


def test_optimum_agrees_with_independent_solver(small_problem, tmp_path):
    opt = small_problem.optimum(cache_dir=tmp_path)
    assert isinstance(opt, Optimum) and not opt.from_cache
    assert opt.f_star == pytest.approx(_independent_optimum(small_problem), rel=1e-9)
    assert opt.f_star == pytest.approx(small_problem.full_loss(opt.w_star), rel=1e-14)
    assert opt.grad_norm < 1e-9
    assert opt.w_star.shape == small_problem.param_shape


def test_logistic_and_softmax_optimum_match_scikit_learn(tmp_path):
    """sklearn minimises C * sum(loss) + ||w||^2 / 2, i.e. our objective with l2 = 1/(C n)."""
    for kind in ("logistic", "softmax"):
        X, y = _small_data(kind, n=80, d=4)
        l2 = 0.02
        p = make_problem(kind, X, y, l2=l2)
        opt = p.optimum(cache_dir=tmp_path)
        clf = LogisticRegression(C=1.0 / (l2 * p.n_samples), fit_intercept=False, tol=1e-12,
                                 max_iter=10000).fit(X, y)
        w_sk = clf.coef_.ravel() if kind == "logistic" else clf.coef_.T
        assert opt.f_star == pytest.approx(p.full_loss(w_sk), rel=1e-9)


def test_least_squares_singular_gives_minimum_norm_solution(tmp_path):
    """n < d: infinitely many minimisers with f* = 0; we return pinv(X) y."""
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(5, 12)), rng.normal(size=5)
    p = make_problem("least_squares", X, y)
    opt = p.optimum(cache_dir=tmp_path)
    assert opt.f_star == pytest.approx(0.0, abs=1e-25)
    np.testing.assert_allclose(opt.w_star, np.linalg.pinv(X) @ y, rtol=1e-10)
    # ridge with d > n uses the dual system; compare with the primal formula
    r = make_problem("ridge", X, y, l2=0.1)
    opt_r = r.optimum(cache_dir=tmp_path)
    w_primal = np.linalg.solve(X.T @ X / 5 + 0.1 * np.eye(12), X.T @ y / 5)
    np.testing.assert_allclose(opt_r.w_star, w_primal, rtol=1e-10)
    assert "dual" in opt_r.method


def test_logistic_without_l2_on_singular_data_uses_lstsq_steps(tmp_path):
    """A zero feature column makes the Hessian singular when l2 = 0 (as MNIST's blank pixels)."""
    rng = np.random.default_rng(4)
    X = np.column_stack([rng.normal(size=(200, 3)), np.zeros(200)])
    y = (X[:, 0] + 2.0 * rng.normal(size=200) > 0).astype(float)  # noisy: not separable
    p = make_problem("logistic", X, y)
    opt = p.optimum(cache_dir=tmp_path)
    assert "lstsq" in opt.method and opt.w_star[3] == 0.0
    assert opt.f_star == pytest.approx(_independent_optimum(p), rel=1e-9)


def test_separable_data_without_l2_is_reported(tmp_path):
    X = np.array([[1.0, 0.2], [2.0, -0.1], [-1.0, 0.3], [-2.0, 0.1]])
    opt = make_problem("logistic", X, np.array([1, 1, 0, 0.0])).optimum(cache_dir=tmp_path)
    assert opt.f_star < 1e-10 and "separable" in opt.method
    with_l2 = make_problem("logistic", X, np.array([1, 1, 0, 0.0]), l2=0.1).optimum(
        cache_dir=tmp_path)
    assert "separable" not in with_l2.method and with_l2.grad_norm < 1e-12


# ---------------------------------------------------------------- MNIST f* and the cache


def _read_idx_gz(path: pathlib.Path, offset: int) -> np.ndarray:
    with gzip.open(path) as fh:
        return np.frombuffer(fh.read(), dtype=np.uint8, offset=offset)


@pytest.fixture(scope="session")
def mnist_logistic(data_dir) -> Problem:
    """L2 logistic regression on the 10,000 MNIST test images, 0-4 (label 0) vs 5-9 (label 1).

    Read straight from the IDX files (independent of the package's loader).
    """
    X = _read_idx_gz(data_dir / "mnist" / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784)
    digits = _read_idx_gz(data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz", 8)
    return make_problem("logistic", X / 255.0, (digits >= 5).astype(np.float64), l2=1e-4)


@pytest.mark.slow
def test_mnist_optimum_and_cache_reuse(mnist_logistic, tmp_path, monkeypatch):
    calls = []
    real_solver = solvers.solve_logistic

    def counting_solver(*args, **kwargs):
        calls.append(1)
        return real_solver(*args, **kwargs)

    monkeypatch.setattr(solvers, "solve_logistic", counting_solver)
    assert mnist_logistic.y.mean() == pytest.approx(0.4861)  # README: 48.6% positive

    first = mnist_logistic.optimum(cache_dir=tmp_path)
    second = mnist_logistic.optimum(cache_dir=tmp_path)

    assert first.f_star == pytest.approx(0.3012673719, rel=1e-9)
    assert not first.from_cache and first.mu == 1e-4
    # the certificate: f(w*) - min f <= |g|^2 / (2 mu), recomputed from an independent gradient
    g = mnist_logistic.grad(first.w_star, mnist_logistic.X.astype(np.float64), mnist_logistic.y,
                            xp=np)
    assert first.grad_norm == pytest.approx(np.linalg.norm(g), rel=1e-6)
    assert first.gap_bound == pytest.approx(first.grad_norm**2 / 2e-4)
    assert first.gap_bound <= 1e-13 * first.f_star
    assert second.from_cache and len(calls) == 1  # the solver ran once
    assert (second.f_star, second.gap_bound, second.mu) == (first.f_star, first.gap_bound, 1e-4)
    np.testing.assert_array_equal(second.w_star, first.w_star)
    assert len(list((tmp_path / "optima").glob("*.npz"))) == 1
    # the convention matters: lambda * ||w||^2 (no 1/2) gives a different optimum
    half = make_problem("logistic", mnist_logistic.X, mnist_logistic.y, l2=2e-4)
    assert half.full_loss(first.w_star) != pytest.approx(0.3012673719, rel=1e-6)


def test_default_cache_dir_comes_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTISCALE_CACHE_DIR", str(tmp_path))
    X, y = _small_data("ridge")
    p = make_problem("ridge", X, y, l2=0.1)
    assert not p.optimum().from_cache
    assert (tmp_path / "optima" / f"{p.cache_key()}.npz").is_file()
    assert p.optimum().from_cache


def test_cache_key_depends_on_data_and_settings(tmp_path):
    X, y = _small_data("ridge")
    base = make_problem("ridge", X, y, l2=0.1)
    assert base.cache_key() == make_problem("ridge", X.copy(), y.copy(), l2=0.1).cache_key()
    X2 = X.copy()
    X2[0, 0] += 1e-12
    others = [make_problem("ridge", X2, y, l2=0.1), make_problem("ridge", X, y, l2=0.2),
              make_problem("least_squares", X, y)]
    assert len({base.cache_key(), *(p.cache_key() for p in others)}) == 4


def test_corrupt_cache_entry_is_recomputed(tmp_path):
    X, y = _small_data("least_squares")
    p = make_problem("least_squares", X, y)
    good = p.optimum(cache_dir=tmp_path)
    path = tmp_path / "optima" / f"{p.cache_key()}.npz"
    path.write_bytes(b"not a zip file")
    again = p.optimum(cache_dir=tmp_path)
    assert not again.from_cache and again.f_star == good.f_star
    assert p.optimum(cache_dir=tmp_path).from_cache
    assert not list(path.parent.glob("*.tmp.npz"))


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("kind, X, y, l2, match", [
    ("lasso", np.ones((3, 2)), np.ones(3), 0.0, "unknown problem kind 'lasso'"),
    ("least_squares", np.ones((3, 2)), np.ones(3), 0.1, "use kind='ridge'"),
    ("ridge", np.ones((3, 2)), np.ones(3), 0.0, "ridge needs l2 > 0"),
    ("ridge", np.ones((3, 2)), np.ones(3), -1.0, "l2 must be finite and >= 0"),
    ("ridge", np.ones((3, 2)), np.ones(3), float("nan"), "l2 must be finite"),
    ("least_squares", np.ones(3), np.ones(3), 0.0, "X must be 2-D"),
    ("least_squares", np.ones((0, 2)), np.ones(0), 0.0, "at least one row"),
    ("least_squares", np.ones((3, 2)), np.ones(4), 0.0, "y has 4 entries but X has 3 rows"),
    ("least_squares", np.array([[1.0, np.nan], [1, 2], [3, 4]]), np.ones(3), 0.0,
     r"X\[0, 1\] = nan"),
    ("least_squares", np.array([[1.0, np.inf], [1, 2], [3, 4]]), np.ones(3), 0.0,
     "non-finite"),
    ("least_squares", np.ones((3, 2)), np.array([1.0, np.inf, 0]), 0.0, r"y\[1\] = inf"),
    ("logistic", np.ones((3, 2)), np.array([-1.0, 1.0, 1.0]), 0.0, "labels in {0, 1}"),
    ("softmax", np.ones((3, 2)), np.array([0, 1.5, 2]), 0.0, "integer class labels"),
    ("softmax", np.ones((3, 2)), np.zeros(3), 0.0, "at least 2 classes"),
])
def test_bad_input_is_rejected_with_a_clear_message(kind, X, y, l2, match):
    with pytest.raises(ValueError, match=match):
        make_problem(kind, X, y, l2=l2)


def test_softmax_label_out_of_range_for_given_n_classes():
    with pytest.raises(ValueError, match="label 3 is out of range for n_classes=3"):
        make_problem("softmax", np.ones((4, 2)), np.array([0, 1, 2, 3]), n_classes=3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_problem_data_is_a_read_only_view_of_float_data(dtype):
    X = np.ones((4, 2), dtype=dtype)
    y = np.arange(4.0)
    p = make_problem("least_squares", X, y)
    assert p.X.dtype == dtype and p.y.dtype == np.float64
    assert np.shares_memory(p.X, X)          # validated in place: no copy of X
    with pytest.raises(ValueError):
        p.X[0, 0] = 5.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.l2 = 1.0
    X[0, 0] = 7.0  # the caller's array stays writable
    assert p.X[0, 0] == 7.0


@pytest.mark.parametrize("X", [np.ones((4, 2), np.int64), np.ones((2, 4), np.float32).T,
                               np.ones((4, 2), np.float16)])
def test_other_dtypes_and_layouts_are_converted_once(X):
    p = make_problem("least_squares", X, np.arange(4.0))
    assert p.X.flags.c_contiguous and not np.shares_memory(p.X, X)
    assert p.X.dtype == (np.float32 if X.dtype == np.float32 else np.float64)
    np.testing.assert_array_equal(p.X, X)


def test_recipe_keys_skip_full_hashing_but_still_see_the_data():
    X, y = _small_data("ridge")
    a = make_problem("ridge", X, y, l2=0.1, recipe="gen(n=40, seed=0)")
    assert a.cache_key() == make_problem("ridge", X.copy(), y, l2=0.1,
                                         recipe="gen(n=40, seed=0)").cache_key()
    assert a.cache_key() != make_problem("ridge", X, y, l2=0.1, recipe="gen(n=40, seed=1)").cache_key()
    assert a.cache_key() != make_problem("ridge", X, y, l2=0.1).cache_key()
    X2 = X.copy()
    X2[0, 0] += 1.0                     # entry 0 is in the strided sample
    assert a.cache_key() != make_problem("ridge", X2, y, l2=0.1, recipe="gen(n=40, seed=0)").cache_key()
