"""Step options: XLA and bf16 mixed precision train the same model as the float32 graph step;
gradient accumulation walks the rows one segment per micro-step."""

import numpy as np
import pytest

from pretrain_harness import record_run

STEPS = ["train.steps=4", "train.warmup_steps=1"]


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    return record_run(dataset, str(tmp_path_factory.mktemp("graph")), STEPS)


@pytest.mark.slow
def test_xla_step_gives_the_graph_losses_with_dropout_on(dataset, reference, tmp_path):
    xla = record_run(dataset, str(tmp_path), STEPS + ["train.jit_compile=true"])
    np.testing.assert_allclose(xla["loss"], reference["loss"], rtol=1e-4)
    np.testing.assert_allclose(xla["memory"], reference["memory"], atol=1e-3)


@pytest.mark.slow
def test_bf16_mixed_precision_stays_close_to_float32(dataset, reference, tmp_path):
    bf16 = record_run(dataset, str(tmp_path), STEPS + ["train.precision=mixed_bfloat16"])
    np.testing.assert_allclose(bf16["loss"], reference["loss"], rtol=2e-2)
    assert not np.array_equal(bf16["loss"], reference["loss"])  # it did compute in bf16


@pytest.mark.slow
def test_gradient_accumulation_advances_one_segment_per_micro_step(dataset, reference,
                                                                   tmp_path):
    accumulated = record_run(dataset, str(tmp_path), ["train.steps=2", "train.warmup_steps=1",
                                                      "train.grad_accum_steps=2"])
    # After 2 optimizer steps of 2 micro-steps, rows are where 4 plain steps left them.
    np.testing.assert_array_equal(accumulated["index"][-1], reference["index"][-1])
    np.testing.assert_array_equal(accumulated["stream"][-1], reference["stream"][-1])
    assert np.isfinite(accumulated["loss"]).all()
