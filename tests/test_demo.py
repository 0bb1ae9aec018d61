"""The demo end to end at a reduced size, and TensorBoard serving its scalars over HTTP."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = pytest.mark.slow

TENSORBOARD_TAGS = ("lm/loss", "lm/perplexity", "lm/accuracy") + tuple(
    f"train/{name}" for name in ("learning_rate", "grad_norm", "tokens_per_second",
                                 "memory_bytes"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo") / "run"
    result = subprocess.run(
        [sys.executable, "-m", "xlnet", "demo", "--workdir", str(workdir), "--steps", "80",
         "--max-documents", "1500"],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir, result.stdout


def test_demo_loss_falls_and_everything_is_where_it_says(demo):
    workdir, stdout = demo
    first = float(re.search(r"first loss\s+([\d.]+)", stdout).group(1))
    last = float(re.search(r"last loss\s+([\d.]+)", stdout).group(1))
    assert last < first - 0.5, stdout
    for name in ("tokenizer/spiece.model", "data/COMPLETED", "data/dataset_info.json",
                 "export/hf/config.json", "export/hf/model.safetensors"):
        assert (workdir / name).exists(), name
    assert "tensorboard --logdir" in stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_tensorboard_serves_the_documented_scalars(demo):
    workdir, _ = demo
    port = free_port()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "tensorboard"), "--logdir",
         str(workdir / "model"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        tags = {}
        while time.time() < deadline:
            try:
                tags = get_json(f"{base}/data/plugin/scalars/tags")
                if any(set(TENSORBOARD_TAGS) <= set(run_tags) for run_tags in tags.values()):
                    break
            except OSError:
                pass
            time.sleep(1)
        run = next(r for r, run_tags in tags.items() if set(TENSORBOARD_TAGS) <= set(run_tags))
        points = get_json(f"{base}/data/plugin/scalars/scalars?run={run}&tag=lm/loss")
        steps = [step for _, step, _ in points]
        assert steps == sorted(steps) and len(steps) >= 2
        assert all(value > 0 for _, _, value in points)
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
