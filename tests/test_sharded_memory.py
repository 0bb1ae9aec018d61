"""Memory in checkpoints, sharded by canonical row (pretrain/memory_shards.py): each worker
writes only its rows and reads back only the rows it will own, a run saved by 2 worker
processes resumes exactly on 2 workers, on 1 worker of 2 replicas and on 1 replica, a missing
shard is a one-line error naming it, and what a save cut short leaves is never resumed from."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from pretrain import memory_shards
from pretrain.memory_state import MemoryState
from pretrain_harness import record_run
from test_pretrain_distributed import _losses, _run_subprocess, _run_workers
from xlnet.errors import UserError
from xlnet.formats.model_dir import LEGACY_MEMORY_KEY, ModelDirectory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROW_SHAPE = [2, 3, 4]
ROW_BYTES = 2 * 3 * 4 * 4
# Tiny's bi_data layout of 8 rows on 2 workers of one replica: each owns 2 forward rows and
# their 2 reversed copies (canonical rows 4 + forward row).
TWO_WORKERS = [[0, 1, 4, 5], [2, 3, 6, 7]]


def _memory(rows=8, seed=0):
    return np.random.default_rng(seed).normal(size=[rows, *ROW_SHAPE]).astype(np.float32)


def _save(directory, step, memory, layout):
    """Writes `memory` ([G, ...] by canonical row) as the workers of `layout` would, then the
    chief's manifest. Returns each worker's bytes written."""
    written = [memory_shards.write_shards(directory, step, rows, memory[rows])
               for rows in layout]
    crcs = [memory_shards.row_crc(row) for row in memory]
    workers = [next(w for w, rows in enumerate(layout) if c in rows) for c in range(len(memory))]
    memory_shards.write_manifest(directory, step, memory_shards.build_manifest(
        directory, step, ROW_SHAPE, crcs, workers))
    return written


def _read(directory, step, rows):
    manifest = memory_shards.read_manifest(directory, step, directory.checkpoint_prefix(step))
    memory_shards.check_shards(directory, manifest, directory.checkpoint_prefix(step), 8,
                               ROW_SHAPE)
    return memory_shards.read_rows(directory, manifest, rows, directory.checkpoint_prefix(step))


def test_two_workers_write_half_each_and_any_layout_reads_only_its_rows(tmp_path):
    directory = ModelDirectory(str(tmp_path / "model"))
    memory = _memory()
    assert _save(directory, 5, memory, TWO_WORKERS) == [4 * ROW_BYTES, 4 * ROW_BYTES]
    names = sorted(os.listdir(directory.memory_dir(5)))
    assert names == ["manifest.json", "rows-000000-000002", "rows-000002-000004",
                     "rows-000004-000006", "rows-000006-000008"]
    # One worker of all rows reads them all; 4 workers of 2 rows read 2 rows each, from the
    # shards holding them and nothing else.
    rows, read, files = _read(directory, 5, list(range(8)))
    np.testing.assert_array_equal(rows, memory)
    assert (read, files) == (8 * ROW_BYTES, 4)
    for rows_of_worker in ([0, 4], [1, 5], [2, 6], [3, 7]):
        rows, read, files = _read(directory, 5, rows_of_worker)
        np.testing.assert_array_equal(rows, memory[rows_of_worker])
        assert (read, files) == (2 * ROW_BYTES, 2)
    # Saved by one worker (one shard of 8 rows), read by 2: half of the shard each, by seeking.
    assert _save(directory, 6, memory, [list(range(8))]) == [8 * ROW_BYTES]
    rows, read, files = _read(directory, 6, [3, 2, 7, 6])
    np.testing.assert_array_equal(rows, memory[[3, 2, 7, 6]])
    assert (read, files) == (4 * ROW_BYTES, 1)


def test_a_missing_short_or_damaged_shard_is_an_error_naming_it(tmp_path):
    directory = ModelDirectory(str(tmp_path / "model"))
    _save(directory, 5, _memory(), TWO_WORKERS)
    shard = os.path.join(directory.memory_dir(5), "rows-000002-000004")
    with open(shard, "rb") as f:
        data = f.read()
    os.remove(shard)
    with pytest.raises(UserError) as raised:
        _read(directory, 5, [0, 4])  # the whole checkpoint is checked, not only one's rows
    message = str(raised.value)
    assert message.startswith(f"{shard}: missing memory shard of ckpt-5 (rows 2-3, written by "
                              "worker 1); restore it, or move ckpt-5.* away")
    assert "\n" not in message
    with open(shard, "wb") as f:
        f.write(data[:-4])
    with pytest.raises(UserError, match=f"{shard}: {len(data) - 4} bytes, but the manifest "
                                        f"lists {len(data)}"):
        _read(directory, 5, [2])
    with open(shard, "wb") as f:
        f.write(data[:ROW_BYTES] + bytes(ROW_BYTES))  # row 3 zeroed
    assert _read(directory, 5, [2])[1] == ROW_BYTES  # row 2 is intact
    with pytest.raises(UserError, match=f"{shard}: row 3 does not match its crc32c"):
        _read(directory, 5, [3])
    os.remove(directory.memory_manifest_path(5))
    assert memory_shards.read_manifest(directory, 5, directory.checkpoint_prefix(5)) is None


def test_a_save_of_another_layout_cut_short_leaves_nothing_behind(tmp_path):
    """Shards of an earlier, unfinished save of the same step (another worker count) are
    removed when the manifest is written; the memory of swept checkpoints goes with them."""
    directory = ModelDirectory(str(tmp_path / "model"))
    memory = _memory()
    memory_shards.write_shards(directory, 5, TWO_WORKERS[1], memory[TWO_WORKERS[1]])
    _save(directory, 5, memory, [list(range(8))])
    assert sorted(os.listdir(directory.memory_dir(5))) == ["manifest.json",
                                                           "rows-000000-000008"]
    _save(directory, 10, memory, [list(range(8))])
    memory_shards.remove_swept(directory, 10)  # no ckpt-5.index: swept
    assert directory.memory_steps() == [10]


def test_a_checkpoint_holding_the_whole_batchs_memory_inside_still_resumes(tmp_path):
    """Checkpoints from before the shards kept every row's memory as `memory` inside."""
    memory = _memory()
    prefix = tf.train.Checkpoint(memory=tf.Variable(memory)).write(str(tmp_path / "ckpt-3"))
    assert tf.train.load_checkpoint(prefix).has_tensor(LEGACY_MEMORY_KEY)
    state = MemoryState(tf.distribute.get_strategy(), [0, 1, 4, 5, 2, 3, 6, 7], *ROW_SHAPE)
    state.restore(ModelDirectory(str(tmp_path)), prefix)
    np.testing.assert_array_equal(state.local_values(), memory[[0, 1, 4, 5, 2, 3, 6, 7]])
    with pytest.raises(UserError, match="memory/ckpt-4/manifest.json: missing \\(the memory "
                                        "manifest of ckpt-4\\)"):
        state.restore(ModelDirectory(str(tmp_path)), tf.train.Checkpoint(
            step=tf.Variable(1)).write(str(tmp_path / "ckpt-4")))


