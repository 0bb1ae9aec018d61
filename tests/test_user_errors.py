"""Every user error is one line `error: ...` naming the file, option or key and the fix, with
exit status 2, found before expensive work, with nothing half-written left (issue 14).

The bad inputs are real files on a real filesystem (a tmpfs mount for a full or read-only disk
when the tests run as root); the commands are the real `xlnet` entry point."""

import contextlib
import logging
import os
import subprocess

import pytest

from pretrain.memory_check import check_memory, required_bytes
from pretrain.plan import plan
from preprocessing.corpus_reader import match_input_files
from text_corpus import train_tiny_tokenizer, write_corpus
from xlnet import load_run_config
from xlnet.commands.main import main
from xlnet.errors import UserError

TINY_DATA = ["--set", "model.n_token=300", "--set", "data.num_streams=4"]


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


# -- Filesystem: where the output goes, what the input glob matches --------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A real corpus and a real 300-piece SentencePiece model trained on generated text."""
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(str(root / "text"), seed=1, files=2, documents_per_file=30)
    tokenizer = train_tiny_tokenizer(str(root / "tokenizer-text"), str(root / "tokenizer"))
    return {"input": str(root / "text" / "*.txt"), "tokenizer": tokenizer, "root": root}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, dataset):
    """A model dir after 2 real training steps on the shared tiny dataset."""
    model_dir = str(tmp_path_factory.mktemp("trained") / "model")
    assert main(["pretrain", "--config", "tiny", "--data", dataset, "--model-dir", model_dir,
                 "--steps", "2"]) == 0
    return model_dir


def _commands(corpus, dataset, trained, output):
    """Each command's argv writing to `output` (the option named last)."""
    return {
        "prepare": ["prepare", "--input", corpus["input"], "--tokenizer", corpus["tokenizer"],
                    "--config", "tiny", *TINY_DATA, "--direct_num_workers=1",
                    "--output", output],
        "train-tokenizer": ["train-tokenizer", "--input", corpus["input"], "--vocab-size",
                            "300", "--output", output],
        "pretrain": ["pretrain", "--config", "tiny", "--data", dataset, "--steps", "2",
                     "--model-dir", output],
        "export": ["export", "--model-dir", trained, "--format", "hf", "--output", output],
        "demo": ["demo", "--steps", "2", "--workdir", output],
    }


COMMANDS = ("prepare", "train-tokenizer", "pretrain", "export")


@pytest.mark.parametrize("command", COMMANDS + ("demo",))
def test_an_output_that_is_an_existing_file_is_refused_first(corpus, dataset, trained,
                                                             tmp_path, capsys, command):
    taken = tmp_path / "taken"
    taken.write_text("precious")
    argv = _commands(corpus, dataset, trained, str(taken))[command]
    option = argv[-2]
    line = one_error(argv, capsys)
    assert line.startswith(f"error: {option} ") and str(taken) in line, line
    assert "an existing file, not a directory" in line, line
    under = str(taken / "sub")  # a file among the parents of the directory to make
    line = one_error(argv[:-1] + [under], capsys)
    assert f"{taken} is a file, so the directory cannot be made there" in line, line
    assert taken.read_text() == "precious" and sorted(os.listdir(tmp_path)) == ["taken"]


@pytest.mark.parametrize("command", ["pretrain", "evaluate"])
def test_data_that_is_a_file_is_refused_first(tmp_path, capsys, command):
    (tmp_path / "data").write_text("not a dataset")
    argv = {"pretrain": ["pretrain", "--config", "tiny", "--model-dir", str(tmp_path / "m")],
            "evaluate": ["evaluate", "--model-dir", str(tmp_path / "m")]}[command]
    line = one_error(argv + ["--data", str(tmp_path / "data")], capsys)
    assert line == (f"error: --data {tmp_path / 'data'}: a file, not a dataset directory; give "
                    "the directory `xlnet prepare --output` wrote")
    assert sorted(os.listdir(tmp_path)) == ["data"]


def test_evaluate_output_that_is_a_directory_is_refused_first(dataset, trained, tmp_path,
                                                              capsys):
    line = one_error(["evaluate", "--data", dataset, "--model-dir", trained, "--split",
                      "train", "--output", str(tmp_path)], capsys)
    assert line == (f"error: --output {tmp_path}: a directory; give the path of a file to write "
                    f"(e.g. {tmp_path / 'eval.json'})")


