import pytest

from pretrain.flops import forward_flops_per_sequence, train_flops_per_token
from xlnet import load_run_config


@pytest.mark.parametrize("name,forward_tflop,train_gflop", [
    ("base", 0.149, 0.87), ("large", 0.490, 2.87)])
def test_spec_10_2_optimised_counts(name, forward_tflop, train_gflop):
    config = load_run_config(name)
    assert forward_flops_per_sequence(config.model, config.data) / 1e12 == pytest.approx(
        forward_tflop, abs=0.0005)
    assert train_flops_per_token(config.model, config.data) / 1e9 == pytest.approx(
        train_gflop, abs=0.005)