# ---- end to end: 2 worker processes save, 2 workers / 1 worker / 1 replica resume ------------

# Dropout off: its masks are drawn per replica, so 1 replica and 2 would differ by design
# (exact resume with dropout on one layout: test_pretrain_resume.py).
RUN = ["train.steps=10", "train.checkpoint_every=5", "train.warmup_steps=2", "model.dropout=0",
       "model.dropatt=0"]
RESUME_ATOL = 1e-5


def _from_step_5(source, target, keep_shards_of_10=()):
    """A copy of a finished run's model dir as if it had stopped after saving ckpt-5. The
    shards named in `keep_shards_of_10` are left as a save of ckpt-10 cut short by a dead
    worker leaves them: written, but no manifest and no ckpt-10.index."""
    shutil.copytree(source, target)
    for name in os.listdir(target):
        if name.startswith("ckpt-10."):
            os.remove(os.path.join(target, name))
    memory_10 = os.path.join(target, "memory", "ckpt-10")
    for name in os.listdir(memory_10):
        if name not in keep_shards_of_10:
            os.remove(os.path.join(memory_10, name))
    return target


def _manifest(model_dir, step):
    with open(ModelDirectory(model_dir).memory_manifest_path(step)) as f:
        return json.load(f)


def _whole_memory(model_dir, step):
    """Every row's memory saved in ckpt-`step`, by canonical row."""
    directory = ModelDirectory(model_dir)
    prefix = directory.checkpoint_prefix(step)
    manifest = memory_shards.read_manifest(directory, step, prefix)
    return memory_shards.read_rows(directory, manifest, list(range(8)), prefix)[0]


def _check_memory_at_10(model_dir, reference):
    """The memory saved at the end equals the uninterrupted run's (a memory restored wrong,
    even all zeros, shows here ~1e-2, and in the losses only ~1e-4)."""
    np.testing.assert_allclose(_whole_memory(model_dir, 10), _whole_memory(reference, 10),
                               atol=RESUME_ATOL, rtol=0)


def _bytes_by_worker(model_dir, step):
    """Memory bytes on disk per writing worker, from the files the manifest lists."""
    by_worker = {}
    for shard in _manifest(model_dir, step)["shards"]:
        size = os.path.getsize(os.path.join(model_dir, shard["file"]))
        by_worker[shard["worker"]] = by_worker.get(shard["worker"], 0) + size
    return by_worker


@pytest.fixture(scope="module")
def saved_by_two_workers(tmp_path_factory):
    """The dataset and a 10-step run of 2 worker processes saving ckpt-5 and ckpt-10."""
    from dataset_fixture import write_dataset
    from xlnet import load_run_config

    work = tmp_path_factory.mktemp("sharded")
    data = str(work / "data")
    write_dataset(data, load_run_config("tiny"), segments_per_stream=4)
    statuses, outputs = _run_workers(data, str(work / "reference"), str(work), RUN)
    assert statuses == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    losses = _losses(outputs[0])
    assert sorted(losses) == list(range(1, 11))
    return data, str(work / "reference"), losses, outputs, work


