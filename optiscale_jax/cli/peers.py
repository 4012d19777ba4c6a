"""optiscale-peers: speed of this engine against hand-written peers, side by side, in one run.

    optiscale-peers [--repeats=3] [--json_out=peers.json] [--data_dir=DIR]
    (or python -m experiments.peers from the repository root)

Workloads: (i) MNIST-10k binary logistic regression (l2 = 1e-4), full-batch
Adam, 300 epochs; (ii) California Housing least squares, Adam, 2,000 epochs;
(iii) a 16-learning-rate Adam sweep on (ii) as one vmapped program vs one run
vs 16 separate runs. Peers: this engine (`training.run`), this project's NumPy
backend (`training.run_reference`), a hand-written optax + jit + lax.scan
loop, a hand-written NumPy loop, and torch.optim when torch is importable.
Each peer is compiled (compile time printed separately) and warmed up, then
the peers are timed in turn, --repeats rounds, blocking on each result, so a
change in the machine's load hits all alike; the median is quoted. The floor is the time
of one pass over X (NumPy `X @ w`, median of 30). Ratios are peer / engine for
the peers and engine / peer for the targets.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags

from optiscale_jax.benchmark.store import atomic_write_json
from optiscale_jax.cli import _common
from optiscale_jax.datasets import load_california_housing, load_mnist
from optiscale_jax.problems import ProblemLike, make_problem
from optiscale_jax.training import JAXOptimizer, compile_run, run_reference, sweep
from optiscale_jax.training import run as train

FLAGS = flags.FLAGS
_COUNTS = ("repeats", "mnist_epochs", "california_epochs", "sweep_size", "eager_epochs")


def define_flags() -> None:
    """The script's flags (defined when run as a script, so importing the module for its
    peers never collides with another absl binary's flags)."""
    if "repeats" in FLAGS:
        return
    flags.DEFINE_integer("repeats", 3, "Timed rounds over the peers (>= 1; the median is "
                         "quoted).")
    flags.DEFINE_integer("mnist_epochs", 300, "Epochs of workload (i), MNIST-10k (>= 1).")
    flags.DEFINE_integer("california_epochs", 2000, "Epochs of workload (ii), California "
                         "Housing (>= 1).")
    flags.DEFINE_integer("sweep_size", 16, "Learning rates in the sweep of workload (iii) (>= 1).")
    flags.DEFINE_integer("eager_epochs", 20, "Epochs of the use_jit=False comparison (>= 1).")
    _common.define_data_dir()
    flags.DEFINE_string("json_out", None, "Also write every figure to this JSON file.")


LEARNING_RATE = 0.01
MNIST_L2 = 1e-4
PAUSE_S = 0.2


class Timing(NamedTuple):
    peer: str
    seconds_per_epoch: float
    compile_s: float
    final_loss: float


