"""optiscale-bench / optiscale-peers: every bad input is a one-line error naming the flag or
value and the fix, before any work and before any file changes (in-process, fast)."""

import errno
import os

import pytest
from absl import flags

from optiscale_jax.benchmark import store as store_module
from optiscale_jax.benchmark.record import RunRecord, RunStatus
from optiscale_jax.benchmark.store import ResultsStore
from optiscale_jax.cli import _common, large_scale, peers

large_scale.define_flags()
peers.define_flags()


@pytest.fixture(autouse=True)
def _fresh_flags():
    yield
    flags.FLAGS.unparse_flags()


@pytest.fixture
def stored(tmp_path):
    """An output folder holding two finished runs (written through the store)."""
    out = tmp_path / "out"
    store = ResultsStore(out / "large_scale_results.json")
    for identity in ("a", "b"):
        store.add_run(RunRecord(identity=identity, dataset="toy", label=identity,
                                optimizer="sgd", status=RunStatus.MAX_EPOCHS, final_loss=1.0))
    return out


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


def _bench(capsys, tmp_path, *args):
    """Runs optiscale-bench in-process; returns (exit code, stderr lines)."""
    with pytest.raises(SystemExit) as exit_info:
        _common.run_app(large_scale.main, argv=[
            "optiscale-bench", f"--compilation_cache_dir={tmp_path / 'cc'}", *args])
    return exit_info.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("args, message", [
    (["--seed=-1", "--resume"], "--seed=-1 is out of range; give an integer from 0 to 4294967295"),
    (["--epochs=2147483653", "--resume"], "--epochs=2147483653 is out of range; give an integer "
                                          "from 1 to 2147483647"),
    (["--epochs=0", "--resume"], "--epochs=0 is out of range"),
    ([], "already holds results (runs, large_scale_results.json); pass --resume"),
    (["--resume", "--overwrite"], "--resume and --overwrite exclude each other"),
    (["--datasets=imagenet", "--resume"], "unknown dataset(s) 'imagenet'; choose from: mnist_10k"),
    (["--optimizers=adm", "--resume"], "optimizer spec 'adm': unknown optimizer 'adm'"),
    (["--optimizers=nope.mod:make", "--resume"], "module 'nope.mod' cannot be imported"),
    (["--optimizers=adam", "--hparams=adam.lr=1", "--resume"],
     "the factory takes no hyperparameter 'lr'; it accepts: learning_rate"),
    (["--hparams=lion.b1=0.9", "--resume"], "--hparams names 'lion', which no optimizer"),
    (["--optimizers=optax:lion", "--resume"], "the factory needs 'learning_rate' (no default)"),
    (["--optimizers=x=tests/fixtures/user_optimizers.py:not_a_transform", "--resume"],
     "returned a dict, not an optax.GradientTransformation"),
    (["--config=missing.yaml", "--resume"], "config file 'missing.yaml' does not exist"),
    (["--num_shards=2", "--shard_index=2", "--resume"], "--shard_index=2 must be below "
                                                        "--num_shards=2"),
    (["--workers=0", "--resume"], "--workers=0 is out of range; give an integer >= 1"),
    (["--backend=cupy", "--resume"], "cupy"),
    (["extra", "--resume"], "unexpected argument(s) 'extra'"),
])
def test_bad_input_is_one_line_and_changes_no_file(capsys, tmp_path, stored, args, message):
    before = _snapshot(stored)
    code, err = _bench(capsys, tmp_path, f"--output_dir={stored}", *args)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("optiscale-bench: error: ") and message in err[0], err
    assert _snapshot(stored) == before


def test_output_dir_that_is_a_file_or_read_only(capsys, tmp_path, monkeypatch):
    a_file = tmp_path / "results.txt"
    a_file.write_text("mine")
    code, err = _bench(capsys, tmp_path, f"--output_dir={a_file}", "--suite=quick")
    assert code == 2 and err == [f"optiscale-bench: error: --output_dir={a_file} is a file, "
                                 "not a folder; give a folder path"]
    assert a_file.read_text() == "mine"
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as a non-root user would see
    code, err = _bench(capsys, tmp_path, f"--output_dir={tmp_path / 'ro' / 'out'}")
    assert code == 2 and len(err) == 1 and "is not writable; give a folder you can write to" in err[0]
    assert not (tmp_path / "ro").exists()


def test_a_corrupt_index_with_resume_is_one_line_and_kept(capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "large_scale_results.json").write_bytes(b'{"schema_version": 1, "runs": [{"ide')
    code, err = _bench(capsys, tmp_path, f"--output_dir={out}", "--resume",
                       "--datasets=kappa_1e3_small", "--epochs=2")
    assert code == 2 and len(err) == 1 and "is not valid JSON" in err[0] and "untouched" in err[0]
    assert (out / "large_scale_results.json").read_bytes() == (
        b'{"schema_version": 1, "runs": [{"ide')


