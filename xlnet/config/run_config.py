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
        check_layout(mapping, source)
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


def check_layout(mapping, source):
    """Refuses a config that is not a mapping of the known sections to mappings."""
    if not isinstance(mapping, dict):
        raise UserError(f"{source}: holds {_kind(mapping)}, not a mapping with sections "
                        f"{', '.join(SECTIONS)}; see configs/tiny.yaml for the layout")
    unknown = sorted(set(mapping) - set(SECTIONS), key=str)
    if unknown:
        raise UserError(f"{source}: unknown section {unknown[0]!r} "
                        f"(known: {', '.join(SECTIONS)})")
    for section in SECTIONS:
        value = mapping.get(section)
        if value is not None and not isinstance(value, dict):
            raise UserError(f"{source}: section {section!r} holds {_kind(value)}; it must be a "
                            f"mapping of keys to values, e.g. '{section}: {{key: value}}'")


def _kind(value):
    """How a message names a YAML value that should have been a mapping."""
    if isinstance(value, list):
        return f"a list ({len(value)} items)"
    return f"the {type(value).__name__} {value!r}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, but a key given twice in one mapping is an error (PyYAML silently keeps
    the last, so `steps: 10` above `steps: 1000` would be lost without a word)."""


def _construct_unique_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is given twice (first on line {seen[key] + 1}; "
                "keep one)", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                 _construct_unique_mapping)


def _yaml_error(error):
    """The first line of a YAMLError with the line it points at, e.g. "the key 'steps' is given
    twice ... (line 3)"."""
    problem = getattr(error, "problem", None)
    mark = getattr(error, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem}, line {mark.line + 1} column {mark.column + 1}"
    return str(error).splitlines()[0]


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
        if not raw.strip():
            raise UserError(f"--set {item!r}: no value after '='; give one, e.g. "
                            f"--set {key.strip()}=VALUE")
        try:
            value = yaml.load(raw, Loader=_UniqueKeyLoader)
        except yaml.YAMLError as e:
            raise UserError(f"--set {item!r}: the value is not valid YAML ({_yaml_error(e)}); "
                            "quote it or give a plain number, word, true or false") from None
        mapping.setdefault(section, {})[name.strip()] = value
    return mapping


def run_config_from_yaml(text, source="config", overrides=()):
    try:
        mapping = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise UserError(f"{source}: not valid YAML ({_yaml_error(e)})") from None
    if mapping is None:
        raise UserError(f"{source}: empty (no sections); a run config has sections "
                        f"{', '.join(SECTIONS)}, see configs/tiny.yaml")
    check_layout(mapping, source)
    return RunConfig.from_dict(apply_overrides(mapping, overrides), source=source)


def _read_config_file(path):
    """The text of a config file given by path; UserError for a directory, an unreadable file
    or bytes that are not UTF-8 (e.g. a file saved as UTF-16)."""
    if os.path.isdir(path):
        raise UserError(f"--config {path}: a directory; give the path of a YAML file (or a "
                        f"named config: {', '.join(named_configs())})")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UserError(f"--config {path}: cannot be read ({e.strerror}); check its "
                        "permissions") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UserError(f"--config {path}: UTF-16 text (byte order mark); save it as UTF-8 "
                        f"(iconv -f UTF-16 -t UTF-8)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise UserError(f"--config {path}: not UTF-8 text (byte {data[e.start]:#04x} on line "
                        f"{line}); save it as UTF-8") from None


def load_run_config(name_or_path, overrides=()):
    """`tiny` names the packaged configs/tiny.yaml; anything else is a path."""
    if os.path.exists(name_or_path):
        return run_config_from_yaml(_read_config_file(name_or_path), name_or_path, overrides)
    packaged = NAMED_CONFIGS / f"{name_or_path}.yaml"
    if not packaged.is_file():
        raise UserError(f"{name_or_path}: no such config file, nor a named config (named: "
                        f"{', '.join(named_configs())}); give a YAML path or one of the names")
    return run_config_from_yaml(packaged.read_text(), str(packaged), overrides)
