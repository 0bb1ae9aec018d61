"""RunConfig: one YAML file = one complete run (model, data, train), with `--set` overrides.

The model's `reuse_len` and `bi_data` come from the data section: the trainer must use the
values the dataset was prepared with, so the YAML states them once.
"""

import dataclasses
import importlib.resources
import os

import yaml

from xlnet.config.model_config import XLNetConfig
from xlnet.config.data_config import DataConfig
from xlnet.errors import UserError
from xlnet.config.train_config import TrainConfig

# The top-level configs/ seen from inside the package (xlnet/configs links to it; a wheel
# holds copies), so a name resolves the same way in a checkout and in any install.
NAMED_CONFIGS = importlib.resources.files("xlnet") / "configs"
SECTIONS = ("model", "data", "train")
MODEL_FIELDS_FROM_DATA = ("reuse_len", "bi_data")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    model: XLNetConfig
    data: DataConfig
    train: TrainConfig

    def __post_init__(self):
        if self.train.global_batch_size > self.data.num_streams * (2 if self.data.bi_data else 1):
            raise UserError(
                f"train.global_batch_size: {self.train.global_batch_size} rows exceed the "
                f"dataset's streams; raise data.num_streams or lower the batch")
        if self.data.bi_data and self.train.global_batch_size % 2:
            raise UserError(
                "train.global_batch_size: must be even with data.bi_data (half the rows read "
                "reversed streams)")

    @classmethod
    def from_dict(cls, mapping, source="config"):
        if not isinstance(mapping, dict):
            raise UserError(f"{source}: expected a mapping with sections {', '.join(SECTIONS)}")
        unknown = sorted(set(mapping) - set(SECTIONS))
        if unknown:
            raise UserError(f"{source}: unknown section {unknown[0]!r} "
                            f"(known: {', '.join(SECTIONS)})")
        model_section = mapping.get("model") or {}
        for name in MODEL_FIELDS_FROM_DATA:
            if name in model_section:
                raise UserError(f"model.{name}: set data.{name} instead (the model uses the "
                                "dataset's value)")
        data = DataConfig.from_dict(mapping.get("data"))
        model = XLNetConfig.from_dict(
            {**model_section, "reuse_len": data.reuse_len, "bi_data": data.bi_data})
        return cls(model=model, data=data, train=TrainConfig.from_dict(mapping.get("train")))

    def to_dict(self):
        model = self.model.get_config()
        for name in MODEL_FIELDS_FROM_DATA:
            model.pop(name)
        return {"model": model, "data": self.data.get_config(), "train": self.train.get_config()}

    def to_yaml(self):
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def named_configs():
    """The names `load_run_config` takes besides paths: tiny, base, large."""
    return sorted(entry.name.removesuffix(".yaml") for entry in NAMED_CONFIGS.iterdir()
                  if entry.name.endswith(".yaml"))


def apply_overrides(mapping, overrides):
    """Applies `section.key=value` strings; values are parsed as YAML scalars."""
    mapping = {k: dict(v or {}) for k, v in mapping.items()}
    for item in overrides or ():
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise UserError(f"--set {item!r}: expected section.key=value, e.g. train.steps=100")
        if section not in SECTIONS:
            raise UserError(f"--set {item!r}: unknown section {section!r} "
                            f"(known: {', '.join(SECTIONS)})")
        mapping.setdefault(section, {})[name] = yaml.safe_load(raw) if raw.strip() else ""
    return mapping


def run_config_from_yaml(text, source="config", overrides=()):
    try:
        mapping = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from None
    return RunConfig.from_dict(apply_overrides(mapping, overrides), source=source)


def load_run_config(name_or_path, overrides=()):
    """`tiny` names the packaged configs/tiny.yaml; anything else is a path."""
    if os.path.exists(name_or_path):
        with open(name_or_path) as f:
            return run_config_from_yaml(f.read(), name_or_path, overrides)
    packaged = NAMED_CONFIGS / f"{name_or_path}.yaml"
    if not packaged.is_file():
        raise UserError(f"{name_or_path}: no such config file, nor a named config (named: "
                        f"{', '.join(named_configs())}); give a YAML path or one of the names")
    return run_config_from_yaml(packaged.read_text(), str(packaged), overrides)
