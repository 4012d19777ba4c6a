"""Multi-process data parallelism: 2 processes on 127.0.0.1 with jax.distributed.

The processes are started as subprocesses of this test with a deadline; every
outcome (success, failure, timeout) ends with each of them stopped. A process
that loses its peer aborts after its heartbeat timeout, so none can hang on.
"""

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import optax
import pytest

from optiscale_jax.datasets import load_mnist
from optiscale_jax.parallel import initialize_distributed, make_layout
from optiscale_jax.parallel.distributed import global_rows, local_data_shards
from optiscale_jax.parallel.worker import local_block
from optiscale_jax.problems import make_problem
from optiscale_jax.training import run

REPO = pathlib.Path(__file__).resolve().parents[1]
N_ROWS = 1024
EPOCHS = 20
LEARNING_RATE = 0.5
L2 = 1e-4
DEADLINE_S = 120.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(processes) -> None:
    """Terminate, then kill, every process still running; reap them all."""
    for proc in processes:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    end = time.monotonic() + 5
    for proc in processes:
        try:
            proc.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _launch(process_ids, port, tmp_path, data_file, strategy="data_parallel"):
    """Start worker processes (own process groups), output to log files."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    processes, logs = [], []
    for process_id in process_ids:
        log = open(tmp_path / f"process_{process_id}.log", "w+")
        logs.append(log)
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "optiscale_jax.parallel.worker",
             f"--coordinator_address=127.0.0.1:{port}",
             f"--coordinator_bind_address=127.0.0.1:{port}",
             "--num_processes=2", f"--process_id={process_id}",
             "--heartbeat_timeout_s=10", "--initialization_timeout_s=30", f"--strategy={strategy}",
             f"--data={data_file}", f"--n_rows={N_ROWS}", f"--epochs={EPOCHS}",
             f"--learning_rate={LEARNING_RATE}", f"--l2={L2}",
             f"--output={tmp_path / f'coef_{process_id}.npy'}"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True))
    return processes, logs


def _wait(processes, timeout_s):
    """Exit codes once all finish, one fails, or the deadline passes (None: still running)."""
    deadline = time.monotonic() + timeout_s
    while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
        if any(p.poll() not in (None, 0) for p in processes):
            break  # one failed: stop the other rather than wait for its heartbeat
        time.sleep(0.2)
    return [p.poll() for p in processes]


def _read_and_close(logs):
    outputs = []
    for log in logs:
        log.seek(0)
        outputs.append(log.read())
        log.close()
    return outputs


@pytest.fixture(scope="module")
def mnist_file(data_dir, tmp_path_factory):
    X, y, *_ = load_mnist(n_samples=N_ROWS, binary_classification=True, test_size=0.0,
                          data_dir=data_dir)
    path = tmp_path_factory.mktemp("distributed") / "mnist_binary.npz"
    np.savez(path, X=X, y=y)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["data_parallel", "fsdp"])
def test_two_processes_train_to_the_single_process_result(mnist_file, tmp_path, strategy):
    """2 processes x 2 devices; under fsdp each process stores only its half of the 784
    coefficients (2 shards of 196 float32), replicated data parallelism all of them
    on each device."""
    processes, logs = [], []
    try:
        processes, logs = _launch([0, 1], _free_port(), tmp_path, mnist_file, strategy)
        codes = _wait(processes, DEADLINE_S)
    finally:
        _stop(processes)
        outputs = _read_and_close(logs)
    assert codes == [0, 0], f"exit codes {codes} (None: past the {DEADLINE_S} s deadline)\n" + (
        "\n".join(out[-3000:] for out in outputs))
    assert "process 0/2: 4 devices" in outputs[0] and "process 1/2: 4 devices" in outputs[1]
    held = 784 * 4 // 2 if strategy == "fsdp" else 2 * 784 * 4  # bytes on this process's 2 devices
    for output in outputs:
        assert f"parameter bytes held here {held} of {784 * 4} on 2 devices" in output

    coefs = [np.load(tmp_path / f"coef_{i}.npy") for i in range(2)]
    np.testing.assert_array_equal(coefs[0], coefs[1])
    with np.load(mnist_file) as data:
        X, y = data["X"], data["y"]
    reference = run(make_problem("logistic", X, y, l2=L2), optax.sgd(LEARNING_RATE),
                    epochs=EPOCHS).params
    assert np.max(np.abs(reference)) > 1e-2
    np.testing.assert_allclose(coefs[0], reference, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_a_process_left_waiting_is_stopped_at_the_deadline(mnist_file, tmp_path):
    """Process 1 alone waits for a coordinator that never comes; the deadline ends it."""
    processes, logs = [], []
    try:
        processes, logs = _launch([1], _free_port(), tmp_path, mnist_file)
        codes = _wait(processes, 3.0)
    finally:
        _stop(processes)
        _read_and_close(logs)
    assert codes == [None]  # still waiting when the deadline passed
    assert processes[0].poll() is not None  # and stopped since
    with pytest.raises(ProcessLookupError):
        os.killpg(processes[0].pid, 0)  # no process of its group is left


def test_local_blocks_cover_the_rows_once():
    blocks = [local_block(12, i, 3) for i in range(3)]
    assert [(b.start, b.stop) for b in blocks] == [(0, 4), (4, 8), (8, 12)]
    with pytest.raises(ValueError, match="n_rows=10 does not divide over 3 processes"):
        local_block(10, 0, 3)


def test_global_rows_in_one_process():
    layout = make_layout("data_parallel", 8)
    assert local_data_shards(layout) == 8
    local = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
    array = global_rows(local, layout)
    assert array.shape == (16, 3) and len(array.addressable_shards) == 8
    np.testing.assert_array_equal(np.asarray(array), local)
    with pytest.raises(ValueError, match="holds 10 rows but 8 data shard"):
        global_rows(local[:10], layout)


@pytest.mark.parametrize("kwargs,message", [
    (dict(coordinator_address="127.0.0.1:1234"), "give all of coordinator_address"),
    (dict(coordinator_address="127.0.0.1", num_processes=2, process_id=0), "'host:port'"),
    (dict(coordinator_address="127.0.0.1:1234", num_processes=0, process_id=0),
     "num_processes must be a positive int"),
    (dict(coordinator_address="127.0.0.1:1234", num_processes=2, process_id=2),
     r"process_id must be an int in \[0, 2\)"),
])
def test_initialize_distributed_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        initialize_distributed(**kwargs)