# --- losses written by hand, as a user of each library would ---------------------------------
def _np_value_and_grad(kind: str, X: np.ndarray, XT: np.ndarray, y: np.ndarray, l2: float
                       ) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    n = X.shape[0]

    def logistic(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = X @ w
        loss = np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * (w @ w)
        return float(loss), XT @ (0.5 * (1.0 + np.tanh(0.5 * z)) - y) / n + l2 * w

    def squares(w: np.ndarray) -> tuple[float, np.ndarray]:
        r = X @ w - y
        return float(0.5 * (r @ r) / n), XT @ r / n

    return logistic if kind == "logistic" else squares


def _jax_loss(kind: str, l2: float) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
    def loss(w: jax.Array, X: jax.Array, y: jax.Array) -> jax.Array:
        z = X @ w
        if kind == "logistic":
            return jnp.mean(jnp.logaddexp(0.0, z) - y * z) + 0.5 * l2 * (w @ w)
        return 0.5 * jnp.mean((z - y) ** 2)
    return loss


# --- peers: each is prepared (compiled, warmed up) once, then timed round-robin --------------
class Peer(NamedTuple):
    """A prepared peer: `train()` runs the whole training once and returns
    (seconds of the training itself, final loss)."""
    name: str
    compile_s: float
    train: Callable[[], tuple[float, float]]


def _wall(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def peer_engine(problem: ProblemLike, epochs: int, kernel: str = "auto") -> Peer:
    compiled = compile_run(problem, "adam", hyperparams={"learning_rate": LEARNING_RATE},
                           epochs=epochs, kernel=kernel)

    def train() -> tuple[float, float]:
        result = compiled()
        return result.run_time_s, result.final_loss

    return Peer(f"optiscale engine ({compiled.kernel})", compiled.compile_time_s, train)


def peer_numpy_backend(problem: ProblemLike, epochs: int) -> Peer:
    def train() -> tuple[float, float]:
        result = run_reference(problem, "adam", {"learning_rate": LEARNING_RATE}, epochs=epochs)
        return result.run_time_s, result.final_loss

    return Peer("optiscale numpy backend", 0.0, train)


def peer_optax_scan(kind: str, X: np.ndarray, y: np.ndarray, l2: float, epochs: int) -> Peer:
    loss = _jax_loss(kind, l2)
    tx = optax.adam(LEARNING_RATE)

    def program(w: jax.Array, X: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        def body(carry: Any, _: Any) -> tuple[Any, jax.Array]:
            w, state = carry
            value, grad = jax.value_and_grad(loss)(w, X, y)
            updates, state = tx.update(grad, state, w)
            return (optax.apply_updates(w, updates), state), value
        (w, _), values = jax.lax.scan(body, (w, tx.init(w)), None, length=epochs)
        return w, values

    args = jax.block_until_ready((jnp.zeros(X.shape[1], jnp.float32), jnp.asarray(X, jnp.float32),
                                  jnp.asarray(y, jnp.float32)))
    compile_s, compiled = _wall(lambda: jax.jit(program).lower(*args).compile())

    def train() -> tuple[float, float]:
        seconds, (w, _) = _wall(lambda: jax.block_until_ready(compiled(*args)))
        return seconds, float(loss(w, *args[1:]))

    return Peer("optax + jit + lax.scan", compile_s, train)


def peer_numpy_loop(kind: str, X: np.ndarray, y: np.ndarray, l2: float, epochs: int) -> Peer:
    X32, y32 = np.asarray(X, np.float32), np.asarray(y, np.float32)
    XT = np.ascontiguousarray(X32.T)
    value_and_grad = _np_value_and_grad(kind, X32, XT, y32, np.float32(l2))
    b1, b2, eps = np.float32(0.9), np.float32(0.999), np.float32(1e-8)

    def loop() -> np.ndarray:
        w = np.zeros(X.shape[1], np.float32)
        m, v = np.zeros_like(w), np.zeros_like(w)
        for t in range(1, epochs + 1):
            _, g = value_and_grad(w)
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
            w = w - np.float32(LEARNING_RATE) * m_hat / (np.sqrt(v_hat) + eps)
        return w

    def train() -> tuple[float, float]:
        seconds, w = _wall(loop)
        return seconds, value_and_grad(w)[0]

    return Peer("numpy hand-written loop", 0.0, train)


def peer_torch(kind: str, X: np.ndarray, y: np.ndarray, l2: float, epochs: int) -> Peer | str:
    try:
        import torch  # noqa: PLC0415 (optional peer: only when installed)
    except ImportError:
        return "torch: not installed"
    X_t = torch.as_tensor(np.asarray(X, np.float32))
    y_t = torch.as_tensor(np.asarray(y, np.float32))

    def loss_of(w: Any) -> Any:
        z = X_t @ w
        if kind == "logistic":
            return (torch.nn.functional.softplus(z) - y_t * z).mean() + 0.5 * l2 * (w @ w)
        return 0.5 * ((z - y_t) ** 2).mean()

    def loop() -> Any:
        w = torch.zeros(X.shape[1], requires_grad=True)
        optimizer = torch.optim.Adam([w], lr=LEARNING_RATE)
        for _ in range(epochs):
            optimizer.zero_grad()
            value = loss_of(w)
            value.backward()
            optimizer.step()
        return w

    def train() -> tuple[float, float]:
        seconds, w = _wall(loop)
        with torch.no_grad():
            return seconds, float(loss_of(w))

    return Peer("torch.optim.Adam", 0.0, train)


def time_peers(peers: list[Peer | str], epochs: int, repeats: int) -> list[Timing | str]:
    """One warm-up each, then `repeats` rounds over all peers, each round starting one peer
    later (so no peer always follows the same one) with a short pause between peers (so
    BLAS threads spinning after a NumPy peer do not slow the next); a change in the
    machine's load hits every peer alike. Returns the median seconds per epoch of each."""
    ready = [p for p in peers if isinstance(p, Peer)]
    for peer in ready:
        peer.train()
    seconds: dict[str, list[float]] = {p.name: [] for p in ready}
    finals: dict[str, float] = {}
    for round_index in range(repeats):
        shift = round_index % len(ready)
        for peer in ready[shift:] + ready[:shift]:
            time.sleep(PAUSE_S)
            elapsed, finals[peer.name] = peer.train()
            seconds[peer.name].append(elapsed)
    return [p if isinstance(p, str) else
            Timing(p.name, statistics.median(seconds[p.name]) / epochs, p.compile_s,
                   finals[p.name]) for p in peers]


def floor_one_pass(X: np.ndarray) -> dict[str, float]:
    """Median seconds (of 30) of one pass over float32 X, `X @ w`, in NumPy (BLAS) and in
    XLA (jitted): the memory-bandwidth floor of an epoch that must read X."""
    X32 = np.asarray(X, np.float32)
    w = np.ones(X.shape[1], np.float32)
    X_dev, w_dev = jax.block_until_ready((jnp.asarray(X32), jnp.asarray(w)))
    matvec = jax.jit(lambda A, v: A @ v).lower(X_dev, w_dev).compile()
    out = {}
    for name, fn in [("numpy", lambda: X32 @ w),
                     ("xla", lambda: jax.block_until_ready(matvec(X_dev, w_dev)))]:
        fn()
        times = []
        for _ in range(30):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        out[name] = statistics.median(times)
    return out


def jit_speedup(X: np.ndarray, y: np.ndarray, epochs: int) -> dict[str, float]:
    """Per-epoch time of JAXOptimizer(use_jit=True) vs use_jit=False (op by op)."""
    jitted = JAXOptimizer("adam", learning_rate=LEARNING_RATE, epochs=epochs, l2=MNIST_L2).fit(X, y)
    eager = JAXOptimizer("adam", learning_rate=LEARNING_RATE, epochs=epochs, l2=MNIST_L2,
                         use_jit=False).fit(X, y)
    jit_epoch = jitted.fit_time_s_ / epochs
    eager_epoch = eager.fit_time_s_ / epochs
    return {"epochs": epochs, "jit_ms_per_epoch": 1e3 * jit_epoch,
            "jit_compile_s": jitted.compile_time_s_, "eager_ms_per_epoch": 1e3 * eager_epoch,
            "speedup": eager_epoch / jit_epoch,
            "speedup_including_compile": eager.fit_time_s_ / (jitted.fit_time_s_ +
                                                              jitted.compile_time_s_)}


# --- reporting ----------------------------------------------------------------------------------
def _table(title: str, timings: list[Timing | str], floor: dict[str, float]) -> list[dict]:
    engine = timings[0]
    spread = check_same_work(timings)
    print(f"\n## {title}")
    print(f"final losses agree to {spread:.1e} (relative): the peers do the same work")
    print(f"floor, one pass over X (X @ w): NumPy {1e3 * floor['numpy']:.3f} ms, "
          f"XLA {1e3 * floor['xla']:.3f} ms")
    print(f"{'peer':36s} {'ms/epoch':>10s} {'peer/engine':>12s} {'compile s':>10s} {'final loss':>12s}")
    rows = []
    for timing in timings:
        if isinstance(timing, str):
            print(timing)
            rows.append({"peer": timing})
            continue
        ratio = timing.seconds_per_epoch / engine.seconds_per_epoch
        print(f"{timing.peer:36s} {1e3 * timing.seconds_per_epoch:10.4f} {ratio:12.2f} "
              f"{timing.compile_s:10.2f} {timing.final_loss:12.6f}")
        rows.append({**timing._asdict(), "ms_per_epoch": 1e3 * timing.seconds_per_epoch,
                     "peer_over_engine": ratio})
    return rows


def check_same_work(timings: list[Timing | str], rtol: float = 1e-3) -> float:
    """Largest relative spread of the peers' final losses; ValueError above `rtol` (the
    peers would not be doing the same work, and their times would not compare)."""
    finals = np.array([t.final_loss for t in timings if isinstance(t, Timing)])
    spread = float(np.max(np.abs(finals - finals[0])) / max(abs(finals[0]), 1e-30))
    if spread > rtol:
        raise ValueError(f"peers disagree on the final loss (relative spread {spread:.2e}): "
                         f"{[(t.peer, t.final_loss) for t in timings if isinstance(t, Timing)]}")
    return spread


def _by_peer(rows: list[dict], prefix: str) -> float:
    return next(r["ms_per_epoch"] for r in rows if r["peer"].startswith(prefix))


def _load_data() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Both data sets, before any work: a missing or unreadable one is a one-line error."""
    try:
        X, y, _, _, _ = load_mnist(n_samples=10000, binary_classification=True, test_size=0.0,
                                   data_dir=FLAGS.data_dir)
        Xc, yc, _, _, _ = load_california_housing(data_dir=FLAGS.data_dir, test_size=0.0)
    except (FileNotFoundError, PermissionError, ValueError, UnicodeDecodeError) as err:
        raise _common.UsageError(f"{err}\n(optiscale-peers needs MNIST and California Housing;"
                                 " pass --data_dir or set OPTISCALE_DATA_DIR)") from err
    return (X, y), (Xc, yc)


def _workload_mnist(X: np.ndarray, y: np.ndarray, repeats: int) -> dict[str, Any]:
    """(i): MNIST-10k binary logistic regression, full-batch Adam."""
    mnist = make_problem("logistic", X, y, l2=MNIST_L2)
    E = FLAGS.mnist_epochs
    floor = floor_one_pass(X)
    rows = _table(f"(i) MNIST-10k logistic (l2={MNIST_L2}), full-batch Adam, {E} epochs",
                  time_peers([peer_engine(mnist, E), peer_engine(mnist, E, "fused"),
                              peer_numpy_backend(mnist, E),
                              peer_optax_scan("logistic", X, y, MNIST_L2, E),
                              peer_numpy_loop("logistic", X, y, MNIST_L2, E),
                              peer_torch("logistic", X, y, MNIST_L2, E)], E, repeats),
                  floor)
    return {"rows": rows, "floor_ms": {k: 1e3 * v for k, v in floor.items()}}


def _workload_california(Xc: np.ndarray, yc: np.ndarray, repeats: int) -> dict[str, Any]:
    """(ii): California Housing least squares, Adam."""
    california = make_problem("least_squares", Xc, yc)
    E2 = FLAGS.california_epochs
    floor = floor_one_pass(Xc)
    rows = _table(f"(ii) California Housing least squares, Adam, {E2} epochs",
                  time_peers([peer_engine(california, E2), peer_numpy_backend(california, E2),
                              peer_optax_scan("least_squares", Xc, yc, 0.0, E2),
                              peer_numpy_loop("least_squares", Xc, yc, 0.0, E2),
                              peer_torch("least_squares", Xc, yc, 0.0, E2)], E2, repeats),
                  floor)
    return {"rows": rows, "floor_ms": {k: 1e3 * v for k, v in floor.items()}}


def _workload_sweep(Xc: np.ndarray, yc: np.ndarray, repeats: int) -> dict[str, Any]:
    """(iii): a vmapped learning-rate sweep vs one run vs separate runs (compile excluded);
    sweep and single run alternate, ``repeats`` rounds."""
    california = make_problem("least_squares", Xc, yc)
    E2 = FLAGS.california_epochs
    rates = np.logspace(-3, -0.5, FLAGS.sweep_size)
    sweep_times, one_times = [], []
    for _ in range(repeats):
        swept = sweep(california, "adam", learning_rates=rates, epochs=E2)
        time.sleep(PAUSE_S)
        one = train(california, "adam", hyperparams={"learning_rate": LEARNING_RATE}, epochs=E2)
        sweep_times.append(swept.run_time_s)
        one_times.append(one.run_time_s)
    sweep_s, one_s = statistics.median(sweep_times), statistics.median(one_times)
    separate = [train(california, "adam", hyperparams={"learning_rate": float(r)}, epochs=E2)
                for r in rates]
    separate_run = sum(r.run_time_s for r in separate)
    separate_compile = sum(r.compile_time_s for r in separate)
    print(f"\n## (iii) {len(rates)}-learning-rate Adam sweep, California, {E2} epochs")
    print(f"one vmapped program: {1e6 * sweep_s / E2:.2f} us/epoch "
          f"(compile {swept.compile_time_s:.2f} s, kernel {swept.runs[0].kernel}); one run: "
          f"{1e6 * one_s / E2:.2f} us/epoch; {len(rates)} separate runs: "
          f"{1e6 * separate_run / E2:.2f} us/epoch (+ {separate_compile:.1f} s compile)")
    print(f"sweep / one run = {sweep_s / one_s:.2f}x; sweep / separate runs = "
          f"{sweep_s / separate_run:.3f}x; best config {swept.best_config}")
    return {"sweep_us_per_epoch": 1e6 * sweep_s / E2, "one_run_us_per_epoch": 1e6 * one_s / E2,
            "separate_runs_us_per_epoch": 1e6 * separate_run / E2,
            "sweep_over_one_run": sweep_s / one_s, "sweep_over_separate": sweep_s / separate_run,
            "compile_s": swept.compile_time_s, "best": swept.best_config}


def _targets(report: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The engine's speed targets, measured ratio against limit, printed and returned."""
    rows, rows2 = report["mnist"]["rows"], report["california"]["rows"]
    engine_i, engine_ii = rows[0]["ms_per_epoch"], rows2[0]["ms_per_epoch"]
    fused_i = _by_peer(rows, "optiscale engine (fused)")
    measured = [
        ("(i) engine / optax+scan <= 1.0", engine_i / _by_peer(rows, "optax"), 1.0),
        ("(i) engine / numpy loop <= 1.0", engine_i / _by_peer(rows, "numpy hand"), 1.0),
        ("(i) engine, fused kernel forced / optax+scan <= 1.0",
         fused_i / _by_peer(rows, "optax"), 1.0),
        ("(i) engine, fused kernel forced / numpy loop <= 1.0",
         fused_i / _by_peer(rows, "numpy hand"), 1.0),
        ("(ii) engine / numpy loop <= 0.5", engine_ii / _by_peer(rows2, "numpy hand"), 0.5),
        ("(iii) sweep / one run <= 4.0", report["sweep"]["sweep_over_one_run"], 4.0),
    ]
    print("\n## targets")
    for name, value, limit in measured:
        print(f"{name:40s} measured {value:8.3f}  {'reached' if value <= limit else 'NOT reached'}")
    return {name: {"ratio": value, "limit": limit, "reached": value <= limit}
            for name, value, limit in measured}


def main(argv: list[str]) -> None:
    """Checks the flags and loads both data sets, then runs the workloads in turn."""
    _common.reject_positional(argv)
    for name in _COUNTS:
        _common.check_int(FLAGS[name].value, name, minimum=1)
    if FLAGS.json_out:
        _common.check_writable_file(FLAGS.json_out, "json_out")
    repeats = FLAGS.repeats
    (X, y), (Xc, yc) = _load_data()
    print(f"devices: {jax.devices()}; repeats={repeats} (median)")
    progress = _common.EtaPrinter(4)
    report: dict[str, Any] = {"mnist": _workload_mnist(X, y, repeats)}
    progress.step("workload (i) MNIST done")
    report["california"] = _workload_california(Xc, yc, repeats)
    progress.step("workload (ii) California Housing done")
    report["sweep"] = _workload_sweep(Xc, yc, repeats)
    progress.step("workload (iii) sweep done")
    speedup = jit_speedup(X, y, FLAGS.eager_epochs)
    print(f"\n## JIT speed-up, JAXOptimizer adam on MNIST ({speedup['epochs']} epochs): "
          f"use_jit=False {speedup['eager_ms_per_epoch']:.2f} ms/epoch, use_jit=True "
          f"{speedup['jit_ms_per_epoch']:.2f} ms/epoch -> {speedup['speedup']:.1f}x "
          f"({speedup['speedup_including_compile']:.2f}x counting the "
          f"{speedup['jit_compile_s']:.2f} s compile)")
    report["jit_speedup"] = speedup
    progress.step("JIT speed-up done")
    report["targets"] = _targets(report)
    if FLAGS.json_out:  # the project's one JSON spelling (strict; NaN as "NaN")
        print(f"\nwrote {atomic_write_json(FLAGS.json_out, report)}")


def run() -> None:
    """Console-script entry point (``optiscale-peers``)."""
    define_flags()
    _common.run_app(main, doc=__doc__, program="optiscale-peers")


if __name__ == "__main__":
    run()
