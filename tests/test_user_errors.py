"""Every user error is one line `error: ...` naming the file, option or key and the fix, with
exit status 2, found before expensive work, with nothing half-written left (issue 14).

The bad inputs are real files on a real filesystem (a tmpfs mount for a full or read-only disk
when the tests run as root); the commands are the real `xlnet` entry point."""

import os
import subprocess

import pytest

from xlnet.commands.main import main


def one_error(argv, capsys):
    """The one `error:` line `xlnet ARGV` prints; asserts exit status 2 and no traceback."""
    status = main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert status == 2, err[-3000:]
    assert len(errors) == 1, err[-3000:]
    assert "Traceback" not in err
    return errors[0]


# -- YAML configs and --set -------------------------------------------------------------------

CONFIG_FILES = {
    # name: (bytes, what the message must say)
    "utf16.yaml": ("model:\n  d_model: 64\n".encode("utf-16"),
                   "UTF-16 text (byte order mark); save it as UTF-8"),
    "latin1.yaml": ("model:\n  n_layer: 2\n# caf\xe9\n".encode("latin-1"),
                    "not UTF-8 text (byte 0xe9 on line 3); save it as UTF-8"),
    "scalar.yaml": (b"42\n", "holds the int 42, not a mapping with sections model, data, train"),
    "list.yaml": (b"- model\n- data\n", "holds a list (2 items), not a mapping with sections"),
    "model-list.yaml": (b"model: [1, 2]\n",
                        "section 'model' holds a list (2 items); it must be a mapping"),
    "model-scalar.yaml": (b"train: 5\n", "section 'train' holds the int 5"),
    "unknown-key.yaml": (b"model:\n  d_modle: 64\n",
                         "model.d_modle: unknown key (did you mean model.d_model?"),
    "unknown-section.yaml": (b"optim:\n  lr: 1\n", "unknown section 'optim'"),
    "wrong-type.yaml": (b"train:\n  steps: many\n", "train.steps: expected an integer, got"),
    "duplicate-key.yaml": (b"train:\n  steps: 10\n  steps: 1000\n",
                           "the key 'steps' is given twice (first on line 2; keep one), line 3"),
    "duplicate-section.yaml": (b"train:\n  steps: 10\ntrain:\n  seed: 3\n",
                               "the key 'train' is given twice"),
    "empty.yaml": (b"# nothing yet\n", "empty (no sections)"),
    "nul.yaml": (b"model:\n  d_model: 64\x00\n", "not valid YAML (unacceptable character"),
    "python-tag.yaml": (b"model: !!python/object:os.system x\n",
                        "not valid YAML (could not determine a constructor"),
    "unclosed.yaml": (b"model: [1, 2\n", "not valid YAML (expected ',' or ']'"),
}


@pytest.mark.parametrize("name", sorted(CONFIG_FILES))
def test_a_bad_config_file_is_one_line_naming_it(tmp_path, capsys, name):
    content, message = CONFIG_FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    line = one_error(["plan", "--config", str(path)], capsys)
    assert str(path) in line or name.startswith(("unknown-key", "wrong-type")), line
    assert message in line, line


def test_a_directory_or_an_unreadable_file_as_config(tmp_path, capsys):
    (tmp_path / "configs.yaml").mkdir()
    line = one_error(["plan", "--config", str(tmp_path / "configs.yaml")], capsys)
    assert line == (f"error: --config {tmp_path / 'configs.yaml'}: a directory; give the path "
                    "of a YAML file (or a named config: base, large, tiny)")
    if os.geteuid() == 0:
        pytest.skip("root reads any file: the unreadable case needs another user")
    locked = tmp_path / "locked.yaml"
    locked.write_text("model: {}\n")
    locked.chmod(0)
    assert "cannot be read (Permission denied)" in one_error(
        ["plan", "--config", str(locked)], capsys)


@pytest.mark.parametrize("item,message", [
    ("train.steps=abc", "error: train.steps: expected an integer, got 'abc'"),
    ("nokey", "error: --set 'nokey': expected section.key=value, e.g. train.steps=100"),
    ("model.d_model=", "error: --set 'model.d_model=': no value after '='; give one, e.g. "
                       "--set model.d_model=VALUE"),
    ("train.=3", "error: --set 'train.=3': expected section.key=value"),
    ("=3", "error: --set '=3': expected section.key=value"),
    ("train.steps=[1, 2", "error: --set 'train.steps=[1, 2': the value is not valid YAML"),
    ("model.d_model=[1, 2]", "error: model.d_model: expected an integer, got [1, 2]"),
    ("train.steps=1.5", "error: train.steps: expected an integer, got 1.5"),
    ("train.learning_rate=.nan", "error: train.learning_rate: must be a finite number, got nan"),
    ("train.seed=4294967296", "error: train.seed: must be < 2**32, got 4294967296"),
    ("train.seed=-1", "error: train.seed: must be >= 0, got -1"),
    ("model.d_model=0", "error: model.d_model: must be positive, got 0"),
    ("train.stepz=3", "error: train.stepz: unknown key (did you mean train.steps?"),
])
def test_a_bad_set_is_one_line_naming_the_key(capsys, item, message):
    assert one_error(["plan", "--config", "tiny", "--set", item], capsys).startswith(message)
