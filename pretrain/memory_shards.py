"""The recurrent memory of a checkpoint, in shards by canonical row: each worker writes only
the rows its replicas own and reads back only the rows it will own.

`memory/ckpt-N/rows-AAAAAA-BBBBBB` holds canonical rows [A, B) (`StreamPlan.canonical_row`), one
after another, each [N, M, D] raw little-endian float32, so any range of rows is one seek and
one read (tf.io.gfile: local, gs://, s3://). A worker's rows are one or two such ranges (with
bi_data, its forward rows and their reversed copies). `memory/ckpt-N/manifest.json`, written by
the chief once every worker has written its shards and before ckpt-N.index, lists every shard:
its rows, its size and each row's crc32c. A worker that dies before its shards are whole stops
the save before the chief writes the manifest or the index, so ckpt-N never counts and a
resume takes the checkpoint before it; a listed shard missing (or of the wrong size) later on
is damage from outside and an error naming the file.
"""

import json
import logging

import google_crc32c
import numpy as np
import tensorflow as tf

from xlnet.atomic_file import write_file
from xlnet.errors import UserError
from xlnet.formats.model_dir import MEMORY_MANIFEST_FILE, checkpoint_step
from xlnet.schema import crc32c_hex

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = "xlnet-memory-shards"
MANIFEST_VERSION = 1
DTYPE = np.dtype("<f4")


def row_ranges(rows):
    """Sorted distinct canonical rows as [(start, stop), ...] runs of consecutive rows."""
    ranges = []
    for row in sorted(rows):
        if ranges and ranges[-1][1] == row:
            ranges[-1][1] = row + 1
        else:
            ranges.append([row, row + 1])
    return [tuple(r) for r in ranges]


def row_crc(row):
    return google_crc32c.value(np.ascontiguousarray(row, DTYPE).tobytes())


def write_shards(directory, step, canonical_rows, values):
    """Writes `values` [n, N, M, D] (row i is canonical row `canonical_rows[i]`) as one shard
    per run of consecutive rows, each whole or not at all; returns the bytes written."""
    order = np.argsort(canonical_rows)
    ordered = [canonical_rows[i] for i in order]
    written, first = 0, 0
    tf.io.gfile.makedirs(directory.memory_dir(step))
    for start, stop in row_ranges(canonical_rows):
        rows = np.ascontiguousarray(values[order[first:first + stop - start]], DTYPE)
        assert ordered[first:first + stop - start] == list(range(start, stop))
        data = rows.tobytes()
        write_file(directory.join(directory.memory_shard_file(step, start, stop)), data)
        written += len(data)
        first += stop - start
    return written


def build_manifest(directory, step, row_shape, row_crcs, row_workers):
    """The manifest of ckpt-`step`: `row_crcs[c]`, `row_workers[c]`: the crc32c of canonical row
    c and the worker that wrote it. Shards are each worker's runs of consecutive rows, as
    `write_shards` cut them."""
    row_bytes = int(np.prod(row_shape)) * DTYPE.itemsize
    shards = []
    for worker in sorted(set(row_workers)):
        owned = [c for c, w in enumerate(row_workers) if w == worker]
        for start, stop in row_ranges(owned):
            shards.append({"file": directory.memory_shard_file(step, start, stop),
                           "start": start, "stop": stop, "worker": int(worker),
                           "bytes": (stop - start) * row_bytes,
                           "crc32c": [crc32c_hex(int(c)) for c in row_crcs[start:stop]]})
    shards.sort(key=lambda shard: shard["start"])
    return {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "step": step,
            "rows": len(row_crcs), "row_shape": list(row_shape), "dtype": "float32-le",
            "shards": shards}


