"""Every stage on an object store: a real Google Cloud Storage server on loopback
(tests/object_store_server.py: gcp-storage-emulator, reached by TensorFlow's own gs:// client
through a TLS-ending proxy and by Beam's through google-cloud-storage). `xlnet prepare` reads
its corpus and tokenizer there and writes its dataset there, `xlnet pretrain` reads that dataset
and checkpoints there, survives a kill -9 and resumes from there, `xlnet evaluate` and `xlnet
export` read from there, and export writes there too.

Every client runs in a subprocess with the server's variables, so this process's TensorFlow
never holds a gs:// filesystem pointed at a server that a later test has stopped."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys

import pytest

from object_store_server import ObjectStoreServer
from trainer_process import run_trainer
from tests.text_corpus import train_tiny_tokenizer, write_corpus
from xlnet.commands.prepare import run as prepare_locally

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = ["--set", "model.n_token=300", "--set", "data.num_streams=4",
            "--set", "data.num_passes=2"]
STEPS = 6
DEADLINE_S = 300

# Run in a client process: copies between local paths and the store, listings, reads.
CLIENT = r"""
import hashlib, json, os, sys
import tensorflow as tf

def tree(url):  # {relative name: sha256} of every object below url
    found = {}
    for folder, _, names in tf.io.gfile.walk(url):
        for name in names:
            path = folder.rstrip("/") + "/" + name
            with tf.io.gfile.GFile(path, "rb") as f:
                found[path[len(url.rstrip("/")) + 1:]] = hashlib.sha256(f.read()).hexdigest()
    return found

def snapshot(url):  # tree(url), and the text of its .json files: one client start
    texts = {}
    for name in tree(url):
        if name.endswith(".json"):
            texts[name] = read(url.rstrip("/") + "/" + name)
    return {"tree": tree(url), "json": texts}

def read(url):
    with tf.io.gfile.GFile(url, "rb") as f:
        return f.read().decode("utf-8")

def upload(local, url):
    tf.io.gfile.copy(local, url, overwrite=True)

def exists(url):
    return tf.io.gfile.exists(url)

def listdir(url):
    return sorted(tf.io.gfile.listdir(url))

print(json.dumps(globals()[sys.argv[1]](*sys.argv[2:])))
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with ObjectStoreServer(tmp_path_factory.mktemp("store")) as server:
        yield server


