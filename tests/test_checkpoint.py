"""Orbax checkpoints of sharded state: killed run, restore on 8 and on 4 devices, refusals.

A child process trains an MLP under fsdp on 8 virtual devices with a checkpoint every
10 epochs and is killed with SIGKILL right after the checkpoint at epoch 20 is
written, while the run would go on to epoch 30. This process then resumes it on an
8-device and on a 4-device mesh (60 input features, width 12: w_in is stored padded to 64 rows
on 8 devices and unpadded on 4, so the restore reshards and re-pads) and compares
with an uninterrupted 30-epoch run.
"""

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import optax
import pytest

from optiscale_jax.parallel import MLPSpec, ParallelTrainer, latest_epoch

REPO = pathlib.Path(__file__).resolve().parents[1]
SPEC = MLPSpec(n_features=60, width=12, n_blocks=2, l2=1e-4)
EPOCHS = 30
LEARNING_RATE = 0.1

CHILD = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import optax
    from optiscale_jax.parallel import MLPSpec, ParallelTrainer, trainer as trainer_module

    directory, LEARNING_RATE, EPOCHS = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    save = trainer_module.save_checkpoint

    def save_then_die(path, epoch, *args, **kwargs):  # the failure: SIGKILL mid-run
        save(path, epoch, *args, **kwargs)
        if epoch == 20:
            os.kill(os.getpid(), signal.SIGKILL)

    trainer_module.save_checkpoint = save_then_die
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 60)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.float32)
    ParallelTrainer(8, "fsdp", optax.sgd(LEARNING_RATE), model=MLPSpec(60, 12, 2, 1e-4), epochs=EPOCHS,
                    checkpoint_dir=directory, checkpoint_every=10).fit(X, y)
    print("not killed")
""")


def _data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 60)).astype(np.float32)
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.float32)


def _relative(a, b):
    a = np.concatenate([np.ravel(x) for x in a])
    b = np.concatenate([np.ravel(x) for x in b])
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.fixture(scope="module")
def killed_checkpoint(tmp_path_factory):
    """The checkpoint directory of a run killed (SIGKILL) after its epoch-20 checkpoint."""
    root = tmp_path_factory.mktemp("checkpoint")
    script = root / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, str(script), str(root / "run"), str(LEARNING_RATE), str(EPOCHS)]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr[-3000:]
    assert "not killed" not in proc.stdout
    assert latest_epoch(root / "run") == 20
    return root / "run"


@pytest.fixture(scope="module")
def uninterrupted():
    return ParallelTrainer(8, "fsdp", optax.sgd(LEARNING_RATE), model=SPEC, epochs=EPOCHS).fit(*_data())


@pytest.mark.slow
@pytest.mark.parametrize("n_devices", [8, 4])
def test_resume_after_sigkill_equals_uninterrupted_run(killed_checkpoint, uninterrupted, tmp_path,
                                                       n_devices):
    X, y = _data()
    directory = tmp_path / "copy"
    shutil.copytree(killed_checkpoint, directory)
    resumed = ParallelTrainer(n_devices, "fsdp", optax.sgd(LEARNING_RATE), model=SPEC, epochs=EPOCHS,
                              checkpoint_dir=directory, checkpoint_every=10).fit(X, y)
    assert resumed.result_.epochs == EPOCHS and latest_epoch(directory) == EPOCHS
    stored = resumed.state_.params.w_in
    assert stored.shape == ((64, 12) if n_devices == 8 else (60, 12))
    assert len(stored.addressable_shards) == n_devices
    error = _relative(resumed.params_, uninterrupted.params_)
    print(f"{n_devices} devices: relative difference {error:.1e}")
    assert error < 1e-6
    np.testing.assert_allclose(resumed.history_, uninterrupted.history_, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("change,message", [
    (dict(model=MLPSpec(60, 8, 2, 1e-4)), "model: checkpoint has .*'width': 12"),
    (dict(optimizer=optax.adam(1e-3)), "opt_state_structure"),
    (dict(seed=3), "seed: checkpoint has 0, this run has 3"),
])
def test_checkpoint_of_another_run_is_refused(killed_checkpoint, tmp_path, change, message):
    X, y = _data()
    directory = tmp_path / "copy"
    shutil.copytree(killed_checkpoint, directory)
    kwargs = dict(n_devices=8, strategy="fsdp", optimizer=optax.sgd(LEARNING_RATE), model=SPEC,
                  epochs=EPOCHS, checkpoint_dir=directory, checkpoint_every=10)
    kwargs.update(change)
    with pytest.raises(ValueError, match=f"written by a different run and is not loaded: .*{message}"):
        ParallelTrainer(**kwargs).fit(X, y)
    assert latest_epoch(directory) == 20  # nothing was overwritten


def test_checkpoint_every_needs_a_directory():
    with pytest.raises(ValueError, match="checkpoint_every=5 needs a checkpoint_dir"):
        ParallelTrainer(2, "fsdp", "sgd", model="logistic", epochs=2,
                        checkpoint_every=5).fit(np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1.]))
