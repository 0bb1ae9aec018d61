"""The trainer's check of a dataset's stream files at start (pretrain/dataset_check.py), on
real TFRecords written by the dataset fixture and damaged as a user's disk or an attacker would."""

import copy
import os
import shutil

import pytest

from dataset_fixture import write_dataset
from pretrain.dataset_check import check_dataset, check_run_data, scan_stream_file
from xlnet import UserError, load_run_config
from xlnet.commands import main as cli
from xlnet.formats.model_dir import ModelDirectory
from xlnet.schema import EVAL, TRAIN, DatasetInfo

FIRST = "pass-000/stream-00000.tfrecord"


@pytest.fixture(scope="module")
def sound(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("sound"))
    write_dataset(directory, load_run_config("tiny"), segments_per_stream=3,
                  eval_segments_per_stream=2)
    return directory


@pytest.fixture
def copied(sound, tmp_path):
    """A copy of the sound dataset to damage, and its info."""
    directory = str(tmp_path / "data")
    shutil.copytree(sound, directory)
    return directory, DatasetInfo.read(directory)


def _refused(info, directory, match, checksums=False, splits=(TRAIN,)):
    with pytest.raises(UserError, match=match) as error:
        check_dataset(info, directory, splits, checksums=checksums)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_a_sound_dataset_passes_every_check_of_both_splits(sound):
    info = DatasetInfo.read(sound)
    assert check_dataset(info, sound, (TRAIN, EVAL), checksums=True) == 2 * 16 + 16
    entry = info.passes[0]["streams"][0]
    size, crc, records = scan_stream_file(os.path.join(sound, entry["file"]))
    assert (size, f"{crc:08x}", records) == (entry["size"], entry["crc32c"], 3)
    for chunk in (1, 5, 8, 13, 600):  # length fields cut by chunk boundaries anywhere
        assert scan_stream_file(os.path.join(sound, entry["file"]), chunk) == (size, crc, 3)


@pytest.mark.parametrize("name", ["../../outside/x.tfrecord", "/etc/passwd",
                                  "pass-000/stream-00001.tfrecord"])
def test_names_other_than_the_contracts_are_refused(sound, name):
    info = copy.deepcopy(DatasetInfo.read(sound))
    info.passes[0]["streams"][0]["file"] = name
    message = _refused(info, sound, "names file")
    assert repr(name) in message and FIRST in message


def test_a_link_out_of_the_directory_is_refused(copied, tmp_path):
    directory, info = copied
    outside = tmp_path / "outside.tfrecord"
    shutil.move(os.path.join(directory, FIRST), outside)
    os.symlink(outside, os.path.join(directory, FIRST))
    _refused(info, directory, "leads out of the dataset directory")


def test_missing_truncated_and_altered_files_are_named(copied):
    directory, info = copied
    path = os.path.join(directory, FIRST)
    content = open(path, "rb").read()
    os.remove(path)
    assert _refused(info, directory, "missing").startswith(path)
    open(path, "wb").write(content[:-10])
    _refused(info, directory, f"{len(content) - 10} bytes, dataset_info.json records "
                              f"{len(content)}")
    altered = bytearray(content)
    altered[len(content) // 2] ^= 1
    open(path, "wb").write(bytes(altered))
    check_dataset(info, directory, (TRAIN,))  # same size, sound first record: only the sum
    _refused(info, directory, "crc32c .*the file changed", checksums=True)


def test_wrong_counts_a_missing_pass_and_a_lying_seq_len_are_found(copied):
    directory, info = copied
    lying = copy.deepcopy(info)
    lying.passes[0]["streams"][0]["examples"] += 1
    lying.num_examples += 1
    check_dataset(lying, directory, (TRAIN,))  # the count needs the whole file
    _refused(lying, directory, "holds 3 records, dataset_info.json says 4", checksums=True)
    lying.num_examples -= 1
    _refused(lying, directory, "list 97 examples, its total says 96")
    missing_pass = copy.deepcopy(info)
    missing_pass.num_examples -= sum(e["examples"] for e in missing_pass.passes.pop()["streams"])
    _refused(missing_pass, directory, "lists 1 passes, data.num_passes promises 2")
    lying_seq_len = copy.deepcopy(info)
    lying_seq_len.data["seq_len"] = 128
    _refused(lying_seq_len, directory, "has 64 values of input_ids, the dataset's seq_len 128")
    os.remove(os.path.join(directory, "eval", FIRST))
    check_dataset(info, directory, (TRAIN,))
    _refused(info, directory, "eval/pass-000/stream-00000.tfrecord: missing", splits=(EVAL,))
    other_stream = copy.deepcopy(info)
    first, second = other_stream.passes[0]["streams"][:2]
    shutil.copy(os.path.join(directory, second["file"]), os.path.join(directory, first["file"]))
    first.update(size=second["size"], crc32c=second["crc32c"])
    _refused(other_stream, directory, "first record is stream 1 .* says stream 0")


def test_checksums_on_a_model_dirs_first_use_of_the_dataset(copied, tmp_path):
    directory, info = copied
    path = os.path.join(directory, FIRST)
    altered = bytearray(open(path, "rb").read())
    altered[-20] ^= 1
    open(path, "wb").write(bytes(altered))
    model_dir = str(tmp_path / "run")
    with pytest.raises(UserError, match="crc32c"):
        check_run_data(info, directory, model_dir, with_eval=False, verify_data=False)
    os.makedirs(model_dir)
    ModelDirectory(model_dir).write_dataset_identity(info.identity())
    check_run_data(info, directory, model_dir, with_eval=False, verify_data=False)
    with pytest.raises(UserError, match="crc32c"):
        check_run_data(info, directory, model_dir, with_eval=False, verify_data=True)


def test_pretrain_refuses_a_damaged_dataset_in_one_line_writing_nothing(copied, tmp_path,
                                                                        capsys):
    directory, _ = copied
    path = os.path.join(directory, FIRST)
    open(path, "ab").write(b"more")
    model_dir = tmp_path / "run"
    assert cli.main(["pretrain", "--config", "tiny", "--data", directory, "--model-dir",
                     str(model_dir), "--verify-data"]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith(f"error: {path}: ") and "\n" not in message
    assert not model_dir.exists()
