"""The dataset directory contract between `xlnet prepare` (writer) and `xlnet pretrain` (reader).

Layout of a dataset directory:
  dataset_info.json                 DatasetInfo below
  stats.json                        corpus statistics (informational)
  pass-{p:03d}/stream-{s:05d}.tfrecord
                                    one file per (pass, stream): that stream's segments in order
  eval/pass-000/stream-{s:05d}.tfrecord
                                    the eval split, when there is one: held-out documents (or a
                                    separate corpus) in streams of their own, one pass
  COMPLETED                         written last; without it the directory is not a dataset

Streams 0..num_streams-1 read forward; with bi_data, stream num_streams+s is the time-reversed
copy of stream s (its examples carry reverse=1).

Schema version 2 added each stream file's `size` (bytes) and `crc32c` (Castagnoli, unmasked, of
the whole file, 8 hex digits) to its entry. A version 1 dataset is refused: without them the
trainer cannot tell a truncated or altered file at start, and `xlnet prepare` writes the same
records again (its output is deterministic).
"""

import dataclasses
import json

from xlnet.errors import UserError

SCHEMA_VERSION = 2  # 2: stream entries carry size and crc32c
INFO_FILE = "dataset_info.json"
STATS_FILE = "stats.json"
COMPLETED_FILE = "COMPLETED"

# Special ids of the original vocabulary (original-xlnet.md §1.1).
UNK_ID, BOS_ID, EOS_ID, CLS_ID, SEP_ID, PAD_ID, MASK_ID, EOD_ID, EOP_ID = range(9)
SPECIAL_PIECES = ("<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>")

SEQUENCE_FEATURES = ("input_ids", "segment_ids", "is_masked", "perm_rank")  # each [L] int64
SCALAR_FEATURES = ("label", "stream", "index", "reverse")  # each [1] int64

# DataConfig fields that change the records; the trainer refuses a dataset that differs.
RECORD_FIELDS = ("seq_len", "reuse_len", "num_predict", "perm_size", "bi_data", "mask_alpha",
                 "mask_beta", "max_gram", "span_unit", "uncased", "use_eod")


def join_path(directory, *names):
    """A path below `directory`, local or an object store URL (tf.io.gfile's form)."""
    return "/".join([directory.rstrip("/"), *names])


PASS_DIR_PREFIX = "pass-"
TRAIN, EVAL = "train", "eval"
SPLITS = (TRAIN, EVAL)
EVAL_DIR = "eval"  # the eval split's stream files live below it


def stream_file(pass_index, stream, split=TRAIN):
    path = f"{PASS_DIR_PREFIX}{pass_index:03d}/stream-{stream:05d}.tfrecord"
    return path if split == TRAIN else f"{EVAL_DIR}/{path}"


def crc32c_hex(value):
    """A stream entry's `crc32c`: the file's crc32c as 8 lower-case hex digits."""
    return f"{value:08x}"


def read_stats(directory):
    """stats.json of a dataset directory (informational: {} when it cannot be read)."""
    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(join_path(directory, STATS_FILE), "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except Exception:  # noqa: BLE001 - any gfile backend error or bad JSON
        return {}


@dataclasses.dataclass
class DatasetInfo:
    """Content of dataset_info.json.

    `data` holds the DataConfig used (all its fields). `tokenizer` holds path, sha256,
    vocab_size and special_ids. `passes[p]` is {"seed": int, "streams": [{"stream": s,
    "reverse": 0|1, "file": relative path, "examples": n}, ...]} in stream order.
    `eval_passes` is the eval split in the same form (one pass, or none), `eval_source_files`
    the separate eval corpus when one was given.
    """
    data: dict
    tokenizer: dict
    passes: list
    num_examples: int
    source_files: list
    schema_version: int = SCHEMA_VERSION
    eval_passes: list = dataclasses.field(default_factory=list)
    eval_num_examples: int = 0
    eval_source_files: list = dataclasses.field(default_factory=list)

    def split_passes(self, split, where="dataset_info.json"):
        """The passes of `split`; refuses an eval split the dataset does not have."""
        if split == TRAIN:
            return self.passes
        if not self.eval_passes:
            raise UserError(f"{where}: the dataset has no eval split; prepare it again with "
                            "data.eval_fraction > 0 or --eval-input GLOB")
        return self.eval_passes

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, directory):
        """Reads a finished dataset directory; refuses one without COMPLETED."""
        import tensorflow as tf  # tf.io.gfile: paths may be gs://, s3://

        info_path = join_path(directory, INFO_FILE)
        if not tf.io.gfile.exists(directory):
            raise UserError(f"{directory}: no such dataset directory (run `xlnet prepare`)")
        if not tf.io.gfile.exists(join_path(directory, COMPLETED_FILE)):
            raise UserError(f"{directory}: no COMPLETED marker; `xlnet prepare` did not finish "
                            "there (run it again)")
        try:
            with tf.io.gfile.GFile(info_path, "rb") as f:
                mapping = json.loads(f.read().decode("utf-8"))
        except Exception as e:  # any gfile backend error or bad JSON
            raise UserError(f"{info_path}: cannot read dataset info ({e})") from None
        if mapping.get("schema_version") != SCHEMA_VERSION:
            raise UserError(f"{info_path}: schema_version {mapping.get('schema_version')} is not "
                            f"{SCHEMA_VERSION} (version 2 records stream file sizes and "
                            "checksums); prepare the data again with this version")
        try:
            return cls(**mapping)
        except TypeError as e:
            raise UserError(f"{info_path}: unexpected content ({e})") from None

    def identity(self):
        """What tells one prepared dataset from another (a data position is only meaningful
        in the dataset it counts)."""
        return {"tokenizer_sha256": self.tokenizer.get("sha256"),
                "num_examples": self.num_examples,
                "pass_seeds": [p.get("seed") for p in self.passes]}

    def check_matches(self, run_config, where="dataset_info.json"):
        """Refuses a dataset prepared for another model/data config, naming the field."""
        for name in RECORD_FIELDS:
            want = getattr(run_config.data, name)
            have = self.data.get(name)
            if have != want:
                raise UserError(f"{where}: data.{name} is {have!r} in the dataset but {want!r} "
                                f"in the config; use a matching config or prepare again")
        if self.tokenizer.get("vocab_size") != run_config.model.n_token:
            raise UserError(f"{where}: the tokenizer has {self.tokenizer.get('vocab_size')} "
                            f"pieces but model.n_token is {run_config.model.n_token}")