@contextlib.contextmanager
def _tmpfs(path, options):
    """A real tmpfs at `path` (root only); skips the test where it cannot be mounted."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                             capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


@pytest.mark.parametrize("command", COMMANDS + ("demo",))
def test_a_read_only_place_is_refused_first(corpus, dataset, trained, tmp_path, capsys,
                                            command):
    with _tmpfs(tmp_path / "ro", "size=1m,ro") as place:
        for output in (place, place / "new"):
            argv = _commands(corpus, dataset, trained, str(output))[command]
            line = one_error(argv, capsys)
            assert line.startswith(f"error: {argv[-2]} {output}: ") and (
                "a read-only filesystem; choose a writable place" in line), line


def _no_temporaries(root):
    return [os.path.join(d, n) for d, dirs, names in os.walk(root) for n in names + dirs
            if ".tmp-" in n or ".partial-" in n]


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_a_full_disk_is_one_line_and_leaves_nothing_looking_valid(corpus, dataset, trained,
                                                                  tmp_path, capsys, command):
    # 64 KiB: room for the small files, not for a tokenizer, stream files or checkpoints.
    with _tmpfs(tmp_path / "full", "size=64k") as place:
        output = place / "out"
        argv = _commands(corpus, dataset, trained, str(output))[command]
        line = one_error(argv, capsys)
        assert "no space left on the device; free space there or choose another place" in line
        assert str(output) in line, line
        assert _no_temporaries(place) == []
        left = set(os.listdir(output)) if output.exists() else set()
        assert not left & {"COMPLETED", "spiece.model", "config.json", "model.safetensors"}
        # What a resume reads: ckpt-N.index (TensorFlow's own ckpt-N_temp is not one).
        assert not [n for n in left if n.startswith("ckpt-") and n.endswith(".index")], left
        print(line)


def test_a_glob_matching_directories(tmp_path, capsys, caplog):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "old.txt").mkdir()
    line = one_error(["train-tokenizer", "--input", str(tmp_path / "corpus" / "*.txt"),
                      "--vocab-size", "300", "--output", str(tmp_path / "tok")], capsys)
    assert line == (f"error: --input {tmp_path}/corpus/*.txt: matches only directories "
                    f"({tmp_path}/corpus/old.txt); give a glob of the files in them, e.g. "
                    f"'{tmp_path}/corpus/old.txt/*.txt'")
    line = one_error(["train-tokenizer", "--input", str(tmp_path / "corpus"),
                      "--vocab-size", "300", "--output", str(tmp_path / "tok")], capsys)
    assert "matches only directories" in line, line
    (tmp_path / "corpus" / "new.txt").write_text("ka lo mi.\n")
    with caplog.at_level(logging.WARNING):
        files = match_input_files(str(tmp_path / "corpus" / "*.txt"))
    assert [os.path.basename(path) for path, _ in files] == ["new.txt"]
    assert "skipping 1 matching directories" in caplog.text
    assert not (tmp_path / "tok").exists()


def test_a_glob_matching_nothing_and_an_unreadable_file(tmp_path, capsys):
    line = one_error(["train-tokenizer", "--input", str(tmp_path / "none-*.txt"),
                      "--vocab-size", "300", "--output", str(tmp_path / "tok")], capsys)
    assert line == (f"error: --input {tmp_path}/none-*.txt: no files match; check the path or "
                    "glob")
    if os.geteuid() == 0:
        pytest.skip("root reads any file: the unreadable case needs another user")
    (tmp_path / "locked.txt").write_text("ka lo mi.\n")
    (tmp_path / "locked.txt").chmod(0)
    line = one_error(["train-tokenizer", "--input", str(tmp_path / "*.txt"),
                      "--vocab-size", "300", "--output", str(tmp_path / "tok")], capsys)
    assert "locked.txt: cannot be read" in line and "Permission denied" in line, line


# -- Sizes that cannot fit --------------------------------------------------------------------

def test_a_size_that_cannot_fit_is_refused_before_the_model_is_built(dataset, tmp_path,
                                                                     capsys):
    model_dir = tmp_path / "model"
    line = one_error(["pretrain", "--config", "tiny", "--data", dataset, "--model-dir",
                      str(model_dir), "--set", f"model.d_model={2 ** 24}"], capsys)
    assert line.startswith("error: the run needs about "), line
    assert "is available (MemAvailable of /proc/meminfo); lower " in line, line
    for key in ("model.d_model", "train.global_batch_size", "data.seq_len", "model.mem_len"):
        assert key in line, line
    assert line.endswith("set train.remat=layer, or pass --no-memory-check to start anyway")
    assert not model_dir.exists()


def test_the_memory_check_is_plans_estimate_against_what_is_available():
    config = load_run_config("tiny")
    peak, memory = required_bytes(config, 1)
    assert peak == plan(config).memory.peak(False)  # the figure `xlnet plan` prints
    assert required_bytes(config, 2)[0] == plan(config, devices=2).memory.peak(False)
    host_state = memory.memory_state // 2
    check_memory(config, "CPU", 1, available=peak + host_state)
    with pytest.raises(UserError, match="is available"):
        check_memory(config, "CPU", 1, available=peak + host_state - 1)
    with pytest.raises(UserError, match=r"2 replica\(s\) on the host"):
        check_memory(config, "CPU", 2, available=peak + host_state)  # replicas share the host
    gpu_peak = required_bytes(config, 2)[0]
    check_memory(config, "GPU", 2, available=gpu_peak)  # each GPU holds its own replica
    with pytest.raises(UserError, match="per GPU"):
        check_memory(config, "GPU", 2, available=gpu_peak - 1)
    check_memory(config, "TPU", 1, available=1)  # not checked
    bf16 = load_run_config("tiny", ["train.precision=mixed_bfloat16"])
    bf16_peak = required_bytes(bf16, 2)[0]
    assert bf16_peak < gpu_peak  # activations counted at half their float32 size
    check_memory(bf16, "GPU", 2, available=bf16_peak)
    evaluation = memory.weights + memory.memory_state + memory.activations_remat
    assert evaluation < peak
    check_memory(config, "GPU", 1, available=evaluation, evaluation=True)
    with pytest.raises(UserError, match="weights"):
        check_memory(config, "GPU", 1, available=evaluation - 1, evaluation=True)


def _gzip_cases(directory):
    """A .gz cut off half way, and one whose compressed bytes are altered past its header."""
    import gzip

    text = "".join(f"ka lo mi ne {i}.\nru sa to {i}.\n\n" for i in range(3000)).encode()
    whole = gzip.compress(text, mtime=0)
    (directory / "cut").mkdir()
    (directory / "cut" / "part.txt.gz").write_bytes(whole[:len(whole) // 2])
    altered = bytearray(whole)
    altered[len(whole) // 2:len(whole) // 2 + 64] = bytes(64)
    (directory / "altered").mkdir()
    (directory / "altered" / "part.txt.gz").write_bytes(bytes(altered))
    return {"cut": "Compressed file ended before the end-of-stream marker was reached",
            "altered": ""}


@pytest.mark.parametrize("case", ["cut", "altered"])
def test_a_truncated_or_corrupt_gzip_is_one_line_naming_it(corpus, tmp_path, capsys, case):
    reason = _gzip_cases(tmp_path)[case]
    path = tmp_path / case / "part.txt.gz"
    output = tmp_path / "data"
    line = one_error(["prepare", "--input", str(path), "--tokenizer", corpus["tokenizer"],
                      "--config", "tiny", *TINY_DATA, "--direct_num_workers=1",
                      "--output", str(output)], capsys)
    assert line.startswith(f"error: {path}: a truncated or corrupt gzip file ({reason}"), line
    assert line.endswith(f"replace it with a whole copy (`gzip -t {path}` tests one) or "
                         "remove it"), line
    assert not (output / "COMPLETED").exists()
    line = one_error(["train-tokenizer", "--input", str(path), "--vocab-size", "300",
                      "--output", str(tmp_path / "tok")], capsys)
    assert line.startswith(f"error: {path}: a truncated or corrupt gzip file"), line
    assert not (tmp_path / "tok" / "spiece.model").exists()
