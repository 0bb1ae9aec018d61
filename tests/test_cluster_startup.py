"""Multi-worker start-up: TF_CONFIG refusals, the logged wait for a missing worker, its deadline,
SIGTERM while waiting and before training, the sockets a waiting worker (and TensorFlow) listen
on, and a late worker joining.

Worker processes run on 127.0.0.1 (free ports from port 0), each in its own session, with proxy
variables removed; every survivor's process group is killed at the test's deadline."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from pretrain.cluster import check_tf_config
from trainer_process import free_ports
from xlnet.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEADLINE_SECONDS = 240
TWO = ["127.0.0.1:1111", "127.0.0.1:2222"]


def _config(cluster=None, task=None):
    config = {}
    if cluster is not None:
        config["cluster"] = cluster
    if task is not None:
        config["task"] = task
    return json.dumps(config)


WORKER_0 = {"type": "worker", "index": 0}
REFUSED = [
    ("{}", 'TF_CONFIG: no "cluster"'),
    (_config(task=WORKER_0), 'TF_CONFIG: no "cluster"'),
    (_config({"worker": TWO}), 'TF_CONFIG: no "task" naming this process'),
    (_config({"worker": TWO}, {"type": "worker"}), 'TF_CONFIG: no "task"'),
    (_config({"worker": TWO}, {"type": "chief", "index": 0}),
     "TF_CONFIG: task type 'chief' is not in the cluster (which has worker)"),
    (_config({"worker": TWO}, {"type": "worker", "index": 2}),
     "TF_CONFIG: task index 2 is out of range: cluster.worker lists 2 task(s), so use 0 to 1"),
    (_config({"worker": TWO}, {"type": "worker", "index": -1}), "task index -1 is out of range"),
    (_config({"worker": ["127.0.0.1:1111", "127.0.0.1"]}, WORKER_0),
     "TF_CONFIG: cluster.worker[1] is '127.0.0.1', which has no port"),
    (_config({"worker": ["127.0.0.1:1111", "127.0.0.1:http"]}, WORKER_0),
     "cluster.worker[1] is '127.0.0.1:http', whose port is not a number"),
    (_config({"worker": TWO, "ps": ["127.0.0.1:3333"]}, WORKER_0),
     "TF_CONFIG: job 'ps' in \"cluster\": --strategy multi_worker trains with"),
    (_config({"worker": [TWO[0], TWO[0]]}, WORKER_0),
     "TF_CONFIG: worker 0 and worker 1 both use 127.0.0.1:1111"),
    (_config({"worker": []}, WORKER_0), "cluster.worker must be a non-empty list"),
    ('{"cluster": ', "TF_CONFIG: not valid JSON"),
]


@pytest.mark.parametrize("tf_config,message", REFUSED)
def test_tf_config_errors_name_the_key_and_the_fix(tf_config, message):
    with pytest.raises(UserError) as raised:
        check_tf_config(tf_config)
    assert str(raised.value).startswith("TF_CONFIG: ")
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_valid_tf_config_gives_this_task_and_its_peers():
    own, peers = check_tf_config(_config({"chief": ["h0:1"], "worker": ["h1:2", "h2:3"]},
                                         {"type": "worker", "index": 1}))
    assert own == ("worker", 1, "h2:3")
    assert peers == [("chief", 0, "h0:1"), ("worker", 0, "h1:2")]


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(extra)
    return env


def _pretrain(tf_config, model_dir, data="/nonexistent-data", overrides=(), log=None,
              strategy="multi_worker"):
    command = [sys.executable, "-m", "xlnet", "pretrain", "--config", "tiny", "--data", data,
               "--model-dir", model_dir, "--strategy", strategy]
    for override in overrides:
        command += ["--set", override]
    return subprocess.Popen(command, cwd=REPO, env=_clean_env(TF_CONFIG=tf_config),
                            start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL,
                            stderr=log if log is not None else subprocess.PIPE, text=True)


def test_pretrain_refuses_a_bad_tf_config_in_one_line_before_tensorflow_starts(tmp_path):
    process = _pretrain("{}", str(tmp_path / "model"))
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert lines == ['error: TF_CONFIG: no "cluster"; list the workers, e.g. {"cluster": '
                     '{"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", '
                     '"index": 0}}'], stderr
    assert not os.path.exists(tmp_path / "model")


def test_tf_config_with_another_strategy_is_ignored_with_a_warning(monkeypatch, caplog):
    from pretrain.distribution import create_strategy
    monkeypatch.setenv("TF_CONFIG", _config({"worker": TWO}, WORKER_0))
    strategy = create_strategy("default")
    assert strategy.num_replicas_in_sync == 1
    assert ("TF_CONFIG is set but train.strategy is default: TF_CONFIG is ignored"
            in caplog.text)


def _tf_config(addresses, index):
    return json.dumps({"cluster": {"worker": addresses},
                       "task": {"type": "worker", "index": index}})


class Workers:
    """Worker processes with logs; every survivor's group is killed on exit."""

    def __init__(self, tmp_path):
        self.tmp_path, self.processes, self.logs = tmp_path, [], []
        self.deadline = time.monotonic() + DEADLINE_SECONDS

    def start(self, tf_config, **kwargs):
        path = self.tmp_path / f"worker-{len(self.processes)}.log"
        with open(path, "w") as log:
            self.processes.append(_pretrain(tf_config, log=log, **kwargs))
        self.logs.append(path)
        return self.processes[-1]

    def log(self, index):
        return self.logs[index].read_text()

    def wait_for_line(self, index, pattern):
        while not re.search(pattern, self.log(index)):
            if self.processes[index].poll() is not None:
                pytest.fail(f"worker exited ({self.processes[index].returncode}) before "
                            f"{pattern!r}:\n{self.log(index)[-3000:]}")
            if time.monotonic() > self.deadline:
                pytest.fail(f"no {pattern!r} in time:\n{self.log(index)[-3000:]}")
            time.sleep(0.02)

    def wait(self, index):
        try:
            return self.processes[index].wait(timeout=max(1, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker {index} still runs at the deadline:\n{self.log(index)[-3000:]}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _last_line(text):
    return [line for line in text.splitlines() if line.strip()][-1]


@pytest.mark.slow
def test_a_missing_worker_is_logged_and_the_wait_ends_at_cluster_timeout(tmp_path):
    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    with Workers(tmp_path) as workers:
        workers.start(_tf_config(addresses, 0), model_dir=str(tmp_path / "model"),
                      overrides=["train.cluster_timeout=5"])
        assert workers.wait(0) == 2
        log = workers.log(0)
    waits = re.findall(rf"INFO pretrain\.cluster: waiting for worker 1 at {addresses[1]} "
                       rf"\((\d+) s of 5\)", log)
    assert len(waits) >= 2, log[-3000:]  # periodically, at INFO
    assert [int(w) for w in waits] == sorted(int(w) for w in waits)
    assert _last_line(log) == (
        f"error: worker 1 at {addresses[1]} did not join within 5 s; start every worker "
        "listed in TF_CONFIG (or raise train.cluster_timeout)")
    assert not os.path.exists(tmp_path / "model")  # nothing written


def _listening(pid, port):
    """The local addresses ("127.0.0.1", "0.0.0.0", "::", ...) on which process `pid` has a
    socket listening at `port`, read from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = []
    for table, width in (("tcp", 8), ("tcp6", 32)):
        with open(f"/proc/{pid}/net/{table}") as f:
            for row in f.read().splitlines()[1:]:
                fields = row.split()
                address, hex_port = fields[1].split(":")
                if fields[3] == "0A" and int(hex_port, 16) == port and fields[9] in inodes:
                    raw = bytes.fromhex(address)
                    # /proc writes each 32-bit word in host (little-endian) order.
                    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                    family = socket.AF_INET if width == 8 else socket.AF_INET6
                    found.append(socket.inet_ntop(family, raw))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_ends_the_wait_at_once_and_the_waiting_worker_listens_on_its_host(tmp_path):
    ports = free_ports(2)
    addresses = [f"127.0.0.1:{port}" for port in ports]
    with Workers(tmp_path) as workers:
        process = workers.start(_tf_config(addresses, 0), model_dir=str(tmp_path / "model"),
                                overrides=["train.cluster_timeout=600"])
        workers.wait_for_line(0, rf"waiting for worker 1 at {addresses[1]} \(")
        # While it waits, its port is held on the host TF_CONFIG names, not on every interface.
        assert _listening(process.pid, ports[0]) == ["127.0.0.1"]
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        status = workers.wait(0)
        took = time.monotonic() - sent
        log = workers.log(0)
    assert status == 143, log[-3000:]
    assert took < 30, took  # promptly (about 1 s here), not at the 600 s deadline
    assert _last_line(log).endswith(
        "INFO pretrain.distribution: stopped by SIGTERM while waiting for the other workers")
    print(f"SIGTERM to exit: {took:.2f} s")


TF_SERVER_SCRIPT = """
import json, os, sys
port = int(sys.argv[1])
os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}"]},
                                      "task": {"type": "worker", "index": 0}})
