"""`xlnet pretrain` from the command line: step lines, TensorBoard scalars, resume from the
newest good checkpoint, and one-line refusals of bad input that leave the model dir alone."""

import glob
import math
import os
import re
import shutil

import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from dataset_fixture import write_dataset
from xlnet import load_run_config
from xlnet.commands.main import main
from xlnet.formats.model_dir import ModelDirectory

STEP_LINE = re.compile(r"step (\d+)/\d+ loss (\S+) lr \S+ grad_norm \S+ accuracy \S+ "
                       r"tokens/s \d+.* ETA \d+:\d\d:\d\d")
SCALARS = ("loss", "perplexity", "accuracy", "learning_rate", "grad_norm", "tokens_per_second",
           "mfu", "memory_bytes")


def step_losses(text):
    return {int(step): float(loss) for step, loss in STEP_LINE.findall(text)}


def pretrain(data, model_dir, *extra):
    return main(["pretrain", "--config", "tiny", "--data", data, "--model-dir", model_dir,
                 *extra])


def snapshot(directory):
    return {path: os.path.getmtime(path)
            for path in glob.glob(os.path.join(directory, "**"), recursive=True)}


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("run") / "model")
    status = pretrain(dataset, model_dir, "--steps", "4", "--log-every", "2",
                      "--checkpoint-every", "2", "--set", "train.peak_tflops=0.001",
                      "--profile-steps", "3,4")
    assert status == 0
    return model_dir


