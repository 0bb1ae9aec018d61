"""Memory follows each row's stream (1 and 2 replicas, across a resume); 1 replica, 2 replicas
and 2 multi-worker processes give the same losses."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from dataset_fixture import write_dataset
from xlnet.formats.model_dir import model_weights
from pretrain_harness import record_run
from trainer_process import free_ports
from xlnet import load_run_config
from xlnet.model.permutation import permutation_inputs
from xlnet.model.xlnet_lm import XLNetLM

SEGMENTS = 4
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FROZEN = ["train.learning_rate=0", "model.dropout=0", "model.dropatt=0"]
# Phase 1 stops at step 5 (mid-stream), phase 2 resumes from its checkpoint and runs to 10,
# crossing a stream boundary (step 5), an epoch and a pass (step 9).
MEMORY_PHASES = [FROZEN + ["train.steps=5"], FROZEN + ["train.steps=10"]]
EQUIVALENCE = ["model.dropout=0", "model.dropatt=0", "train.warmup_steps=2", "train.steps=8",
               "train.eval_every=8", "train.eval_segments=2"]
# Summation order differs between 1 and 2 replicas (float32): losses agree to this.
LOSS_RTOL = 2e-5


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("data"))
    written = write_dataset(directory, load_run_config("tiny"), segments_per_stream=SEGMENTS,
                            eval_segments_per_stream=SEGMENTS)
    return directory, written


def _run_subprocess(command, timeout, env=None):
    """Runs `command` in its own process group; kills the whole group on a timeout."""
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"{command[:3]} timed out after {timeout}s:\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]
    return output


@pytest.fixture(scope="module")
def two_replicas(dataset, tmp_path_factory):
    """Memory phases and the equivalence run on 2 logical CPU replicas (MirroredStrategy)."""
    work = tmp_path_factory.mktemp("two")
    phases = [{"model_dir": str(work / "memory"), "overrides": o} for o in MEMORY_PHASES]
    phases.append({"model_dir": str(work / "equivalence"), "overrides": EQUIVALENCE})
    # A run started on 1 replica (here, in-process) and resumed on 2.
    started_on_one = record_run(dataset[0], str(work / "switch"), MEMORY_PHASES[0])
    phases.append({"model_dir": str(work / "switch"), "overrides": MEMORY_PHASES[1]})
    spec = work / "spec.json"
    spec.write_text(json.dumps({"replicas": 2, "data": dataset[0], "phases": phases}))
    out = work / "records.npz"
    _run_subprocess([sys.executable, "tests/pretrain_harness.py", str(spec), str(out)], 400)
    arrays = np.load(out)
    records = [{name: arrays[f"{i}/{name}"] for name in ("memory", "stream", "index", "loss")}
               for i in range(len(phases))]
    started_on_one.pop("step")
    return (records, str(work / "memory"), (started_on_one, records[3], str(work / "switch")),
            str(work / "equivalence"))


def _concat(phases):
    return {name: np.concatenate([p[name] for p in phases]) for name in phases[0]}


def _replay(model_dir, written, records):
    """The model alone over each row's segments in order; returns memory per step [T, G...]."""
    config = load_run_config("tiny", FROZEN)
    model = XLNetLM(config.model)
    tf.train.Checkpoint(model=model_weights(model)).restore(
        tf.train.latest_checkpoint(model_dir)).expect_partial()
    num_streams = config.data.num_streams
    epoch_length = SEGMENTS * num_streams // (config.train.global_batch_size // 2)
    memory = np.zeros_like(records["memory"][0])
    replayed = []
    for t, (streams, indices) in enumerate(zip(records["stream"], records["index"])):
        forward = [r for r in range(len(streams)) if streams[r] < num_streams]
        partners = [int(np.flatnonzero(streams == streams[r] + num_streams)[0]) for r in forward]
        rows = forward + partners  # bi_data: forward rows first, their reversed copies after
        pass_index = (t // epoch_length) % config.data.num_passes
        parts = [written[(pass_index, streams[r])][indices[r]] for r in rows]
        input_ids, segment_ids, is_masked, perm_rank = (np.stack([p[i] for p in parts])
                                                        for i in range(4))
        derived = permutation_inputs(input_ids, is_masked, perm_rank, config.data.reuse_len,
                                     config.data.num_predict)
        carried = memory[rows] * (indices[rows] > 0)[:, None, None, None]
        outputs = model({"input_ids": tf.constant(input_ids, tf.int32),
                         "segment_ids": tf.constant(segment_ids, tf.int32),
                         "perm_mask": derived["perm_mask"],
                         "target_mapping": derived["target_mapping"],
                         "mems": tf.constant(carried, tf.float32)}, training=False)
        memory[rows] = outputs["new_mems"].numpy()
        replayed.append(memory.copy())
    return np.array(replayed)


def _check_memory(records, model_dir, written):
    streams, indices = records["stream"], records["index"]
    for t in range(1, len(streams)):  # each row reads whole streams in order
        continues = (streams[t] == streams[t - 1]) & (indices[t] == indices[t - 1] + 1)
        starts = (indices[t] == 0) & (indices[t - 1] == SEGMENTS - 1)
        assert np.all(continues | starts)
    assert (indices == 0).any() and (indices > 0).any()
    replayed = _replay(model_dir, written, records)
    assert np.abs(records["memory"]).max() > 0.1  # real states, not zeros
    np.testing.assert_allclose(records["memory"], replayed, atol=2e-5, rtol=1e-5)


@pytest.mark.slow
def test_memory_follows_each_stream_one_replica_and_after_resume(dataset, tmp_path):
    data_dir, written = dataset
    model_dir = str(tmp_path / "model")
    phases = [record_run(data_dir, model_dir, overrides) for overrides in MEMORY_PHASES]
    assert phases[1]["step"].tolist() == [6, 7, 8, 9, 10]  # resumed, not restarted
    _check_memory(_concat(phases), model_dir, written)


@pytest.mark.slow
def test_memory_follows_each_stream_two_replicas_and_after_resume(dataset, two_replicas):
    records, model_dir, *_ = two_replicas
    _check_memory(_concat(records[:2]), model_dir, dataset[1])


@pytest.mark.slow
def test_memory_follows_each_stream_when_resumed_on_more_replicas(dataset, two_replicas):
    """Rows keep their streams and memories when a 1-replica run resumes on 2 replicas, even
    though the global row order of the bi_data layout changes."""
    on_one, on_two, model_dir = two_replicas[2]
    reorder = [0, 1, 4, 5, 2, 3, 6, 7]  # 1-replica global rows in 2-replica order
    on_one = {name: value[:, reorder] for name, value in on_one.items() if name != "loss"}
    _check_memory(_concat([on_one, {k: v for k, v in on_two.items() if k != "loss"}]),
                  model_dir, dataset[1])


@pytest.mark.slow
def test_one_and_two_replicas_give_the_same_losses_and_evaluation(dataset, two_replicas,
                                                                  tmp_path):
    one = record_run(dataset[0], str(tmp_path / "one"), EQUIVALENCE)["loss"]
    two = two_replicas[0][2]["loss"]
    assert len(one) == len(two) == 8
    assert one[0] != one[-1]  # the weights did move
    np.testing.assert_allclose(one, two, rtol=LOSS_RTOL)
    evaluations = []
    for model_dir in (str(tmp_path / "one"), two_replicas[3]):
        with open(os.path.join(model_dir, "eval.json")) as f:
            evaluations.append(json.load(f))
    on_one, on_two = evaluations
    assert on_one["segments"] == on_two["segments"] == 2 * 8
    assert on_one["targets"] == on_two["targets"]
    for key in ("loss", "loss_no_memory", "accuracy", "accuracy_no_memory"):
        assert on_one[key] == pytest.approx(on_two[key], rel=LOSS_RTOL), key
    np.testing.assert_allclose(on_one["memory_attention_share"],
                               on_two["memory_attention_share"], rtol=LOSS_RTOL)


def _run_workers(data, model_dir, log_dir, overrides, signal_worker_at=None, count=2):
    """`count` `xlnet pretrain --strategy multi_worker` processes on loopback; returns their
    exit statuses and logs. `signal_worker_at=(worker, step)` sends that worker SIGTERM once the
    chief has logged `step`. Every process group is killed at the deadline."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(count)]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    command = [sys.executable, "-m", "xlnet", "pretrain", "--config", "tiny",
               "--data", data, "--model-dir", model_dir, "--strategy", "multi_worker",
               "--log-every", "1"]
    for override in overrides:
        command += ["--set", override]
    processes, logs = [], [os.path.join(log_dir, f"worker-{i}.log") for i in range(count)]
    try:
        for index, log in enumerate(logs):
            tf_config = {"cluster": {"worker": workers},
                         "task": {"type": "worker", "index": index}}
            with open(log, "w") as stderr:
                processes.append(subprocess.Popen(
                    command, cwd=REPO, env={**env, "TF_CONFIG": json.dumps(tf_config)},
                    start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr))
        deadline = time.monotonic() + 300
        while any(p.poll() is None for p in processes):
            if time.monotonic() > deadline:
                pytest.fail("multi-worker training did not finish in time")
            if signal_worker_at:
                worker, step = signal_worker_at
                with open(logs[0]) as f:
                    if f"step {step}/" in f.read():
                        processes[worker].send_signal(signal.SIGTERM)
                        signal_worker_at = None
            time.sleep(0.2)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    outputs = []
    for log in logs:
        with open(log) as f:
            outputs.append(f.read())
    return [p.returncode for p in processes], outputs


def _losses(output):
    return {int(step): float(loss)
            for step, loss in re.findall(r"step (\d+)/\d+ loss (\S+)", output)}


@pytest.mark.slow
def test_two_worker_processes_give_the_mirrored_losses(dataset, two_replicas, tmp_path):
    """MultiWorkerMirroredStrategy, 2 processes on loopback, one replica each: the same rows
    per replica and the same seeds as 2-replica MirroredStrategy, so the same losses."""
    statuses, outputs = _run_workers(dataset[0], str(tmp_path / "model"), str(tmp_path),
                                     EQUIVALENCE)
    assert statuses == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    losses = _losses(outputs[0])
    assert "step 1/" not in outputs[1]  # only the chief reports
    assert not os.path.exists(tmp_path / "model" / ".worker-1")  # its scratch saves are gone
    np.testing.assert_allclose([losses[s] for s in sorted(losses)], two_replicas[0][2]["loss"],
                               rtol=1e-6)


@pytest.mark.slow
def test_four_worker_processes_train_and_evaluate_as_one_process(dataset, tmp_path):
    """4 processes of one replica each (local batch 2: one forward and one reversed row) give
    the losses and the evaluation of a single process at the same global batch."""
    alone = str(tmp_path / "alone")
    losses_alone = record_run(dataset[0], alone, EQUIVALENCE)["loss"]
    statuses, outputs = _run_workers(dataset[0], str(tmp_path / "four"), str(tmp_path),
                                     EQUIVALENCE, count=4)
    assert statuses == [0] * 4, "".join(output[-2000:] for output in outputs)
    losses = _losses(outputs[0])
    np.testing.assert_allclose([losses[s] for s in sorted(losses)], losses_alone,
                               rtol=LOSS_RTOL)
    evaluations = []
    for model_dir in (alone, str(tmp_path / "four")):
        with open(os.path.join(model_dir, "eval.json")) as f:
            evaluations.append(json.load(f))
    for key in ("loss", "loss_no_memory", "accuracy"):
        assert evaluations[0][key] == pytest.approx(evaluations[1][key], rel=LOSS_RTOL), key


@pytest.mark.slow
def test_sigterm_to_one_worker_stops_both_after_the_same_step(dataset, tmp_path):
    # Steps take ~50 ms and the signal follows the log by up to ~0.2 s plus two steps (the
    # metrics are read one step late): 30 steps leave room to see the run stop early.
    statuses, outputs = _run_workers(dataset[0], str(tmp_path / "model"), str(tmp_path),
                                     EQUIVALENCE + ["train.steps=30"], signal_worker_at=(1, 2))
    assert statuses == [143, 143], outputs[0][-3000:] + outputs[1][-3000:]
    stopped = max(_losses(outputs[0]))
    assert stopped < 30
    assert f"stopped by SIGTERM at step {stopped}" in outputs[0]
    assert f"stopped by SIGTERM at step {stopped}" in outputs[1]
    assert os.path.exists(tmp_path / "model" / f"ckpt-{stopped}.index")
