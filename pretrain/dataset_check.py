"""Checks every stream file a run will read before the run starts (the contract is
xlnet/schema.py), so a damaged dataset is one line naming the file instead of a traceback at
the step that first reads it.

Always (one stat and one record per file): each pass the data config promises is listed and
its `examples` add up; a file's name is the contract's name for its pass and stream (nothing
else is opened: `../x` or `/etc/passwd` are refused) and a local one does not lead out of the
dataset directory through a link; the file exists with the recorded size; its first record is
an example of that stream (every feature, `seq_len` or 1 values, its stream, reverse flag and
index 0).

With `checksums` (`--verify-data`, or the first run of a model directory on this dataset): the
whole file's crc32c, and its records counted by walking the TFRecord framing in the same read,
against `examples` (a TFRecord file has no index, so the count needs the whole file).
"""

import concurrent.futures
import logging
import os
import struct
import time

import google_crc32c
import tensorflow as tf

from xlnet import schema
from xlnet.errors import UserError
from xlnet.formats.model_dir import ModelDirectory

logger = logging.getLogger(__name__)

_HEADER = 12  # TFRecord framing: length (8), its masked crc32c (4); then data, its crc32c (4)
_FOOTER = 4
_CHUNK = 4 << 20
_THREADS = 8  # files checked at once: stats and reads wait on storage, not on Python


def _integer(entry, name, where):
    value = entry.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UserError(f"{where}: `{name}` is {value!r}, not a count; prepare the data again "
                        "with this version")
    return value


def stream_path(data_dir, entry, pass_index, split, where):
    """The path of a stream entry's file, refusing any name but the contract's."""
    stream = _integer(entry, "stream", where)
    expected = schema.stream_file(pass_index, stream, split)
    if entry.get("file") != expected:
        raise UserError(f"{where}: names file {entry.get('file')!r} for pass {pass_index} stream "
                        f"{stream}, not {expected!r}; no other path is read, prepare the data "
                        "again")
    path = f"{data_dir.rstrip('/')}/{expected}"
    if "://" not in data_dir:
        # The name is fixed, but a local symbolic link could still lead elsewhere.
        inside, real = os.path.realpath(data_dir), os.path.realpath(path)
        if os.path.commonpath([inside, real]) != inside:
            raise UserError(f"{path}: leads out of the dataset directory (to {real}); copy the "
                            "file in or prepare the data again")
    return path


def _first_example(path, size):
    with tf.io.gfile.GFile(path, "rb") as f:
        header = f.read(_HEADER)
        length = struct.unpack("<Q", header[:8])[0] if len(header) == _HEADER else None
        if length is None or _HEADER + length + _FOOTER > size:
            raise UserError(f"{path}: the first record is cut short; prepare the data again")
        data = f.read(length)
    try:
        return tf.train.Example.FromString(data)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError, by any of its implementations
        raise UserError(f"{path}: the first record is not a tf.train.Example; prepare the data "
                        "again") from None


def _check_first_record(path, size, entry, seq_len):
    features = _first_example(path, size).features.feature
    lengths = {**{name: seq_len for name in schema.SEQUENCE_FEATURES},
               **{name: 1 for name in schema.SCALAR_FEATURES}}
    for name, length in lengths.items():
        if name not in features or len(features[name].int64_list.value) != length:
            have = len(features[name].int64_list.value) if name in features else "no"
            raise UserError(f"{path}: the first record has {have} values of {name}, the "
                            f"dataset's seq_len {seq_len} needs {length}; prepare the data again")
    have = {name: features[name].int64_list.value[0] for name in ("stream", "reverse", "index")}
    want = {"stream": entry["stream"], "reverse": entry["reverse"], "index": 0}
    if have != want:
        raise UserError(f"{path}: the first record is stream {have['stream']} reverse "
                        f"{have['reverse']} index {have['index']}, dataset_info.json says stream "
                        f"{want['stream']} reverse {want['reverse']} from index 0; prepare the "
                        "data again")