def write_manifest(directory, step, manifest):
    """Writes the manifest whole, after removing what a save of this step cut short earlier
    left there (shards of another layout, temporary files): nothing unlisted stays."""
    listed = {shard["file"].rsplit("/", 1)[-1] for shard in manifest["shards"]}
    folder = directory.memory_dir(step)
    for name in tf.io.gfile.listdir(folder):
        if name not in listed and name != MEMORY_MANIFEST_FILE:
            tf.io.gfile.remove(f"{folder}/{name}")
    write_file(directory.memory_manifest_path(step),
               json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def read_manifest(directory, step, prefix):
    """The manifest of ckpt-`step`, or None when there is none. One that does not parse is
    an error naming it."""
    path = directory.memory_manifest_path(step)
    if not tf.io.gfile.exists(path):
        return None
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            manifest = json.loads(f.read().decode("utf-8"))
        if manifest.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format is {manifest.get('format')!r}")
    except (ValueError, UnicodeDecodeError, AttributeError) as e:
        raise UserError(f"{path}: not a memory manifest ({e}); the memory of {prefix} "
                        "cannot be read: restore the file, or move "
                        f"{prefix.rsplit('/', 1)[-1]}.* away to resume from the checkpoint "
                        "before it") from None
    return manifest


def check_shards(directory, manifest, prefix, rows, row_shape):
    """Refuses, in one line naming the file, a checkpoint whose manifest does not fit the run
    or one of whose shards is missing or of another size than listed."""
    where = directory.memory_manifest_path(manifest.get("step"))
    if manifest.get("version") != MANIFEST_VERSION or manifest.get("rows") != rows or \
            manifest.get("row_shape") != list(row_shape):
        raise UserError(
            f"{where}: memory of {manifest.get('rows')} rows of shape {manifest.get('row_shape')}"
            f" (manifest version {manifest.get('version')}), but this run has {rows} rows of "
            f"{list(row_shape)}; use a new --model-dir")
    expected = 0  # the shards must cover rows 0..rows-1 once each
    for shard in sorted(manifest["shards"], key=lambda shard: shard["start"]):
        if shard["start"] != expected or shard["stop"] <= shard["start"] or \
                len(shard["crc32c"]) != shard["stop"] - shard["start"]:
            break
        expected = shard["stop"]
    if expected != rows:
        raise UserError(f"{where}: the shards listed do not cover rows 0..{rows - 1} once each; "
                        f"move {prefix.rsplit('/', 1)[-1]}.* away to resume from the "
                        "checkpoint before it")
    name = prefix.rsplit("/", 1)[-1]
    for shard in manifest["shards"]:
        path = directory.join(shard["file"])
        what = (f"memory shard of {name} (rows {shard['start']}-{shard['stop'] - 1}, written by "
                f"worker {shard['worker']})")
        fix = (f"restore it, or move {name}.* away to resume from the checkpoint before it")
        if not tf.io.gfile.exists(path):
            raise UserError(f"{path}: missing {what}; {fix}")
        size = tf.io.gfile.stat(path).length
        if size != shard["bytes"]:
            raise UserError(f"{path}: {size} bytes, but the manifest lists {shard['bytes']} for "
                            f"this {what}; {fix}")


def read_rows(directory, manifest, canonical_rows, prefix):
    """Reads canonical rows `canonical_rows` ([n]) as [n, N, M, D] float32: for each shard
    holding some of them, one seek and one read per run of consecutive rows, each row checked
    against its crc32c. Returns (rows, bytes read, files read)."""
    row_shape = manifest["row_shape"]
    row_bytes = int(np.prod(row_shape)) * DTYPE.itemsize
    out = np.empty([len(canonical_rows), *row_shape], np.float32)
    where = {row: i for i, row in enumerate(canonical_rows)}
    read, files = 0, 0
    name = prefix.rsplit("/", 1)[-1]
    for shard in manifest["shards"]:
        wanted = [r for r in range(shard["start"], shard["stop"]) if r in where]
        if not wanted:
            continue
        files += 1
        path = directory.join(shard["file"])
        with tf.io.gfile.GFile(path, "rb") as f:
            for start, stop in row_ranges(wanted):
                f.seek((start - shard["start"]) * row_bytes)
                data = f.read((stop - start) * row_bytes)
                read += len(data)
                if len(data) != (stop - start) * row_bytes:
                    raise UserError(f"{path}: ends early (memory shard of {name}); restore it, "
                                    f"or move {name}.* away to resume from the checkpoint "
                                    "before it")
                rows = np.frombuffer(data, DTYPE).reshape([stop - start, *row_shape])
                for row in range(start, stop):
                    value = rows[row - start]
                    if crc32c_hex(row_crc(value)) != shard["crc32c"][row - shard["start"]]:
                        raise UserError(
                            f"{path}: row {row} does not match its crc32c in the manifest "
                            f"(memory shard of {name} damaged); restore it, or move {name}.* "
                            "away to resume from the checkpoint before it")
                    out[where[row]] = value
    return out, read, files


def remove_swept(directory, step):
    """Removes the memory of checkpoints older than ckpt-`step` whose index is gone (swept
    past train.keep_checkpoints, after the index: an index never outlives its shards)."""
    live = {checkpoint_step(prefix) for prefix in directory.checkpoints()}
    for old in directory.memory_steps():
        if old < step and old not in live:
            tf.io.gfile.rmtree(directory.memory_dir(old))
