import json
import os
import shutil

import numpy as np
import pytest

from dataset_fixture import write_dataset
from pretrain.input_pipeline import InputPipeline, StreamPlan, load_dataset_info
from xlnet import UserError, load_run_config
from xlnet.model.permutation import permutation_inputs

SEGMENTS = 4


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    config = load_run_config("tiny")
    directory = str(tmp_path_factory.mktemp("data"))
    written = write_dataset(directory, config, segments_per_stream=SEGMENTS)
    return config, directory, written


def _read(config, directory, replicas, position, steps, **options):
    info = load_dataset_info(directory, config)
    plan = StreamPlan(info, directory, config.train.global_batch_size, replicas, seed=3)
    pipeline = InputPipeline(plan, config.data, seed=3, **options)
    elements = list(pipeline.worker_dataset(0, replicas, position, steps).as_numpy_iterator())
    # Round-robin replica elements -> one global batch per step: [steps, A, G, ...].
    return plan, {name: np.stack([np.concatenate([e[name] for e in elements[s:s + replicas]],
                                                 axis=1)
                                  for s in range(0, len(elements), replicas)])
                  for name in elements[0]}


@pytest.mark.parametrize("replicas", [1, 2])
def test_rows_walk_whole_streams_in_order(dataset, replicas):
    config, directory, _ = dataset
    num_streams = config.data.num_streams
    steps = 3 * 2 * SEGMENTS  # three epochs: 8 forward streams over 4 forward rows, 2 each
    plan, batches = _read(config, directory, replicas, 0, steps)
    stream, index = batches["stream"][:, 0], batches["index"][:, 0]  # [steps, G]
    local = 8 // replicas
    for row in range(8):
        reversed_row = (row % local) >= local // 2
        assert (stream[:, row] >= num_streams).all() == reversed_row
        np.testing.assert_array_equal(index[:, row], np.tile(np.arange(SEGMENTS), 6))
        # A stream is read start to finish before the row moves on.
        assert all(len(set(stream[s:s + SEGMENTS, row])) == 1 for s in range(0, steps, SEGMENTS))
    for epoch in range(3):
        block = stream[epoch * 2 * SEGMENTS:(epoch + 1) * 2 * SEGMENTS]
        forward = block[:, ~(block[0] >= num_streams)]
        assert sorted(set(forward.ravel())) == list(range(num_streams))  # each stream once
        # The reversed partner row reads the reversed copy of the same stream at the same time.
        for row in range(8):
            forward_row, is_reversed = plan.row_direction(row)
            if is_reversed:
                partner = next(r for r in range(8) if plan.row_direction(r) == (forward_row,
                                                                                 False))
                np.testing.assert_array_equal(block[:, row], block[:, partner] + num_streams)
    orders = {tuple(stream[e * 2 * SEGMENTS, :].tolist()) for e in range(3)}
    assert len(orders) > 1  # the per-epoch file order comes from the seed


def test_layout_does_not_depend_on_replica_count(dataset):
    config, directory, _ = dataset
    _, one = _read(config, directory, 1, 0, 5)
    _, two = _read(config, directory, 2, 0, 5)
    # Forward rows of the global batch: [f0 f1 f2 f3 | r0..r3] vs [f0 f1 r0 r1 | f2 f3 r2 r3].
    reorder = [0, 1, 4, 5, 2, 3, 6, 7]
    np.testing.assert_array_equal(one["stream"][:, :, reorder], two["stream"])
    np.testing.assert_array_equal(one["input_ids"][:, :, reorder], two["input_ids"])


def test_features_are_the_stored_records_with_derived_masks(dataset):
    config, directory, written = dataset
    _, batches = _read(config, directory, 1, 0, 2 * SEGMENTS + 1)
    step = 2 * SEGMENTS  # first step of epoch 1, which reads pass 1
    for row in (0, 5):
        stream, index = batches["stream"][step, 0, row], batches["index"][step, 0, row]
        input_ids, segment_ids, is_masked, perm_rank, _ = written[(1, stream)][index]
        np.testing.assert_array_equal(batches["input_ids"][step, 0, row], input_ids)
        np.testing.assert_array_equal(batches["segment_ids"][step, 0, row], segment_ids)
        expected = permutation_inputs(input_ids[None], is_masked[None], perm_rank[None],
                                      config.data.reuse_len, config.data.num_predict)
        for name, value in expected.items():
            np.testing.assert_array_equal(batches[name][step, 0, row], value.numpy()[0])


def test_a_later_position_continues_the_same_sequence(dataset):
    config, directory, _ = dataset
    _, full = _read(config, directory, 2, 0, 20)
    _, tail = _read(config, directory, 2, 11, 9)
    for name in ("input_ids", "perm_mask", "stream", "index"):
        np.testing.assert_array_equal(full[name][11:], tail[name])


def test_gradient_accumulation_groups_consecutive_micro_steps(dataset):
    config, directory, _ = dataset
    _, single = _read(config, directory, 2, 0, 6)
    _, grouped = _read(config, directory, 2, 0, 3, grad_accum_steps=2)
    np.testing.assert_array_equal(grouped["index"].reshape(6, 8), single["index"][:, 0])
    np.testing.assert_array_equal(grouped["stream"].reshape(6, 8), single["stream"][:, 0])


def test_resampled_orders_are_fresh_and_independent_of_the_layout(dataset):
    config, directory, _ = dataset
    _, stored = _read(config, directory, 1, 0, 3)
    _, one = _read(config, directory, 1, 0, 3, resample_perm=True)
    _, two = _read(config, directory, 2, 0, 3, resample_perm=True)
    reorder = [0, 1, 4, 5, 2, 3, 6, 7]
    np.testing.assert_array_equal(one["perm_mask"][:, :, reorder], two["perm_mask"])
    assert (one["perm_mask"] != stored["perm_mask"]).any()
    assert (one["perm_mask"][0] != one["perm_mask"][2]).any()  # a new order every step
    np.testing.assert_array_equal(one["targets"], stored["targets"])  # same predicted tokens


def test_refuses_bad_inputs(dataset, tmp_path):
    config, directory, _ = dataset
    with pytest.raises(UserError, match="no such dataset directory"):
        load_dataset_info(str(tmp_path / "missing"), config)
    unfinished = str(tmp_path / "unfinished")
    shutil.copytree(directory, unfinished)
    os.remove(os.path.join(unfinished, "COMPLETED"))
    with pytest.raises(UserError, match="COMPLETED"):
        load_dataset_info(unfinished, config)
    old = str(tmp_path / "schema-1")
    shutil.copytree(directory, old)
    info_path = os.path.join(old, "dataset_info.json")
    with open(info_path) as f:
        content = json.load(f)
    with open(info_path, "w") as f:
        json.dump({**content, "schema_version": 1}, f)
    with pytest.raises(UserError, match="schema_version 1 is not 2 .*prepare the data again"):
        load_dataset_info(old, config)
    other = load_run_config("tiny", ["data.seq_len=128", "data.reuse_len=64",
                                     "data.perm_size=64"])
    with pytest.raises(UserError, match="data.seq_len is 64 in the dataset but 128"):
        load_dataset_info(directory, other)
    info = load_dataset_info(directory, config)
    with pytest.raises(UserError, match="12 does not divide the dataset's 16 streams"):
        StreamPlan(info, directory, 12, 1, seed=0)
    with pytest.raises(UserError, match="bi_data needs an even number"):
        StreamPlan(info, directory, 8, 8, seed=0)