@pytest.mark.slow
def test_two_workers_write_only_their_rows(saved_by_two_workers):
    _, reference, _, outputs, _ = saved_by_two_workers
    row_bytes = 2 * 48 * 64 * 4  # tiny: N 2, M 48, D 64, float32
    for step in (5, 10):
        assert _bytes_by_worker(reference, step) == {0: 4 * row_bytes, 1: 4 * row_bytes}
        shards = _manifest(reference, step)["shards"]
        assert [(s["start"], s["stop"], s["worker"]) for s in shards] == [
            (0, 2, 0), (2, 4, 1), (4, 6, 0), (6, 8, 1)]
    for worker, output in enumerate(outputs):
        assert f"worker {worker} wrote the memory of 4 rows ({4 * row_bytes} bytes) for " \
               "ckpt-10" in output
    assert not os.path.exists(os.path.join(reference, ".worker-1"))


@pytest.mark.slow
def test_resumed_on_two_workers_each_reads_its_half_and_the_losses_continue(
        saved_by_two_workers):
    data, reference, losses, _, work = saved_by_two_workers
    model_dir = _from_step_5(reference, str(work / "two"))
    os.makedirs(work / "two-logs")
    statuses, outputs = _run_workers(data, model_dir, str(work / "two-logs"), RUN)
    assert statuses == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    resumed = _losses(outputs[0])
    assert sorted(resumed) == [6, 7, 8, 9, 10]  # resumed, not restarted
    for step, loss in resumed.items():
        assert loss == pytest.approx(losses[step], abs=RESUME_ATOL), step
    _check_memory_at_10(model_dir, reference)
    for worker, output in enumerate(outputs):  # 4 rows of 24,576 bytes, from its 2 shards
        assert f"worker {worker} read the memory of 4 rows (98304 bytes) from 2 of 4 shards " \
               f"of {model_dir}/ckpt-5" in output


@pytest.mark.slow
def test_resumed_on_one_worker_of_two_replicas_the_losses_continue(saved_by_two_workers):
    """One process (MirroredStrategy, 2 logical CPUs) reads both workers' shards; the save of
    ckpt-10 that a dead worker cut short (2 shards, no manifest, no index) is not resumed from
    and is replaced whole."""
    data, reference, losses, _, work = saved_by_two_workers
    model_dir = _from_step_5(reference, str(work / "one"),
                             keep_shards_of_10=("rows-000002-000004", "rows-000006-000008"))
    spec = work / "one-spec.json"
    spec.write_text(json.dumps({"replicas": 2, "data": data,
                                "phases": [{"model_dir": model_dir, "overrides": RUN}]}))
    out = work / "one.npz"
    output = _run_subprocess([sys.executable, "tests/pretrain_harness.py", str(spec), str(out)],
                             400)
    records = np.load(out)
    assert records["0/step"].tolist() == [6, 7, 8, 9, 10]
    np.testing.assert_allclose(records["0/loss"], [losses[s] for s in range(6, 11)],
                               atol=RESUME_ATOL, rtol=0)
    _check_memory_at_10(model_dir, reference)
    assert "worker 0 read the memory of 8 rows (196608 bytes) from 4 of 4 shards" in output
    # Saved again by one worker: one shard of all 8 rows, twice each worker's share of two.
    assert _bytes_by_worker(model_dir, 10) == {0: 8 * 2 * 48 * 64 * 4}
    assert sorted(os.listdir(os.path.join(model_dir, "memory", "ckpt-10"))) == [
        "manifest.json", "rows-000000-000008"]


@pytest.mark.slow
def test_resumed_on_one_replica_the_losses_continue(saved_by_two_workers):
    data, reference, losses, _, work = saved_by_two_workers
    model_dir = _from_step_5(reference, str(work / "single"))
    records = record_run(data, model_dir, RUN)
    assert records["step"].tolist() == [6, 7, 8, 9, 10]
    # One replica sums in another order than two (float32).
    np.testing.assert_allclose(records["loss"], [losses[s] for s in range(6, 11)],
                               atol=RESUME_ATOL, rtol=0)
    _check_memory_at_10(model_dir, reference)


@pytest.mark.slow
def test_a_missing_shard_stops_the_resume_in_one_line_naming_it(saved_by_two_workers):
    data, reference, _, _, work = saved_by_two_workers
    model_dir = _from_step_5(reference, str(work / "missing"))
    shard = os.path.join(model_dir, "memory", "ckpt-5", "rows-000002-000004")
    os.remove(shard)
    before = sorted(os.listdir(model_dir))
    process = subprocess.run(
        [sys.executable, "-m", "xlnet", "pretrain", "--config", "tiny", "--data", data,
         "--model-dir", model_dir] + [a for o in RUN for a in ("--set", o)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert process.returncode == 2, process.stderr[-3000:]
    errors = [line for line in process.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {shard}: missing memory shard of ckpt-5 (rows 2-3, written by "
                      "worker 1); restore it, or move ckpt-5.* away to resume from the "
                      "checkpoint before it"]
    assert sorted(os.listdir(model_dir)) == before  # no checkpoint written over
