"""`xlnet plan`: the figures for a config and a scale, the largest batch that fits, one-line
errors, and the memory count against the trainer's measured peak on this CPU."""

import json
import os
import subprocess
import sys

import pytest

from pretrain.flops import train_flops_per_token
from pretrain.plan import device_memory, largest_local_batch, plan
from xlnet import load_run_config
from xlnet.commands import main as cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Two tiny shapes whose activations outweigh everything else (d64, L 128, M 96, K 20, 8 rows).
L128 = ["data.seq_len=128", "data.reuse_len=64", "model.mem_len=96", "data.perm_size=64",
        "data.num_predict=20"]
SHAPES = {"4 layers": ["model.n_layer=4"] + L128, "3 layers": ["model.n_layer=3"] + L128}
MEASURED_BATCH = 8


def test_plan_prints_the_figures_for_base_on_eight_devices(capsys):
    result = cli.main(["plan", "--config", "base", "--global-batch-size", "256", "--devices",
                       "8", "--device-memory", "80", "--peak-tflops", "989"])
    assert result == 0
    out = capsys.readouterr().out
    config = load_run_config("base")
    p = plan(config, global_batch_size=256, devices=8, device_memory_gb=80, peak_tflops=989)
    assert "parameters: 116,750,336" in out and "0.875 GFLOP" in out
    assert "local batch 32, 131,072 tokens per step" in out
    assert p.train_flops_per_token == train_flops_per_token(config.model, config.data)
    seconds = 256 * 512 * p.train_flops_per_token / (8 * 989e12 * 0.4)
    assert p.steps_per_day == pytest.approx(86400 / seconds)
    assert f"{p.steps_per_day:,.0f}" in out
    assert p.memory.weights == 4 * 116_750_336 and p.memory.optimizer == 2 * p.memory.weights
    assert p.memory.memory_state == 2 * 32 * 12 * 384 * 768 * 4
    assert "a save copies the device's rows, 432 MiB, to the host" in out
    assert p.memory.activations_remat < p.memory.activations / 4
    assert "largest local batch in 80 GiB" in out


@pytest.mark.parametrize("remat", [False, True])
def test_largest_local_batch_is_the_largest_that_fits(remat):
    config = load_run_config("large")
    device_bytes = 16 * 2**30
    rows = largest_local_batch(config.model, config.data, device_bytes, remat, even=True)
    assert rows > 0 and rows % 2 == 0
    assert device_memory(config.model, config.data, rows).peak(remat) <= device_bytes
    assert device_memory(config.model, config.data, rows + 2).peak(remat) > device_bytes
    assert largest_local_batch(config.model, config.data, 2**30, remat) == 0


@pytest.mark.parametrize("argv,message", [
    (["--devices", "3"], "does not divide over 3 devices"),
    (["--devices", "0"], "--devices 0: must be positive"),
    (["--mfu", "1.5"], "--mfu 1.5: must be in (0, 1]")])
def test_bad_scale_is_one_line(argv, message, capsys):
    assert cli.main(["plan", "--config", "base", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def _measured_peak(overrides, remat):
    """The trainer's peak (TensorFlow's allocator statistics) in a fresh process."""
    argv = [sys.executable, "bench/remat.py", "--config", "tiny", "--batch",
            str(MEASURED_BATCH), "--steps", "2", "--only", remat]
    for override in overrides:
        argv += ["--set", override]
    child = subprocess.run(argv, cwd=REPO, check=True, capture_output=True, text=True,
                           timeout=300, env=dict(os.environ, PYTHONPATH=REPO))
    return json.loads(child.stdout.strip().splitlines()[-1])["peak"]


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("remat", ["none", "layer"])
def test_memory_count_matches_the_measured_peak(shape, remat):
    config = load_run_config("tiny", SHAPES[shape])
    estimate = device_memory(config.model, config.data, MEASURED_BATCH).peak(remat == "layer")
    measured = _measured_peak(SHAPES[shape], remat)
    assert estimate == pytest.approx(measured, rel=0.25), (estimate, measured)