def scan_stream_file(path, chunk=_CHUNK):
    """(size, crc32c, records) of a TFRecord file in one read, `chunk` bytes at a time: the
    records are counted from the framing's length fields; records is None when the framing
    does not end at the end of the file."""
    crc, size, records, next_header = 0, 0, 0, 0
    carry = b""  # the start of a length field that a chunk boundary cut
    with tf.io.gfile.GFile(path, "rb") as f:
        while block := f.read(chunk):
            crc = google_crc32c.extend(crc, block)
            data, base = carry + block, size - len(carry)  # base: file offset of data[0]
            size += len(block)
            while next_header + 8 <= size:
                at = next_header - base
                next_header += _HEADER + struct.unpack("<Q", data[at:at + 8])[0] + _FOOTER
                records += 1
            carry = data[next_header - base:] if next_header < size else b""
    return size, crc, records if next_header == size else None


def _check_file(data_dir, entry, pass_index, split, seq_len, checksums):
    where = f"{data_dir.rstrip('/')}/{schema.INFO_FILE}: {split} pass {pass_index}"
    path = stream_path(data_dir, entry, pass_index, split, where)
    examples, size = _integer(entry, "examples", where), _integer(entry, "size", where)
    _integer(entry, "reverse", where)
    try:
        have = tf.io.gfile.stat(path).length
    except tf.errors.NotFoundError:
        raise UserError(f"{path}: missing (dataset_info.json lists it); prepare the data "
                        "again") from None
    except tf.errors.OpError as e:
        raise UserError(f"{path}: cannot be read ({e.message})") from None
    if have != size:
        raise UserError(f"{path}: {have} bytes, dataset_info.json records {size} (truncated or "
                        "replaced); prepare the data again")
    if (size == 0) != (examples == 0):
        raise UserError(f"{path}: {size} bytes for {examples} examples; prepare the data again")
    if examples:
        _check_first_record(path, size, entry, seq_len)
    if checksums:
        _, crc, records = scan_stream_file(path)
        if schema.crc32c_hex(crc) != entry.get("crc32c"):
            raise UserError(f"{path}: crc32c {schema.crc32c_hex(crc)}, dataset_info.json "
                            f"records {entry.get('crc32c')!r} (the file changed); prepare the "
                            "data again")
        if records is None:
            raise UserError(f"{path}: its TFRecord framing does not end at the end of the file; "
                            "prepare the data again")
        if records != examples:
            raise UserError(f"{path}: holds {records} records, dataset_info.json says "
                            f"{examples} examples; prepare the data again")


def check_dataset(info, data_dir, splits, checksums=False):
    """Checks the stream files of `splits` (see the module docstring); the first failure is a
    UserError naming its file. Returns the number of files checked."""
    where = f"{data_dir.rstrip('/')}/{schema.INFO_FILE}"
    files = []
    for split in splits:
        passes = info.split_passes(split, where)
        want = info.data.get("num_passes") if split == schema.TRAIN else 1
        if len(passes) != want:
            raise UserError(f"{where}: the {split} split lists {len(passes)} passes, "
                            f"data.num_passes promises {want}; prepare the data again")
        total = info.num_examples if split == schema.TRAIN else info.eval_num_examples
        listed = sum(_integer(e, "examples", where) for p in passes for e in p["streams"])
        if listed != total:
            raise UserError(f"{where}: the {split} split's streams list {listed} examples, "
                            f"its total says {total}; prepare the data again")
        files += [(entry, p, split) for p, pass_info in enumerate(passes)
                  for entry in pass_info["streams"]]
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(_THREADS) as pool:
        # map() re-raises the first failure in file order, whichever thread met it first.
        list(pool.map(lambda job: _check_file(data_dir, *job, info.data.get("seq_len"),
                                              checksums), files))
    logger.info("checked %d stream files of %s (%s) in %.1f s", len(files), data_dir,
                "sizes, first records, crc32c and record counts" if checksums
                else "sizes and first records", time.perf_counter() - started)
    return len(files)


def check_run_data(info, data_dir, model_dir, with_eval, verify_data):
    """The trainer's check at start: the train split, and the eval split when the run scores
    it and the dataset has one (a missing one is refused by the trainer, naming its option).
    Checksums with `verify_data` or when `model_dir` has not yet run on this dataset (its
    dataset.json records none, a new run, or another dataset)."""
    splits = (schema.TRAIN, schema.EVAL) if with_eval and info.eval_passes else (schema.TRAIN,)
    first_use = ModelDirectory(model_dir).dataset_identity() != info.identity()
    check_dataset(info, data_dir, splits, checksums=verify_data or first_use)
