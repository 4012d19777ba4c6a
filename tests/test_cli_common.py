"""The shared command-line conventions of optiscale_jax.cli._common (in-process)."""

import logging
import pathlib

import jax
import pytest
from absl import flags

from optiscale_jax.cli import _common

_ANSWER = flags.DEFINE_integer("cli_common_test_answer", 42, "A flag of this test binary.")


@pytest.fixture(autouse=True)
def _fresh_flags():
    """absl keeps flag values between in-process runs: back to the defaults after each test."""
    before = jax.config.jax_compilation_cache_dir
    yield
    for name in ("cli_common_test_answer", "verbose", "compilation_cache_dir"):
        flags.FLAGS[name].unparse()
    jax.config.update("jax_compilation_cache_dir", before)


def _main(argv):
    _common.reject_positional(argv)
    if _ANSWER.value < 0:
        raise _common.UsageError(f"--cli_common_test_answer={_ANSWER.value} is negative; give >= 0")
    print("answer", _ANSWER.value)
    return 0


def _run(*args):
    with pytest.raises(SystemExit) as exit_info:
        _common.run_app(_main, doc="Test binary: prints the answer.", argv=["prog", *args])
    return exit_info.value.code


@pytest.mark.parametrize("arg", ["-h", "--help", "--helpshort"])
def test_help_exits_zero_with_the_binary_flags(arg, capsys):
    assert _run(arg) == 0
    out = capsys.readouterr().out
    assert out.startswith("Test binary: prints the answer.")
    assert "--cli_common_test_answer" in out and "--compilation_cache_dir" in out


def test_helpfull_exits_zero(capsys):
    assert _run("--helpfull") == 0
    assert "--cli_common_test_answer" in capsys.readouterr().out


def test_usage_error_is_one_line_exit_2(capsys, tmp_path):
    assert _run("--cli_common_test_answer=-1", f"--compilation_cache_dir={tmp_path}") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["prog: error: --cli_common_test_answer=-1 is negative; give >= 0"]


def test_verbose_adds_the_traceback(capsys, tmp_path):
    assert _run("--cli_common_test_answer=-1", "--verbose", f"--compilation_cache_dir={tmp_path}") == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith("is negative; give >= 0")


def test_positional_arguments_are_refused(capsys, tmp_path):
    assert _run("extra", f"--compilation_cache_dir={tmp_path}") == 2
    assert "unexpected argument(s) 'extra'" in capsys.readouterr().err


def test_compilation_cache_flag_and_default(tmp_path, monkeypatch, capsys):
    assert _run(f"--compilation_cache_dir={tmp_path / 'cc'}") == 0
    assert pathlib.Path(jax.config.jax_compilation_cache_dir) == tmp_path / "cc"
    assert _run("--compilation_cache_dir=") == 0
    assert jax.config.jax_compilation_cache_dir is None
    monkeypatch.setenv("OPTISCALE_CACHE_DIR", str(tmp_path / "root"))
    assert _common.default_compilation_cache_dir() == tmp_path / "root" / "jax_compilation"
    assert "answer 42" in capsys.readouterr().out


def test_platform_probe_info_line_is_dropped_but_warnings_kept(caplog):
    _common.quiet_platform_probe_logs()
    logger = logging.getLogger("jax._src.xla_bridge")
    with caplog.at_level(logging.INFO, logger="jax._src.xla_bridge"):
        logger.info("Unable to initialize backend 'tpu': INTERNAL: Failed to open libtpu.so")
        logger.warning("Unable to initialize backend 'cuda': asked for and missing")
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


@pytest.mark.parametrize("text, expected", [("1,2, 4", [1, 2, 4]), (["8"], [8])])
def test_parse_int_list(text, expected):
    assert _common.parse_int_list(text, "device_counts", minimum=1) == expected


@pytest.mark.parametrize("text, message", [
    ("1,x", "--device_counts: 'x' is not an integer; give a comma-separated list such as"),
    ("1,0", "--device_counts=0 is out of range; give an integer >= 1"),
    (" , ", "--device_counts is empty"),
])
def test_parse_int_list_errors_name_the_flag_and_item(text, message):
    with pytest.raises(_common.UsageError, match="^" + message.replace("(", r"\(")):
        _common.parse_int_list(text, "device_counts", minimum=1)


def test_check_int_and_float_list():
    assert _common.check_int(0, "seed", minimum=0) == 0
    with pytest.raises(_common.UsageError, match=r"--seed=-1 is out of range; give an integer >= 0"):
        _common.check_int(-1, "seed", minimum=0)
    with pytest.raises(_common.UsageError, match="--repeats must be an integer, got True"):
        _common.check_int(True, "repeats", minimum=1)
    assert _common.parse_float_list("1e-3,0.5", "learning_rates") == [1e-3, 0.5]
    with pytest.raises(_common.UsageError, match="--learning_rates: 'fast' is not a number"):
        _common.parse_float_list("fast", "learning_rates")
