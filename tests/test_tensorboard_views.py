"""What a run shows in TensorBoard, read back through TensorBoard's own HTTP routes: train and
eval curves on the same charts, the HParams session, the dataset's histograms, and the eval
text samples decoded with the dataset's tokenizer."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from tests.text_corpus import train_tiny_tokenizer, write_corpus
from xlnet.commands.main import main

pytestmark = pytest.mark.slow

SETTINGS = ["model.n_token=300", "data.num_streams=4", "data.num_passes=1",
            "data.eval_fraction=0.3", "data.eval_num_streams=2", "train.global_batch_size=4"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("views")
    write_corpus(str(root / "corpus"), seed=2, files=2, documents_per_file=60)
    tokenizer = train_tiny_tokenizer(str(root / "tokenizer-text"), str(root / "tokenizer"))
    sets = [f"--set={s}" for s in SETTINGS]
    assert main(["prepare", "--input", str(root / "corpus" / "*.txt"), "--tokenizer",
                 tokenizer, "--output", str(root / "data"), "--config", "tiny", *sets,
                 "--direct_num_workers=1"]) == 0
    assert main(["pretrain", "--config", "tiny", "--data", str(root / "data"), "--model-dir",
                 str(root / "model"), "--steps", "6", "--log-every", "2", *sets,
                 "--set=train.eval_every=3", "--set=train.eval_segments=2"]) == 0
    return str(root / "model")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tensorboard(model_dir):
    """TensorBoard on the model directory's parent, as for comparing runs: the run names are
    `model/train`, `model/eval`, ..."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "tensorboard"), "--logdir",
         os.path.dirname(model_dir),
         "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if {"model/train", "model/eval", "model/eval_no_memory"} <= set(
                        _get(base, "/data/runs")):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def _get(base, route, body=None):
    request = urllib.request.Request(
        base + route, data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.loads(response.read())


def test_train_and_eval_runs_share_the_lm_charts(tensorboard):
    tags = _get(tensorboard, "/data/plugin/scalars/tags")
    for run in ("model/train", "model/eval", "model/eval_no_memory"):
        assert {"lm/loss", "lm/perplexity", "lm/accuracy"} <= set(tags[run]), run
    assert "eval/memory_gain" in tags["model/eval"]
    assert "train/learning_rate" in tags["model/train"]
    for run in ("model/eval", "model/eval_no_memory"):
        points = _get(tensorboard, f"/data/plugin/scalars/scalars?run={run}&tag=lm/loss")
        assert [step for _, step, _ in points] == [3, 6]


def test_hparams_compare_the_config_against_the_eval_metrics(tensorboard, model_dir):
    experiment = _get(tensorboard, "/data/plugin/hparams/experiment", {"experimentName": ""})
    names = {info["name"] for info in experiment["hparamInfos"]}
    assert {"model.n_layer", "data.seq_len", "train.learning_rate"} <= names
    metrics = {(m["name"]["group"], m["name"]["tag"]) for m in experiment["metricInfos"]}
    assert {("eval", "lm/loss"), ("eval_no_memory", "lm/loss"),
            ("eval", "eval/memory_gain")} <= metrics
    groups = _get(tensorboard, "/data/plugin/hparams/session_groups", {
        "experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS",
                                                  "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [], "startIndex": 0, "sliceSize": 10})
    session = groups["sessionGroups"][0]
    assert session["hparams"]["train.global_batch_size"] == 4
    values = {(m["name"]["group"], m["name"]["tag"]): m["value"]
              for m in session["metricValues"]}
    with open(os.path.join(model_dir, "eval.json")) as f:
        assert values["eval", "lm/loss"] == pytest.approx(json.load(f)["loss"], rel=1e-5)


def test_the_dataset_shows_as_histograms_and_scalars(tensorboard, model_dir):
    histograms = _get(tensorboard, "/data/plugin/histograms/tags")["model/train"]
    assert {"data/span_lengths", "data/document_tokens_log2"} <= set(histograms)
    [(_, step, buckets)] = _get(
        tensorboard, "/data/plugin/histograms/histograms?run=model/train&tag=data/span_lengths")
    with open(os.path.join(os.path.dirname(model_dir), "data", "stats.json")) as f:
        stats = json.load(f)
    spans = stats["passes"][0]["span_lengths"]
    assert step == 0 and sum(count for _, _, count in buckets) == sum(spans.values())
    tags = _get(tensorboard, "/data/plugin/scalars/tags")["model/train"]
    assert {"data/masked_fraction", "data/label_true_b_fraction"} <= set(tags)


def test_eval_samples_show_decoded_text_with_the_top_guesses(tensorboard):
    tags = _get(tensorboard, "/data/plugin/text/tags")
    assert "eval/samples" in tags["model/eval"]
    query = urllib.parse.urlencode({"run": "model/eval", "tag": "eval/samples"})
    samples = _get(tensorboard, f"/data/plugin/text/text?{query}")
    assert [s["step"] for s in samples] == [3, 6]
    text = samples[-1]["text"]
    assert "row 0" in text and "guesses" in text and "\u2581" in text  # pieces, not ids