@pytest.fixture
def bad_california(tmp_path):
    """A data folder whose California Housing file is not UTF-8."""
    folder = tmp_path / "data" / "california_housing"
    folder.mkdir(parents=True)
    source = os.path.join(os.environ["OPTISCALE_DATA_DIR"], "california_housing",
                          "cal_housing.data")
    data = open(source, "rb").read()
    (folder / "cal_housing.data").write_bytes(data[:500] + b"\xff\xfe\xfa" + data[503:])
    return tmp_path / "data"


def test_undecodable_data_stops_before_any_file_changes(capsys, tmp_path, stored, bad_california):
    before = _snapshot(stored)
    code, err = _bench(capsys, tmp_path, f"--output_dir={stored}", "--resume",
                       f"--data_dir={bad_california}", "--datasets=california_housing")
    text = "\n".join(err)
    assert code == 2 and err[0].startswith(
        "optiscale-bench: error: data set california_housing (California Housing) cannot be "
        "loaded, so nothing was run"), text
    assert "--allow_missing_data" in text
    assert _snapshot(stored) == before


@pytest.mark.parametrize("content", [b"", b"longitude,latitude\n"])
def test_empty_or_header_only_csv_is_a_clear_error(capsys, tmp_path, content):
    folder = tmp_path / "data" / "california_housing"
    folder.mkdir(parents=True)
    (folder / "cal_housing.data").write_bytes(content)
    code, err = _bench(capsys, tmp_path, f"--output_dir={tmp_path / 'out'}",
                       f"--data_dir={tmp_path / 'data'}", "--datasets=california_housing")
    assert code == 2 and "data set california_housing (California Housing) cannot be loaded" in (
        err[0]), err
    assert not (tmp_path / "out").exists()


def test_a_full_disk_is_one_line_and_keeps_stored_runs(capsys, tmp_path, stored, monkeypatch):
    before = _snapshot(stored)

    def no_space(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(store_module, "atomic_write_json", no_space)
    code, err = _bench(capsys, tmp_path, f"--output_dir={stored}", "--resume",
                       "--datasets=kappa_1e3_small", "--epochs=2")
    assert code == 1 and len(err) == 1 and "No space left on device" in err[0], err
    assert _snapshot(stored) == before


def test_report_only_without_results_is_one_line(capsys, tmp_path):
    code, err = _bench(capsys, tmp_path, f"--output_dir={tmp_path / 'none'}", "--report_only")
    assert code == 2 and len(err) == 1 and "no results file at" in err[0]


@pytest.mark.parametrize("argv", [["-h"], ["--help"], ["--helpfull"]])
def test_help_exits_zero_and_is_self_contained(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        _common.run_app(large_scale.main, doc=large_scale.__doc__,
                        argv=["optiscale-bench", *argv])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("optiscale-bench: benchmark optimizers")
    for flag in ("suite", "workers", "num_shards", "compilation_cache_dir", "data_dir"):
        assert f"  --{flag}:" in out, flag
    for flag in ("resume", "overwrite", "allow_missing_data", "tune", "verbose"):
        assert f"  --[no]{flag}:" in out, flag
    assert "the spec" not in out.lower()  # self-contained: names no outside document


@pytest.mark.parametrize("flag", ["repeats", "mnist_epochs", "california_epochs", "sweep_size",
                                  "eager_epochs"])
def test_peers_counts_are_checked_before_any_work(capsys, tmp_path, flag):
    with pytest.raises(SystemExit) as exit_info:
        _common.run_app(peers.main, argv=["optiscale-peers", f"--{flag}=0",
                                          f"--compilation_cache_dir={tmp_path / 'cc'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert err == [f"optiscale-peers: error: --{flag}=0 is out of range; give an integer >= 1"]


def test_peers_missing_data_is_a_clear_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        _common.run_app(peers.main, argv=["optiscale-peers", f"--data_dir={tmp_path}",
                                          f"--compilation_cache_dir={tmp_path / 'cc'}"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert err.startswith("optiscale-peers: error: ") and str(tmp_path) in err
    assert "--data_dir" in err and "OPTISCALE_DATA_DIR" in err


def test_help_of_peers_exits_zero(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _common.run_app(peers.main, doc=peers.__doc__, argv=["optiscale-peers", "-h"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("optiscale-peers:") and "--repeats" in out and "--data_dir" in out

