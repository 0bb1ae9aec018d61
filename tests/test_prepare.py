"""The Beam job end to end on tiny real inputs (a real SentencePiece model, real Beam)."""

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time

import google_crc32c
import numpy as np
import pytest

from document_streams import build_stream, tokenize_document
from preprocessing.corpus_reader import match_input_files, plan_ranges, read_documents
from preprocessing.stream_builder import (StreamAssigner, block_tokens_for, document_blocks,
                                          held_out)
from tests.text_corpus import train_tiny_tokenizer, write_corpus
from xlnet.commands import main as cli
from xlnet.commands.prepare import run
from xlnet.config.run_config import load_run_config
from xlnet.errors import UserError
from xlnet.schema import COMPLETED_FILE, EVAL, SEP_ID, TRAIN, DatasetInfo
from xlnet.tokenizer import Tokenizer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = ["--set", "model.n_token=300", "--set", "data.num_streams=4",
            "--set", "data.num_passes=2"]


def _write_bad_lines(directory):
    with open(os.path.join(directory, "zz-bad.txt"), "wb") as f:
        f.write(b"ka lo mi ne.\nbroken \xff\xfe bytes.\n" + b"x" * (2 << 20)
                + b"\nbinary \x00 data.\nru sa to.\n")


UNICODE_BLANK_DOCUMENTS = 4


def _write_unicode_blank_documents(directory):
    """Documents separated by lines the original counts as blank (`not line.strip()`)."""
    with open(os.path.join(directory, "zz-unicode-blank.txt"), "w", encoding="utf-8") as f:
        f.write("ka lo mi.\nne ru.\n\xa0\nsa to.\n\u3000 \nvi be da.\n\x1c\nfe gu.\n")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepare")
    corpus = root / "corpus"
    write_corpus(str(corpus), seed=1, files=3, documents_per_file=40)
    _write_bad_lines(str(corpus))
    _write_unicode_blank_documents(str(corpus))
    tokenizer = train_tiny_tokenizer(str(root / "tokenizer-text"), str(root / "tokenizer"))
    return {"root": root, "input": str(corpus / "*.txt"), "tokenizer": tokenizer}


def _argv(workspace, output, *extra):
    return ["--input", workspace["input"], "--tokenizer", workspace["tokenizer"],
            "--output", str(output), "--config", "tiny", *SETTINGS, *extra]


@pytest.fixture(scope="module")
def prepared(workspace):
    output = workspace["root"] / "one-worker"
    stats = run(_argv(workspace, output, "--direct_num_workers=1"))
    return output, stats


def _files(directory):
    found = {}
    for folder, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, directory)] = f.read()
    return found


def _records(path):
    import tensorflow as tf

    examples = []
    for record in tf.data.TFRecordDataset(path):
        example = tf.train.Example.FromString(record.numpy())
        examples.append({k: np.array(v.int64_list.value)
                         for k, v in example.features.feature.items()})
    return examples


@pytest.mark.slow
def test_two_worker_processes_write_identical_bytes(workspace, prepared):
    output, _ = prepared
    other = workspace["root"] / "two-workers"
    run(_argv(workspace, other, "--direct_num_workers=2",
              "--direct_running_mode=multi_processing"))
    first, second = _files(output), _files(other)
    assert sorted(first) == sorted(second)
    assert COMPLETED_FILE in first and "pass-001/stream-00007.tfrecord" in first
    assert all(first[name] == second[name] for name in first)


