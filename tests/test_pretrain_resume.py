"""Exact resume: a run stopped by SIGTERM and then killed with SIGKILL, restarted each time
with the same command, logs the same per-step losses as an uninterrupted run (dropout on, and
evaluation every few steps); in float32 and in mixed_float16 while its loss scale moves."""

import re
import signal
import sys

import pytest

from dataset_fixture import write_dataset
from trainer_process import run_trainer
from xlnet import load_run_config

STEPS = 10


# mixed_float16 from a loss scale of 2**26: the first steps overflow and are skipped, so the
# interruptions fall while the scale is still moving (it must come back from the checkpoint).
PRECISIONS = {"float32": [],
              "mixed_float16": ["--set", "train.precision=mixed_float16",
                                "--set", "train.loss_scale=67108864"]}


def _command(data, model_dir, precision="float32"):
    return [sys.executable, "-m", "xlnet", "pretrain", "--config", "tiny", "--data", data,
            "--model-dir", model_dir, "--steps", str(STEPS), "--log-every", "1",
            "--checkpoint-every", "3", "--set", "train.eval_every=4",
            "--set", "train.eval_segments=2", *PRECISIONS[precision]]


@pytest.mark.slow
@pytest.mark.parametrize("precision", sorted(PRECISIONS))
def test_sigterm_and_sigkill_then_resume_give_the_uninterrupted_losses(tmp_path, precision):
    data = str(tmp_path / "data")
    write_dataset(data, load_run_config("tiny"), segments_per_stream=4,
                  eval_segments_per_stream=3)
    status, reference, log = run_trainer(_command(data, str(tmp_path / "reference"), precision))
    assert "eval at step 4:" in log and "eval at step 10:" in log
    assert status == 0 and sorted(reference) == list(range(1, STEPS + 1))
    if precision == "mixed_float16":
        skipped = [int(n) for n in re.findall(r"step skipped \((\d+) so far\)", log)]
        assert skipped[:4] == [1, 2, 3, 4] and len(skipped) < STEPS - 1  # then it trains
        reference_skips = len(skipped)

    command = _command(data, str(tmp_path / "interrupted"), precision)
    status, first, log = run_trainer(command, stop_at=2, sig=signal.SIGTERM)
    # The request is all-reduced with the next step dispatched and read one step later (the
    # host reads step N's metrics after dispatching N + 1), so every worker stops at the same
    # step, a few steps after the one logged when the signal came.
    stopped = max(first)
    assert status == 143 and 3 <= stopped <= 6
    assert f"stopped by SIGTERM at step {stopped}" in log
    status, second, log = run_trainer(command, stop_at=7, sig=signal.SIGKILL)  # after ckpt-6
    assert status == -signal.SIGKILL and f"at step {stopped}" in log
    status, third, log = run_trainer(command)
    assert status == 0 and "ckpt-6 at step 6" in log
    assert sorted(first) == list(range(1, stopped + 1))
    assert min(second) == stopped + 1 and sorted(third) == [7, 8, 9, 10]
    for losses in (first, second, third):
        for step, loss in losses.items():
            assert loss == pytest.approx(reference[step], abs=1e-5), step
    if precision == "mixed_float16":  # the resumed scale skipped no more steps, all counted
        assert re.search(rf"step {STEPS}/{STEPS} .* skipped {reference_skips} ETA", log), log
