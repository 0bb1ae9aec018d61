"""Serialised tf.train.Example records and TFRecord files, without importing TensorFlow.

`encode_examples` builds, for a batch of examples at once, exactly the bytes of
`tf.train.Example(...).SerializeToString(deterministic=True)` (map keys sorted, int64 lists
packed); the test compares it with TensorFlow byte for byte. Encoding a whole batch with numpy
is what keeps the writer cheap, and keeping TensorFlow out of the Beam workers saves each of
them seconds of start-up and hundreds of MB.
"""

import functools
import struct
import uuid

import google_crc32c
import numpy as np

_LENGTH_DELIMITED_FIELD_1 = b"\x0a"  # Example.features, Features.feature entry, map key,
#                                      Int64List.value (packed)
_MAP_VALUE_FIELD = b"\x12"  # field 2 (value) of a map entry
_INT64_LIST_FIELD = b"\x1a"  # Feature.int64_list (field 3)


def _varint(value):
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _varint_rows(values):
    """Packed varints of each row of a non-negative [n, m] integer array.

    Returns (bytes [total] uint8, row lengths [n]): all rows' varints back to back.
    """
    values = np.asarray(values)
    if values.size and values.min() < 0:
        raise ValueError("record features must be non-negative")
    rows, columns = values.shape
    largest = int(values.max()) if values.size else 0
    if largest < 0x80:  # one byte per value: the bytes are the values
        return values.astype(np.uint8).ravel(), np.full(rows, columns, np.int64)
    unsigned = np.uint32 if largest < (1 << 32) else np.uint64  # narrower is faster
    flat = values.astype(unsigned).ravel()  # [N]
    groups = -(-largest.bit_length() // 7)  # 7-bit groups of the largest value
    varint_bytes = np.empty((flat.size, groups), np.uint8)  # [N, W]: a value's bytes in a row
    present = np.ones((flat.size, groups), bool)  # [N, W]: which of them it has
    for group in range(groups):
        if group + 1 < groups:
            present[:, group + 1] = flat >= unsigned(1 << (7 * (group + 1)))
        payload = ((flat >> unsigned(7 * group)) & unsigned(0x7F)).astype(np.uint8)
        continued = present[:, group + 1] if group + 1 < groups else False
        varint_bytes[:, group] = payload | (np.uint8(0x80) * continued)
    return varint_bytes[present], present.reshape(rows, -1).sum(1)


@functools.lru_cache(maxsize=4096)
def _entry_header(name, packed_length):
    """Bytes of a feature-map entry before its packed values (they depend on lengths only)."""
    int64_list_length = (1 + len(_varint(packed_length)) + packed_length) if packed_length else 0
    feature_length = 1 + len(_varint(int64_list_length)) + int64_list_length
    key = name.encode()
    entry_head = (_LENGTH_DELIMITED_FIELD_1 + _varint(len(key)) + key
                  + _MAP_VALUE_FIELD + _varint(feature_length)
                  + _INT64_LIST_FIELD + _varint(int64_list_length))
    if packed_length:
        entry_head += _LENGTH_DELIMITED_FIELD_1 + _varint(packed_length)
    entry_length = len(entry_head) + packed_length
    return _LENGTH_DELIMITED_FIELD_1 + _varint(entry_length) + entry_head


def encode_examples(features):
    """{name: [n, m] non-negative ints} -> n serialised tf.train.Examples of int64 lists.

    Each example is joined from row slices: one per run of consecutive features whose entries
    have the same length in every row (built as one [n, width] byte table), and a header and a
    slice for each other feature.
    """
    columns = []  # per piece of an example: its bytes for every row
    fixed = []  # [n, width] byte tables of the current run of same-length entries
    for name in sorted(features):
        values = np.asarray(features[name])
        rows = len(values)
        packed, lengths = _varint_rows(values.reshape(rows, -1))
        if rows and (lengths == lengths[0]).all():
            header = np.frombuffer(_entry_header(name, int(lengths[0])), np.uint8)
            fixed += [np.broadcast_to(header, (rows, header.size)),
                      packed.reshape(rows, int(lengths[0]))]
            continue
        columns += _table_rows(fixed)
        fixed = []
        ends = np.cumsum(lengths).tolist()
        view = memoryview(packed.tobytes())  # rows' slices without copies
        columns.append([_entry_header(name, end - start) for start, end in
                        zip([0] + ends[:-1], ends)])
        columns.append([view[start:end] for start, end in zip([0] + ends[:-1], ends)])
    columns += _table_rows(fixed)
    records = []
    for pieces in zip(*columns):
        body_length = sum(map(len, pieces))
        records.append(b"".join([_LENGTH_DELIMITED_FIELD_1, _varint(body_length), *pieces]))
    return records


def _table_rows(tables):
    """[n, w_i] byte tables -> [the n rows of their concatenation as memoryviews] or []."""
    if not tables:
        return []
    table = np.concatenate(tables, axis=1)  # [n, width]
    view, width = memoryview(table.tobytes()), table.shape[1]
    return [[view[row * width:(row + 1) * width] for row in range(len(table))]]


def _masked_crc(data):
    crc = google_crc32c.value(data)  # the CPU's crc32c instruction: 40x crcmod
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@functools.lru_cache(maxsize=4096)
def _length_header(length):
    """Length and its masked crc32c: examples of a stream have few distinct lengths."""
    packed = struct.pack("<Q", length)
    return packed + struct.pack("<I", _masked_crc(packed))


def frame_record(data):
    """TFRecord framing: length, masked crc32c of the length, data, masked crc32c of data."""
    return b"".join([_length_header(len(data)), data, struct.pack("<I", _masked_crc(data))])


class RecordWriter:
    """Writes a TFRecord file under a temporary name and renames it on success only.

    `size` and `crc32c` (of the whole file's bytes, unmasked) are kept as the bytes are
    written, so dataset_info.json can record them without reading the file back.
    """

    def __init__(self, path):
        from apache_beam.io.filesystem import CompressionTypes
        from apache_beam.io.filesystems import FileSystems

        self.path = path
        self.records = 0
        self.size = 0
        self.crc32c = 0
        self._temporary = f"{path}.tmp-{uuid.uuid4().hex}"
        self._file = FileSystems.create(self._temporary,
                                        compression_type=CompressionTypes.UNCOMPRESSED)

    def write(self, records):
        framed = b"".join(frame_record(r) for r in records)
        self._file.write(framed)
        self.records += len(records)
        self.size += len(framed)
        self.crc32c = google_crc32c.extend(self.crc32c, framed)

    def __enter__(self):
        return self

    def __exit__(self, error_type, error, traceback):
        from apache_beam.io.filesystems import FileSystems

        self._file.close()
        if error_type is None:
            FileSystems.rename([self._temporary], [self.path])
        else:
            FileSystems.delete([self._temporary])
        return False
