"""Every subcommand prints useful --help, and every user error exits non-zero with one line."""

import os
import subprocess
import sys

import pytest

from xlnet.commands.main import COMMANDS

XLNET = [sys.executable, "-m", "xlnet"]


def run_xlnet(*args, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(XLNET + list(args), capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_top_level_help_lists_every_command():
    result = run_xlnet("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_subcommand_help(command):
    result = run_xlnet(command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"usage: xlnet {command}" in result.stdout
    assert result.stdout.count("--") >= 2  # documents its options


def test_no_command_prints_help_and_fails():
    result = run_xlnet()
    assert result.returncode == 2 and "usage: xlnet" in result.stdout


@pytest.mark.parametrize("args,names", [
    (["train-tokenizer", "--input", "{tmp}/nothing-*.txt", "--vocab-size", "100",
      "--output", "{tmp}/tok"], "nothing-*.txt"),
    (["prepare", "--input", "{tmp}/nothing-*.txt", "--tokenizer", "{tmp}/spiece.model",
      "--output", "{tmp}/data", "--config", "tiny", "--runner=DirectRunner"], "spiece.model"),
    (["prepare", "--input", "{tmp}/x.txt", "--tokenizer", "{tmp}/spiece.model",
      "--output", "{tmp}/data", "--config", "no-such-config"], "no-such-config"),
    (["pretrain", "--config", "tiny", "--data", "{tmp}/missing", "--model-dir", "{tmp}/m"],
     "missing"),
    (["pretrain", "--config", "tiny", "--data", "{tmp}", "--model-dir", "{tmp}/m",
      "--set", "train.stepz=3"], "train.stepz"),
    (["export", "--model-dir", "{tmp}/missing", "--format", "hf", "--output", "{tmp}/out"],
     "missing"),
    (["demo", "--workdir", "{tmp}/occupied"], "occupied"),
])
def test_user_errors_are_one_line(tmp_path, args, names):
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "precious.txt").write_text("not a demo")
    (tmp_path / "x.txt").write_text("text\n")
    result = run_xlnet(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.returncode != 0
    lines = error_lines(result)
    assert len(lines) == 1 and names in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert (tmp_path / "occupied" / "precious.txt").exists()


def test_argparse_errors_exit_nonzero():
    result = run_xlnet("pretrain", "--steps", "many")
    assert result.returncode == 2 and "invalid int value" in result.stderr


def test_the_package_exports_the_public_names_without_loading_tensorflow():
    script = ("import sys, xlnet\n"
              "assert 'tensorflow' not in sys.modules\n"
              "names = [getattr(xlnet, name) for name in xlnet.__all__]\n"
              "assert xlnet.XLNetLM.__name__ == 'XLNetLM' and xlnet.ATTENTION_TYPE_UNI == 'uni'\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_tensorflow_command_shows_only_its_own_lines_unless_verbose(tmp_path):
    """TensorFlow's runtime writes its start-up lines before any log level applies; they show
    with --verbose only."""
    args = ["export", "--model-dir", str(tmp_path / "missing"), "--format", "hf",
            "--output", str(tmp_path / "out")]
    quiet = run_xlnet(*args)
    assert quiet.stderr.splitlines() == error_lines(quiet), quiet.stderr[-2000:]
    verbose = run_xlnet("--verbose", *args)
    assert "absl::InitializeLog" in verbose.stderr and len(error_lines(verbose)) == 1