@pytest.fixture(scope="module")
def env(store):
    return {**os.environ, **store.environ(), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _client(env, operation, *args):
    result = subprocess.run([sys.executable, "-c", CLIENT, operation, *map(str, args)],
                            env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def _xlnet(env, *args, timeout=DEADLINE_S):
    return subprocess.run([sys.executable, "-m", "xlnet", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def _local_tree(directory):
    found = {}
    for folder, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return found


def test_both_clients_read_back_exactly_what_the_other_wrote(store, env, tmp_path):
    """The server itself, through both clients: multi-chunk and empty objects, whole-file
    writes (temporary name, then rename) leave no temporary object; the proxy refuses hosts
    other than GCS's."""
    script = r"""
import hashlib, json, os, sys, urllib.request
import numpy as np
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from preprocessing import beam_files
from xlnet import atomic_file

url = sys.argv[1]
payload = np.random.default_rng(0).bytes(3 << 20)  # several of each client's upload chunks
with tf.io.gfile.GFile(url + "/by-tf.bin", "wb") as f:
    f.write(payload)
with FileSystems.create(url + "/by-beam.bin") as f:
    f.write(payload)
tf.io.gfile.makedirs(url + "/empty-dir")
atomic_file.write_file(url + "/tf-atomic.json", "{}")
beam_files.write_file(url + "/beam-atomic.json", "[]")
digest = lambda data: hashlib.sha256(data).hexdigest()
with FileSystems.open(url + "/by-tf.bin") as f:
    by_tf_read_by_beam = digest(f.read())
with tf.io.gfile.GFile(url + "/by-beam.bin", "rb") as f:
    by_beam_read_by_tf = digest(f.read())
opener = urllib.request.build_opener(urllib.request.ProxyHandler(
    {"https": os.environ["HTTPS_PROXY"]}))
try:
    opener.open("https://example.com/", timeout=10)
    refused = None
except OSError as e:
    refused = str(e)
print(json.dumps({"expected": digest(payload), "by_tf_read_by_beam": by_tf_read_by_beam,
                  "by_beam_read_by_tf": by_beam_read_by_tf, "refused": refused,
                  "names": sorted(tf.io.gfile.listdir(url)),
                  "atomic": [tf.io.gfile.GFile(url + n).read() for n in
                             ("/tf-atomic.json", "/beam-atomic.json")]}))
"""
    result = subprocess.run([sys.executable, "-c", script, store.url("clients")], env=env,
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.splitlines()[-1])
    assert found["by_tf_read_by_beam"] == found["expected"]
    assert found["by_beam_read_by_tf"] == found["expected"]
    assert found["names"] == ["beam-atomic.json", "by-beam.bin", "by-tf.bin", "empty-dir/",
                              "tf-atomic.json"]
    assert found["atomic"] == ["{}", "[]"]
    assert "403" in found["refused"]


@pytest.fixture(scope="module")
def datasets(store, env, tmp_path_factory):
    """The same corpus and tokenizer prepared locally and on the store (corpus, tokenizer
    and output all there)."""
    root = tmp_path_factory.mktemp("object-corpus")
    write_corpus(str(root / "corpus"), seed=1, files=3, documents_per_file=40)
    tokenizer = train_tiny_tokenizer(str(root / "tokenizer-text"), str(root / "tokenizer"))
    for name in sorted(os.listdir(root / "corpus")):
        _client(env, "upload", root / "corpus" / name, store.url(f"corpus/{name}"))
    _client(env, "upload", tokenizer, store.url("tok/spiece.model"))

    local = str(root / "data")
    prepare_locally(["--input", str(root / "corpus" / "*.txt"), "--tokenizer", tokenizer,
                     "--output", local, "--config", "tiny", *SETTINGS,
                     "--direct_num_workers=1"])
    result = _xlnet(env, "prepare", "--input", store.url("corpus/*.txt"),
                    "--tokenizer", store.url("tok/spiece.model"), "--output", store.url("data"),
                    "--config", "tiny", *SETTINGS, "--direct_num_workers=2",
                    "--direct_running_mode=multi_processing")
    assert result.returncode == 0, result.stderr[-3000:]
    return {"local": local, "store": store.url("data"), "corpus": str(root / "corpus"),
            "tokenizer": tokenizer}


@pytest.mark.slow
def test_prepare_writes_to_the_store_the_dataset_it_writes_locally(store, env, datasets):
    """Byte-identical stream files and stats; dataset_info.json differs only in the paths
    it records; no temporary or parked object is left."""
    found = _client(env, "snapshot", datasets["store"])
    on_store, local = found["tree"], _local_tree(datasets["local"])
    assert sorted(on_store) == sorted(local)
    assert "COMPLETED" in on_store and "pass-001/stream-00007.tfrecord" in on_store
    for name in local:
        if name not in ("dataset_info.json", "stats.json"):
            assert on_store[name] == local[name], name

    def described(text, corpus, tokenizer):
        return json.loads(text.replace(corpus, "CORPUS").replace(tokenizer, "TOKENIZER"))

    for name in ("dataset_info.json", "stats.json"):
        with open(os.path.join(datasets["local"], name)) as f:
            here = described(f.read(), datasets["corpus"], datasets["tokenizer"])
        there = described(found["json"][name], store.url("corpus"),
                          store.url("tok/spiece.model"))
        assert there == here, name


def _pretrain(env, data, model_dir, kill_at=None):
    """Runs `xlnet pretrain` a few steps; kill -9 to its process group once it logs step
    `kill_at`. Returns (exit status, {step: loss}, log)."""
    command = [sys.executable, "-m", "xlnet", "pretrain", "--config", "tiny", "--data", data,
               "--model-dir", model_dir, "--steps", str(STEPS), "--log-every", "1",
               "--checkpoint-every", "3", "--set", "model.n_token=300"]
    return run_trainer(command, stop_at=kill_at, sig=signal.SIGKILL, env=env,
                       deadline_s=DEADLINE_S)


@pytest.fixture(scope="module")
def trained(store, env, datasets, tmp_path_factory):
    """A reference run (dataset on the store, model dir local) and a run whose model dir is
    on the store, killed with SIGKILL after its first checkpoint and run again."""
    reference_dir = str(tmp_path_factory.mktemp("reference-model"))
    status, reference, log = _pretrain(env, datasets["store"], reference_dir)
    assert status == 0 and sorted(reference) == list(range(1, STEPS + 1)), log[-3000:]
    model_dir = store.url("model")
    killed = _pretrain(env, datasets["store"], model_dir, kill_at=4)
    left = _client(env, "listdir", model_dir)
    resumed = _pretrain(env, datasets["store"], model_dir)
    return {"reference": reference, "reference_dir": reference_dir, "model_dir": model_dir,
            "killed": killed, "left_after_kill": left, "resumed": resumed,
            "after": _client(env, "listdir", model_dir)}


@pytest.mark.slow
def test_pretrain_on_the_store_resumes_after_kill_9_with_the_uninterrupted_losses(trained):
    status, first, log = trained["killed"]
    assert status == -signal.SIGKILL, log[-3000:]
    assert f"saved checkpoint {trained['model_dir']}/ckpt-3" in log
    assert sorted(first) == [1, 2, 3, 4]
    # The killed run left its lock (a dead pid of this host) and its checkpoint on the store.
    assert {"LOCK", "ckpt-3.index", "checkpoint", "run_config.yaml"} <= set(
        trained["left_after_kill"])
    status, second, log = trained["resumed"]
    assert status == 0, log[-3000:]
    assert "taking over the lock of pid" in log
    assert f"resumed from {trained['model_dir']}/ckpt-3 at step 3" in log
    assert sorted(second) == [4, 5, 6]
    for losses in (first, second):
        for step, loss in losses.items():
            assert loss == pytest.approx(trained["reference"][step], abs=1e-5), step
    assert "LOCK" not in trained["after"] and "ckpt-6.index" in trained["after"]
    assert not [name for name in trained["after"] if ".tmp" in name]


@pytest.mark.slow
def test_evaluate_reads_the_store_and_writes_eval_json_there(store, env, datasets, trained):
    """The store's resumed model scores as the uninterrupted local one does."""
    logs = []
    for model_dir in (trained["model_dir"], trained["reference_dir"]):
        result = _xlnet(env, "evaluate", "--data", datasets["store"], "--model-dir",
                        model_dir, "--split", "train", "--max-segments", "16")
        assert result.returncode == 0, result.stderr[-3000:]
        logs.append(result.stderr)
    assert f"wrote {trained['model_dir']}/eval.json" in logs[0]
    report = json.loads(_client(env, "read", f"{trained['model_dir']}/eval.json"))
    with open(os.path.join(trained["reference_dir"], "eval.json")) as f:
        reference = json.load(f)
    numbers, expected = _numbers(report), _numbers(reference)
    assert sorted(numbers) == sorted(expected) and len(numbers) >= 6
    for key, value in expected.items():
        assert numbers[key] == pytest.approx(value, abs=1e-5), key


def _numbers(tree, prefix=""):
    """{key path: number} of a JSON document's numeric leaves."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items()
                for k, v in _numbers(value, f"{prefix}/{key}").items()}
    if isinstance(tree, list):
        return {k: v for index, value in enumerate(tree)
                for k, v in _numbers(value, f"{prefix}/{index}").items()}
    return {prefix: tree} if isinstance(tree, (int, float)) and not isinstance(tree, bool) else {}


@pytest.mark.slow
def test_export_reads_the_store_and_writes_there_or_locally(store, env, datasets, trained,
                                                            tmp_path):
    """Both outputs hold the same bytes; on the store the describing files are uploaded
    after the weights; an output on the store that is not empty is refused; a new run starts
    from the export on the store."""
    for fmt in ("hf", "original-tf"):
        url, local = store.url(f"export-{fmt}"), str(tmp_path / fmt)
        for output in (url, local):
            result = _xlnet(env, "export", "--model-dir", trained["model_dir"], "--format",
                            fmt, "--output", output)
            assert result.returncode == 0, result.stderr[-3000:]
        on_store = _client(env, "tree", url)
        assert on_store == _local_tree(local) and "spiece.model" in on_store
    assert not os.path.exists(os.path.join(REPO, "gs:"))  # nothing written to a local "gs:"

    uploads = [re.search(r"name=export-original-tf%2F([^& ]+)", line).group(1)
               for line in open(os.path.join(store.directory, "requests.log"))
               if "POST /upload/" in line and "name=export-original-tf%2F" in line]
    assert uploads.index("checkpoint") > uploads.index("xlnet_model.ckpt.index")
    assert uploads.index("xlnet_config.json") > uploads.index("xlnet_model.ckpt.index")

    result = _xlnet(env, "export", "--model-dir", trained["model_dir"], "--format", "hf",
                    "--output", store.url("export-hf"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: --output {store.url('export-hf')}: exists and is not empty; choose a new "
        "directory")

    # The original-tf export on the store starts a new run there (--init-checkpoint).
    prefix = store.url("export-original-tf/xlnet_model.ckpt")
    result = _xlnet(env, "pretrain", "--config", "tiny", "--data", datasets["store"],
                    "--model-dir", store.url("from-export"), "--init-checkpoint",
                    store.url("export-original-tf"), "--steps", "1", "--set",
                    "model.n_token=300")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"variables from {prefix}; the optimizer starts fresh" in result.stderr
    record = json.loads(_client(env, "read", store.url("from-export/init_checkpoint.json")))
    assert record["prefix"] == prefix


@pytest.mark.slow
def test_a_run_holding_the_lock_on_the_store_refuses_a_second_one(store, env, datasets):
    """Another process holds MODEL_DIR/LOCK on the store: `xlnet pretrain` is refused in one
    line naming it, writing nothing; the lock goes when its holder releases it."""
    model_dir = store.url("locked-model")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pretrain.run_lock import RunLock; "
         "lock = RunLock(sys.argv[1]).acquire(); print('held', flush=True); "
         "sys.stdin.read(); lock.release()", model_dir],
        cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = _xlnet(env, "pretrain", "--config", "tiny", "--data", datasets["store"],
                        "--model-dir", model_dir, "--steps", "2", "--set", "model.n_token=300")
        assert result.returncode == 2
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: {model_dir}: in use by another xlnet pretrain "
                               f"(pid {holder.pid} on ")
        assert _client(env, "listdir", model_dir) == ["LOCK"]
    finally:
        holder.stdin.close()
        holder.wait(60)
    assert holder.returncode == 0
    assert not _client(env, "exists", f"{model_dir}/LOCK")
