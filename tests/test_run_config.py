import json

import pytest

from xlnet import DataConfig, RunConfig, UserError, XLNetConfig, load_run_config


@pytest.mark.parametrize("name,params", [("base", 116_750_336), ("large", 360_300_800)])
def test_released_parameter_counts(name, params):
    assert load_run_config(name).model.num_parameters == params


def test_tiny_loads_and_model_takes_data_values():
    config = load_run_config("tiny")
    assert config.model.reuse_len == config.data.reuse_len
    assert config.model.bi_data == config.data.bi_data


def test_overrides_are_typed():
    config = load_run_config("tiny", ["train.steps=7", "model.dropout=0", "data.bi_data=false"])
    assert config.train.steps == 7 and config.model.dropout == 0.0
    assert config.model.bi_data is False


@pytest.mark.parametrize("override,message", [
    ("train.stepz=3", "train.stepz: unknown key"),
    ("train.steps=many", "train.steps: expected an integer"),
    ("model.ff_activation=swish", "model.ff_activation"),
    ("model.d_model=63", "model.d_model: must be even"),
    ("model.mem_len=-1", "model.mem_len: must be >= 0"),
    ("model.reuse_len=3", "model.reuse_len: set data.reuse_len instead"),
    ("data.num_predict=80", "data.num_predict"),
    ("data.perm_size=5", "data.perm_size: 5 does not divide"),
    ("train.learning_rate=.nan", "train.learning_rate: must be a finite number, got nan"),
    ("train.learning_rate=.inf", "train.learning_rate: must be a finite number, got inf"),
    ("train.learning_rate=-1e-4", "train.learning_rate: must be >= 0, got -0.0001"),
    ("train.clip_norm=-.inf", "train.clip_norm: must be a finite number"),
    ("train.seed=4294967296", "train.seed: must be < 2\\*\\*32, got 4294967296"),
    ("optim.lr=1", "unknown section"),
    ("steps", "expected section.key=value"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(UserError, match=message):
        load_run_config("tiny", [override])


def test_a_frozen_run_keeps_learning_rate_zero():
    assert load_run_config("tiny", ["train.learning_rate=0"]).train.learning_rate == 0
    assert load_run_config("tiny", [f"train.seed={2 ** 32 - 1}"]).train.seed == 2 ** 32 - 1


def test_impossible_mask_goal_is_a_config_error():
    # Q2: seq_len 64 with K 85 would make the original's sampler loop forever.
    with pytest.raises(UserError, match="num_predict"):
        DataConfig(seq_len=64, reuse_len=32, num_predict=85, perm_size=32)


def test_reads_original_xlnet_config_json(tmp_path):
    path = tmp_path / "xlnet_config.json"
    path.write_text(json.dumps({"d_head": 64, "d_inner": 3072, "d_model": 768,
                                "ff_activation": "gelu", "n_head": 12, "n_layer": 12,
                                "n_token": 32000, "untie_r": True}))
    config = XLNetConfig.from_json(path, mem_len=0)
    assert config.num_parameters == 116_750_336 and config.mem_len == 0
    assert config.to_original_json()["d_inner"] == 3072
    path.write_text(json.dumps({"d_model": 768}))
    with pytest.raises(UserError, match="missing key"):
        XLNetConfig.from_json(path)


def test_round_trip_through_dict():
    config = load_run_config("tiny")
    assert RunConfig.from_dict(config.to_dict()) == config