from pretrain.distribution import create_strategy
strategy = create_strategy("multi_worker", cluster_timeout=30)
print("ready", flush=True)
sys.stdin.readline()
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_tensorflow_s_server_listens_on_every_interface(tmp_path):
    """TensorFlow's gRPC server binds "0.0.0.0:PORT" (grpc_server_lib.cc), which gRPC opens
    as a dual-stack "[::]" socket: the README says so. This fails once TensorFlow binds the
    host of TF_CONFIG, and the README (and this test) must then say that instead."""
    port = free_ports(1)[0]
    process = subprocess.Popen([sys.executable, "-c", TF_SERVER_SCRIPT, str(port)], cwd=REPO,
                               env=_clean_env(), start_new_session=True, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
    try:
        assert process.stdout.readline().strip() == "ready"
        addresses = _listening(process.pid, port)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert addresses and set(addresses) <= {"0.0.0.0", "::"}, addresses


@pytest.mark.slow
def test_a_late_worker_joins_and_both_train(dataset, tmp_path):
    """Worker 0 waits (logging it) until worker 1 starts seconds later; then both hand their
    ports to TensorFlow, form the cluster and train."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    overrides = ["train.steps=2", "train.log_every=1", "train.cluster_timeout=200"]
    with Workers(tmp_path) as workers:
        for index in range(2):
            workers.start(_tf_config(addresses, index), data=dataset,
                          model_dir=str(tmp_path / "model"), overrides=overrides)
            if index == 0:
                workers.wait_for_line(0, rf"waiting for worker 1 at {addresses[1]} \(")
        statuses = [workers.wait(0), workers.wait(1)]
        logs = [workers.log(0), workers.log(1)]
    assert statuses == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    for log in logs:
        assert "all 2 workers joined" in log
    assert "step 2/2" in logs[0]
    assert os.path.exists(tmp_path / "model" / "ckpt-2.index")


def test_cluster_timeout_must_be_positive():
    from xlnet.config.train_config import TrainConfig
    with pytest.raises(UserError, match="train.cluster_timeout: must be positive, got 0"):
        TrainConfig(cluster_timeout=0)


@pytest.mark.slow
def test_sigterm_after_the_cluster_formed_but_before_training_exits_at_once(dataset, tmp_path):
    """TensorFlow's preemption notifier takes SIGTERM when its server starts; the start-up
    takes it back until the trainer installs its own handler (model build, data checks)."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    with Workers(tmp_path) as workers:
        for index in range(2):
            workers.start(_tf_config(addresses, index), data=dataset,
                          model_dir=str(tmp_path / "model"),
                          overrides=["train.steps=50", "train.cluster_timeout=200"])
        workers.wait_for_line(0, "all 2 workers joined")
        workers.processes[0].send_signal(signal.SIGTERM)
        status = workers.wait(0)
        log = workers.log(0)
    assert status == 143, log[-3000:]
    assert _last_line(log).endswith(
        "INFO pretrain.distribution: stopped by SIGTERM during start-up (before training "
        "began)"), log[-3000:]


def test_a_port_of_this_task_that_is_taken_is_one_line_naming_it():
    from pretrain.cluster import PortHolder

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(UserError, match=re.escape(
                f"TF_CONFIG: port {address.split(':')[1]} of this task (worker 0 at "
                f"{address}) is taken")):
            with PortHolder(("worker", 0, address)):
                pass