def test_another_runner_writes_identical_bytes(workspace, prepared):
    """Beam's older in-process DirectRunner shares no execution code with the FnApiRunner:
    the job relies on Beam's model only (what Dataflow, Flink and Spark also provide)."""
    output, _ = prepared
    other = workspace["root"] / "bundle-based-direct-runner"
    run(_argv(workspace, other, "--runner=BundleBasedDirectRunner"))
    first, second = _files(output), _files(other)
    assert sorted(first) == sorted(second)
    assert all(first[name] == second[name] for name in first)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(argv, log_path):
    """A process in its own session (so killpg reaches its children), output to a log."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    with open(log_path, "wb") as log:
        return subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
def dask_cluster(tmp_path):
    """A real dask.distributed scheduler and two single-threaded worker processes on loopback;
    yields the scheduler's address."""
    from distributed import Client

    address = f"tcp://127.0.0.1:{_free_port()}"
    processes = [
        _start([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
               tmp_path / "scheduler.log"),
        _start([sys.executable, "-m", "dask", "worker", address, "--nworkers", "2",
                "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"],
               tmp_path / "workers.log")]
    try:
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.slow
def test_dask_cluster_writes_identical_bytes(workspace, prepared, dask_cluster, tmp_path):
    """Beam's DaskRunner by its short name on a real cluster; it reports no metrics, so the
    summary comes from stats.json."""
    output, stats = prepared
    other = tmp_path / "dask"
    job = subprocess.run(
        [sys.executable, "-m", "xlnet", "prepare", *_argv(workspace, other),
         "--runner=DaskRunner", f"--dask_client_address={dask_cluster}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    assert job.returncode == 0, job.stderr[-3000:]
    assert "counters: not reported" in job.stderr
    assert f"{stats['documents']} documents, {stats['tokens_in']} tokens" in job.stderr
    first, second = _files(output), _files(other)
    assert sorted(first) == sorted(second)
    assert all(first[name] == second[name] for name in first)


def test_unknown_runner_is_a_user_error_naming_the_known_ones(workspace, tmp_path, capsys):
    message = _cli_error(_argv(workspace, tmp_path / "out", "--runner=FastRunner"), capsys)
    assert "--runner=FastRunner is not a Beam runner" in message
    assert "DaskRunner" in message and "FlinkRunner" in message


def test_runner_without_its_extra_names_the_extra():
    """dask.distributed made unimportable in a fresh interpreter, as where it is not installed."""
    job = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['dask.distributed'] = None; "
         "from xlnet.commands.main import main; "
         "sys.exit(main(['prepare', '--input', 'x', '--tokenizer', 'y', '--output', 'z', "
         "'--config', 'tiny', '--runner=dask']))"],
        cwd=REPO_ROOT, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    assert job.returncode == 2
    assert job.stderr.strip().splitlines()[-1] == (
        "error: --runner=dask needs dask.distributed: pip install 'xlnet-pipeline[dask]'")


def _expected_streams(workspace, data, split=TRAIN):
    """Each stream's tokens, from the documents of each range dealt in blocks (§2); with an
    eval split, from the documents `held_out` gives that split."""
    tokenizer = Tokenizer.load(workspace["tokenizer"], uncased=data.uncased)
    files = match_input_files(workspace["input"])
    block_tokens = block_tokens_for(sum(size for _, size in files), data.num_streams,
                                    data.seq_len)
    num_streams = data.num_streams if split == TRAIN else data.eval_streams
    blocks = []
    for pieces in plan_ranges(files):
        read = [d for piece in pieces for d in read_documents(piece)]
        if data.eval_fraction:
            chosen = held_out([d.key for d in read], data.seed, data.eval_fraction)
            read = [d for d, c in zip(read, chosen) if c == (split == EVAL)]
        documents = [tokenize_document(tokenizer, d, data.use_eod) for d in read]
        documents = [d for d in documents if d is not None]
        if not documents:
            continue
        numbers = document_blocks(np.array([d.ids.size for d in documents]), block_tokens)
        blocks += [[d for d, n in zip(documents, numbers) if n == number]
                   for number in range(numbers.max() + 1)]
    streams = StreamAssigner(num_streams).assign(
        [sum(d.ids.size for d in block) for block in blocks])
    return {s: build_stream([d for block, b_stream in zip(blocks, streams) if b_stream == s
                             for d in block])[0]
            for s in range(num_streams)}


def test_records_rebuild_every_stream_and_follow_the_layout(workspace, prepared):
    output, stats = prepared
    run_config = load_run_config("tiny", SETTINGS[1::2])
    data = run_config.data
    info = DatasetInfo.read(str(output))
    info.check_matches(run_config)
    assert info.tokenizer["vocab_size"] == 300 and len(info.passes) == 2
    assert info.eval_passes == [] and "eval" not in stats
    _check_split(workspace, output, data, info.passes, stats, TRAIN)
    assert stats["skipped_lines"] == {"non_utf8": 1, "over_1MiB": 1, "nul": 1}
    bad_file = os.path.join(os.path.dirname(workspace["input"]), "zz-bad.txt")
    assert stats["skipped_lines_by_file"] == {
        bad_file: {"non_utf8": 1, "over_1MiB": 1, "nul": 1}}
    # 3 files of 40, the bad lines' one, and those split by Unicode or control whitespace
    assert stats["documents"] == 3 * 40 + 1 + UNICODE_BLANK_DOCUMENTS
    lengths = _document_lengths(workspace, data)
    assert stats["document_tokens_log2"] == {
        str(k): n for k, n in enumerate(np.bincount(np.log2(lengths).astype(int)).tolist()) if n}
    assert stats["passes"][0]["masked_fraction"] == data.num_predict / data.seq_len
    assert 0 < stats["passes"][0]["label_true_b_fraction"] < 1


EVAL_SETTINGS = ["--set", "data.eval_fraction=0.25", "--set", "data.eval_num_streams=2"]


def test_an_eval_split_holds_out_documents_in_streams_of_its_own(workspace, prepared):
    eval_settings = EVAL_SETTINGS
    output = workspace["root"] / "with-eval"
    stats = run(_argv(workspace, output, *eval_settings, "--direct_num_workers=1"))
    data = load_run_config("tiny", SETTINGS[1::2] + eval_settings[1::2]).data
    info = DatasetInfo.read(str(output))
    assert len(info.eval_passes) == 1 and info.eval_num_examples > 0
    assert all(e["file"].startswith("eval/pass-000/") for e in info.eval_passes[0]["streams"])
    _check_split(workspace, output, data, info.passes, stats, TRAIN)
    _check_split(workspace, output, data, info.eval_passes, stats["eval"], EVAL)
    # Every document went to exactly one split, and about a quarter to the eval split.
    _, without_eval = prepared
    assert stats["documents"] + stats["eval"]["documents"] == without_eval["documents"]
    assert stats["tokens_in"] + stats["eval"]["tokens_in"] == without_eval["tokens_in"]
    assert 0.1 < stats["eval"]["documents"] / without_eval["documents"] < 0.4


@pytest.mark.slow
def test_the_eval_split_is_the_same_bytes_with_two_worker_processes(workspace):
    one, two = workspace["root"] / "eval-one-worker", workspace["root"] / "eval-two-workers"
    run(_argv(workspace, one, *EVAL_SETTINGS, "--direct_num_workers=1"))
    run(_argv(workspace, two, *EVAL_SETTINGS, "--direct_num_workers=2",
              "--direct_running_mode=multi_processing"))
    first, second = _files(one), _files(two)
    assert sorted(first) == sorted(second) and "eval/pass-000/stream-00003.tfrecord" in first
    assert all(first[name] == second[name] for name in first)


def test_a_separate_eval_corpus_leaves_the_train_streams_as_they_were(workspace, prepared):
    heldout = workspace["root"] / "heldout"
    write_corpus(str(heldout), seed=9, files=1, documents_per_file=40)
    output = workspace["root"] / "eval-input"
    stats = run(_argv(workspace, output, "--eval-input", str(heldout / "*.txt"),
                      "--set", "data.eval_num_streams=2", "--direct_num_workers=1"))
    info = DatasetInfo.read(str(output))
    assert info.eval_source_files == [str(heldout / "part-00.txt")]
    assert stats["eval"]["documents"] == 40 and info.eval_num_examples > 0
    without, files = prepared[0], _files(output)
    train_files = {name: data for name, data in _files(without).items()
                   if name.startswith("pass-")}
    assert all(files[name] == data for name, data in train_files.items())
    assert any(name.startswith("eval/pass-000/") for name in files)


def test_a_corpus_of_unknown_text_is_refused_naming_the_worst_file(workspace, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    write_corpus(str(corpus), seed=4, files=1, documents_per_file=30)
    with open(corpus / "zz-other-script.txt", "w", encoding="utf-8") as f:
        # Space-separated: each character is a word of its own, and an <unk> token.
        line = " ".join("\u4e2d\u6587\u672c\u884c\u5b57" * 4)
        f.write("\n\n".join("\n".join([line] * 5) for _ in range(60)) + "\n")
    argv = ["--input", str(corpus / "*.txt"), "--tokenizer", workspace["tokenizer"], "--output",
            str(tmp_path / "out"), "--config", "tiny", *SETTINGS, "--direct_num_workers=1"]
    message = _cli_error(argv, capsys)
    assert "<unk>" in message and "zz-other-script.txt" in message
    assert "data.max_unk_fraction=0.05" in message
    assert not (tmp_path / "out" / COMPLETED_FILE).exists()
    assert not (tmp_path / "out" / "pass-000").exists()  # refused before any stream file
    stats = run(argv[:-1] + ["--set", "data.max_unk_fraction=1", "--direct_num_workers=1"])
    assert stats["documents"] == 90


def test_eval_input_and_eval_fraction_together_are_one_line(workspace, tmp_path, capsys):
    message = _cli_error(_argv(workspace, tmp_path / "out", "--eval-input", workspace["input"],
                               "--set", "data.eval_fraction=0.1"), capsys)
    assert "--eval-input" in message and not (tmp_path / "out").exists()


def _document_lengths(workspace, data):
    tokenizer = Tokenizer.load(workspace["tokenizer"], uncased=data.uncased)
    documents = [tokenize_document(tokenizer, d, data.use_eod)
                 for pieces in plan_ranges(match_input_files(workspace["input"]))
                 for piece in pieces for d in read_documents(piece)]
    return np.array([d.ids.size for d in documents if d is not None])


def _check_split(workspace, output, data, passes, stats, split):
    """Every stream file of a split rebuilds its stream and follows the record layout."""
    expected = _expected_streams(workspace, data, split)
    num_streams = data.num_streams if split == TRAIN else data.eval_streams
    seq_len, reuse_len = data.seq_len, data.reuse_len
    assert sum(s.size for s in expected.values()) == stats["tokens_in"]
    for pass_index, pass_info in enumerate(passes):
        dropped = 0
        assert [e["stream"] for e in pass_info["streams"]] == list(range(2 * num_streams))
        for entry in pass_info["streams"]:
            records = _records(os.path.join(output, entry["file"]))
            assert len(records) == entry["examples"] > 0
            content = open(os.path.join(output, entry["file"]), "rb").read()
            assert entry["size"] == len(content)
            assert entry["crc32c"] == f"{google_crc32c.value(content):08x}"
            stream, reverse = entry["stream"], entry["reverse"]
            forward = expected[stream % num_streams]
            tokens = forward[::-1] if reverse else forward
            for index, record in enumerate(records):
                assert record["index"][0] == index and record["stream"][0] == stream
                assert record["reverse"][0] == reverse == (stream >= num_streams)
                assert record["is_masked"].sum() == data.num_predict
                assert record["is_masked"][:reuse_len].sum() == data.predict_goals[0]
                assert sorted(record["perm_rank"]) == list(range(seq_len))
                assert record["perm_rank"][:reuse_len].max() < reuse_len
                assert record["segment_ids"][-1] == 2 and record["label"][0] in (0, 1)
            rebuilt = [r["input_ids"][:reuse_len] for r in records[:-1]]
            last = records[-1]["input_ids"]
            a_end = reuse_len + np.flatnonzero(last[reuse_len:] == SEP_ID)[0]
            rebuilt = np.concatenate(rebuilt + [last[:a_end]])
            assert rebuilt.tolist() == tokens[:rebuilt.size].tolist()
            assert tokens.size - rebuilt.size < seq_len  # less than one segment dropped
            if not reverse:
                dropped += tokens.size - rebuilt.size
        assert stats["passes"][pass_index]["tokens_dropped_at_stream_ends"] == dropped


def test_passes_differ_and_seeds_do_not_collide(prepared):
    output, _ = prepared
    a = _records(os.path.join(output, "pass-000/stream-00000.tfrecord"))
    b = _records(os.path.join(output, "pass-001/stream-00000.tfrecord"))
    assert [r["input_ids"][:32].tolist() for r in a] == [r["input_ids"][:32].tolist() for r in b]
    assert any((x["is_masked"] != y["is_masked"]).any() for x, y in zip(a, b))
    assert any((x["perm_rank"] != y["perm_rank"]).any() for x, y in zip(a, b))


def _cli_error(argv, capsys):
    assert cli.main(["prepare", *argv]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: ") and "\n" not in message
    return message


def test_bad_inputs_are_one_line_user_errors(workspace, prepared, tmp_path, capsys):
    output, _ = prepared
    argv = _argv(workspace, tmp_path / "out")
    assert "no files match" in _cli_error(
        ["--input", str(tmp_path / "nothing*.txt")] + argv[2:], capsys)
    (tmp_path / "empty").mkdir()
    for name in ("a.txt", "b.txt"):
        (tmp_path / "empty" / name).write_bytes(b"")
    assert "are empty" in _cli_error(
        ["--input", str(tmp_path / "empty" / "*.txt")] + argv[2:], capsys)
    (tmp_path / "bad.model").write_bytes(b"\x00\x01 not a model")
    assert "not a SentencePiece model" in _cli_error(
        argv[:2] + ["--tokenizer", str(tmp_path / "bad.model")] + argv[4:], capsys)
    assert "model.n_token is 2000" in _cli_error(
        _argv(workspace, tmp_path / "out")[:8], capsys)
    assert "holds a different dataset (data.seed" in _cli_error(
        _argv(workspace, output, "--set", "data.seed=5"), capsys)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    assert "not an xlnet dataset" in _cli_error(
        _argv(workspace, tmp_path / "foreign"), capsys)


def test_options_neither_prepare_nor_beam_knows_are_one_line(workspace, tmp_path, capsys):
    """Beam alone would discard them and run with the defaults (seed 0, 8 streams)."""
    message = _cli_error(_argv(workspace, tmp_path / "out", "--seed", "3", "--num-streams=4"),
                         capsys)
    assert message == ("error: --seed: neither an option of `xlnet prepare` nor one Beam "
                       "knows; set it with --set data.seed=VALUE")
    assert "--num-streams: " in _cli_error(
        _argv(workspace, tmp_path / "out", "--num-streams=4"), capsys)
    assert "--direct_num_worker: " in _cli_error(
        _argv(workspace, tmp_path / "out", "--direct_num_worker=2"), capsys)
    assert _cli_error(_argv(workspace, tmp_path / "out", "stray"), capsys).startswith(
        "error: stray: neither")
    assert not (tmp_path / "out").exists()


def test_corpus_too_small_for_the_streams(workspace, tmp_path):
    with pytest.raises(UserError, match="too few for 4000 streams"):
        run(_argv(workspace, tmp_path / "out", "--set", "data.num_streams=4000",
                  "--set", "train.global_batch_size=8", "--direct_num_workers=1"))
    assert not (tmp_path / "out" / COMPLETED_FILE).exists()


@pytest.mark.slow
def test_an_interrupted_job_leaves_no_completed_and_can_run_again(workspace, tmp_path):
    corpus = tmp_path / "big"
    write_corpus(str(corpus), seed=7, files=3, documents_per_file=150)
    output = tmp_path / "out"
    argv = ["--input", str(corpus / "*.txt"), "--tokenizer", workspace["tokenizer"],
            "--output", str(output), "--config", "tiny", *SETTINGS,
            "--set", "data.num_streams=16", "--direct_num_workers=1"]
    # A killed job cannot remove Beam's temporary directory: keep it inside the test's.
    (tmp_path / "tmp").mkdir()
    process = subprocess.Popen([sys.executable, "-m", "xlnet", "prepare", *argv],
                               start_new_session=True, stderr=subprocess.DEVNULL,
                               env={**os.environ, "TMPDIR": str(tmp_path / "tmp")})
    try:
        deadline = time.monotonic() + 120
        while not (output / "pass-000").exists() and time.monotonic() < deadline:
            assert process.poll() is None, "the job ended before it could be interrupted"
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert (output / "pass-000").exists()
    assert not (output / COMPLETED_FILE).exists()
    stats = run(argv)  # the same dataset may be written again over the remains
    assert (output / COMPLETED_FILE).exists()
    leftovers = [p.name for p in (output / "pass-000").iterdir() if ".tmp-" in p.name]
    assert leftovers == [] and stats["passes"][0]["examples"] > 0


@pytest.mark.slow
def test_beam_worker_logs_show_only_with_verbose(workspace, tmp_path):
    """The workers' INFO chatter (control channels, harness start and exit) and the harmless
    start-up warnings (apitools, semi_persistent_directory) are off unless `xlnet --verbose`;
    the job's own progress lines show either way."""
    stderr = {}
    for verbose in (False, True):
        output = tmp_path / f"verbose-{verbose}"
        result = subprocess.run(
            [sys.executable, "-m", "xlnet", *(["--verbose"] if verbose else []), "prepare",
             *_argv(workspace, output, "--direct_num_workers=2")],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        assert result.returncode == 0, result.stderr[-3000:]
        stderr[verbose] = result.stderr
        assert "preprocessing.prepare: prepared" in result.stderr
    # Without apitools, Beam's BigQuery import warns at start, which gives a worker's root
    # logger a stderr handler: its INFO lines then reach stderr directly (else the runner's
    # log, at INFO, as a relayed record).
    direct = importlib.util.find_spec("apitools") is None
    chatter = ["semi_persistent_directory"]
    chatter += ["INFO:apache_beam.runners.worker", "apitools not found"] if direct else []
    for line in chatter:
        assert line not in stderr[False], stderr[False][-3000:]
        assert line in stderr[True], line