def test_writes_checkpoints_config_and_tensorboard_scalars(trained):
    assert os.path.exists(os.path.join(trained, "run_config.yaml"))
    assert os.path.exists(os.path.join(trained, "ckpt-2.index"))
    assert os.path.exists(os.path.join(trained, "ckpt-4.index"))
    events = event_accumulator.EventAccumulator(
        os.path.join(trained, "train"), size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    tags = events.Tags()["tensors"]
    values = {}
    for name in SCALARS:
        records = events.Tensors(f"lm/{name}" if name in ("loss", "perplexity", "accuracy")
                                 else f"train/{name}")
        assert [r.step for r in records] == [2, 4], name
        values[name] = [float(tensor_util.make_ndarray(r.tensor_proto)) for r in records]
    assert "config" in " ".join(tags)
    assert all(math.isfinite(v) for series in values.values() for v in series)
    assert values["perplexity"][0] == pytest.approx(math.exp(values["loss"][0]), rel=1e-5)
    assert 0 < values["mfu"][0] < 1 and values["memory_bytes"][0] > 1e6
    assert values["learning_rate"][1] > values["learning_rate"][0] > 0  # warming up
    layers = [[float(tensor_util.make_ndarray(r.tensor_proto))
               for r in events.Tensors(f"train/grad_norm/layer_{i}")] for i in range(2)]
    for log in range(2):  # each layer's share of the gradient, within the whole norm
        per_layer = [series[log] for series in layers]
        assert all(n > 0 for n in per_layer)
        assert math.sqrt(sum(n * n for n in per_layer)) < values["grad_norm"][log]
    assert glob.glob(os.path.join(trained, "profile", "**", "*.xplane.pb"), recursive=True)


def test_console_lines_and_resume_past_a_truncated_checkpoint(trained, dataset, caplog):
    newest = glob.glob(os.path.join(trained, "ckpt-4.data-*"))[0]
    with open(newest, "r+b") as f:
        f.truncate(os.path.getsize(newest) // 2)
    caplog.set_level("INFO")
    assert pretrain(dataset, trained, "--steps", "5", "--log-every", "1",
                    "--allow-config-change") == 0
    assert "ckpt-4 does not load" in caplog.text
    assert f"resumed from {os.path.join(trained, 'ckpt-2')} at step 2" in caplog.text
    assert sorted(step_losses(caplog.text)) == [3, 4, 5]


@pytest.fixture(scope="module")
def checkpointed(dataset, tmp_path_factory):
    """A run of 3 steps, each checkpointed."""
    model_dir = str(tmp_path_factory.mktemp("checkpointed") / "model")
    assert pretrain(dataset, model_dir, "--steps", "3", "--checkpoint-every", "1") == 0
    return model_dir


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["deleted", "garbled", "empty"])
def test_a_lost_or_damaged_state_file_resumes_and_overwrites_no_checkpoint(
        checkpointed, dataset, tmp_path, caplog, damage):
    model_dir = str(tmp_path / "model")
    shutil.copytree(checkpointed, model_dir)
    state = os.path.join(model_dir, "checkpoint")
    if damage == "deleted":
        os.remove(state)
    else:
        with open(state, "w") as f:
            f.write("garbage {{{\n" if damage == "garbled" else "")
    before = {path: os.stat(path).st_mtime_ns
              for path in glob.glob(os.path.join(model_dir, "ckpt-*"))}
    caplog.set_level("INFO")
    assert pretrain(dataset, model_dir, "--steps", "4", "--log-every", "1",
                    "--allow-config-change") == 0
    assert "resuming from the checkpoints on disk" in caplog.text
    assert f"resumed from {os.path.join(model_dir, 'ckpt-3')} at step 3" in caplog.text
    assert sorted(step_losses(caplog.text)) == [4]
    # train.keep_checkpoints (3) let ckpt-1 go; what is left was not rewritten.
    after = {path: os.stat(path).st_mtime_ns
             for path in glob.glob(os.path.join(model_dir, "ckpt-*"))}
    assert {path: after[path] for path in before if "ckpt-1." not in path} == {
        path: time for path, time in before.items() if "ckpt-1." not in path}
    assert ModelDirectory(model_dir).checkpoints() == [
        os.path.join(model_dir, f"ckpt-{n}") for n in (2, 3, 4)]


@pytest.mark.slow
def test_an_allowed_train_change_is_logged_and_kept_in_the_history(checkpointed, dataset,
                                                                   tmp_path, caplog):
    model_dir = str(tmp_path / "model")
    shutil.copytree(checkpointed, model_dir)
    caplog.set_level("INFO")
    assert pretrain(dataset, model_dir, "--steps", "4", "--checkpoint-every", "2",
                    "--allow-config-change") == 0
    assert "resuming at step 3 with train.steps 4 (was 3): --allow-config-change" in caplog.text
    assert sorted(step_losses(caplog.text)) == [4]
    directory = ModelDirectory(model_dir)
    assert directory.run_config().train.steps == 4
    # checkpoint_every may change freely: it shapes no training, so it is not recorded.
    [entry] = directory.config_history()
    assert entry["step"] == 3 and entry["changed"] == {"train.steps": {"was": 3, "now": 4}}


def test_resuming_on_another_dataset_warns(trained, tmp_path, caplog):
    other = str(tmp_path / "other-data")
    write_dataset(other, load_run_config("tiny"), segments_per_stream=4, seed=7)
    caplog.set_level("INFO")
    assert pretrain(other, trained, "--steps", "6", "--allow-config-change") == 0
    assert "the run started on another dataset (pass_seeds was [0, 1], now [7000, 7001])" in \
        caplog.text


@pytest.mark.parametrize("make_problem,message", [
    (lambda d, m: ([d + "-missing", m], []), "no such dataset directory"),
    (lambda d, m: ([d, m], ["--set", "data.seq_len=128", "--set", "data.reuse_len=64",
                            "--set", "data.perm_size=64"]),
     "data.seq_len is 64 in the dataset but 128 in the config"),
    (lambda d, m: ([d, m], ["--set", "data.reuse_len=16", "--set", "data.perm_size=16"]),
     "data.reuse_len is 32 in the dataset but 16"),
    (lambda d, m: ([d, m], ["--set", "model.n_token=3000"]),
     "the tokenizer has 2000 pieces but model.n_token is 3000"),
    (lambda d, m: ([d, m], ["--set", "train.global_batch_size=12"]),
     "train.global_batch_size: 12 does not divide the dataset's 16 streams"),
    (lambda d, m: ([d, m], ["--set", "model.d_model=32"]),
     "holds checkpoints of another run \\(model.d_model is 64 there but 32 now\\)"),
    (lambda d, m: ([d, m], ["--set", "train.global_batch_size=4"]),
     "train.global_batch_size is 8 there but 4 now"),
    (lambda d, m: ([d, m], ["--set", "train.learning_rate=0.125"]),
     r"run_config.yaml: the resumed run's train section changed \(train.steps is \d+ there "
     r"but 9 now, train.learning_rate is 0.002 there but 0.125 now\); pass "
     r"--allow-config-change to resume with it \(the change is kept in "
     r"run_config.history.yaml\), or rerun with the saved values$"),
])
def test_bad_input_is_one_line_naming_the_field(trained, dataset, capsys, make_problem,
                                                message):
    (data, model_dir), extra = make_problem(dataset, trained)
    before = snapshot(trained)
    assert pretrain(data, model_dir, "--steps", "9", *extra) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ")
    assert re.search(message, error[0]), error[0]
    assert snapshot(trained) == before  # nothing written or overwritten


def test_unfinished_dataset_is_refused(dataset, tmp_path, capsys):
    unfinished = str(tmp_path / "data")
    write_dataset(unfinished, load_run_config("tiny"), segments_per_stream=1, complete=False)
    assert pretrain(unfinished, str(tmp_path / "model")) == 2
    assert "no COMPLETED marker" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "model")


def test_non_finite_loss_stops_naming_the_step_and_last_checkpoint(dataset, tmp_path, capsys):
    model_dir = str(tmp_path / "model")
    status = pretrain(dataset, model_dir, "--steps", "6", "--checkpoint-every", "1",
                      "--set", "train.learning_rate=1e30", "--set", "train.warmup_steps=0",
                      "--set", "train.clip_norm=0")
    error = capsys.readouterr().err
    assert status == 2
    match = re.search(r"step (\d+): the loss is (nan|inf).*Last good checkpoint: (\S+) ", error)
    assert match, error[-2000:]
    step = int(match.group(1))
    assert match.group(3) == os.path.join(model_dir, f"ckpt-{step - 1}")


@pytest.mark.parametrize("extra,message", [
    (["--profile-steps", "5"], "--profile-steps '5': expected two step numbers A,B"),
    (["--profile-steps", "4,2"], "need 0 < A <= B"),
    (["--strategy", "multi_worker"], "set TF_CONFIG \\(or run under Slurm\\)"),
])
def test_bad_options_are_one_line(dataset, tmp_path, capsys, monkeypatch, extra, message):
    for name in ("TF_CONFIG", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    assert pretrain(dataset, str(tmp_path / "model"), *extra) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and re.search(message, error[0]), error
